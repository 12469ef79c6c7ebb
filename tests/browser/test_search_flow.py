"""A person in a real browser: sign up, search by text, upload an image, find it in history."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from PIL import Image as PILImage

from search.models import Image, SearchQuery

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

ARTIFACTS = Path(__file__).resolve().parents[2] / "artifacts"


def test_signup_search_upload_and_history(page, live_server, search_index, tmp_path):
    from playwright.sync_api import expect

    page.goto(f"{live_server.url}/")
    expect(page).to_have_url(f"{live_server.url}/accounts/login/?next=/")
    page.get_by_role("link", name="Sign up").last.click()
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
    expect(rows.first).to_contain_text("uploaded image")
    rows.first.get_by_role("link").click()
    expect(page.locator("#results .result")).to_have_count(10)
    assert "these are the results as they were stored then" in page.content()
    shot = page.screenshot(full_page=True)
    assert PILImage.open(io.BytesIO(shot)).width > 0
