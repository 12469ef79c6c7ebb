"""The evaluation pages: run list, staff-only form (a background task), run page, downloads."""

from __future__ import annotations

import base64
import csv
import io
import json
import re
from datetime import timedelta

import pytest
from django.core.management import call_command
from django.urls import reverse
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from evaluation.models import EvaluationRun
from tests.evaluation.conftest import INDEX_NAME

pytestmark = pytest.mark.django_db

LIST_URL = "/evaluation/"


def make_run(**fields) -> EvaluationRun:
    """A finished run as the evaluation stores one (numbers made up, shapes real)."""
    now = timezone.now()
    values = {
        "mode": "all",
        "status": "done",
        "index_name": "tiny",
        "index_manifest": {"name": "tiny", "count": 20, "dataset": "tiny-imagenet-200",
                           "splits": ["train"], "index_type": "flat"},
        "configuration": {"split": "val", "ks": [1, 5], "seed": 0},
        "model_ids": {"clip": "tiny-clip", "text": "tiny-clip", "vlm": "qwen2-vl-test"},
        "sample_size": 12,
        "metrics": {
            "image": {"queries": 12, "recall@1": 0.75, "precision@1": 0.75, "recall@5": 1.0,
                      "precision@5": 0.6, "mrr": 0.8333, "self_excluded": 0},
            "text": {"queries": 4, "recall@1": 0.5, "precision@1": 0.5, "recall@5": 0.75,
                     "precision@5": 0.4, "mrr": 0.6},
            "zeroshot": {"queries": 12, "classes": 4, "top1_accuracy": 0.25,
                         "top5_accuracy": 1.0},
            "rag": {"samples": 2, "rag_k": 5, "context_hit_rate": 0.5,
                    "lir_when_context_hit": 1.0, "lir_when_context_missed": 0.0,
                    "contexts": {
                        "retrieved": {"lir": 0.5, "named": 1, "generated": 2, "errors": 0},
                        "none": {"lir": 0.0, "named": 0, "generated": 2, "errors": 0}}},
        },
        "per_class": {
            "image": [
                {"wnid": "n07749582", "name": "lemon", "queries": 3, "recall@1": 1.0,
                 "recall@5": 1.0, "failures": []},
                {"wnid": "n04067472", "name": "reel", "queries": 3, "recall@1": 0.0,
                 "recall@5": 1.0, "failures": [
                     {"image_id": 901, "retrieved_id": 902, "retrieved_wnid": "n07749582",
                      "retrieved_name": "lemon"}]},
            ],
            "zeroshot": [{"wnid": "n07749582", "name": "lemon", "queries": 3,
                          "top1_accuracy": 0.25, "top5_accuracy": 1.0, "failures": []}],
        },
        "details": {"rag": [
            {"image_id": 901, "wnid": "n04067472", "name": "reel", "context_hit": True,
             "candidates": [{"wnid": "n04067472", "name": "reel", "votes": 5}],
             "neighbour_ids": [1, 2, 3, 4, 5],
             "descriptions": {
                 "retrieved": {"text": "A fishing reel.", "named": True, "error": ""},
                 "none": {"text": "A metal spool.", "named": False, "error": ""}}},
        ]},
        "warnings": ["index 'tiny' contains 3 of the 12 val images: they are not held out."],
        "started_at": now,
        "finished_at": now,
    }  # fmt: skip
    values.update(fields)
    return EvaluationRun.objects.create(**values)


def chart_svg(html: str, chart_id: str) -> str:
    """The SVG of a chart of the run page: an <img> with a data: URI (no inline SVG, whose
    style attributes the Content-Security-Policy blocks)."""
    found = re.search(rf'id="{chart_id}"><img src="data:image/svg\+xml;base64,([^"]+)"', html)
    assert found, chart_id
    return base64.b64decode(found.group(1)).decode()


def test_pages_need_a_login(client):
    run = make_run()
    for url in (LIST_URL, reverse("evaluation:run", args=[run.pk])):
        response = client.get(url)
        assert response.status_code == 302
        assert response["Location"].startswith(reverse("login"))


def test_list_shows_runs_and_their_headline_numbers(auth_client):
    run = make_run()

    response = auth_client.get(LIST_URL)

    html = response.content.decode()
    assert response.status_code == 200
    assert reverse("evaluation:run", args=[run.pk]) in html
    assert "image R@1 <strong>0.750</strong>" in html
    assert "LIR retrieved <strong>0.500</strong>" in html
    assert "1 warning" in html


def test_only_staff_see_the_run_form(published_catalog, auth_client, admin_client):
    assert "Start the run" not in auth_client.get(LIST_URL).content.decode()
    assert "Start the run" in admin_client.get(LIST_URL).content.decode()


def test_non_staff_cannot_start_a_run(auth_client):
    response = auth_client.post(LIST_URL, {"mode": "image", "ks": "1,5"})

    assert response.status_code == 403
    assert not EvaluationRun.objects.exists()


def test_invalid_form_is_shown_again_with_the_error(published_catalog, admin_client, settings):
    response = admin_client.post(
        LIST_URL,
        {"mode": "image", "index_name": settings.TINYRAG_INDEX_NAME, "split": "val",
         "rag_sample": 50, "seed": 0, "ks": "0,5", "rag_contexts": ["retrieved"]},
    )  # fmt: skip

    assert response.status_code == 400
    assert "positive integers" in response.content.decode()
    assert not EvaluationRun.objects.exists()


def test_run_page_shows_tables_charts_failures_and_rag_side_by_side(auth_client):
    run = make_run()

    response = auth_client.get(reverse("evaluation:run", args=[run.pk]))

    html = response.content.decode()
    assert response.status_code == 200
    for chart in ("chart-recall", "chart-rag", "chart-image-per-class", "chart-zeroshot-per-class"):
        assert chart_svg(html, chart).startswith("<svg")
    assert "<td>0.750</td><td>0.750</td>" in html  # image R@1, P@1 at k=1
    assert reverse("search:image-thumb", args=[901]) in html  # the failed reel query...
    assert reverse("search:image-thumb", args=[902]) in html  # ...and what came first
    assert "→ lemon" in html
    assert "context: retrieved" in html
    assert "context: none" in html
    assert "A fishing reel." in html
    assert "A metal spool." in html
    assert "not held out" in html
    assert reverse("evaluation:run-json", args=[run.pk]) in html
    assert reverse("evaluation:run-csv", args=[run.pk]) in html


def test_unfinished_run_polls_and_a_finished_one_reloads(auth_client):
    run = make_run(status="running", metrics={}, per_class={}, details={}, finished_at=None)
    url = reverse("evaluation:run", args=[run.pk])

    partial = auth_client.get(url, headers={"HX-Request": "true"})
    assert 'hx-trigger="every 2s"' in partial.content.decode()
    assert "<html" not in partial.content.decode()

    EvaluationRun.objects.filter(pk=run.pk).update(status="done", finished_at=timezone.now())
    done = auth_client.get(url, headers={"HX-Request": "true"})
    assert done["HX-Refresh"] == "true"


def test_progress_bars_of_a_run_write_its_row():
    from evaluation.services import RunProgress

    run = make_run(status="running", metrics={}, finished_at=None)
    bar = RunProgress(total=10, desc="embed query images", unit="img", run_id=run.pk)
    run.refresh_from_db()
    assert run.progress == {"step": "embed query images", "done": 0, "total": 10}
    heartbeat = run.updated_at
    bar.update(4)
    bar.close()  # a bar's last state is always written
    run.refresh_from_db()
    assert run.progress == {"step": "embed query images", "done": 4, "total": 10}
    assert run.updated_at > heartbeat


def test_running_run_shows_its_progress(auth_client):
    run = make_run(
        status="running",
        metrics={},
        finished_at=None,
        progress={"step": "embed query images", "done": 30, "total": 120},
    )
    partial = auth_client.get(
        reverse("evaluation:run", args=[run.pk]), headers={"HX-Request": "true"}
    ).content.decode()
    assert "Reading and embedding the query images: 30 of 120" in partial
    assert '<progress max="100" value="25">' in partial  # 30 / 120


def test_a_run_whose_worker_died_is_failed_at_the_next_poll(auth_client, admin_client, settings):
    run = make_run(status="running", metrics={}, finished_at=None, progress={"step": "search"})
    url = reverse("evaluation:run", args=[run.pk])
    assert "run-progress" in auth_client.get(url, headers={"HX-Request": "true"}).content.decode()

    stale = timezone.now() - timedelta(seconds=settings.TINYRAG_EVALUATION_STALL_SECONDS + 1)
    EvaluationRun.objects.filter(pk=run.pk).update(updated_at=stale)  # no sign of life since
    assert auth_client.get(url, headers={"HX-Request": "true"})["HX-Refresh"] == "true"
    run.refresh_from_db()
    assert run.status == "failed"
    assert "stopped making progress" in run.error
    assert "Start it again" in admin_client.get(url).content.decode()  # staff: what to do
    page = auth_client.get(url).content.decode()  # a user: what happened, in plain words
    assert "It stopped with a problem before it measured anything." in page
    assert "stopped making progress" not in page


def test_a_run_that_waited_long_in_the_queue_is_not_failed_when_it_starts(settings, monkeypatch):
    from evaluation import measure, services

    run = services.create_run(config=services.EvaluationConfig(mode="image"))
    long_ago = timezone.now() - timedelta(seconds=settings.TINYRAG_EVALUATION_STALL_SECONDS * 3)
    EvaluationRun.objects.filter(pk=run.pk).update(updated_at=long_ago)  # a busy worker
    seen = []

    def measure_run(config, progress):  # a poll arrives before the first progress is written
        seen.append(services.with_stall_check(EvaluationRun.objects.get(pk=run.pk)).status)
        return iter(())

    monkeypatch.setattr(measure, "measure_run", measure_run)
    services.execute_run(run.pk)
    assert seen == ["running"]


def test_failed_run_shows_its_error_to_staff_only(auth_client, admin_client):
    run = make_run(status="failed", error="no index named 'nowhere'", metrics={}, per_class={})
    url = reverse("evaluation:run", args=[run.pk])

    assert "Failed: no index named &#x27;nowhere&#x27;" in admin_client.get(url).content.decode()
    html = auth_client.get(url).content.decode()
    assert "nowhere" not in html
    assert "An administrator can see what went wrong" in html
    assert "nowhere" not in auth_client.get(LIST_URL).content.decode()
    assert "nowhere" in admin_client.get(LIST_URL).content.decode()


def test_operator_details_are_for_staff_only(auth_client, admin_client):
    run = make_run(status="queued", metrics={}, per_class={}, finished_at=None, started_at=None)
    url = reverse("evaluation:run", args=[run.pk])

    user_page = auth_client.get(url).content.decode()
    assert "Waiting to start. This page updates itself." in user_page
    assert "manage.py worker" not in user_page
    assert "manage.py" not in auth_client.get(LIST_URL).content.decode()
    assert "manage.py worker" in admin_client.get(url).content.decode()


def test_the_runs_list_turns_into_cards_on_a_phone(auth_client):
    """Every cell says what it is (the stack-table's data-label), so a row reads as a card."""
    make_run()
    html = auth_client.get(LIST_URL).content.decode()
    start = html.index('<table class="grid runs stack-table">')
    table = html[start : html.index("</table>", start)]
    cells = re.findall(r"<td[^>]*>", table)
    assert len(cells) == 7  # a user sees no "Started by"
    assert all("data-label=" in cell for cell in cells)
    run_page = auth_client.get(reverse("evaluation:run", args=[make_run().pk])).content.decode()
    assert run_page.count('<div class="table-wrap">') == run_page.count("<table")


def test_json_download(auth_client):
    run = make_run()

    response = auth_client.get(reverse("evaluation:run-json", args=[run.pk]))

    assert response["Content-Type"].startswith("application/json")
    assert f"evaluation-run-{run.pk}.json" in response["Content-Disposition"]
    data = json.loads(response.content)
    assert (data["id"], data["metrics"], data["per_class"]) == (run.pk, run.metrics, run.per_class)


def test_csv_download_has_one_number_per_row(auth_client):
    run = make_run()

    response = auth_client.get(reverse("evaluation:run-csv", args=[run.pk]))

    assert response["Content-Type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(response.content.decode())))
    assert rows[0] == ["mode", "scope", "wnid", "name", "metric", "value"]
    assert ["image", "overall", "", "", "recall@1", "0.75"] in rows
    assert ["rag", "overall", "", "", "contexts.none.lir", "0.0"] in rows
    assert ["image", "class", "n04067472", "reel", "recall@1", "0.0"] in rows


def test_unknown_run_is_404(auth_client):
    assert auth_client.get(reverse("evaluation:run", args=[999])).status_code == 404


@pytest.mark.django_db(transaction=True)
def test_staff_form_runs_the_evaluation_in_the_background(solid_index, admin_client, admin_user):
    response = admin_client.post(
        LIST_URL,
        {"mode": "image", "index_name": INDEX_NAME, "split": "val", "sample": "",
         "rag_sample": 50, "seed": 0, "ks": "5,1", "rag_contexts": ["retrieved", "none"]},
    )  # fmt: skip

    run = EvaluationRun.objects.get()
    assert response.status_code == 302
    assert response["Location"] == reverse("evaluation:run", args=[run.pk])
    assert (run.status, run.created_by) == ("queued", admin_user)
    assert DBTaskResult.objects.get().args_kwargs["args"] == [run.pk]

    call_command("db_worker", "--batch", "--no-startup-delay", "--interval", "0", verbosity=0)

    run.refresh_from_db()
    assert run.status == "done", run.error
    assert run.progress == {}  # cleared at the end; while running it held the current step
    assert run.configuration["ks"] == [1, 5]
    assert (run.metrics["image"]["recall@1"], run.metrics["image"]["precision@5"]) == (1.0, 1.0)
    page = admin_client.get(reverse("evaluation:run", args=[run.pk])).content.decode()
    assert chart_svg(page, "chart-recall").startswith("<svg")
