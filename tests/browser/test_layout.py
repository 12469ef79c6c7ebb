"""The site's layout in a real browser: every page fits a phone (390 px) and a laptop, the
navigation collapses behind a Menu button on a phone and stays usable without JavaScript,
and the first Tab reaches a skip link past it."""

from __future__ import annotations

import pytest

from tests.browser.helpers import (
    PASSWORD,
    PHONE,
    horizontal_overflow,
    log_in,
    log_in_new_user,
    screenshots,
)

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

SIGNED_OUT_PAGES = {
    "landing": "/",
    "login": "/accounts/login/",
    "signup": "/accounts/signup/",
    "not-found-signed-out": "/no/such/page/",
}
SIGNED_IN_PAGES = {
    "search": "/",
    "history-empty": "/history/",
    "collections": "/collections/",
    "evaluation": "/evaluation/",
    "account": "/accounts/profile/",
    "password-change": "/accounts/password/change/",
    "not-found": "/no/such/page/",
    "api-docs": "/api/docs/",
}


def test_every_page_fits_a_phone_and_a_laptop(
    page, live_server, search_index, django_user_model, csp_violations
):
    for name, path in SIGNED_OUT_PAGES.items():
        page.goto(f"{live_server.url}{path}")
        screenshots(page, name)  # fails on a page wider than the viewport
    log_in_new_user(page, live_server, django_user_model, "hana", is_staff=True)
    for name, path in SIGNED_IN_PAGES.items():
        page.goto(f"{live_server.url}{path}")
        if name == "api-docs":
            page.locator(".swagger-ui .opblock").first.wait_for()
        screenshots(page, name)
    assert csp_violations == []


def test_on_a_phone_the_menu_button_opens_and_closes_the_navigation(
    page, live_server, search_index, django_user_model
):
    from playwright.sync_api import expect

    log_in_new_user(page, live_server, django_user_model, "ines")
    page.set_viewport_size(PHONE)
    page.goto(f"{live_server.url}/history/")
    menu = page.get_by_role("button", name="Menu")
    history = page.locator("#site-nav").get_by_role("link", name="History")
    expect(menu).to_be_visible()
    expect(menu).to_have_attribute("aria-expanded", "false")
    expect(history).to_be_hidden()
    menu.click()
    expect(menu).to_have_attribute("aria-expanded", "true")
    expect(history).to_be_visible()
    expect(history).to_have_attribute("aria-current", "page")
    page.screenshot(path=str(_artifact("menu-open-390.png")), full_page=True)
    page.keyboard.press("Escape")
    expect(history).to_be_hidden()
    expect(menu).to_be_focused()
    assert horizontal_overflow(page) <= 0

    page.set_viewport_size({"width": 1280, "height": 900})  # a laptop: no Menu, links in a row
    expect(menu).to_be_hidden()
    expect(history).to_be_visible()


def test_without_javascript_the_phone_navigation_is_open_and_wraps(
    browser, live_server, search_index, django_user_model
):
    from playwright.sync_api import expect

    django_user_model.objects.create_user("jo", password=PASSWORD)
    context = browser.new_context(java_script_enabled=False, viewport=PHONE)
    page = context.new_page()
    log_in(page, live_server, "jo")
    page.goto(f"{live_server.url}/collections/")
    expect(page.get_by_role("button", name="Menu")).to_be_hidden()
    nav = page.locator("#site-nav")
    for link in ("Search", "History", "Collections", "Evaluation"):
        expect(nav.get_by_role("link", name=link)).to_be_visible()
    expect(nav.get_by_role("button", name="Log out")).to_be_visible()
    assert horizontal_overflow(page) <= 0
    page.screenshot(path=str(_artifact("no-js-nav-390.png")), full_page=True)
    context.close()


def test_the_first_tab_is_a_skip_link_to_the_page_content(
    page, live_server, search_index, django_user_model
):
    from playwright.sync_api import expect

    log_in_new_user(page, live_server, django_user_model, "kai")
    page.goto(f"{live_server.url}/collections/")
    page.keyboard.press("Tab")
    skip = page.get_by_role("link", name="Skip to content")
    expect(skip).to_be_focused()
    expect(skip).to_be_visible()  # shown while it has the focus
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()


def switch_language(page, code: str) -> None:
    """Choose a language in the header's switcher and press its button (a plain form post)."""
    switcher = page.locator("form.language-switcher")
    switcher.locator("select").select_option(code)
    with page.expect_navigation():
        switcher.get_by_role("button").click()


def test_the_language_switcher_keeps_the_page_and_fits_a_phone(
    page, live_server, django_user_model, csp_violations
):
    from playwright.sync_api import expect

    from tinyrag_site.models import AccountPreferences

    html = page.locator("html")
    page.goto(f"{live_server.url}/accounts/login/?next=/history/")
    expect(html).to_have_attribute("lang", "en")
    options = page.locator("#language-select option")
    expect(options).to_have_text(["English", "Bahasa Indonesia"])  # each in its own name
    screenshots(page, "language-login-en")
    switch_language(page, "id")
    assert page.url == f"{live_server.url}/accounts/login/?next=/history/"
    expect(html).to_have_attribute("lang", "id")
    expect(page.locator("#language-select")).to_have_value("id")
    screenshots(page, "language-login-id")
    page.goto(f"{live_server.url}/")
    expect(html).to_have_attribute("lang", "id")  # the cookie keeps it on every page
    screenshots(page, "language-landing-id")
    switch_language(page, "en")
    assert page.url == f"{live_server.url}/"
    expect(html).to_have_attribute("lang", "en")
    screenshots(page, "language-landing-en")

    user = log_in_new_user(page, live_server, django_user_model, "lina")
    page.goto(f"{live_server.url}/history/")
    screenshots(page, "language-history-en")
    # on a phone the switcher is in the menu, and fits it
    page.set_viewport_size(PHONE)
    page.get_by_role("button", name="Menu").click()
    switcher = page.locator("form.language-switcher")
    expect(switcher).to_be_visible()
    box = switcher.bounding_box()
    assert box is not None
    assert box["x"] >= 0
    assert box["x"] + box["width"] <= PHONE["width"]
    page.screenshot(path=str(_artifact("language-menu-open-390.png")), full_page=True)
    switch_language(page, "id")
    assert page.url == f"{live_server.url}/history/"
    expect(html).to_have_attribute("lang", "id")
    assert AccountPreferences.objects.get(user=user).language == "id"
    screenshots(page, "language-history-id")
    assert csp_violations == []


def test_without_javascript_the_switcher_is_a_plain_form(browser, live_server):
    from playwright.sync_api import expect

    context = browser.new_context(java_script_enabled=False, viewport=PHONE)
    page = context.new_page()
    page.goto(f"{live_server.url}/accounts/signup/")
    switch_language(page, "id")
    assert page.url == f"{live_server.url}/accounts/signup/"
    expect(page.locator("html")).to_have_attribute("lang", "id")
    assert horizontal_overflow(page) <= 0
    context.close()


def _artifact(name: str):
    from tests.browser.helpers import ARTIFACTS

    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS / name
