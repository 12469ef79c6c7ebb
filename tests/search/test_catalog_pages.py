"""The collection's pages: Collections (dataset cards, class lists, the index in words), a
class's page (paged grid, "Load more"), an image's page (More like this, Describe for the
signed-in user's own query, their own descriptions only)."""

from __future__ import annotations

import io
import re
from pathlib import Path

import pytest
from django.test import Client
from django.urls import reverse
from PIL import Image as PILImage

from search.catalog.models import Dataset, Image, ImageClass
from search.descriptions.models import Description
from search.queries.models import SearchQuery, SearchResult

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
ROOT = Path(__file__).resolve().parents[2]
GRID_LINK = re.compile(r'<li><a href="/images/(\d+)/"')


def html(response) -> str:
    assert response.status_code == 200, response.status_code
    return response.content.decode()


def class_named(name: str) -> ImageClass:
    return ImageClass.objects.get(name=name)


def add_images(image_class: ImageClass, count: int) -> list[int]:
    """`count` more rows of the class (their files need not exist: the pages only link)."""
    Image.objects.bulk_create(
        Image(
            dataset=image_class.dataset,
            split="train",
            image_class=image_class,
            path=f"train/{image_class.wnid}/extra_{k}.JPEG",
            width=64,
            height=64,
            mode="RGB",
        )
        for k in range(count)
    )
    return list(Image.objects.filter(image_class=image_class).values_list("pk", flat=True))


def a_query(user, images: list[Image], **fields) -> SearchQuery:
    """A stored text query of `user` whose results are `images` (as a search would save)."""
    query = SearchQuery.objects.create(
        user=user,
        kind="text",
        text="lemon",
        top_k=len(images),
        encoder="tiny-clip",
        index_name="tiny",
        duration_ms=1.0,
        **fields,
    )
    SearchResult.objects.bulk_create(
        SearchResult(query=query, rank=rank, image=image, score=0.5)
        for rank, image in enumerate(images, start=1)
    )
    return query


def a_description(query: SearchQuery, image: Image, text: str) -> Description:
    return Description.objects.create(
        query=query,
        image=image,
        image_key=f"image:{image.pk}",
        backend="transformers",
        model="Qwen/Qwen2-VL-2B-Instruct",
        prompt_version="rag-v1",
        context_mode="retrieved",
        status="done",
        text=text,
        tokens=3,
    )


# --- Collections ----------------------------------------------------------------------------


def test_collections_show_each_dataset_as_a_card_with_its_counts(auth_client, dataset_imported):
    page = html(auth_client.get(reverse("search:collections")))
    # the synthetic set: 4 classes x (5 train + 3 val) + 4 test = 36 images
    assert page.count('class="card dataset"') == 1
    assert '<h2 id="dataset-' in page
    assert ">tiny-imagenet-200</h2>" in page
    for label, value in [
        ("Images", 36),
        ("Classes", 4),
        ("Training", 20),
        ("Validation", 12),
        ("Test (no labels)", 4),
    ]:
        assert f"<dt>{label}</dt><dd>{value}</dd>" in page
    assert "<table" not in page


def test_the_class_list_is_sorted_for_people_and_links_to_class_pages(
    auth_client, dataset_imported
):
    dataset = Dataset.objects.get()
    for wnid, name in [("n00000001", "abacus"), ("n00000002", "Yorkshire terrier")]:
        ImageClass.objects.create(dataset=dataset, wnid=wnid, name=name, names=[name])
    page = html(auth_client.get(reverse("search:collections")))
    listed = re.findall(r'<a href="/classes/(\d+)/">([^<]+)</a> <span class="count">(\d+)', page)
    names = [name for _, name, _ in listed]
    # by hand: letters compared without their case ("Yorkshire" after "reel", "abacus" first)
    assert names == [
        "abacus",
        "Egyptian cat",
        "German shepherd",
        "lemon",
        "reel",
        "Yorkshire terrier",
    ]
    counts = {name: int(count) for _, name, count in listed}
    assert counts == {n: 8 for n in names} | {"abacus": 0, "Yorkshire terrier": 0}
    lemon = class_named("lemon")
    assert (str(lemon.pk), "lemon", "8") in listed
    assert '<details class="class-list" open>' in page  # six classes: shown open


def test_a_long_class_list_starts_collapsed_with_a_filter_box(auth_client, dataset_imported):
    dataset = Dataset.objects.get()
    ImageClass.objects.bulk_create(
        ImageClass(dataset=dataset, wnid=f"x{k:03}", name=f"class {k:03}", names=[f"class {k:03}"])
        for k in range(200)
    )
    page = html(auth_client.get(reverse("search:collections")))
    assert '<details class="class-list">' in page  # 204 classes: collapsed
    assert "Browse the 204 classes, A to Z" in page
    assert page.count('<li data-names="') == 204
    # the type-ahead box is there for scripts to show; without them it stays hidden
    assert re.search(r'<div class="class-filter" data-class-filter="classes-\d+" hidden>', page)


def test_collections_say_what_search_covers_in_words_without_a_model_path(
    auth_client, search_index, clip_settings
):
    page = html(auth_client.get(reverse("search:collections")))
    model = Path(clip_settings.TINYRAG_CLIP_MODEL)
    assert "You can search <strong>20 images</strong> from tiny-imagenet-200." in page
    assert f"matched by the model <strong>{model.name}</strong>" in page
    assert "The search index was last built on" in page
    assert str(model.parent) not in page
    assert 'class="card setup-step"' not in page  # nothing left to set up
    assert "-dimensional embeddings" not in page  # the index's internals are for staff


def test_staff_see_the_index_internals_on_collections(auth_client, user, search_index):
    user.is_staff = True
    user.save()
    page = html(auth_client.get(reverse("search:collections")))
    assert "Staff: index <strong>tiny</strong>: 20 images of tiny-imagenet-200" in page
    assert "-dimensional embeddings" in page


def test_before_the_index_is_built_collections_name_the_next_step(auth_client, dataset_imported):
    page = html(auth_client.get(reverse("search:collections")))
    assert 'class="card setup-step"' in page
    assert "the search index has not been built yet" in page
    assert "What search looks through" not in page
    assert 'class="card dataset"' in page  # the imported images are still shown


def test_with_nothing_imported_collections_show_the_first_step_only(auth_client):
    page = html(auth_client.get(reverse("search:collections")))
    assert "no images have been imported yet" in page
    assert 'class="card dataset"' not in page
    assert "download_dataset" not in page  # the old list of commands is gone


# --- a class's page -------------------------------------------------------------------------


def test_class_page_shows_the_name_synonyms_count_and_its_images(auth_client, dataset_imported):
    shepherd = class_named("German shepherd")
    page = html(auth_client.get(reverse("search:class", args=[shepherd.pk])))
    assert "<h1>German shepherd</h1>" in page
    assert "Also called: German shepherd dog, German police dog, alsatian." in page
    assert "8 images · tiny-imagenet-200 · n02106662" in page
    own = sorted(Image.objects.filter(image_class=shepherd).values_list("pk", flat=True))
    assert [int(pk) for pk in GRID_LINK.findall(page)] == own
    assert "Show the next" not in page  # one page holds them all


def test_class_pages_hold_24_images_and_link_to_the_next(auth_client, dataset_imported):
    lemon = class_named("lemon")
    ids = sorted(add_images(lemon, 50))  # 58 in all: pages of 24, 24, 10
    url = reverse("search:class", args=[lemon.pk])

    first = html(auth_client.get(url))
    assert [int(pk) for pk in GRID_LINK.findall(first)] == ids[:24]
    assert f'href="{url}?page=2"' in first
    assert f'hx-get="{url}?page=2"' in first
    assert "Show the next 24 images" in first
    assert "34 more to see" in first  # 58 - 24

    second = html(auth_client.get(url, {"page": 2}))  # without JavaScript: a whole page
    assert "<h1>lemon</h1>" in second
    assert [int(pk) for pk in GRID_LINK.findall(second)] == ids[24:48]
    assert "Images 25 to 48 of 58" in second
    assert f'href="{url}" rel="prev"' in second
    assert "Show the next 10 images" in second

    last = html(auth_client.get(url, {"page": 3}))
    assert [int(pk) for pk in GRID_LINK.findall(last)] == ids[48:]
    assert "Show the next" not in last


def test_load_more_returns_the_next_items_only(auth_client, dataset_imported):
    lemon = class_named("lemon")
    ids = sorted(add_images(lemon, 50))
    url = reverse("search:class", args=[lemon.pk])

    more = html(auth_client.get(url, {"page": 2}, **HTMX))
    assert "<html" not in more
    assert "<h1>" not in more
    assert [int(pk) for pk in GRID_LINK.findall(more)] == ids[24:48]
    # the first new link takes the id of the "Load more" link it replaces: the focus moves there
    assert f'<a href="/images/{ids[24]}/" id="from-picture-25">' in more
    assert 'id="from-picture-49" href="' in more
    assert f'hx-get="{url}?page=3"' in more
    first = html(auth_client.get(url))
    assert 'id="from-picture-25" href="' in first


@pytest.mark.parametrize("page", ["0", "-1", "4", "abc", "1.5", "9" * 30, ""])
def test_a_page_that_is_not_there_is_a_404_that_says_which_are(auth_client, dataset_imported, page):
    lemon = class_named("lemon")
    add_images(lemon, 50)
    response = auth_client.get(reverse("search:class", args=[lemon.pk]), {"page": page})
    assert response.status_code == 404
    text = response.content.decode()
    assert "This page is not here" in text  # the site's own 404 page
    assert "its images are on pages 1 to 3" in text


def test_an_unknown_class_is_the_branded_404(auth_client, dataset_imported):
    response = auth_client.get(reverse("search:class", args=[999999]))
    assert response.status_code == 404
    assert "No such class in the collection." in response.content.decode()
    assert auth_client.get(f"/classes/{2**70}/").status_code == 404


def test_collection_pages_need_a_login(dataset_imported):
    image = Image.objects.first()
    for url in (
        reverse("search:collections"),
        reverse("search:class", args=[image.image_class_id]),
        reverse("search:image", args=[image.pk]),
    ):
        response = Client().get(url)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


# --- an image's page ------------------------------------------------------------------------


def test_image_page_shows_the_picture_its_class_and_what_to_do_next(auth_client, search_index):
    shepherd = class_named("German shepherd")
    images = list(Image.objects.filter(image_class=shepherd).order_by("pk"))
    image = images[2]
    page = html(auth_client.get(reverse("search:image", args=[image.pk])))

    thumb = reverse("search:image-thumb", args=[image.pk])
    assert f'src="{thumb}?size=320"' in page
    assert f"{thumb}?size=640 2x" in page
    assert f'href="{reverse("search:image-file", args=[image.pk])}"' in page
    assert "<h1>German shepherd</h1>" in page
    assert "Also called: German shepherd dog, German police dog, alsatian." in page
    split = {"train": "training set", "val": "validation set"}[image.split]
    assert f"tiny-imagenet-200 · {split} · n02106662 · image #{image.pk}" in page
    assert f'action="{reverse("search:similar", args=[image.pk])}"' in page
    assert f'href="{reverse("search:class", args=[shepherd.pk])}">Browse German shepherd' in page
    assert "3 of 8 in German shepherd" in page
    assert f'href="/images/{images[1].pk}/" rel="prev"' in page
    assert f'href="/images/{images[3].pk}/" rel="next"' in page
    assert "Describe</button>" not in page  # no query named: nothing to describe it for
    assert "Back to results" not in page


def test_without_an_index_the_image_page_offers_no_similar_search(auth_client, dataset_imported):
    image = Image.objects.first()
    page = html(auth_client.get(reverse("search:image", args=[image.pk])))
    assert reverse("search:similar", args=[image.pk]) not in page
    assert "comes back once the search index is built" in page


def test_the_browse_link_opens_the_class_page_that_holds_the_image(auth_client, dataset_imported):
    lemon = class_named("lemon")
    ids = sorted(add_images(lemon, 50))
    page = html(auth_client.get(reverse("search:image", args=[ids[30]])))  # the 31st: page 2
    assert f'href="/classes/{lemon.pk}/?page=2">Browse lemon' in page


def test_an_unlabelled_image_has_a_page_without_a_class(auth_client, dataset_imported):
    image = Image.objects.filter(split="test").first()
    page = html(auth_client.get(reverse("search:image", args=[image.pk])))
    assert "<h1>Unlabelled image</h1>" in page
    assert "from the test set, which has no labels" in page
    assert "Browse " not in page


def test_an_unknown_image_is_the_branded_404(auth_client, dataset_imported):
    response = auth_client.get(reverse("search:image", args=[999999]))
    assert response.status_code == 404
    text = response.content.decode()
    assert "This page is not here" in text
    assert "No such image in the collection." in text


def test_q_naming_the_users_query_offers_describe_and_back_to_results(
    auth_client, user, dataset_imported
):
    image = Image.objects.filter(split="train").first()
    query = a_query(user, [Image.objects.last(), image])
    page = html(auth_client.get(reverse("search:image", args=[image.pk]), {"q": query.pk}))

    describe = reverse("search:describe", args=[query.pk])
    assert f'action="{describe}" hx-post="{describe}" hx-target="#describe-panel"' in page
    assert f'<input type="hidden" name="image_id" value="{image.pk}">' in page
    assert f'<a href="{reverse("search:query", args=[query.pk])}">← Back to results</a>' in page


def test_with_descriptions_turned_off_there_is_no_describe_button(
    auth_client, user, dataset_imported, settings
):
    settings.TINYRAG_VLM_BACKEND = "none"
    image = Image.objects.filter(split="train").first()
    query = a_query(user, [image])
    page = html(auth_client.get(reverse("search:image", args=[image.pk]), {"q": query.pk}))
    assert "Describe</button>" not in page
    assert "Descriptions are turned off on this server." in page
    assert "← Back to results" in page  # the query is still the user's


def test_q_of_another_user_or_not_this_images_is_ignored(
    auth_client, user, other_user, dataset_imported
):
    image, elsewhere = Image.objects.filter(split="train")[:2]
    theirs = a_query(other_user, [image])
    mine_without_it = a_query(user, [elsewhere])
    for q in (theirs.pk, mine_without_it.pk, 999999, "abc", "-1", "٣", "9" * 40, ""):
        page = html(auth_client.get(reverse("search:image", args=[image.pk]), {"q": q}))
        assert "Describe</button>" not in page, q
        assert "Back to results" not in page, q
        assert f"/history/{theirs.pk}/" not in page


def test_the_page_lists_the_users_own_descriptions_of_this_image_only(
    auth_client, user, other_user, dataset_imported
):
    image, other_image = Image.objects.filter(split="train")[:2]
    mine = a_query(user, [image, other_image])
    theirs = a_query(other_user, [image])
    a_description(mine, image, "A yellow fruit on a table.")
    a_description(mine, other_image, "Something else entirely.")
    a_description(theirs, image, "Bob's private words.")

    page = html(auth_client.get(reverse("search:image", args=[image.pk])))
    assert "A yellow fruit on a table." in page
    assert "Something else entirely." not in page
    assert "Bob's private words." not in page
    assert page.count('class="card description') == 1


def test_describe_from_the_image_page_without_and_with_htmx(
    auth_client, user, search_index, vlm_settings
):
    from search.queries.services import text_search

    query = text_search(user=user, text="lemon", top_k=5)
    image = query.results.get(rank=2).image
    page = html(auth_client.get(reverse("search:image", args=[image.pk]), {"q": query.pk}))
    action = re.search(r'<form method="post" action="(/history/\d+/describe/)"', page)
    assert action, "no Describe form"

    plain = auth_client.post(action.group(1), {"image_id": image.pk})
    description = Description.objects.get(query=query, image=image)
    assert plain.status_code == 302
    assert plain["Location"] == reverse("search:description", args=[description.pk])

    card = html(auth_client.post(action.group(1), {"image_id": image.pk}, **HTMX))
    assert f'id="description-{description.pk}"' in card  # the same row, still on its way
    assert "<html" not in card


# --- thumbnails: upscaled smoothly, bounded sizes ---------------------------------------------


@pytest.mark.parametrize("size", [160, 320, 640])
def test_a_64_px_image_is_upscaled_to_the_size_asked_for(auth_client, dataset_imported, size):
    image = Image.objects.first()
    response = auth_client.get(reverse("search:image-thumb", args=[image.pk]), {"size": size})
    assert response.status_code == 200
    assert "max-age=86400" in response["Cache-Control"]
    assert PILImage.open(io.BytesIO(response.content)).size == (size, size)


@pytest.mark.parametrize("size", ["1000", "0", "-160", "abc", "", "160.0", "9" * 50, "١٦٠"])
def test_a_size_outside_the_allowed_set_is_a_clear_400(auth_client, dataset_imported, size):
    image = Image.objects.first()
    response = auth_client.get(reverse("search:image-thumb", args=[image.pk]), {"size": size})
    assert response.status_code == 400
    assert response.content.decode() == (
        "The thumbnail size must be one of 160, 320, 640 (pixels)."
    )


def mid_tones(jpeg: bytes) -> int:
    """Pixels of the middle row neither near black nor near white."""
    img = PILImage.open(io.BytesIO(jpeg)).convert("L")
    row = [img.getpixel((x, img.height // 2)) for x in range(img.width)]
    return sum(64 <= value <= 192 for value in row)


def test_upscaling_blends_neighbouring_pixels_instead_of_repeating_them(tmp_path):
    from search.catalog.services import thumbnail_jpeg

    path = tmp_path / "two.png"
    source = PILImage.new("L", (2, 1))
    source.putpixel((0, 0), 0)
    source.putpixel((1, 0), 255)
    source.save(path)
    smooth = thumbnail_jpeg(path=path, size=320)
    assert PILImage.open(io.BytesIO(smooth)).size == (320, 160)
    # Between the two source pixels' centres (x = 80 and 240) a smooth filter ramps from
    # black to white: well over 50 of the 320 pixels are mid-grey.
    assert mid_tones(smooth) > 50
    # Control: nearest-neighbour (what `image-rendering: pixelated` shows) gives two flat
    # halves, mid-grey only where JPEG blurs the one edge.
    blocky = io.BytesIO()
    source.convert("RGB").resize((320, 160), PILImage.Resampling.NEAREST).save(blocky, "JPEG")
    assert mid_tones(blocky.getvalue()) < 20


def test_thumbnail_sizes_outside_the_set_are_refused_by_the_service(tmp_path):
    from search.catalog.services import thumbnail_jpeg

    path = tmp_path / "one.png"
    PILImage.new("RGB", (64, 64)).save(path)
    with pytest.raises(ValueError, match="size must be one of 160, 320, 640"):
        thumbnail_jpeg(path=path, size=4096)


def test_no_style_sheet_renders_images_pixelated():
    sheets = list((ROOT / "static" / "css").glob("*.css"))
    assert sheets
    for sheet in sheets:  # the browser's smooth default; the server already upscaled them
        assert not re.search(r"image-rendering\s*:", sheet.read_text()), sheet.name
