"""The staff form: only choices that can work, cheap defaults, and the cost before starting."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse

from evaluation.models import EvaluationRun
from tests.evaluation.conftest import INDEX_NAME
from tests.evaluation.test_views import make_run

pytestmark = pytest.mark.django_db

LIST_URL = "/evaluation/"
ESTIMATE_URL = "/evaluation/estimate/"
FORM = {"mode": "image", "index_name": INDEX_NAME, "split": "val", "sample": "1000",
        "seed": "0", "ks": "1,5,10", "rag_sample": "10",
        "rag_contexts": ["retrieved", "none"]}  # fmt: skip


def options(html: str, name: str) -> list[str]:
    select = re.search(rf'<select name="{name}"[^>]*>(.*?)</select>', html, re.S)
    assert select, name
    return re.findall(r'<option value="([^"]*)"', select.group(1))


def test_the_form_offers_only_splits_with_labels(published_catalog, admin_client):
    html = admin_client.get(LIST_URL).content.decode()

    assert options(html, "split") == ["val", "train"]  # held out first; never the test split
    assert "train (in the index: not held out)" in html
    assert "Not offered: test, whose images have no labels to score against." in html
    assert options(html, "index_name") == [INDEX_NAME]
    assert "tiny (20 images of train)" in html


def test_rag_is_offered_only_when_descriptions_are_on(published_catalog, admin_client, settings):
    settings.TINYRAG_VLM_BACKEND = "transformers"
    assert options(admin_client.get(LIST_URL).content.decode(), "mode") == [
        "image", "text", "zeroshot", "rag", "all"
    ]  # fmt: skip

    settings.TINYRAG_VLM_BACKEND = "none"
    html = admin_client.get(LIST_URL).content.decode()
    assert options(html, "mode") == ["image", "text", "zeroshot", "all"]
    assert "All but descriptions (they are off here)" in html


def test_the_defaults_are_a_cheap_image_run_and_the_page_shows_their_cost(
    published_catalog, admin_client
):
    html = admin_client.get(LIST_URL).content.decode()

    assert re.search(r'<option value="image"[^>]*selected', html)
    assert re.search(r'<option value="val"[^>]*selected', html)
    assert 'name="sample" value="1000"' in html
    assert 'name="rag_sample" value="10"' in html
    # 1000 asked, 12 labelled val images: 12 x the default 0.02 s
    assert "12 query images" in html
    assert "× 0.02 s" in html
    assert "a default: no finished run has measured it yet" in html
    assert "Cost: under a minute" in html


def test_nothing_to_evaluate_says_so_instead_of_a_form(admin_client, settings, tmp_path):
    settings.TINYRAG_INDEX_DIR = tmp_path / "empty"
    html = admin_client.get(LIST_URL).content.decode()
    assert "There is nothing to evaluate yet" in html
    assert "Start the run" not in html


def test_the_estimate_partial_follows_the_form(published_catalog, admin_client):
    query = {**FORM, "mode": "rag", "rag_sample": "5", "rag_contexts": ["none"]}
    response = admin_client.get(ESTIMATE_URL, query, headers={"HX-Request": "true"})

    html = response.content.decode()
    assert response.status_code == 200
    assert "<html" not in html
    assert html.strip().startswith('<div id="run-estimate"')
    # 5 images x 1 context = 5 generations x the default 20 s = 100 s
    assert "5 generations (5 images described 1 way)" in html
    assert "× 20 s" in html
    assert "Cost: about 2 minutes" in html


def test_the_estimate_uses_what_finished_runs_measured(published_catalog, admin_client):
    older = make_run(timings={"query_image": 0.5})
    newer = make_run(timings={"query_image": 1.5, "generation": 3.0})
    make_run(status="failed", timings={"query_image": 99.0})  # a failed run is no measure

    html = admin_client.get(ESTIMATE_URL, FORM, headers={"HX-Request": "true"}).content.decode()

    # 12 query images x the median of 1.5 and 0.5 = 12 s
    assert "× 1 s" in html
    assert f"measured: median of runs #{newer.pk}, #{older.pk}" in html
    assert "Cost: under a minute" in html


def test_the_estimate_shows_what_to_fix(published_catalog, admin_client):
    query = {**FORM, "ks": "0,5"}
    html = admin_client.get(ESTIMATE_URL, query, headers={"HX-Request": "true"}).content.decode()
    assert "Fix the fields marked above" in html
    assert "k values must be positive integers" in html


def test_without_javascript_the_estimate_button_shows_the_cost_and_starts_nothing(
    published_catalog, admin_client
):
    response = admin_client.post(LIST_URL, {**FORM, "mode": "text", "action": "estimate"})

    assert response.status_code == 200
    assert "4 class names" in response.content.decode()
    assert not EvaluationRun.objects.exists()
    page = admin_client.get(ESTIMATE_URL, FORM).content.decode()  # no HTMX: the whole page
    assert "<html" in page
    assert "12 query images" in page


def test_only_staff_get_an_estimate(published_catalog, auth_client):
    assert auth_client.get(ESTIMATE_URL, FORM).status_code == 403


def test_a_long_run_must_be_confirmed(published_catalog, admin_client, settings):
    settings.TINYRAG_VLM_BACKEND = "transformers"
    make_run(timings={"generation": 100.0})
    # 12 val images x 2 contexts = 24 generations x 100 s = 40 minutes
    form = {**FORM, "mode": "rag", "rag_sample": "50"}

    refused = admin_client.post(LIST_URL, form)
    html = refused.content.decode()
    assert refused.status_code == 400
    assert "This run takes about 40 minutes. Tick the box to start it anyway" in html
    assert 'name="confirm"' in html
    assert EvaluationRun.objects.filter(status="queued").count() == 0

    started = admin_client.post(LIST_URL, {**form, "confirm": "on"})
    run = EvaluationRun.objects.get(status="queued")
    assert started["Location"] == reverse("evaluation:run", args=[run.pk])
    assert run.configuration["rag_sample"] == 50


def test_a_short_run_starts_without_a_confirmation(published_catalog, admin_client):
    response = admin_client.post(LIST_URL, FORM)

    run = EvaluationRun.objects.get()
    assert response["Location"] == reverse("evaluation:run", args=[run.pk])
    assert (run.mode, run.configuration["split"], run.configuration["sample"]) == (
        "image", "val", 1000
    )  # fmt: skip
