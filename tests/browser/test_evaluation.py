"""The evaluation pages in a real browser, at a laptop's and a phone's width: the runs list
(cards on a phone), the staff form with its live cost estimate and the confirmation a long
run needs, a finished run's charts, and a run cancelled from its page; the estimate and the
cancel button work without JavaScript too."""

from __future__ import annotations

import copy

import pytest
from django.utils import timezone

from evaluation.models import EvaluationRun
from tests.browser.helpers import PASSWORD, PHONE, log_in, log_in_new_user, screenshots
from tests.evaluation.conftest import publish_catalog
from tests.evaluation.test_views import make_run
from tests.evaluation.test_views_language import indonesian_catalogue  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def published_catalog(settings, tmp_path):
    """A dataset and a published index "tiny" of it, no model (the staff form's choices)."""
    from django.core.cache import cache

    yield publish_catalog(settings, tmp_path)
    cache.clear()


def many_classes_run(**fields) -> EvaluationRun:
    """A finished run over 200 classes (class n scores n / 200), as TinyImageNet's would be."""
    rows = [
        {"wnid": f"n{n:08d}", "name": f"class {n:03d}", "queries": 5,
         "recall@1": n / 200, "recall@5": min(1.0, n / 100), "failures": []}
        for n in range(200)
    ]  # fmt: skip
    return make_run(per_class={"image": rows, "zeroshot": []}, **fields)


def test_runs_list_form_estimate_and_run_pages(
    page, live_server, published_catalog, django_user_model, settings, csp_violations
):
    from playwright.sync_api import expect

    settings.TINYRAG_VLM_BACKEND = "transformers"  # descriptions on: rag is offered
    make_run(timings={"query_image": 0.01, "generation": 100.0})
    failed = make_run(status="failed", error="no index named 'nowhere'", metrics={})
    log_in_new_user(page, live_server, django_user_model, "stella", is_staff=True)

    page.goto(f"{live_server.url}/evaluation/")
    expect(page.locator("table.runs tbody tr")).to_have_count(2)
    estimate = page.locator("#run-estimate")
    expect(estimate).to_contain_text("12 query images")
    expect(estimate).to_contain_text("measured by run #")
    screenshots(page, "evaluation-runs")

    # on a phone each run is a card: its cells are stacked blocks with their labels
    page.set_viewport_size(PHONE)
    cell = page.locator("table.runs tbody tr").first.locator("td").first
    assert cell.evaluate("td => getComputedStyle(td).display") == "block"
    assert cell.evaluate("td => getComputedStyle(td, '::before').content") == '"Run: "'
    page.set_viewport_size({"width": 1280, "height": 900})

    # the estimate follows the form (HTMX): RAG on 12 images, both contexts, at 100 s each
    page.select_option("#id_mode", "rag")
    page.fill("#id_rag_sample", "12")
    expect(estimate).to_contain_text("24 generations (12 images described 2 ways)")
    expect(estimate).to_contain_text("Cost: about 40 minutes")
    confirm = page.get_by_label("Yes, start it: it takes about 40 minutes.")
    expect(confirm).to_be_visible()
    screenshots(page, "evaluation-form-long")

    # starting it unconfirmed is refused with the reason; confirmed, it is queued
    page.get_by_role("button", name="Start the run").click()
    expect(page.locator("#run-estimate .errorlist")).to_contain_text("Tick the box")
    assert EvaluationRun.objects.filter(status="queued").count() == 0
    page.get_by_label("Yes, start it: it takes about 40 minutes.").check()
    page.get_by_role("button", name="Start the run").click()
    queued = EvaluationRun.objects.get(status="queued")
    expect(page).to_have_url(f"{live_server.url}/evaluation/runs/{queued.pk}/")
    expect(page.locator("#run-status")).to_contain_text("Waiting to start")
    screenshots(page, "evaluation-run-queued")

    # cancel it from its page: a queued run ends at once
    page.get_by_role("button", name="Cancel this run").click()
    expect(page.locator("#run-status")).to_contain_text("It stopped before it measured anything")
    expect(page.locator("#messages")).to_contain_text("The run is cancelled.")

    # a finished run: readable charts, the worst and the best of 200 classes by name
    done = many_classes_run()
    page.goto(f"{live_server.url}/evaluation/runs/{done.pk}/")
    chart = page.locator("#chart-image-per-class img")
    expect(chart).to_be_visible()
    assert chart.evaluate("img => img.complete && img.naturalWidth") > 0
    screenshots(page, "evaluation-run-done")
    page.set_viewport_size(PHONE)
    width = chart.evaluate("img => img.getBoundingClientRect().width")
    assert 300 <= width <= PHONE["width"]  # scaled to the phone, not cropped
    page.set_viewport_size({"width": 1280, "height": 900})

    page.goto(f"{live_server.url}/evaluation/runs/{failed.pk}/")
    expect(page.locator("#run-status")).to_contain_text("Failed: no index named 'nowhere'")
    screenshots(page, "evaluation-run-failed")
    assert csp_violations == [], "\n".join(csp_violations)


def test_a_running_run_is_cancelled_from_its_page(
    page, live_server, published_catalog, django_user_model, csp_violations
):
    """The starter presses Cancel while it runs; the page says it is stopping, and once the
    worker has stopped (here: its final write, as execute_run makes it) the page reloads
    itself and says what it kept."""
    from playwright.sync_api import expect

    user = log_in_new_user(page, live_server, django_user_model, "ravi", is_staff=True)
    run = make_run(
        status="running", metrics={}, per_class={}, details={}, finished_at=None,
        created_by=user, progress={"step": "search by image", "done": 40, "total": 120},
    )  # fmt: skip
    page.goto(f"{live_server.url}/evaluation/runs/{run.pk}/")
    status = page.locator("#run-status")
    expect(status).to_contain_text("Searching the index with each query image: 40 of 120")
    screenshots(page, "evaluation-run-running")

    page.get_by_role("button", name="Cancel this run").click()
    expect(status).to_contain_text("Stopping: the run ends after its current step")
    expect(page.get_by_role("button", name="Cancel this run")).to_have_count(0)
    run.refresh_from_db()
    assert run.cancel_requested_at is not None

    kept = make_run()  # what a run has measured when it stops after image retrieval
    EvaluationRun.objects.filter(pk=run.pk).update(
        status="cancelled", finished_at=timezone.now(), progress={},
        metrics={"image": kept.metrics["image"]}, per_class={"image": kept.per_class["image"]},
    )  # fmt: skip
    expect(status).to_contain_text(
        "The results below are what it finished before it stopped.", timeout=15_000
    )
    expect(page.locator("#chart-recall img")).to_be_visible()
    screenshots(page, "evaluation-run-cancelled")
    assert csp_violations == [], "\n".join(csp_violations)


def test_without_javascript_the_estimate_and_the_cancel_are_plain_posts(
    browser, live_server, published_catalog, django_user_model
):
    from playwright.sync_api import expect

    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    user = django_user_model.objects.create_user("tomas", password=PASSWORD, is_staff=True)
    log_in(page, live_server, "tomas")

    page.goto(f"{live_server.url}/evaluation/")
    page.select_option("#id_mode", "text")
    page.get_by_role("button", name="Update the estimate").click()
    expect(page.locator("#run-estimate")).to_contain_text("4 class names")
    assert not EvaluationRun.objects.exists()
    screenshots(page, "evaluation-form-nojs")

    run = make_run(status="queued", metrics={}, per_class={}, finished_at=None, created_by=user)
    page.goto(f"{live_server.url}/evaluation/runs/{run.pk}/")
    page.get_by_role("button", name="Cancel this run").click()
    expect(page.locator("#run-status")).to_contain_text("Cancelled")
    run.refresh_from_db()
    assert run.status == "cancelled"
    context.close()


@pytest.mark.usefixtures("indonesian_catalogue")
def test_runs_side_by_side_per_language_and_a_run_in_the_pages_language(
    page, live_server, django_user_model, csp_violations
):
    """English and Indonesian runs compared on the list, with their charts; an Indonesian
    run's page read on an Indonesian page names its classes in Indonesian."""
    from playwright.sync_api import expect

    english = make_run()  # "all", from before routes were stored: CLIP
    for route, recall in (("multilingual", 0.3), ("translate", 0.4), ("clip", 0.1)):
        metrics = copy.deepcopy(english.metrics)
        metrics["text"].update({"recall@1": recall, "mrr": recall + 0.1})
        metrics["rag"]["contexts"]["retrieved"]["lir"] = recall / 2
        indonesian = make_run(
            language="id", metrics=metrics,
            configuration={"split": "val", "ks": [1, 5], "seed": 0, "text_route": route},
        )  # fmt: skip
    log_in_new_user(page, live_server, django_user_model, "ayu")

    page.goto(f"{live_server.url}/evaluation/")
    text = page.locator("#compare-text")
    expect(text.locator("tbody tr")).to_have_count(4)  # English on CLIP, Indonesian on three
    expect(text.locator("tbody tr").last).to_contain_text("translated")
    chart = page.locator("#chart-compare-text img")
    expect(chart).to_be_visible()
    assert chart.evaluate("img => img.complete && img.naturalWidth") > 0
    expect(page.locator("#compare-rag tbody tr")).to_have_count(2)
    screenshots(page, "evaluation-by-language")

    # the same page in Bahasa Indonesia (the switcher's cookie): the classes in Indonesian
    page.context.add_cookies([{"name": "django_language", "value": "id", "url": live_server.url}])
    page.goto(f"{live_server.url}/evaluation/runs/{indonesian.pk}/")
    expect(page.locator("html")).to_have_attribute("lang", "id")
    expect(page.locator("table.worst")).to_contain_text("gulungan pancing")
    expect(page.locator("table.worst")).to_contain_text("→ jeruk sitrun")
    screenshots(page, "evaluation-run-indonesian")
    assert csp_violations == [], "\n".join(csp_violations)
