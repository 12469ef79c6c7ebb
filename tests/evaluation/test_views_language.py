"""The evaluation pages per language: the list compares the latest finished run of each
language (and text route) side by side, a run page says its language and names the classes in
the page's language, and the staff form offers the language and the routes this server has."""

from __future__ import annotations

import html as html_text
import re
from datetime import timedelta

import pytest
from django.urls import reverse
from django.utils import timezone

from evaluation.models import EvaluationRun
from search.catalog.models import Dataset, ImageClass
from tests.evaluation.test_form import FORM, options
from tests.evaluation.test_views import chart_svg, make_run

pytestmark = pytest.mark.django_db

LIST_URL = "/evaluation/"


def text_run(language: str, route: str, recall1: float, *, minutes_ago: int = 0, **fields):
    """A finished text -> image run in `language` on `route` (numbers made up)."""
    metrics = {"text": {"queries": 4, "recall@1": recall1, "precision@1": recall1,
                        "recall@5": 1.0, "precision@5": 0.5, "mrr": recall1 + 0.1}}  # fmt: skip
    return make_run(
        mode="text", language=language, metrics=metrics, per_class={}, details={}, warnings=[],
        configuration={"split": "val", "ks": [1, 5], "seed": 0, "text_route": route},
        finished_at=timezone.now() - timedelta(minutes=minutes_ago), **fields,
    )  # fmt: skip


def rag_run(language: str, lir: float, *, minutes_ago: int = 0):
    metrics = {"rag": {"samples": 4, "rag_k": 5, "contexts": {
        "retrieved": {"lir": lir, "named": 1, "generated": 4, "errors": 0}}}}  # fmt: skip
    return make_run(
        mode="rag", language=language, metrics=metrics, per_class={}, details={}, warnings=[],
        configuration={"split": "val", "ks": [], "seed": 0, "text_route": None},
        finished_at=timezone.now() - timedelta(minutes=minutes_ago),
    )  # fmt: skip


def section(html: str, element_id: str) -> str:
    start = html.index(f'id="{element_id}"')
    return html[start : html.index("</table>", start)]


def rows_of(table: str) -> list[list[str]]:
    body = table[table.index("<tbody>") :]
    return [
        [
            html_text.unescape(re.sub(r"<[^>]+>", "", cell)).strip()
            for cell in re.findall(r"<td>(.*?)</td>", row, re.S)
        ]
        for row in re.findall(r"<tr>(.*?)</tr>", body, re.S)
    ]


def test_the_list_compares_the_latest_finished_run_per_language_and_route(auth_client):
    text_run("en", "clip", 0.2, minutes_ago=30)  # an older English run: replaced
    newest_en = text_run("en", "clip", 0.5, minutes_ago=5)
    id_multi = text_run("id", "multilingual", 0.3, minutes_ago=10)
    id_translate = text_run("id", "translate", 0.4, minutes_ago=20)
    text_run("id", "multilingual", 0.9, status="failed", minutes_ago=1)  # not finished well
    rag_en, rag_id = rag_run("en", 0.5), rag_run("id", 0.25)

    html = auth_client.get(LIST_URL).content.decode()

    assert rows_of(section(html, "compare-text")) == [
        ["English", "CLIP", "0.500", "1.000", "0.600", f"Run #{newest_en.pk}"],
        ["Bahasa Indonesia", "multilingual", "0.300", "1.000", "0.400", f"Run #{id_multi.pk}"],
        ["Bahasa Indonesia", "translated", "0.400", "1.000", "0.500", f"Run #{id_translate.pk}"],
    ]  # fmt: skip
    assert rows_of(section(html, "compare-rag")) == [
        ["English", "0.500", f"Run #{rag_en.pk}"],
        ["Bahasa Indonesia", "0.250", f"Run #{rag_id.pk}"],
    ]
    assert 'id="compare-zeroshot"' not in html  # no run measured it
    svg = chart_svg(html, "chart-compare-text")
    for label in (
        "English · CLIP",
        "Bahasa Indonesia · multilingual",
        "Bahasa Indonesia · translated",
    ):
        assert label in svg
    assert "R@1" in svg
    assert "MRR" in svg
    assert chart_svg(html, "chart-compare-rag").count("Bahasa Indonesia") == 1


def test_runs_from_before_languages_count_as_english_on_clip(auth_client):
    run = make_run()  # "all", no language given and no text route stored
    html = auth_client.get(LIST_URL).content.decode()
    assert rows_of(section(html, "compare-text"))[0][:3] == ["English", "CLIP", "0.500"]
    assert rows_of(section(html, "compare-zeroshot")) == [
        ["English", "CLIP", "0.250", "1.000", f"Run #{run.pk}"]
    ]


def test_the_list_says_each_runs_language_and_route(auth_client):
    text_run("id", "translate", 0.4)
    html = auth_client.get(LIST_URL).content.decode()
    start = html.index('<table class="grid runs stack-table">')
    runs = html[start : html.index("</table>", start)]
    assert "Bahasa Indonesia · translated to English, then CLIP" in runs


@pytest.fixture
def indonesian_catalogue(db):
    """The dataset of make_run's index, its classes with Indonesian names."""
    dataset = Dataset.objects.create(
        name="tiny-imagenet-200", root="/nowhere", source="tinyimagenet"
    )
    for wnid, name, indonesian in (
        ("n07749582", "lemon", "jeruk sitrun"),
        ("n04067472", "reel", "gulungan pancing"),
    ):
        ImageClass.objects.create(
            dataset=dataset, wnid=wnid, name=name, names=[name],
            translations={"id": {"name": indonesian, "synonyms": [], "source": "test"}},
        )  # fmt: skip
    return dataset


def worst_table(html: str) -> str:
    start = html.index('<table class="grid worst">')
    return html[start : html.index("</table>", start)]


def test_a_run_page_names_the_classes_in_the_pages_language(auth_client, indonesian_catalogue):
    run = make_run(language="id", configuration={"split": "val", "ks": [1, 5], "seed": 0,
                                                 "text_route": "multilingual"})  # fmt: skip
    url = reverse("evaluation:run", args=[run.pk])

    english = auth_client.get(url, HTTP_ACCEPT_LANGUAGE="en").content.decode()
    assert "reel" in worst_table(english)
    assert "→ lemon" in worst_table(english)
    assert (
        "Language: <strong>Bahasa Indonesia</strong>; text queries through the multilingual"
        in english
    )
    assert ">reel<" in chart_svg(english, "chart-image-per-class")

    indonesian = auth_client.get(url, HTTP_ACCEPT_LANGUAGE="id").content.decode()
    assert "gulungan pancing" in worst_table(indonesian)
    assert "→ jeruk sitrun" in worst_table(indonesian)
    assert ">gulungan pancing<" in chart_svg(indonesian, "chart-image-per-class")
    assert ">jeruk sitrun<" in chart_svg(indonesian, "chart-zeroshot-per-class")
    # what the describer was given stays as it was given, in the run's language
    assert '<span lang="id">reel (5)</span>' in indonesian


def test_a_class_the_database_no_longer_has_keeps_its_stored_name(auth_client):
    run = make_run()  # no dataset imported: nothing to look the names up in
    html = auth_client.get(reverse("evaluation:run", args=[run.pk]), HTTP_ACCEPT_LANGUAGE="id")
    assert "→ lemon" in worst_table(html.content.decode())


# --- the staff form ----------------------------------------------------------------------


@pytest.fixture
def all_routes(settings, tiny_multilingual_dir, tiny_marian_dir):
    """Both text models configured and on disk (local directories)."""
    settings.TINYRAG_TEXT_MODEL = str(tiny_multilingual_dir)
    settings.TINYRAG_TRANSLATE_MODEL = str(tiny_marian_dir)
    settings.TINYRAG_TRANSLATE_LANGUAGES = ["id"]
    return settings


def test_the_form_offers_the_languages_and_the_routes_this_server_has(
    published_catalog, admin_client, all_routes, tmp_path
):
    html = admin_client.get(LIST_URL).content.decode()
    assert options(html, "language") == ["en", "id"]
    assert options(html, "text_route") == ["", "clip", "multilingual", "translate"]

    all_routes.TINYRAG_TEXT_MODEL = ""
    all_routes.TINYRAG_TRANSLATE_MODEL = ""
    assert options(admin_client.get(LIST_URL).content.decode(), "text_route") == ["", "clip"]

    # configured but never downloaded (setup_models fetches the translator on its route only)
    all_routes.TINYRAG_TRANSLATE_MODEL = str(tmp_path / "not-downloaded")
    assert options(admin_client.get(LIST_URL).content.decode(), "text_route") == ["", "clip"]


def test_an_invalid_language_with_a_route_is_a_form_error_not_a_500(
    published_catalog, admin_client, all_routes
):
    response = admin_client.get(
        reverse("evaluation:estimate"), {"language": "xx", "text_route": "clip"}
    )
    assert response.status_code < 500


def test_a_run_started_from_the_form_keeps_its_language_and_route(
    published_catalog, admin_client, all_routes
):
    form = {**FORM, "mode": "text", "language": "id", "text_route": "translate"}
    response = admin_client.post(LIST_URL, {**form, "action": "start"})
    assert response.status_code == 302, response.content.decode()[:2000]
    run = EvaluationRun.objects.get()
    assert (run.language, run.configuration["language"]) == ("id", "id")
    assert run.configuration["text_route"] == "translate"


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"language": "en", "text_route": "translate"}, "translates id into English, not en"),
        ({"language": "fr"}, "Select a valid choice. fr is not one of the available choices."),
        ({"text_route": "babel"}, "Select a valid choice. babel is not one of the available"),
    ],
)
def test_a_language_or_route_that_cannot_work_is_a_400(
    published_catalog, admin_client, all_routes, changes, message
):
    response = admin_client.post(LIST_URL, {**FORM, "mode": "text", **changes, "action": "start"})
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not EvaluationRun.objects.exists()
