"""The whole flow in Bahasa Indonesia, as an Indonesian student meets it: a browser that asks
for Indonesian gets the landing page in it, signs up, searches "cari kucing mesir", has a
result described (the tiny Qwen2-VL, through the real worker) and finds both in the history.

What is asserted in Indonesian comes from the committed catalogue
(locale/id/LC_MESSAGES/django.po) and the class-name table, read independently here."""

from __future__ import annotations

import re

import polib
import pytest
from django.conf import settings
from django.core.management import call_command

from search.catalog.models import ImageClass
from search.descriptions.models import Description
from search.queries.models import SearchQuery
from tests.browser.helpers import screenshots

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


@pytest.fixture
def browser_context_args(browser_context_args):
    """A browser set to Indonesian: it sends Accept-Language: id-ID."""
    return {**browser_context_args, "locale": "id-ID"}


@pytest.fixture(scope="module")
def indonesian() -> dict[str, str]:
    """msgid -> Indonesian msgstr of the committed catalogue."""
    catalogue = polib.pofile(str(settings.LOCALE_PATHS[0] / "id/LC_MESSAGES/django.po"))
    return {e.msgid: e.msgstr for e in catalogue if e.msgstr and not e.msgctxt}


def test_search_describe_and_history_in_indonesian(
    page, live_server, search_index, multilingual_settings, vlm_settings, indonesian,
    csp_violations,
):  # fmt: skip
    from playwright.sync_api import expect

    vlm_settings.TINYRAG_VLM_MIN_NEW_TOKENS = 4  # a random-weight model may stop at once

    # a visitor whose browser asks for Indonesian gets the landing page in Indonesian
    page.goto(f"{live_server.url}/")
    assert page.locator("html").get_attribute("lang") == "id"
    expect(page.locator("h1")).to_have_text(indonesian["Find images by what is in them"])
    screenshots(page, "id-flow-landing")

    page.get_by_role("link", name=indonesian["Create an account"]).click()
    page.fill("#id_username", "siti")
    page.fill("#id_password1", "kata-sandi-yang-panjang-42")
    page.fill("#id_password2", "kata-sandi-yang-panjang-42")
    page.get_by_role("button", name=indonesian["Create account"]).click()
    expect(page.locator("#id_text")).to_be_visible()
    screenshots(page, "id-flow-search")

    # search: read as Indonesian, the request word stripped, the multilingual route
    page.fill("#id_text", "cari kucing mesir")
    page.locator("#id_text").press("Enter")
    expect(page.locator("#results .result").first).to_be_visible()
    query = SearchQuery.objects.get(user__username="siti")
    assert (query.language, query.language_chosen) == ("id", False)
    assert (query.route, query.embedded_text) == ("multilingual", "kucing mesir")
    header = page.locator("#results")
    expect(header).to_contain_text(indonesian["Read as %(language)s (detected)"].split("%")[0])
    expect(header).to_contain_text("kucing mesir")
    # every result names its class in Indonesian, from the class-name table
    cards = page.locator("#results .result")
    first_class = query.results.get(rank=1).image.image_class
    assert first_class.translations["id"]["name"] == first_class.name_in("id")
    expect(cards.first).to_contain_text(first_class.name_in("id"))
    screenshots(page, "id-flow-results")

    # describe the first result: written in Indonesian by the worker, shown on the card
    cards.first.get_by_role("button", name=indonesian["Describe"]).click()
    card = cards.first.locator("article.description")
    expect(card).to_have_count(1)
    description = Description.objects.get(query=query)
    assert description.language == "id"
    assert "bahasa Indonesia" in description.prompt
    assert first_class.name_in("id") in description.prompt or any(
        ImageClass.objects.get(wnid=c["wnid"], dataset=first_class.dataset).name_in("id")
        in description.prompt
        for c in description.context["candidates"]
    )
    call_command("db_worker", "--batch", "--no-startup-delay", "--interval", "0", verbosity=0)
    description.refresh_from_db()
    assert description.status == "done", description.error
    expect(card.locator("[lang=id]")).to_have_text(re.compile(r"\S"))  # polled into place
    screenshots(page, "id-flow-described")

    # history: the search, in Indonesian, with its language badge
    page.get_by_role("link", name=indonesian["History"]).click()
    expect(page.locator("h1")).to_have_text(indonesian["History"])
    rows = page.locator("#history tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("cari kucing mesir")
    screenshots(page, "id-flow-history")
    assert csp_violations == []
