"""A person searches in Bahasa Indonesia in a real browser: "cari kucing mesir" is read as
Indonesian and searched for "kucing mesir" with the multilingual encoder, and the header says
so; one click reads it as English instead; the query language menu is kept; and with the
Indonesian language cookie the classes are named in Indonesian (the rest of the page stays
partly English until the catalogue is written)."""

from __future__ import annotations

import pytest
from django.conf import settings

from search.catalog.models import ImageClass
from search.queries.models import SearchQuery
from tests.browser.helpers import log_in_new_user, screenshots
from tests.search.test_search_language import INDONESIAN_NAMES

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_an_indonesian_query_says_how_it_was_read_and_reads_again_as_english(
    page, live_server, search_index, multilingual_settings, django_user_model, csp_violations
):
    from playwright.sync_api import expect

    for image_class in ImageClass.objects.all():
        name = INDONESIAN_NAMES[image_class.wnid]
        image_class.translations = {"id": {"name": name, "synonyms": [name], "source": "test"}}
        image_class.save()
    user = log_in_new_user(page, live_server, django_user_model, "sari")

    # detected: Indonesian, the request word left out, the multilingual encoder (HTMX swap)
    expect(page.locator("#id_language")).to_have_value("")
    page.fill("#id_text", "cari kucing mesir")
    page.get_by_role("button", name="Search", exact=True).click()
    reading = page.locator("#query-reading .reading-text")
    expect(reading).to_have_text(
        "Read as Bahasa Indonesia (detected) · searched “kucing mesir” with the multilingual "
        "text encoder",
    )
    detected = SearchQuery.objects.get(user=user)
    expect(page).to_have_url(f"{live_server.url}/history/{detected.pk}/")
    screenshots(page, "search-language-detected")

    # wrong detection is one click away: the same text, read as English, on its own page
    page.get_by_role("button", name="Search again as English").click()
    expect(reading).to_have_text(
        "Read as English (chosen) · searched “kucing mesir” with CLIP's English text encoder",
    )
    english = SearchQuery.objects.filter(user=user).order_by("-pk").first()
    assert (english.text, english.language, english.language_chosen) == (
        "cari kucing mesir",
        "en",
        True,
    )
    expect(page).to_have_url(f"{live_server.url}/history/{english.pk}/")
    expect(page.get_by_role("button", name="Search again as Bahasa Indonesia")).to_be_visible()
    screenshots(page, "search-language-english")

    # the chosen language stays for the next search, and across an HTMX search
    page.get_by_role("link", name="New search").click()
    expect(page.locator("#id_language")).to_have_value("en")
    page.locator("#id_language").select_option("id")
    page.fill("#id_text", "school bus")
    page.get_by_role("button", name="Search", exact=True).click()
    expect(reading).to_have_text(
        "Read as Bahasa Indonesia (chosen) · searched with the multilingual text encoder",
    )
    expect(page.locator("#id_language")).to_have_value("id")
    screenshots(page, "search-language-chosen")

    # the page in Indonesian: the classes by their Indonesian names
    page.context.add_cookies(
        [{"name": settings.LANGUAGE_COOKIE_NAME, "value": "id", "url": live_server.url}]
    )
    page.goto(f"{live_server.url}/history/{detected.pk}/")
    names = page.locator("#results .result-name")
    expect(names.first).to_be_visible()
    shown = {text.split(" ", 1)[1] for text in names.all_inner_texts()}  # "#1 kucing mesir"
    assert shown
    assert shown <= set(INDONESIAN_NAMES.values())
    screenshots(page, "search-language-page-id")
    page.goto(f"{live_server.url}/history/")
    expect(page.locator("#history .language-badge").first).to_be_visible()
    screenshots(page, "search-language-history-id")
    assert csp_violations == []
