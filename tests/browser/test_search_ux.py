"""The search page in Chromium as people use it: the image chip, the text + image rule, the
keyboard alone, no JavaScript at all, one description card per result, load more, and the
minimum similarity. Every state is screenshot at a laptop's and a phone's width."""

from __future__ import annotations

import pytest
from PIL import Image as PILImage

from search.catalog.models import Image
from search.queries import selectors
from search.queries.models import SearchQuery
from search.queries.services import TEXT_AND_IMAGE
from tests.browser.helpers import log_in_new_user, screenshots

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def upload_file(search_index, tmp_path):
    """A PNG of a train image (which an image search finds first)."""
    target = Image.objects.filter(split="train").order_by("id")[3]
    path = tmp_path / "my photo.png"
    PILImage.open(search_index / target.path).convert("RGB").save(path)
    return path


@pytest.fixture
def pages_of_four(monkeypatch):
    monkeypatch.setattr(selectors, "RESULTS_PAGE_SIZE", 4)


def search_button(page):
    return page.get_by_role("button", name="Search", exact=True)


def test_the_chosen_image_is_a_chip_cleared_after_the_search(
    page, live_server, upload_file, django_user_model, csp_violations
):
    from playwright.sync_api import expect

    log_in_new_user(page, live_server, django_user_model, "ida")
    page.set_input_files("#id_image", str(upload_file))
    chip = page.locator("#image-chip")
    expect(chip).to_be_visible()
    expect(chip).to_contain_text("my photo.png")
    preview = page.locator("#image-chip-preview")
    assert preview.get_attribute("src").startswith("blob:")
    assert preview.evaluate("img => img.complete && img.naturalWidth") > 0
    screenshots(page, "search-image-chip")

    search_button(page).click()
    expect(page.locator("#results h2")).to_contain_text("Your image")
    expect(chip).to_be_hidden()  # cleared: the next search is not this image again
    assert page.locator("#id_image").evaluate("input => input.files.length") == 0
    screenshots(page, "search-image-results")

    page.fill("#id_text", "school bus")
    page.press("#id_text", "Enter")
    expect(page.locator("#results h2")).to_have_text("“school bus”")
    kinds = list(SearchQuery.objects.order_by("pk").values_list("kind", "text"))
    assert kinds == [("image", ""), ("text", "school bus")]
    screenshots(page, "search-text-after-image")

    # the chip's Remove button takes the image back before any search
    page.set_input_files("#id_image", str(upload_file))
    expect(chip).to_be_visible()
    page.get_by_role("button", name="Remove image").click()
    expect(chip).to_be_hidden()
    expect(page.locator("#id_text")).to_be_focused()
    assert page.locator("#id_image").evaluate("input => input.files.length") == 0
    assert csp_violations == []


def test_a_text_with_an_image_is_refused_with_the_rule(
    page, live_server, upload_file, django_user_model, csp_violations
):
    from playwright.sync_api import expect

    log_in_new_user(page, live_server, django_user_model, "jon")
    page.set_input_files("#id_image", str(upload_file))
    page.fill("#id_text", "school bus")
    note = page.locator("#text-and-image-note")
    expect(note).to_have_text(str(TEXT_AND_IMAGE))  # said before searching...
    screenshots(page, "search-text-and-image-note")
    search_button(page).click()
    expect(page.locator("#results .error")).to_contain_text(str(TEXT_AND_IMAGE))  # ...and after
    expect(page.locator("#image-chip")).to_be_visible()  # nothing ran: the image stays chosen
    assert not SearchQuery.objects.exists()
    screenshots(page, "search-text-and-image-refused")
    assert csp_violations == []


def test_keyboard_only_search(page, live_server, search_index, django_user_model, csp_violations):
    from playwright.sync_api import expect

    log_in_new_user(page, live_server, django_user_model, "kim")
    expect(page.locator("#id_text")).to_be_focused()  # autofocus: type at once
    screenshots(page, "search-page")

    # from another page by keys alone: the first Tab is the skip link, the next the brand
    page.goto(f"{live_server.url}/history/")
    page.keyboard.press("Tab")
    expect(page.locator(".skip-link")).to_be_focused()
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    expect(page.locator("h1")).to_have_text("Search")
    expect(page.locator("#id_text")).to_be_focused()

    # the skip link (the first Tab of a page) jumps past the navigation to the box
    page.focus(".skip-link")
    page.keyboard.press("Enter")
    page.keyboard.press("Tab")
    expect(page.locator("#id_text")).to_be_focused()
    page.keyboard.type("lemon")
    page.keyboard.press("Enter")
    heading = page.locator("#results-title")
    expect(heading).to_have_text("“lemon”")
    expect(heading).to_be_focused()
    expect(page.locator("#results-status")).to_have_text("10 results for “lemon”.")
    screenshots(page, "search-keyboard-results")
    assert csp_violations == []


def test_without_javascript_search_load_more_and_describe_work(
    browser, live_server, search_index, django_user_model, pages_of_four
):
    from playwright.sync_api import expect

    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in_new_user(page, live_server, django_user_model, "lea")
    page.fill("#id_text", "lemon")
    page.fill("#id_class_filter", "unicorn")
    search_button(page).click()
    expect(page.locator("#results .error")).to_contain_text("There is no class called “unicorn”.")
    screenshots(page, "nojs-search-error")

    page.fill("#id_class_filter", "")
    search_button(page).click()  # a plain form post, then the stored results
    query = SearchQuery.objects.get()
    expect(page).to_have_url(f"{live_server.url}/history/{query.pk}/")
    expect(page.locator("#results .result")).to_have_count(4)
    screenshots(page, "nojs-results")

    page.get_by_role("link", name="Load more results").click()
    expect(page).to_have_url(f"{live_server.url}/history/{query.pk}/?page=2#result-5")
    expect(page.locator("#results .result")).to_have_count(8)
    screenshots(page, "nojs-results-more")

    page.locator("#result-2").get_by_role("button", name="Describe").click()
    expect(page.locator("h1")).to_have_text("Description")
    expect(page.locator('meta[http-equiv="refresh"]')).to_have_attribute("content", "3")
    expect(page.locator("article.description")).to_contain_text("Waiting for its turn")
    screenshots(page, "nojs-description")
    context.close()


def test_describe_twice_on_one_result_gives_one_card_in_view(
    page, live_server, search_index, django_user_model, csp_violations
):
    from playwright.sync_api import expect

    log_in_new_user(page, live_server, django_user_model, "max")
    page.set_viewport_size({"width": 1280, "height": 600})
    page.fill("#id_text", "lemon")
    page.fill("#id_top_k", "20")
    search_button(page).click()
    expect(page.locator("#results .result")).to_have_count(20)
    result = page.locator("#result-18")
    describe = result.get_by_role("button", name="Describe")
    describe.click()
    card = result.locator("article.description")
    expect(card).to_be_visible()
    expect(card).to_be_in_viewport()
    page.mouse.wheel(0, -3000)  # scrolled away; Describe again brings the same card back
    describe.scroll_into_view_if_needed()
    describe.click()
    expect(page.locator("article.description")).to_have_count(1)
    expect(card).to_be_focused()
    expect(card).to_be_in_viewport()
    screenshots(page, "search-describe-card")
    query = SearchQuery.objects.get()
    assert query.descriptions.count() == 1
    assert csp_violations == []


def test_load_more_appends_the_next_results(
    page, live_server, search_index, django_user_model, pages_of_four, csp_violations
):
    from playwright.sync_api import expect

    log_in_new_user(page, live_server, django_user_model, "nia")
    page.fill("#id_text", "lemon")
    search_button(page).click()
    results = page.locator("#results .result")
    expect(results).to_have_count(4)
    expect(page.locator("#load-more")).to_contain_text("Showing 4 of 10 results.")
    page.get_by_role("link", name="Load more results").click()
    expect(results).to_have_count(8)
    expect(page.locator("#result-5 a").first).to_be_focused()
    screenshots(page, "search-load-more")
    page.get_by_role("link", name="Load more results").click()
    expect(results).to_have_count(10)
    expect(page.locator("#load-more")).to_have_count(0)
    ranks = results.evaluate_all("items => items.map(li => li.id)")
    assert ranks == [f"result-{n}" for n in range(1, 11)]
    assert csp_violations == []


def test_min_similarity_and_the_class_picker(
    page, live_server, search_index, django_user_model, csp_violations
):
    from playwright.sync_api import expect

    log_in_new_user(page, live_server, django_user_model, "oli")
    page.fill("#id_text", "lemon")
    search_button(page).click()
    expect(page.locator("#results .result")).to_have_count(10)
    scores = sorted(SearchQuery.objects.get().results.values_list("score", flat=True))
    percent = int(scores[len(scores) // 2] * 100)
    expected = sum(score >= percent / 100 for score in scores)

    page.fill("#id_min_similarity", str(percent))
    search_button(page).click()
    expect(page.locator("#results .result")).to_have_count(expected)
    expect(page.locator(".results-summary")).to_contain_text(f"at least {percent}% similar")
    screenshots(page, "search-min-similarity")

    page.fill("#id_min_similarity", "")
    page.fill("#id_class_filter", "Lem")
    expect(page.locator("#class-options option[value='lemon']")).to_have_count(1)
    page.fill("#id_class_filter", "lemon")
    search_button(page).click()
    expect(page.locator(".results-summary")).to_have_text("5 results in the class lemon.")
    screenshots(page, "search-class-filter")
    last = SearchQuery.objects.order_by("-pk").first()
    assert last.filters == {"class": "n07749582"}
    assert csp_violations == []
