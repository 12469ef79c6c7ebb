"""A person in a real browser: sign up, search by text, upload an image, find it in history;
and every page works under the Content-Security-Policy, HTMX included."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image as PILImage

from search.catalog.models import Image
from search.queries.models import SearchQuery
from tests.browser.helpers import ARTIFACTS, log_in_new_user, screenshots
from tests.evaluation.test_views import make_run

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_signup_search_upload_and_history(
    page, live_server, search_index, tmp_path, csp_violations
):
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/")
    expect(page.locator("h1")).to_have_text("Find images by what is in them")
    screenshots(page, "landing")
    page.get_by_role("link", name="Create an account").click()
    page.fill("#id_username", "erin")
    page.fill("#id_password1", "a-long-unusual-passphrase-9")
    page.fill("#id_password2", "a-long-unusual-passphrase-9")
    page.get_by_role("button", name="Create account").click()
    expect(page.locator("header")).to_contain_text("Signed in as erin")

    # text search: results swap in without a full page load (HTMX), and the URL follows
    page.fill("#id_text", "lemon")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#results .result")).to_have_count(10)
    query = SearchQuery.objects.get(user__username="erin", kind="text")
    expect(page).to_have_url(f"{live_server.url}/history/{query.pk}/")
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "search-results.png"), full_page=True)

    # image search: upload a dataset image; it comes back first
    target = Image.objects.filter(split="train").order_by("id")[3]
    upload = tmp_path / "mine.png"
    PILImage.open(search_index / target.path).convert("RGB").save(upload)
    page.goto(f"{live_server.url}/")
    page.set_input_files("#id_image", str(upload))
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#results h2")).to_contain_text("Your image")
    first = page.locator("#results .result").first
    expect(first.locator("img").first).to_have_attribute("src", f"/images/{target.pk}/thumb/")

    # history: both queries, newest first; open the upload and see its stored results
    page.get_by_role("link", name="History").click()
    rows = page.locator("#history tbody tr")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text(re.compile("uploaded image", re.IGNORECASE))
    rows.first.get_by_role("link", name=re.compile("uploaded image", re.IGNORECASE)).click()
    expect(page.locator("#results .result")).to_have_count(10)
    assert "these are the results as they were stored then" in page.content()
    shot = page.screenshot(full_page=True)
    assert PILImage.open(io.BytesIO(shot)).width > 0
    assert csp_violations == []


def test_pages_and_htmx_work_under_the_content_security_policy(
    page, live_server, search_index, django_user_model, csp_violations
):
    from playwright.sync_api import expect

    log_in_new_user(page, live_server, django_user_model, "frank")
    expect(page.locator("header")).to_contain_text("Signed in as frank")

    # HTMX: the results swap in, the indicator's style comes from app.css, not an injected <style>
    page.fill("#id_text", "lemon")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#results .result")).to_have_count(10)
    assert page.locator("head style").count() == 0
    expect(page.locator("#searching")).to_be_hidden()
    # HTMX again: a description request swaps its card in, on the result, and polls it
    first_result = page.locator("#results .result").first
    first_result.get_by_role("button", name="Describe").click()
    card = first_result.locator("article.description")
    expect(card).to_have_count(1)
    expect(card).to_contain_text("Waiting for its turn")
    screenshots(page, "search-results")

    page.goto(f"{live_server.url}/collections/")
    expect(page.locator("h1")).to_have_text("Collections")
    screenshots(page, "collections")

    description = SearchQuery.objects.get(user__username="frank").descriptions.get()
    page.goto(f"{live_server.url}/descriptions/{description.pk}/")
    expect(page.locator("h1")).to_have_text("Description")
    screenshots(page, "description")

    # the evaluation run page: its charts are SVG images, and they render (natural size > 0)
    run = make_run()
    page.goto(f"{live_server.url}/evaluation/runs/{run.pk}/")
    chart = page.locator("#chart-recall img")
    expect(chart).to_be_visible()
    assert chart.evaluate("img => img.complete && img.naturalWidth") > 0
    screenshots(page, "evaluation-run")
    page.goto(f"{live_server.url}/evaluation/")
    expect(page.locator("table.runs tbody tr")).to_have_count(1)

    # the API docs: Swagger UI loads its init script from a URL and renders the schema
    page.goto(f"{live_server.url}/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("TinyRAG API")
    expect(page.locator(".opblock").first).to_be_visible()
    screenshots(page, "api-docs")

    assert csp_violations == []


def test_a_rate_limited_search_says_so_in_the_page(
    page, live_server, search_index, django_user_model, settings, csp_violations
):
    """A 429 answer to an HTMX search is swapped into the message area (htmx-config), the
    results already on the page stay, and the message says when to try again."""
    from playwright.sync_api import expect

    settings.TINYRAG_SEARCH_RATE = "1/day"
    log_in_new_user(page, live_server, django_user_model, "gina")

    page.fill("#id_text", "lemon")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(page.locator("#results .result")).to_have_count(10)
    page.fill("#id_text", "a red fish")
    page.get_by_role("button", name="Search", exact=True).click()
    message = page.locator("#messages li.error")
    expect(message).to_contain_text("You are searching faster than this server allows")
    expect(page.locator("#results .result")).to_have_count(10)  # the earlier results stay
    screenshots(page, "rate-limited")
    assert csp_violations == []
