"""The pages in English and Bahasa Indonesia: complete catalogues, every template string
marked, the language switcher remembered per account, Accept-Language for visitors, <html lang>,
dates in the viewer's zone and language, and catalogues compiled at install time.

The catalogues are locale/<code>/LC_MESSAGES/django.po (settings.LOCALE_PATHS[0]). After marking
new strings, regenerate them with exactly MAKEMESSAGES (the catalogue tests run the same
extraction on a copy of the project and compare):

    DEBUG=1 .venv/bin/python manage.py makemessages -l id -l en --no-obsolete \\
        --ignore=tests --ignore=benchmarks --ignore=deploy --ignore=data ...

(the whole line is printed by a failing test).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path

import polib
import pytest
from django.apps import apps
from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.template import engines
from django.template.base import TextNode, VariableNode
from django.template.defaulttags import CommentNode
from django.template.loader import render_to_string
from django.templatetags.i18n import BlockTranslateNode, TranslateNode
from django.test import Client
from django.urls import reverse
from django.utils import translation

from tinyrag_site.models import AccountPreferences

pytestmark = pytest.mark.django_db

ROOT = Path(settings.BASE_DIR)
LOCALE_DIR = Path(settings.LOCALE_PATHS[0])
PAGE_LANGUAGES = [code for code, _name in settings.LANGUAGES]
# What makemessages must not read: not the product (tests, benchmarks, deploy scripts), or
# data (a dataset's words.txt would be read as a template). Hidden folders (.venv, .git) are
# Django's default ignores.
MAKEMESSAGES_IGNORE = (
    "tests",
    "benchmarks",
    "deploy",
    "data",
    "vector_db",
    "artifacts",
    "media",
    "staticfiles",
    "*.egg-info",
)
MAKEMESSAGES = (
    "DEBUG=1 .venv/bin/python manage.py makemessages "
    + " ".join(f"-l {code}" for code in PAGE_LANGUAGES)
    + " --no-obsolete "
    + " ".join(f"--ignore='{pattern}'" for pattern in MAKEMESSAGES_IGNORE)
)
SOURCE_SUFFIXES = {".py", ".html", ".txt"}  # what makemessages reads for the "django" domain


def catalogue_path(code: str) -> Path:
    return LOCALE_DIR / code / "LC_MESSAGES" / "django.po"


def read_catalogue(code: str) -> polib.POFile:
    path = catalogue_path(code)
    assert path.is_file(), f"{path.relative_to(ROOT)} is missing: run {MAKEMESSAGES}"
    return polib.pofile(str(path))


def message_keys(catalogue: polib.POFile) -> set[tuple[str, str, str]]:
    """Each live entry as (context, msgid, plural msgid)."""
    return {
        (entry.msgctxt or "", entry.msgid, entry.msgid_plural or "")
        for entry in catalogue
        if not entry.obsolete
    }


# --- (a) the Indonesian catalogue is complete ---------------------------------------------


def test_the_indonesian_catalogue_translates_every_message_and_nothing_is_fuzzy():
    catalogue = read_catalogue("id")
    live = [entry for entry in catalogue if not entry.obsolete]
    assert live, f"{catalogue_path('id').relative_to(ROOT)} has no messages: run {MAKEMESSAGES}"
    assert not catalogue.metadata_is_fuzzy, "the catalogue's header is still marked fuzzy"
    fuzzy = [entry.msgid for entry in live if entry.fuzzy]
    untranslated = [
        entry.msgid
        for entry in live
        if not (all(entry.msgstr_plural.values()) if entry.msgid_plural else entry.msgstr.strip())
    ]
    assert fuzzy == [], f"fuzzy (unchecked) translations: {fuzzy}"
    assert untranslated == [], f"untranslated: {untranslated}"


def test_the_catalogues_compile_with_their_placeholders_checked(tmp_path):
    """msgfmt --check: a translation keeps every %(name)s of its msgid, the header is sound."""
    for code in PAGE_LANGUAGES:
        path = catalogue_path(code)
        assert path.is_file(), f"{path.relative_to(ROOT)} is missing: run {MAKEMESSAGES}"
        done = subprocess.run(
            ["msgfmt", "--check", "-o", str(tmp_path / f"{code}.mo"), str(path)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert done.returncode == 0, done.stderr


# --- (b) the catalogues hold exactly the strings the code marks ---------------------------


def copy_of_the_sources(destination: Path) -> Path:
    """The project's source files as makemessages reads them (MAKEMESSAGES_IGNORE and hidden
    folders left out, as on the command line), without its catalogues."""

    def ignore(folder: str, names: list[str]) -> set[str]:
        left_out = set()
        for name in names:
            path = Path(folder) / name
            top = Path(folder) == ROOT
            hidden = name.startswith(".") or name == "__pycache__"
            ignored = top and (
                name == "locale" or any(Path(name).match(p) for p in MAKEMESSAGES_IGNORE)
            )
            not_source = path.is_file() and path.suffix not in SOURCE_SUFFIXES
            if hidden or ignored or not_source:
                left_out.add(name)
        return left_out

    tree = destination / "tree"
    shutil.copytree(ROOT, tree, ignore=ignore, symlinks=False)
    return tree


@pytest.fixture(scope="module")
def extracted(tmp_path_factory) -> dict[str, set[tuple[str, str, str]]]:
    """What makemessages finds in a copy of the project now, per page language."""
    tree = copy_of_the_sources(tmp_path_factory.mktemp("makemessages"))
    locale = tree / "locale"
    previous = Path.cwd()
    os.chdir(tree)  # makemessages reads the folder it runs in
    try:
        with override_locale_paths([locale]):
            call_command("makemessages", locale=PAGE_LANGUAGES, verbosity=0)
    finally:
        os.chdir(previous)
    return {
        code: message_keys(polib.pofile(str(locale / code / "LC_MESSAGES" / "django.po")))
        for code in PAGE_LANGUAGES
    }


class override_locale_paths:  # noqa: N801 -- reads like Django's override_settings
    def __init__(self, paths: list[Path]):
        from django.test import override_settings

        self._override = override_settings(LOCALE_PATHS=[str(p) for p in paths])

    def __enter__(self):
        self._override.enable()

    def __exit__(self, *exc):
        self._override.disable()


@pytest.mark.parametrize("code", PAGE_LANGUAGES)
def test_the_catalogue_holds_exactly_the_marked_strings(extracted, code):
    marked = extracted[code]
    assert len(marked) > 50  # the extraction itself worked: the site marks many strings
    committed = message_keys(read_catalogue(code))
    missing = sorted(marked - committed)
    stale = sorted(committed - marked)
    assert missing == [], listing(f"marked but not in the {code} catalogue", missing)
    assert stale == [], listing(f"in the {code} catalogue but marked nowhere", stale)


def listing(what: str, keys: list[tuple[str, str, str]], shown: int = 25) -> str:
    lines = [f"{len(keys)} {what} (run {MAKEMESSAGES}):"]
    lines += [
        f"  {msgid!r}" + (f" (context {context!r})" if context else "")
        for context, msgid, _ in keys[:shown]
    ]
    if len(keys) > shown:
        lines.append(f"  ... and {len(keys) - shown} more")
    return "\n".join(lines)


def test_the_extraction_sees_a_newly_marked_string_and_a_removed_one(tmp_path):
    """The comparison above can fail: a string marked in a copy of a template shows up, and
    one that is no longer marked is gone."""
    tree = copy_of_the_sources(tmp_path)
    landing = tree / "templates" / "landing.html"
    text = landing.read_text()
    assert '{% translate "Search in words" %}' in text
    landing.write_text(
        text.replace('{% translate "Search in words" %}', "Search in words").replace(
            "{% endblock %}", '{% translate "A string nobody translated yet" %}{% endblock %}', 1
        )
    )
    previous = Path.cwd()
    os.chdir(tree)
    try:
        with override_locale_paths([tree / "locale"]):
            call_command("makemessages", locale=["id"], verbosity=0)
    finally:
        os.chdir(previous)
    msgids = {key[1] for key in message_keys(polib.pofile(str(catalogue_path_in(tree))))}
    assert "A string nobody translated yet" in msgids
    assert "Search in words" not in msgids
    assert "Find images by what is in them" in msgids


def catalogue_path_in(tree: Path) -> Path:
    return tree / "locale" / "id" / "LC_MESSAGES" / "django.po"


# --- (c) no template text is left unmarked ------------------------------------------------

# Names that stay as they are in every language.
BRAND_NAMES = {"TinyRAG", "CLIP", "API", "Qwen", "VL", "Swagger", "JSON", "CSV"}
# Attributes a person reads or hears.
TEXT_ATTRIBUTES = {"alt", "title", "placeholder", "aria-label", "aria-description", "label"}
BUTTON_INPUTS = {"submit", "button", "reset"}  # <input type=...> whose value is its label
NOT_PROSE = {"code", "pre", "kbd", "samp", "script", "style"}
PLACEHOLDER = "\ue000"  # stands for whatever a tag or a variable puts there
WORD = re.compile(r"[^\W\d_]+")
URL = re.compile(r"\b(?:https?|mailto):\S+")


def project_template_files() -> list[Path]:
    """templates/ and the templates of the project's own apps (not the installed packages')."""
    folders = [Path(d) for d in settings.TEMPLATES[0]["DIRS"]]
    for config in apps.get_app_configs():
        folder = Path(config.path) / "templates"
        if folder.is_dir() and ROOT in folder.parents and ".venv" not in folder.parts:
            folders.append(folder)
    return sorted(p for folder in folders for p in folder.rglob("*.html"))


def as_marked_html(nodelist, defaults: list[str]) -> str:
    """The template's HTML with whatever is marked for translation, every variable and every
    tag replaced by PLACEHOLDER; the text of every branch of an {% if %} kept. The literals
    of `|default:"..."` go to `defaults`."""
    parts = []
    for node in nodelist:
        if isinstance(node, TextNode):
            parts.append(node.s)
        elif isinstance(node, TranslateNode | BlockTranslateNode):
            parts.append(PLACEHOLDER)
        elif isinstance(node, VariableNode):
            parts.append(PLACEHOLDER)
            defaults.extend(literal_defaults(node))
        elif isinstance(node, CommentNode):
            continue
        else:
            parts.append(PLACEHOLDER)
            for attr in node.child_nodelists:
                children = getattr(node, attr, None)
                if children:
                    parts.append(as_marked_html(children, defaults))
                    parts.append(PLACEHOLDER)
    return "".join(parts)


def literal_defaults(node: VariableNode) -> list[str]:
    """The string literals of `|default:"..."`: text a person reads when the value is empty."""
    found = []
    for func, args in node.filter_expression.filters:
        if func.__name__ in {"default", "default_if_none"}:
            found.extend(value for lookup, value in args if not lookup and isinstance(value, str))
    return found


class UnmarkedText(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)  # entities become characters: no words left
        self.found: list[str] = []
        self._not_prose = 0

    def handle_starttag(self, tag, attrs):
        if tag in NOT_PROSE:
            self._not_prose += 1
        attrs = dict(attrs)
        for name, value in attrs.items():
            readable = name in TEXT_ATTRIBUTES or (
                name == "value" and tag == "input" and attrs.get("type") in BUTTON_INPUTS
            )
            if readable and value:
                self._check(value, f'<{tag} {name}="{value}">')

    def handle_endtag(self, tag):
        if tag in NOT_PROSE and self._not_prose:
            self._not_prose -= 1

    def handle_data(self, data):
        if not self._not_prose:
            self._check(data, data.strip())

    def _check(self, text: str, where: str):
        words = [w for w in WORD.findall(URL.sub(" ", text)) if w not in BRAND_NAMES]
        if words:
            self.found.append(" ".join(where.replace(PLACEHOLDER, "…").split())[:120])


def unmarked_text(path: Path) -> list[str]:
    engine = engines["django"].engine
    template = engine.from_string(path.read_text(encoding="utf-8"))
    parser, defaults = UnmarkedText(), []
    parser.feed(as_marked_html(template.nodelist, defaults))
    parser.close()
    for literal in defaults:
        parser._check(literal, f'|default:"{literal}"')
    return parser.found


def test_every_template_marks_its_text_for_translation():
    files = project_template_files()
    assert ROOT / "templates" / "base.html" in files
    assert any("partials" in p.parts for p in files)
    unmarked = [
        f"{path.relative_to(ROOT)}: {text}" for path in files for text in unmarked_text(path)
    ]
    assert unmarked == [], "text not marked for translation:\n" + "\n".join(unmarked)


def test_the_template_check_finds_unmarked_text_and_attributes(tmp_path):
    template = tmp_path / "t.html"
    template.write_text(
        '{% load i18n %}<h1>{% translate "Marked" %}</h1><p>Plain words</p>'
        '<img alt="A cat" src="x.png"><input type="submit" value="{% translate "Go" %}">'
        '<input placeholder="Type here">{% if x %}<b>Only in one branch</b>{% endif %}'
        "<code>manage.py migrate</code> TinyRAG · &copy; https://example.org/path "
        '{{ value|default:"Nothing yet" }}{% comment %}Notes for us{% endcomment %}'
    )
    assert unmarked_text(template) == [
        "Plain words",
        '<img alt="A cat">',
        '<input placeholder="Type here">',
        "Only in one branch",
        '|default:"Nothing yet"',
    ]


# --- (d) the switcher, the language per account and per browser ---------------------------


def html_lang(response) -> str:
    match = re.search(r'<html lang="([^"]*)">', response.content.decode())
    assert match, "no <html lang> on the page"
    return match[1]


def switch(client, language: str, next_url: str = "/history/"):
    return client.post(reverse("set_language"), {"language": language, "next": next_url})


@pytest.mark.parametrize(
    ("accept", "lang"),
    [
        ("id-ID,id;q=0.9", "id"),
        ("id", "id"),
        ("en-US,en;q=0.9", "en"),
        ("fr-FR,fr;q=0.9", "en"),  # not a page language: the default
        ("", "en"),
    ],
)
def test_a_visitor_gets_the_language_of_their_browser(client, accept, lang):
    response = client.get(reverse("search:home"), HTTP_ACCEPT_LANGUAGE=accept)
    assert response.status_code == 200
    assert html_lang(response) == lang
    assert response["Content-Language"] == lang


def test_every_page_has_the_switcher_with_each_language_in_its_own_name(auth_client):
    visitor = Client()
    for page in (visitor.get(reverse("login")), auth_client.get(reverse("search:history"))):
        assert page.status_code == 200
        html = page.content.decode()
        assert f'action="{reverse("set_language")}"' in html
        assert '<option value="en" lang="en" selected>English</option>' in html
        assert '<option value="id" lang="id">Bahasa Indonesia</option>' in html
        assert f'name="next" value="{page.wsgi_request.get_full_path()}"' in html


def test_a_visitor_switches_and_stays_on_the_page(client):
    response = switch(client, "id", next_url="/accounts/login/?next=/history/")
    assert response.status_code == 302
    assert response["Location"] == "/accounts/login/?next=/history/"
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == "id"
    page = client.get("/accounts/login/", HTTP_ACCEPT_LANGUAGE="en")  # the cookie wins
    assert html_lang(page) == "id"
    assert (
        '<option value="id" lang="id" selected>Bahasa Indonesia</option>' in page.content.decode()
    )
    assert AccountPreferences.objects.count() == 0  # a visitor's choice lives in the cookie


@pytest.mark.parametrize(
    ("language", "next_url"),
    [("xx", "/history/"), ("fr", "/history/"), ("id" * 500, "/history/")],  # "": browser
)
def test_a_language_that_is_not_offered_changes_nothing(auth_client, user, language, next_url):
    response = switch(auth_client, language, next_url)
    assert response.status_code == 302
    assert response["Location"] == next_url
    assert settings.LANGUAGE_COOKIE_NAME not in response.cookies
    assert not AccountPreferences.objects.filter(user=user).exists()
    assert html_lang(auth_client.get("/history/")) == "en"


def test_the_switcher_never_sends_anyone_off_the_site(client):
    response = switch(client, "id", next_url="https://evil.example/")
    assert response.status_code == 302
    assert response["Location"] == "/"


def test_a_get_changes_nothing(auth_client, user):
    response = auth_client.get(reverse("set_language"), {"language": "id", "next": "/history/"})
    assert response.status_code == 302
    assert response["Location"] == "/history/"
    assert settings.LANGUAGE_COOKIE_NAME not in response.cookies
    assert not AccountPreferences.objects.filter(user=user).exists()


def test_a_signed_in_users_choice_is_kept_with_the_account_and_wins_everywhere(
    auth_client, user, password
):
    response = switch(auth_client, "id")
    assert response["Location"] == "/history/"
    assert AccountPreferences.objects.get(user=user).language == "id"
    # on this browser, whatever the cookie or the browser say
    auth_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "en"
    assert html_lang(auth_client.get("/history/", HTTP_ACCEPT_LANGUAGE="en-US")) == "id"
    # on another browser, as soon as they log in: the login answer sets the cookie
    other = Client()
    assert html_lang(other.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="en-US")) == "en"
    login = other.post(
        reverse("login"),
        {"username": user.username, "password": password},
        HTTP_ACCEPT_LANGUAGE="en-US",
    )
    assert login.status_code == 302
    assert login.cookies[settings.LANGUAGE_COOKIE_NAME].value == "id"
    assert html_lang(other.get("/history/", HTTP_ACCEPT_LANGUAGE="en-US")) == "id"
    # and the browser stays in it after logging out
    other.post(reverse("logout"))
    assert html_lang(other.get(reverse("login"), HTTP_ACCEPT_LANGUAGE="en-US")) == "id"


def test_an_api_token_request_reads_no_saved_language_and_sets_no_cookie(user):
    """A token authenticates one API request inside the view: it is no login, so the
    middleware neither reads the account's language after it nor sends the cookie."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from rest_framework.authtoken.models import Token

    AccountPreferences.objects.create(user=user, language="id")
    client = Client(HTTP_AUTHORIZATION=f"Token {Token.objects.create(user=user).key}")
    with CaptureQueriesContext(connection) as queries:
        response = client.get("/api/v1/queries/")
    assert response.status_code == 200
    assert settings.LANGUAGE_COOKIE_NAME not in response.cookies
    read = [q["sql"] for q in queries.captured_queries if "accountpreferences" in q["sql"]]
    assert read == []


def test_switching_back_to_english_is_kept_too(auth_client, user):
    AccountPreferences.objects.create(user=user, language="id")
    assert html_lang(auth_client.get("/history/")) == "id"
    switch(auth_client, "en")
    assert AccountPreferences.objects.get(user=user).language == "en"
    assert html_lang(auth_client.get("/history/", HTTP_ACCEPT_LANGUAGE="id")) == "en"


def test_follow_my_browser_forgets_the_choice_and_the_cookie(auth_client, user):
    switch(auth_client, "id")
    assert html_lang(auth_client.get("/history/", HTTP_ACCEPT_LANGUAGE="en")) == "id"
    response = switch(auth_client, "", next_url=f"{reverse('profile')}#language")
    assert response["Location"] == f"{reverse('profile')}#language"
    assert AccountPreferences.objects.get(user=user).language == ""
    assert response.cookies[settings.LANGUAGE_COOKIE_NAME].value == ""  # deleted
    assert html_lang(auth_client.get("/history/", HTTP_ACCEPT_LANGUAGE="en")) == "en"
    page = auth_client.get(reverse("profile"), HTTP_ACCEPT_LANGUAGE="id").content.decode()
    assert '<option value="" selected>' in page  # "Follow my browser", in Indonesian


def test_without_a_choice_a_signed_in_user_follows_the_browser(auth_client, user):
    assert html_lang(auth_client.get("/history/", HTTP_ACCEPT_LANGUAGE="id-ID")) == "id"
    assert html_lang(auth_client.get("/history/", HTTP_ACCEPT_LANGUAGE="en")) == "en"
    assert not AccountPreferences.objects.filter(user=user).exists()


def test_the_account_page_offers_the_language_and_says_where_it_is_kept(auth_client, user):
    page = auth_client.get(reverse("profile")).content.decode()
    assert 'id="language"' in page
    assert "pages follow your browser's language" in page
    assert f'<input type="hidden" name="next" value="{reverse("profile")}#language">' in page
    response = switch(auth_client, "id", next_url=f"{reverse('profile')}#language")
    assert response["Location"] == f"{reverse('profile')}#language"
    page = auth_client.get(reverse("profile"))
    assert html_lang(page) == "id"
    assert (
        '<option value="id" lang="id" selected>Bahasa Indonesia</option>' in page.content.decode()
    )


def test_a_deleted_user_takes_their_preferences_along(user):
    AccountPreferences.objects.create(user=user, language="id")
    get_user_model().objects.filter(pk=user.pk).delete()
    assert AccountPreferences.objects.count() == 0


def test_the_standalone_and_context_free_error_pages_say_their_language():
    with translation.override("id"):
        assert '<html lang="id">' in render_to_string("503.html", {"message": "x"})
        assert '<html lang="id">' in render_to_string("500.html")  # Django's 500: no context


# --- dates in the viewer's zone and language ----------------------------------------------

# 2024-08-17 10:05 UTC is 17:05 in Jakarta (UTC+7, WIB, no daylight saving). August is "Aug"
# in English and "Agu" in Indonesian; Django's Indonesian time format is "G.i" (17.05).
TOKEN_CREATED = datetime(2024, 8, 17, 10, 5, tzinfo=UTC)


@pytest.fixture
def token(user):
    from rest_framework.authtoken.models import Token

    key = Token.objects.create(user=user).key
    Token.objects.filter(key=key).update(created=TOKEN_CREATED)  # auto_now_add
    return key


@pytest.mark.parametrize(
    ("language", "created", "zone"),
    [
        ("en", "Created 17 Aug 2024, 17:05.", "Asia/Jakarta (WIB)"),
        ("id", "17 Agu 2024, 17.05", "Asia/Jakarta (WIB)"),
    ],
)
def test_dates_are_in_the_viewers_zone_and_language(
    auth_client, user, token, language, created, zone
):
    AccountPreferences.objects.create(user=user, language=language)
    auth_client.cookies["tz"] = "Asia/Jakarta"  # what static/js/app.js reads from the browser
    page = auth_client.get(reverse("profile")).content.decode()
    assert created in page
    assert f"<strong>{zone}</strong>" in page


def test_without_the_browsers_zone_dates_are_in_utc(auth_client, user, token):
    AccountPreferences.objects.create(user=user, language="id")
    page = auth_client.get(reverse("profile")).content.decode()
    assert "17 Agu 2024, 10.05" in page
    assert "<strong>UTC</strong>" in page


def test_english_dates_keep_their_day_month_year_and_24_hour_clock():
    from django.template import Context, Template

    template = Template('{{ d|date:"DATETIME_FORMAT" }}|{{ d|date:"DATE_FORMAT" }}')
    with translation.override("en"):
        assert template.render(Context({"d": TOKEN_CREATED})) == "17 Aug 2024, 10:05|17 Aug 2024"
    with translation.override("id"):
        assert template.render(Context({"d": TOKEN_CREATED})) == "17 Agu 2024, 10.05|17 Agu 2024"


# --- the catalogues are compiled at install time, never committed -------------------------

SETUP_SH = ROOT / "deploy" / "setup.sh"
CATALOGUE = """msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\\n"
"Language: id\\n"
"Plural-Forms: nplurals=1; plural=0;\\n"

msgid "Search"
msgstr "Cari"
"""


def project_for_setup(tmp_path: Path, catalogues: dict[str, str]) -> tuple[Path, dict]:
    """A project folder with setup.sh, its inputs, manage.py and the settings, the given
    catalogues, and a venv whose install stamp says pip has nothing to do."""
    project = tmp_path / "project"
    (project / "deploy").mkdir(parents=True)
    for name in ("pyproject.toml", "manage.py", "deploy/setup.sh", "deploy/constraints.txt"):
        shutil.copy(ROOT / name, project / name)
    shutil.copytree(
        ROOT / "tinyrag_site", project / "tinyrag_site", ignore=shutil.ignore_patterns("*.pyc")
    )
    for code, text in catalogues.items():
        folder = project / "locale" / code / "LC_MESSAGES"
        folder.mkdir(parents=True)
        (folder / "django.po").write_text(text)
    venv = tmp_path / "venv"
    (venv / "bin").mkdir(parents=True)
    python = venv / "bin" / "python"
    python.write_text(f'#!/bin/sh\nexec "{sys.executable}" "$@"\n')
    python.chmod(0o755)
    inputs = subprocess.run(
        "cat pyproject.toml deploy/constraints.txt deploy/setup.sh | sha256sum | cut -d' ' -f1",
        shell=True,
        cwd=project,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    (venv / ".installed-app").write_text(inputs)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("DJANGO", "TINYRAG"))},
        "VENV": str(venv),
        "TINYRAG_ENV_FILE": "",
        "TINYRAG_DATA_DIR": str(tmp_path / "data"),
        "PYTHONPATH": str(ROOT),  # the apps the settings list; tinyrag_site is the copy's
    }
    return project, env


def run_setup(project: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", "deploy/setup.sh"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_setup_compiles_the_catalogues_and_an_empty_one_does_not_stop_it(tmp_path):
    import gettext

    project, env = project_for_setup(tmp_path, {"id": CATALOGUE, "en": ""})
    done = run_setup(project, env)
    assert done.returncode == 0, done.stderr
    assert "pip skipped" in done.stdout
    assert "Compiled the translation catalogues (locale/)" in done.stdout
    compiled = project / "locale" / "id" / "LC_MESSAGES" / "django.mo"
    with compiled.open("rb") as mo:
        assert gettext.GNUTranslations(mo).gettext("Search") == "Cari"
    assert not (tmp_path / "venv" / "lib").exists()  # nothing was installed
    assert "*.mo" in (ROOT / ".gitignore").read_text().splitlines()


def test_setup_says_what_to_install_when_msgfmt_is_missing(tmp_path):
    project, env = project_for_setup(tmp_path, {"id": CATALOGUE})
    bin_without_gettext = tmp_path / "bin"
    bin_without_gettext.mkdir()
    for tool in ("bash", "cat", "cut", "dirname", "sha256sum"):
        (bin_without_gettext / tool).symlink_to(shutil.which(tool))
    done = run_setup(project, {**env, "PATH": str(bin_without_gettext)})
    assert done.returncode == 1
    assert "msgfmt (GNU gettext) is missing" in done.stderr
    assert "apt-get install gettext" in done.stderr
    assert not (project / "locale" / "id" / "LC_MESSAGES" / "django.mo").exists()
