"""The search pages in two languages: the query language menu (reaching text_search, stored,
kept for the next search), the result header that says how a text was read and searched, one
click to read it again in the other language, and class names in the page language in the
results and the history (tests/browser/test_search_language.py drives the same in Chromium)."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.urls import reverse
from django.utils.html import escape

from search.catalog.models import ImageClass
from search.queries.models import SearchQuery
from tests.search.test_views import png_of, search, upload

pytestmark = [pytest.mark.django_db, pytest.mark.usefixtures("fresh_throttle_state")]

EGYPTIAN_CAT, REEL, SHEPHERD, LEMON = "n02124075", "n04067472", "n02106662", "n07749582"
# The Indonesian names of the tiny index's classes, set on the rows here (not by
# import_dataset's data): what the pages must show under `id`.
INDONESIAN_NAMES = {
    EGYPTIAN_CAT: "kucing mesir",
    REEL: "gulungan pancing",
    SHEPHERD: "anjing gembala jerman",
    LEMON: "jeruk lemon",
}
IN_INDONESIAN = {"HTTP_ACCEPT_LANGUAGE": "id"}


@pytest.fixture
def indonesian_names(search_index):
    for image_class in ImageClass.objects.all():
        name = INDONESIAN_NAMES[image_class.wnid]
        image_class.translations = {"id": {"name": name, "synonyms": [name], "source": "test"}}
        image_class.save()  # a save: the query router reads the class names again
    return INDONESIAN_NAMES


def latest(user) -> SearchQuery:
    return SearchQuery.objects.filter(user=user).order_by("-pk").first()


def page_of(client, query: SearchQuery, **headers) -> str:
    return client.get(reverse("search:query", args=[query.pk]), **headers).content.decode()


def reading_of(html: str) -> str:
    """The header's "Read as ..." line as a person reads it (tags dropped, spaces collapsed)."""
    found = re.search(r'<p class="reading-text">(.*?)</p>', html, re.S)
    assert found, "no reading line"
    return " ".join(re.sub(r"<[^>]+>", " ", found.group(1)).split())


def search_again_buttons(html: str) -> list[tuple[str, str]]:
    """(language value, button text) of each "Search again" form of the header."""
    block = html[html.index('<div class="search-again">') :]
    block = block[: block.index("</div>")]
    return re.findall(
        r'name="language" value="([^"]*)"><button type="submit" class="link"[^>]*>([^<]+)</button>',
        block,
    )


def selected_language(html: str) -> str:
    return re.search(r'<option value="([^"]*)" selected>', language_menu(html)).group(1)


def language_menu(html: str) -> str:
    select = html[html.index('<select name="language" id="id_language">') :]
    return select[: select.index("</select>")]


# --- the query language menu -----------------------------------------------------------------


def test_the_menu_offers_detect_english_indonesian_and_another_language(auth_client, search_index):
    html = auth_client.get(reverse("search:home")).content.decode()
    options = re.findall(
        r'<option value="([^"]*)"( selected)?>([^<]+)</option>', language_menu(html)
    )
    assert options == [
        ("", " selected", "Detect automatically"),
        ("en", "", "English"),
        ("id", "", "Bahasa Indonesia"),
        ("other", "", "Another language"),
    ]
    assert '<label class="language-picker">Query language <select' in html


@pytest.mark.parametrize("htmx", [False, True])
def test_a_chosen_language_reaches_the_search_and_is_stored(
    auth_client, user, indonesian_names, htmx
):
    # "kucing mesir" names a class in Indonesian only: detected, it is Indonesian
    search(auth_client, htmx=htmx, text="kucing mesir")
    detected = latest(user)
    assert (detected.language, detected.language_chosen) == ("id", False)

    search(auth_client, htmx=htmx, text="kucing mesir", language="en")
    chosen = latest(user)
    assert (chosen.language, chosen.language_chosen, chosen.route) == ("en", True, "clip")
    assert chosen.embedded_text == "kucing mesir"

    search(auth_client, htmx=htmx, text="school bus", language="id")
    assert (latest(user).language, latest(user).language_chosen) == ("id", True)


def test_another_language_reads_the_text_in_neither_english_nor_indonesian(
    auth_client, user, indonesian_names
):
    search(auth_client, text="kucing mesir", language="other")
    query = latest(user)
    assert query.language_chosen is True
    assert query.language not in ("en", "id", "")


def test_a_language_not_offered_is_a_form_error(auth_client, user, search_index):
    response = search(auth_client, text="lemon", language="xx")
    assert response.status_code == 400
    assert (
        "Query language: That query language is not offered: pick one from the list."
        in response.content.decode()
    )
    assert not SearchQuery.objects.exists()


def test_the_chosen_language_is_kept_when_the_form_comes_back_with_an_error(
    auth_client, search_index
):
    response = search(auth_client, text="", language="id")  # neither a text nor an image
    assert response.status_code == 400
    assert selected_language(response.content.decode()) == "id"


def test_a_new_search_from_a_query_page_keeps_a_chosen_language_only(
    auth_client, user, indonesian_names
):
    home = reverse("search:home")
    search(auth_client, text="lemon", language="id")
    html = page_of(auth_client, latest(user))
    assert f'<a href="{home}?language=id">New search</a>' in html
    started = auth_client.get(home, {"language": "id"}).content.decode()
    assert selected_language(started) == "id"

    search(auth_client, text="lemon")  # detected: the next search detects too
    html = page_of(auth_client, latest(user))
    assert f'<a href="{home}">New search</a>' in html

    # anything else in the address starts with detection, never an error
    assert selected_language(auth_client.get(home, {"language": "xx"}).content.decode()) == ""


# --- the header: how the text was read -------------------------------------------------------


def test_a_detected_indonesian_query_on_the_multilingual_route_says_so(
    auth_client, user, indonesian_names, multilingual_settings
):
    search(auth_client, text="cari kucing mesir")
    query = latest(user)
    assert (query.language, query.route, query.embedded_text) == (
        "id",
        "multilingual",
        "kucing mesir",
    )
    html = page_of(auth_client, query)
    assert reading_of(html) == (
        "Read as Bahasa Indonesia (detected) · searched “kucing mesir” with the multilingual "
        "text encoder"
    )
    # a wrong detection is one click away
    assert search_again_buttons(html) == [("en", "Search again as English")]


def test_a_chosen_english_query_says_so_and_offers_the_other_readings(
    auth_client, user, indonesian_names
):
    search(auth_client, text="kucing mesir", language="en")
    html = page_of(auth_client, latest(user))
    # nothing was stripped: what was searched is the text of the title
    assert (
        reading_of(html) == "Read as English (chosen) · searched with CLIP's English text encoder"
    )
    assert search_again_buttons(html) == [
        ("id", "Search again as Bahasa Indonesia"),
        ("", "Search again, detecting the language"),
    ]


def test_stripped_request_words_show_what_was_searched(auth_client, user, search_index):
    search(auth_client, text="show me a lemon", language="en")
    assert reading_of(page_of(auth_client, latest(user))) == (
        "Read as English (chosen) · searched “lemon” with CLIP's English text encoder"
    )


def test_the_translate_route_shows_the_translation(
    auth_client, user, indonesian_names, translate_settings
):
    search(auth_client, text="cari kucing mesir")
    query = latest(user)
    assert (query.language, query.route) == ("id", "translate")
    translation = query.embedded_text  # the tiny random MarianMT's words: any text
    html = page_of(auth_client, query)
    expected = (
        f"Read as Bahasa Indonesia (detected) · translated to English as “{escape(translation)}”, "
        "then searched with CLIP's text encoder"
        if translation.casefold() != query.text.casefold()
        else "Read as Bahasa Indonesia (detected) · translated to English, then searched with "
        "CLIP's text encoder"
    )
    assert reading_of(html) == expected


def test_the_header_comes_with_the_htmx_results_too(auth_client, user, indonesian_names):
    html = search(auth_client, htmx=True, text="kucing mesir", language="en").content.decode()
    assert html.lstrip().startswith('<section id="results"')
    assert (
        reading_of(html) == "Read as English (chosen) · searched with CLIP's English text encoder"
    )


def test_image_queries_say_nothing_of_a_language(auth_client, user, search_index):
    from search.catalog.models import Image

    search(auth_client, image=upload(png_of(search_index / Image.objects.first().path)))
    html = page_of(auth_client, latest(user))
    assert 'id="results-title"' in html
    assert "query-reading" not in html
    assert "Read as" not in html


def test_a_text_query_stored_before_languages_shows_no_reading(auth_client, user):
    query = SearchQuery.objects.create(
        user=user, kind="text", text="lemon", top_k=5, encoder="clip", index_name="tiny",
        duration_ms=1.0,
    )  # fmt: skip
    html = page_of(auth_client, query)
    assert "“lemon”" in html
    assert "query-reading" not in html


# --- searching again in another language -----------------------------------------------------


def test_search_again_as_english_reruns_the_text_with_its_filters_in_english(
    auth_client, user, indonesian_names
):
    search(auth_client, text="kucing mesir", top_k=3, class_filter="lemon", min_similarity=0)
    first = latest(user)
    assert (first.language, first.language_chosen) == ("id", False)

    response = auth_client.post(reverse("search:query-rerun", args=[first.pk]), {"language": "en"})
    again = latest(user)
    assert again.pk != first.pk
    assert response["Location"] == reverse("search:query", args=[again.pk])
    assert (again.text, again.language, again.language_chosen) == ("kucing mesir", "en", True)
    assert (again.top_k, again.filters) == (3, {"class": LEMON, "min_similarity": 0.0})

    # and back to detection, from the chosen one
    auth_client.post(reverse("search:query-rerun", args=[again.pk]), {"language": ""})
    assert (latest(user).language, latest(user).language_chosen) == ("id", False)


def test_run_again_keeps_a_chosen_language(auth_client, user, indonesian_names):
    search(auth_client, text="kucing mesir", language="en")
    auth_client.post(reverse("search:query-rerun", args=[latest(user).pk]))
    assert (latest(user).language, latest(user).language_chosen) == ("en", True)


def test_search_again_in_a_language_not_offered_is_refused_with_a_message(
    auth_client, user, indonesian_names
):
    search(auth_client, text="kucing mesir")
    first = latest(user)
    url = reverse("search:query-rerun", args=[first.pk])
    response = auth_client.post(url, {"language": "xx"}, follow=True)
    assert latest(user).pk == first.pk
    assert "That query language is not offered: pick one from the list." in (
        response.content.decode()
    )


# --- class names in the page language --------------------------------------------------------


def result_names(html: str) -> list[str]:
    return re.findall(
        r'<strong class="result-name"><span class="rank">#\d+</span> ([^<]+)</strong>', html
    )


def test_results_name_the_classes_in_the_page_language(auth_client, user, indonesian_names):
    search(auth_client, text="lemon", top_k=8)
    query = latest(user)
    expected = list(
        query.results.order_by("rank").values_list(
            "image__image_class__wnid", "image__image_class__name"
        )
    )
    assert len({wnid for wnid, _ in expected}) > 1  # more than one class to name
    assert result_names(page_of(auth_client, query)) == [name for _, name in expected]
    assert result_names(page_of(auth_client, query, **IN_INDONESIAN)) == [
        INDONESIAN_NAMES[wnid] for wnid, _ in expected
    ]


def test_the_language_cookie_sets_the_page_language_too(auth_client, user, indonesian_names):
    search(auth_client, text="lemon", top_k=3, class_filter=LEMON)
    auth_client.cookies[settings.LANGUAGE_COOKIE_NAME] = "id"
    html = page_of(auth_client, latest(user))
    assert set(result_names(html)) == {"jeruk lemon"}
    assert "<strong>jeruk lemon</strong>" in html  # the class filter of the summary


def test_more_like_this_names_its_class_in_the_page_language(auth_client, user, indonesian_names):
    from search.queries.services import similar_search

    source = ImageClass.objects.get(wnid=EGYPTIAN_CAT).images.filter(split="train").first()
    query = similar_search(user=user, image_id=source.pk, top_k=2)
    # the catalogue's sentence, with the class's Indonesian name in it
    assert "Gambar yang mirip dengan kucing mesir ini" in page_of(
        auth_client, query, **IN_INDONESIAN
    )
    assert "More like this Egyptian cat" in page_of(auth_client, query)


# --- the history -----------------------------------------------------------------------------


def row_of(html: str, query: SearchQuery) -> str:
    return html[html.index(f'<tr id="query-{query.pk}">') :].split("</tr>")[0]


def test_history_shows_class_names_in_the_page_language(auth_client, user, indonesian_names):
    search(auth_client, text="kucing mesir", top_k=3, class_filter=EGYPTIAN_CAT)
    search(auth_client, text="lemon", top_k=3, class_filter=LEMON, language="en")
    cat, lemon = SearchQuery.objects.filter(user=user).order_by("pk")

    html = auth_client.get(reverse("search:history"), **IN_INDONESIAN).content.decode()
    cat_row = row_of(html, cat)
    # the class filter's badge and the top match, in Indonesian (a class-filtered search's
    # top match is of that class)
    assert re.search(r'<span class="badge class-badge">[^<]*kucing mesir</span>', cat_row)
    assert re.search(r'<td data-label="[^"]+">kucing mesir <span class="muted">', cat_row)
    assert "Egyptian cat" not in cat_row
    # the class filter menu offers the used classes by their Indonesian names, sorted so
    menu = html[html.index('<select name="class_filter"') :].split("</select>")[0]
    assert re.findall(r'<option value="(n\d+)">([^<]+)</option>', menu) == [
        (LEMON, "jeruk lemon"),
        (EGYPTIAN_CAT, "kucing mesir"),
    ]
    english = auth_client.get(reverse("search:history")).content.decode()
    assert re.search(r'<td data-label="Top match">Egyptian cat <span', row_of(english, cat))


def test_history_shows_the_language_each_text_was_read_in(auth_client, user, indonesian_names):
    search(auth_client, text="kucing mesir", top_k=3)
    search(auth_client, text="lemon", top_k=3, language="en")
    cat, lemon = SearchQuery.objects.filter(user=user).order_by("pk")
    html = auth_client.get(reverse("search:history")).content.decode()
    badge = re.compile(
        r'<span class="badge language-badge" lang="(\w+)" title="([^"]+)">'
        r'<span class="visually-hidden">Read as </span>([^<]+)</span>'
    )
    assert badge.search(row_of(html, cat)).groups() == (
        "id",
        "Read as Bahasa Indonesia (detected)",
        "Bahasa Indonesia",
    )
    assert badge.search(row_of(html, lemon)).groups() == (
        "en",
        "Read as English (chosen)",
        "English",
    )


def test_history_dates_follow_the_page_language(auth_client, user):
    query = SearchQuery.objects.create(
        user=user, kind="text", text="lemon", top_k=5, encoder="clip", index_name="tiny",
        duration_ms=1.0, language="en",
    )  # fmt: skip
    SearchQuery.objects.filter(pk=query.pk).update(
        created_at=datetime(2024, 3, 1, 10, 5, tzinfo=UTC)
    )
    english = auth_client.get(reverse("search:history")).content.decode()
    indonesian = auth_client.get(reverse("search:history"), **IN_INDONESIAN).content.decode()
    assert '<time datetime="2024-03-01T10:05:00+00:00">1 Mar 2024, 10:05</time>' in english
    assert '<time datetime="2024-03-01T10:05:00+00:00">1 Maret 2024, 10.05</time>' in indonesian


def test_a_language_is_named_in_the_page_language_or_by_its_code():
    from django.utils import translation

    from search.languages import language_name

    assert [language_name(code) for code in ("en", "id", "de", "xx")] == [
        "English",
        "Bahasa Indonesia",
        "German",
        "xx",  # Django does not know it: its code, never an error
    ]
    with translation.override("id"):
        assert language_name("de") == "Jerman"  # Django's own catalogue names it


def test_the_class_picker_offers_the_page_language_and_shows_the_other(
    auth_client, indonesian_names
):
    """Typed in either language: each option is the page language's name, with the other
    language's name beside it (the datalist matches on both)."""
    indonesian = auth_client.get(reverse("search:home"), **IN_INDONESIAN).content.decode()
    english = auth_client.get(reverse("search:home")).content.decode()
    assert '<option value="kucing mesir" label="Egyptian cat"></option>' in indonesian
    assert '<option value="Egyptian cat" label="kucing mesir"></option>' in english
