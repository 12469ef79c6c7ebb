"""History in a real browser, at a laptop's and a phone's width: search and filter it, delete
one search (confirm in place, Cancel keeps it), delete all through the confirm step, regenerate
the API token through its confirm; and the same confirm steps as pages without JavaScript."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from search.queries import services
from search.queries.models import SearchQuery
from tests.browser.helpers import PASSWORD, PHONE, log_in, log_in_new_user, screenshots

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture(scope="session")
def browser_context_args(browser_context_args):
    """The browser says it is in Jakarta (UTC+7): app.js passes that on in the `tz` cookie."""
    return {**browser_context_args, "timezone_id": "Asia/Jakarta"}


def history_of(user) -> dict[str, SearchQuery]:
    """Four real searches (the tiny index), two with a class filter; "lemon" ran at a known
    time, 2024-03-01 10:05 UTC."""
    made = {
        "lemon": services.text_search(user=user, text="lemon", top_k=3),
        "cat": services.text_search(user=user, text="a sleepy cat", class_filter="n02124075"),
        "lemonade": services.text_search(user=user, text="Lemonade", class_filter="n07749582"),
        "bus": services.text_search(user=user, text="school bus", top_k=3),
    }
    SearchQuery.objects.filter(pk=made["lemon"].pk).update(
        created_at=datetime(2024, 3, 1, 10, 5, tzinfo=UTC)
    )
    return made


def test_filter_delete_one_delete_all_and_regenerate_the_token(
    page, live_server, search_index, django_user_model, csp_violations
):
    from playwright.sync_api import expect
    from rest_framework.authtoken.models import Token

    user = log_in_new_user(page, live_server, django_user_model, "hana")
    made = history_of(user)
    page.goto(f"{live_server.url}/history/")
    rows = page.locator("#history tbody tr")
    expect(rows).to_have_count(4)
    # times in the browser's zone: 10:05 UTC is 17:05 in Jakarta
    expect(page.locator(".history-head")).to_contain_text("Times in Asia/Jakarta")
    expect(page.locator(f"#query-{made['lemon'].pk} time")).to_have_text("1 Mar 2024, 17:05")
    # the class filter a query used, by its name
    expect(page.locator(f"#query-{made['cat'].pk} .class-badge")).to_have_text(
        "Class: Egyptian cat"
    )
    screenshots(page, "history")

    # search: the list narrows as one types (HTMX), and the address follows
    page.fill("#id_q", "LEMON")
    expect(rows).to_have_count(2)
    expect(page).to_have_url(f"{live_server.url}/history/?q=LEMON&kind=&class_filter=")
    expect(page.locator(".history-count")).to_have_text("2 searches match. Clear filters")
    page.select_option("#id_class_filter", label="lemon")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("“Lemonade”")
    screenshots(page, "history-filtered")
    page.get_by_role("link", name="Clear filters").click()
    expect(rows).to_have_count(4)
    expect(page.locator("#id_q")).to_have_value("")

    # delete one: the confirm opens in place, Cancel keeps the row and gives focus back
    row = page.locator(f"#query-{made['bus'].pk}")
    row.get_by_role("link", name="Delete this search").click()
    confirm = row.get_by_role("group", name="Confirm deleting this search")
    expect(confirm).to_be_visible()
    expect(confirm.get_by_role("button", name="Cancel")).to_be_focused()
    screenshots(page, "history-row-confirm")
    confirm.get_by_role("button", name="Cancel").click()
    expect(confirm).to_be_hidden()
    expect(row.get_by_role("link", name="Delete this search")).to_be_focused()
    assert SearchQuery.objects.filter(pk=made["bus"].pk).exists()
    row.get_by_role("link", name="Delete this search").click()
    confirm.get_by_role("button", name="Delete", exact=True).click()
    expect(page.locator(f"#query-{made['bus'].pk}")).to_have_count(0)
    expect(page.locator("#messages")).to_contain_text("The search was deleted.")
    expect(rows).to_have_count(3)
    assert not SearchQuery.objects.filter(pk=made["bus"].pk).exists()
    expect(page.locator("#history .query-link").first).to_be_focused()  # the row below it
    screenshots(page, "history-row-deleted")

    # on a query's own page: the same confirm in place, and back to the history once deleted
    page.locator(f"#query-{made['cat'].pk} .query-link").click()
    expect(page).to_have_url(f"{live_server.url}/history/{made['cat'].pk}/")
    page.get_by_role("link", name="Delete from history").click()
    confirm = page.get_by_role("group", name="Confirm deleting this search")
    expect(confirm).to_contain_text("This cannot be undone.")
    screenshots(page, "query-delete-confirm")
    confirm.get_by_role("button", name="Cancel").click()
    expect(page.get_by_role("link", name="Delete from history")).to_be_focused()
    page.get_by_role("link", name="Delete from history").click()
    confirm.get_by_role("button", name="Delete", exact=True).click()
    expect(page).to_have_url(f"{live_server.url}/history/")
    expect(page.locator("#messages")).to_contain_text("The search was deleted.")
    expect(rows).to_have_count(2)

    # on a phone, rows are cards and Delete is on screen
    page.set_viewport_size(PHONE)
    delete = rows.first.get_by_role("link", name="Delete this search")
    expect(delete).to_be_visible()
    box = delete.bounding_box()
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"]
    assert page.locator("#history thead").bounding_box()["height"] <= 1  # headings hidden
    page.set_viewport_size({"width": 1280, "height": 900})

    # delete all: a confirm in place says what goes; Cancel keeps everything
    page.get_by_role("link", name="Delete all history…").click()
    panel = page.get_by_role("alertdialog", name="Delete all your history?")
    expect(panel).to_contain_text("2 searches will be deleted")
    expect(panel.get_by_role("link", name="Cancel")).to_be_focused()
    expect(page.get_by_role("link", name="Delete all history…")).to_be_hidden()
    screenshots(page, "history-delete-all-confirm")
    panel.get_by_role("link", name="Cancel").click()
    expect(panel).to_have_count(0)
    expect(page.get_by_role("link", name="Delete all history…")).to_be_focused()
    assert SearchQuery.objects.filter(user=user).count() == 2
    page.get_by_role("link", name="Delete all history…").click()
    panel.get_by_role("button", name="Delete all history").click()
    expect(page.locator("#messages")).to_contain_text("Your history was deleted: 2 searches.")
    expect(page.locator("#history")).to_contain_text("No searches yet.")
    assert SearchQuery.objects.filter(user=user).count() == 0
    screenshots(page, "history-empty")

    # the API token: regenerating asks first and says the old one stops working
    page.goto(f"{live_server.url}/accounts/profile/")
    old = Token.objects.get(user=user).key
    expect(page.locator("#api-token")).to_have_text(old)
    screenshots(page, "account")
    page.get_by_role("link", name="Regenerate token…").click()
    panel = page.get_by_role("alertdialog", name="Regenerate your API token?")
    expect(panel).to_contain_text("stops working at once")
    screenshots(page, "account-token-confirm")
    panel.get_by_role("link", name="Cancel").click()
    expect(panel).to_have_count(0)
    assert Token.objects.get(user=user).key == old
    page.get_by_role("link", name="Regenerate token…").click()
    panel.get_by_role("button", name="Regenerate token").click()
    expect(page.locator("#messages")).to_contain_text("The old one no longer works")
    new = Token.objects.get(user=user).key
    assert new != old
    expect(page.locator("#api-token")).to_have_text(new)
    screenshots(page, "account-token-regenerated")

    # the time zone chosen on the account page wins over the browser's
    page.select_option("#id_time_zone", "America/New_York")
    page.get_by_role("button", name="Save time zone").click()
    expect(page.locator("#messages")).to_contain_text("Times are now shown in America/New_York.")
    screenshots(page, "account-time-zone")
    assert csp_violations == []


def test_without_javascript_every_confirm_is_a_page(
    browser, live_server, search_index, django_user_model
):
    from playwright.sync_api import expect
    from rest_framework.authtoken.models import Token

    user = django_user_model.objects.create_user("ines", password=PASSWORD)
    made = history_of(user)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in(page, live_server, "ines")

    # the filter form is a plain GET form
    page.goto(f"{live_server.url}/history/")
    expect(page.locator(".history-head")).to_contain_text("Times in UTC")  # no browser zone
    page.fill("#id_q", "lemon")
    page.get_by_role("button", name="Filter").click()
    expect(page).to_have_url(f"{live_server.url}/history/?q=lemon&kind=&class_filter=")
    expect(page.locator("#history tbody tr")).to_have_count(2)

    # delete one: its confirm page, then back to the same filtered list
    page.locator(f"#query-{made['lemon'].pk}").get_by_role("link", name="Delete").click()
    expect(page.locator("h1")).to_have_text("Delete this search?")
    expect(page.locator(".confirm-panel")).to_contain_text("“lemon”")
    screenshots(page, "history-delete-one-nojs")
    assert SearchQuery.objects.filter(pk=made["lemon"].pk).exists()
    page.get_by_role("button", name="Delete this search").click()
    expect(page).to_have_url(f"{live_server.url}/history/?q=lemon&kind=&class_filter=")
    expect(page.locator("#history tbody tr")).to_have_count(1)
    expect(page.locator("#messages")).to_contain_text("The search was deleted.")

    # from a query's own page: the confirm page, whose Cancel goes back to the query
    page.goto(f"{live_server.url}/history/{made['cat'].pk}/")
    page.get_by_role("link", name="Delete from history").click()
    expect(page.locator("h1")).to_have_text("Delete this search?")
    page.get_by_role("link", name="Cancel").click()
    expect(page).to_have_url(f"{live_server.url}/history/{made['cat'].pk}/")
    assert SearchQuery.objects.filter(pk=made["cat"].pk).exists()

    # delete all: a page says how many go; Cancel leaves them, Delete removes them
    page.goto(f"{live_server.url}/history/")
    page.get_by_role("link", name="Delete all history…").click()
    expect(page).to_have_url(f"{live_server.url}/history/delete/")
    expect(page.locator("h1")).to_have_text("Delete all your history?")
    expect(page.locator(".confirm-panel")).to_contain_text("3 searches will be deleted")
    screenshots(page, "history-delete-all-nojs")
    page.get_by_role("link", name="Cancel").click()
    expect(page).to_have_url(f"{live_server.url}/history/")
    expect(page.locator("#history tbody tr")).to_have_count(3)
    page.get_by_role("link", name="Delete all history…").click()
    page.get_by_role("button", name="Delete all history").click()
    expect(page.locator("#messages")).to_contain_text("Your history was deleted: 3 searches.")
    assert SearchQuery.objects.filter(user=user).count() == 0

    # the token: its confirm page
    page.goto(f"{live_server.url}/accounts/profile/")
    old = Token.objects.get(user=user).key
    page.get_by_role("link", name="Regenerate token…").click()
    expect(page.locator("h1")).to_have_text("Regenerate your API token?")
    screenshots(page, "account-token-confirm-nojs")
    page.get_by_role("button", name="Regenerate token").click()
    expect(page).to_have_url(f"{live_server.url}/accounts/profile/")
    assert Token.objects.get(user=user).key != old
    context.close()
