"""Browsing the collection in a real browser: Collections -> a class -> "Load more" -> an
image's page -> More like this; an image opened from results (?q=) -> Describe; and the same
pages without JavaScript."""

from __future__ import annotations

import re
import shutil
from datetime import timedelta

import pytest
from django.utils import timezone

from search.catalog.counts import refresh_counts
from search.catalog.models import CollectionSync, Image, ImageClass
from search.descriptions.models import Description
from search.queries.models import SearchQuery
from tests.browser.helpers import PASSWORD, log_in, log_in_new_user, screenshots

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

EXTRA = 30  # lemon gets 8 + 30 = 38 images: a page of 24, then 14 more


def more_lemons(root) -> ImageClass:
    """Copies of a lemon image on disk and in the database, so the class has two pages."""
    lemon = ImageClass.objects.get(name="lemon")
    model = Image.objects.filter(image_class=lemon).order_by("pk").first()
    folder = (root / model.path).parent
    rows = []
    for k in range(EXTRA):
        name = f"copy_{k}.JPEG"
        shutil.copyfile(root / model.path, folder / name)
        rows.append(
            Image(
                dataset=model.dataset,
                split="train",
                image_class=lemon,
                path=f"{model.path.rsplit('/', 1)[0]}/{name}",
                width=64,
                height=64,
                mode="RGB",
            )
        )
    Image.objects.bulk_create(rows)
    refresh_counts()
    return lemon


def synced_and_scheduled(dataset) -> None:
    """A sync that ended an hour ago, and the next one of its schedule."""
    now = timezone.now()
    CollectionSync.objects.create(
        dataset=dataset, index_name="tiny", trigger="worker", status="done", every_minutes=60,
        images_added=3, images_changed=1, images_missing=2, vectors_embedded=4,
        vectors_reused=26, started_at=now - timedelta(minutes=61),
        finished_at=now - timedelta(minutes=60),
    )  # fmt: skip
    CollectionSync.objects.create(
        dataset=dataset, index_name="tiny", trigger="worker", every_minutes=60,
        run_after=now + timedelta(minutes=58),
    )  # fmt: skip


def pictures_loaded(page) -> None:
    """Every image of the page loaded (lazy ones too), so the screenshots show them."""
    page.evaluate("() => document.querySelectorAll('img').forEach(i => { i.loading = 'eager'; })")
    page.wait_for_function("() => [...document.images].every(i => i.complete)")


def loaded_width(locator) -> int:
    return locator.evaluate("img => img.complete ? img.naturalWidth : 0")


def test_collections_class_image_and_more_like_this(
    page, live_server, search_index, django_user_model, csp_violations
):
    from playwright.sync_api import expect

    lemon = more_lemons(search_index)
    log_in_new_user(page, live_server, django_user_model, "lina")

    # Collections: a card per dataset, with its last sync and the next one; the filter box
    # narrows the class list
    synced_and_scheduled(lemon.dataset)
    page.goto(f"{live_server.url}/collections/")
    card = page.locator("section.dataset")
    expect(card).to_have_count(1)
    expect(card.locator("h2")).to_have_text("tiny-imagenet-200")
    expect(card.locator(".sync-status")).to_contain_text("3 added, 1 changed, 2 gone")
    expect(card.locator(".sync-status")).to_contain_text("Synced every 60 minutes.")
    pictures_loaded(page)
    screenshots(page, "catalog-collections")
    page.set_extra_http_headers({"Accept-Language": "id-ID"})
    page.goto(f"{live_server.url}/collections/")
    expect(card.locator(".sync-status")).to_contain_text("3 ditambahkan, 1 berubah, 2 hilang")
    screenshots(page, "catalog-collections-synced-id")
    page.set_extra_http_headers({"Accept-Language": "en"})
    page.goto(f"{live_server.url}/collections/")
    classes = card.locator("ul.classes > li")
    expect(classes).to_have_count(4)
    page.get_by_label("Find a class").fill("LEM")
    expect(classes.filter(visible=True)).to_have_count(1)
    expect(classes.filter(visible=True)).to_contain_text("lemon")
    page.get_by_label("Find a class").fill("no such thing")
    expect(page.get_by_text("No class of tiny-imagenet-200 matches.")).to_be_visible()
    page.get_by_label("Find a class").fill("")
    expect(classes.filter(visible=True)).to_have_count(4)
    card.get_by_role("link", name="lemon").click()

    # the class page: 24 images, then "Show the next 14" appends them and takes the focus
    expect(page).to_have_url(f"{live_server.url}/classes/{lemon.pk}/")
    expect(page.locator("h1")).to_have_text("lemon")
    grid = page.locator("ol.image-grid > li:not(.load-more)")
    expect(grid).to_have_count(24)
    assert loaded_width(grid.first.locator("img")) == 160
    pictures_loaded(page)
    screenshots(page, "catalog-class")
    page.get_by_role("link", name="Show the next 14 images").click()
    expect(grid).to_have_count(38)
    expect(page).to_have_url(f"{live_server.url}/classes/{lemon.pk}/")  # appended in place
    expect(page.get_by_role("link", name="Show the next")).to_have_count(0)
    expect(grid.nth(24).locator("a")).to_be_focused()
    pictures_loaded(page)
    screenshots(page, "catalog-class-more")

    # an image's page: large, smoothly upscaled, with its class and what to do next
    grid.nth(2).locator("a").click()
    third = Image.objects.filter(image_class=lemon).order_by("pk")[2]
    expect(page).to_have_url(f"{live_server.url}/images/{third.pk}/")
    expect(page.locator("h1")).to_have_text("lemon")
    large = page.locator(".image-large img")
    expect(large).to_be_visible()
    assert loaded_width(large) == 320  # the 1x source of a 64 px image, resampled
    expect(page.get_by_text("3 of 38 in lemon")).to_be_visible()
    pictures_loaded(page)
    screenshots(page, "catalog-image")
    page.get_by_role("link", name="Browse lemon").click()
    expect(page).to_have_url(f"{live_server.url}/classes/{lemon.pk}/")
    page.go_back()

    page.get_by_role("button", name="More like this").click()
    expect(page).to_have_url(re.compile(r"/history/\d+/$"))
    query = SearchQuery.objects.get(user__username="lina", kind="similar")
    expect(page).to_have_url(f"{live_server.url}/history/{query.pk}/")
    assert query.source_image_id == third.pk
    expect(page.locator("#results .result").first).to_be_visible()
    pictures_loaded(page)
    screenshots(page, "catalog-more-like-this")
    assert csp_violations == []


def test_a_running_sync_updates_itself_on_the_collections_page(
    page, live_server, search_index, django_user_model, csp_violations
):
    from playwright.sync_api import expect

    log_in_new_user(page, live_server, django_user_model, "sari")
    dataset = ImageClass.objects.get(name="lemon").dataset
    sync = CollectionSync.objects.create(
        dataset=dataset, index_name="tiny", trigger="worker", status="running",
        started_at=timezone.now(), progress={"step": "embed", "done": 3, "total": 12},
    )  # fmt: skip
    page.goto(f"{live_server.url}/collections/")
    status = page.locator(".sync-status")
    expect(status).to_contain_text("Embedding the images: 3 of 12")

    CollectionSync.objects.filter(pk=sync.pk).update(
        progress={"step": "embed", "done": 9, "total": 12}
    )
    expect(status).to_contain_text("Embedding the images: 9 of 12", timeout=10_000)  # polled
    screenshots(page, "catalog-collections-syncing")
    page.set_extra_http_headers({"Accept-Language": "id-ID"})
    page.goto(f"{live_server.url}/collections/")
    expect(status).to_contain_text("Membuat embedding gambar: 9 dari 12")
    screenshots(page, "catalog-collections-syncing-id")

    CollectionSync.objects.filter(pk=sync.pk).update(
        status="done", finished_at=timezone.now(), images_added=12, vectors_embedded=12
    )
    expect(status).to_contain_text("12 di-embed", timeout=10_000)  # the ended sync, in place
    expect(status).not_to_have_attribute("hx-trigger", re.compile(".*"))  # and no more polls
    assert csp_violations == []


def test_an_image_opened_from_results_can_be_described_there(
    page, live_server, search_index, django_user_model, csp_violations
):
    from playwright.sync_api import expect

    from search.queries.services import text_search

    user = log_in_new_user(page, live_server, django_user_model, "mira")
    query = text_search(user=user, text="lemon", top_k=5)
    image = query.results.get(rank=1).image
    page.goto(f"{live_server.url}/images/{image.pk}/?q={query.pk}")
    expect(page.get_by_role("link", name="← Back to results")).to_have_attribute(
        "href", f"/history/{query.pk}/"
    )
    pictures_loaded(page)
    screenshots(page, "catalog-image-from-results")

    page.get_by_role("button", name="Describe").click()
    card = page.locator("#describe-panel article.description")
    expect(card).to_have_count(1)
    expect(card).to_contain_text(image.image_class.name)  # the card of this image
    expect(card).to_be_in_viewport()
    description = Description.objects.get(query=query, image=image)
    expect(card).to_have_attribute("id", f"description-{description.pk}")
    expect(page).to_have_url(f"{live_server.url}/images/{image.pk}/?q={query.pk}")
    pictures_loaded(page)
    screenshots(page, "catalog-image-described")

    # opened again later, the page lists the description among the user's own
    page.reload()
    expect(page.locator(".image-descriptions article.description")).to_have_count(1)
    page.get_by_role("link", name="← Back to results").click()
    expect(page).to_have_url(f"{live_server.url}/history/{query.pk}/")
    assert csp_violations == []


def test_the_catalog_pages_work_without_javascript(
    browser, live_server, search_index, django_user_model
):
    from playwright.sync_api import expect

    from search.queries.services import text_search

    lemon = more_lemons(search_index)
    user = django_user_model.objects.create_user("noor", password=PASSWORD)
    query = text_search(user=user, text="lemon", top_k=5)
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    log_in(page, live_server, "noor")

    page.goto(f"{live_server.url}/collections/")
    expect(page.get_by_label("Find a class")).to_be_hidden()  # a script's, hidden without one
    expect(page.locator("ul.classes > li")).to_have_count(4)
    page.get_by_role("link", name="lemon").click()
    page.get_by_role("link", name="Show the next 14 images").click()
    expect(page).to_have_url(f"{live_server.url}/classes/{lemon.pk}/?page=2")
    expect(page.locator("ol.image-grid > li")).to_have_count(14)
    page.wait_for_load_state("load")  # without scripts no image is lazy: all have loaded
    screenshots(page, "catalog-class-page-2-no-js")
    page.get_by_role("link", name="← Previous images").click()
    expect(page.locator("ol.image-grid > li:not(.load-more)")).to_have_count(24)

    image = query.results.get(rank=1).image
    page.goto(f"{live_server.url}/images/{image.pk}/?q={query.pk}")
    page.get_by_role("button", name="Describe").click()  # a plain post: to the description page
    description = Description.objects.get(query=query, image=image)
    expect(page).to_have_url(f"{live_server.url}/descriptions/{description.pk}/")
    screenshots(page, "catalog-described-no-js")
    context.close()


def test_the_catalog_pages_in_bahasa_indonesia(
    page, live_server, search_index, django_user_model, csp_violations
):
    """With the page language Indonesian (the language cookie), every class is named in
    Indonesian; the filter box finds a class by a name in either language. Located by
    structure, not by the interface's words, which the Indonesian catalogue translates."""
    from django.conf import settings
    from playwright.sync_api import expect

    log_in_new_user(page, live_server, django_user_model, "sari")
    page.context.add_cookies(
        [{"name": settings.LANGUAGE_COOKIE_NAME, "value": "id", "url": live_server.url}]
    )
    cat = ImageClass.objects.get(wnid="n02124075")

    page.goto(f"{live_server.url}/collections/")
    classes = page.locator("section.dataset ul.classes > li")
    # by hand from search/catalog/data/tinyimagenet-200-id.tsv, in Indonesian order
    expect(classes.locator("a")).to_have_text(
        ["anjing herder", "gulungan pancing", "kucing mesir", "lemon"]
    )
    pictures_loaded(page)
    screenshots(page, "catalog-collections-id")
    box = page.locator(".class-filter input[type=search]")
    for typed in ("MESIR", "egyptian", "n02124075"):  # Indonesian, English, the wnid
        box.fill(typed)
        expect(classes.filter(visible=True)).to_have_count(1)
        expect(classes.filter(visible=True)).to_contain_text("kucing mesir")
    box.fill("alsatian")  # an English synonym of the German shepherd
    expect(classes.filter(visible=True)).to_have_text(["anjing herder 8"])
    box.fill("")
    classes.locator("a", has_text="kucing mesir").click()

    expect(page).to_have_url(f"{live_server.url}/classes/{cat.pk}/")
    expect(page.locator("h1")).to_have_text("kucing mesir")
    expect(page.locator(".synonyms")).to_contain_text("mau mesir")
    expect(page.locator(".other-language")).to_contain_text("Egyptian cat")
    pictures_loaded(page)
    screenshots(page, "catalog-class-id")

    page.locator("ol.image-grid > li a").first.click()
    expect(page.locator("h1")).to_have_text("kucing mesir")
    expect(page.locator(".breadcrumbs li").nth(1)).to_have_text("kucing mesir")
    expect(page.locator(".image-large img")).to_have_attribute("alt", "kucing mesir")
    pictures_loaded(page)
    screenshots(page, "catalog-image-id")
    assert csp_violations == []
