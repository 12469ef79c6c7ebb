"""search/queries/services.py called directly: what each use case saves in the history, and
the ranks and scores it finds.

Expected rankings and scores are numpy inner products between the published embeddings.npy
and query vectors computed independently: the tiny CLIP loaded by sentence-transformers itself
(float32, like the index, built here with TINYRAG_FORCE_FP32) on the prompt written out by
hand, or on the image file decoded by Pillow. Neither FAISS nor search.ml is on that route.
"""

from __future__ import annotations

import io
import json
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from django.db import IntegrityError
from PIL import Image as PILImage

from search.catalog.models import Image
from search.descriptions.models import Description
from search.queries import services
from search.queries.models import SearchQuery, SearchResult
from search.queries.services import NoSuchImage, SearchInputError
from search.queries.uploads import UploadError

pytestmark = pytest.mark.django_db

LEMON = "n07749582"
REEL = "n04067472"
TRAIN_PER_CLASS = 5  # the synthetic dataset's (tests/fixtures/tinyimagenet.py)


@pytest.fixture
def fp32(clip_settings):
    """Float32 everywhere, set before the index is built, and a known prompt template."""
    clip_settings.TINYRAG_FORCE_FP32 = True
    clip_settings.TINYRAG_TEXT_PROMPT = "a photo of a {query}."
    return clip_settings


@pytest.fixture
def built(fp32, index_built):
    return index_built


@pytest.fixture(scope="module")
def reference_clip(tiny_clip_dir):
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(tiny_clip_dir), device="cpu")


def encode_text(clip, phrase: str) -> np.ndarray:
    return clip.encode([phrase], normalize_embeddings=True, show_progress_bar=False)[0]


def encode_file(clip, path) -> np.ndarray:
    with PILImage.open(path) as img:
        return clip.encode(
            [img.convert("RGB")], normalize_embeddings=True, show_progress_bar=False
        )[0]


def ranking(built, vector: np.ndarray, k: int, keep=lambda image_id: True):
    """(image id, score) best first, by brute force over the published vectors."""
    scores = built.vectors @ vector
    order = [i for i in np.argsort(-scores, kind="stable") if keep(int(built.ids[i]))]
    return [(int(built.ids[i]), float(scores[i])) for i in order[:k]]


def saved_results(query: SearchQuery) -> list[tuple[int, int, float]]:
    return list(query.results.order_by("rank").values_list("rank", "image_id", "score"))


def assert_ranked_as(query: SearchQuery, expected: list[tuple[int, float]]) -> None:
    saved = saved_results(query)
    assert [rank for rank, _, _ in saved] == list(range(1, len(expected) + 1))
    assert [image_id for _, image_id, _ in saved] == [image_id for image_id, _ in expected]
    np.testing.assert_allclose(
        [score for _, _, score in saved], [score for _, score in expected], atol=1e-5
    )


def train_image(position: int) -> Image:
    return Image.objects.filter(split="train").order_by("id")[position]


def png_bytes(path) -> bytes:
    buffer = io.BytesIO()
    with PILImage.open(path) as img:
        img.convert("RGB").save(buffer, "PNG")
    return buffer.getvalue()


def class_ids(wnid: str) -> set[int]:
    return set(
        Image.objects.filter(split="train", image_class__wnid=wnid).values_list("id", flat=True)
    )


# --- clamp_top_k ---------------------------------------------------------------------------


def test_clamp_top_k_defaults_and_bounds(settings):
    settings.TINYRAG_TOP_K_DEFAULT, settings.TINYRAG_TOP_K_MAX = 7, 12
    assert services.clamp_top_k(None) == 7
    assert services.clamp_top_k(1) == 1
    assert services.clamp_top_k(12) == 12
    assert services.clamp_top_k("3") == 3
    for bad in (0, -1, 13):
        with pytest.raises(SearchInputError, match=r"^top_k must be between 1 and 12\.$"):
            services.clamp_top_k(bad)


# --- text_search ---------------------------------------------------------------------------


def test_text_search_saves_the_query_and_ranks_like_numpy(built, fp32, user, reference_clip):
    query = services.text_search(user=user, text="  a   red\n lemon ", top_k=4)
    query.refresh_from_db()
    manifest = json.loads((fp32.TINYRAG_INDEX_DIR / "tiny" / "manifest.json").read_text())
    assert (query.user, query.kind, query.text, query.top_k) == (user, "text", "a red lemon", 4)
    assert query.filters == {}
    assert query.encoder == str(fp32.TINYRAG_CLIP_MODEL)
    assert query.index_name == "tiny"
    assert query.index_built_at == datetime.fromisoformat(manifest["created_at"])
    assert query.duration_ms >= 0
    assert (query.source_image, query.uploaded_image.name) == (None, "")
    # read as English, without its leading article, and embedded by CLIP in the template
    assert (query.language, query.language_chosen, query.route) == ("en", False, "clip")
    assert query.embedded_text == "red lemon"
    expected = ranking(built, encode_text(reference_clip, "a photo of a red lemon."), k=4)
    assert_ranked_as(query, expected)


def test_text_search_takes_the_default_k(built, fp32, user):
    fp32.TINYRAG_TOP_K_DEFAULT = 6
    query = services.text_search(user=user, text="cat")
    assert query.top_k == 6
    assert query.results.count() == 6


def test_text_search_class_filter_ranks_within_the_class(built, user, reference_clip):
    query = services.text_search(user=user, text="reel", top_k=3, class_filter=REEL)
    assert query.filters == {"class": REEL}
    reels = class_ids(REEL)
    expected = ranking(
        built, encode_text(reference_clip, "a photo of a reel."), k=3, keep=reels.__contains__
    )
    assert_ranked_as(query, expected)


def test_a_class_filter_with_fewer_images_than_k_returns_them_all(built, user):
    query = services.text_search(user=user, text="lemon", top_k=10, class_filter=LEMON)
    assert {image_id for _, image_id, _ in saved_results(query)} == class_ids(LEMON)
    assert query.results.count() == TRAIN_PER_CLASS


@pytest.mark.parametrize(
    ("text", "top_k", "class_filter", "message"),
    [
        ("   \n ", 5, None, "Type something to search for."),
        ("x" * 501, 5, None, "The text is longer than 500 characters."),
        ("lemon", 0, None, "top_k must be between 1 and 100."),
        ("lemon", 5, "n00000000", "Unknown class 'n00000000'."),
    ],
)
def test_text_search_refuses_bad_input_and_saves_nothing(
    built, user, text, top_k, class_filter, message
):
    with pytest.raises(SearchInputError) as caught:
        services.text_search(user=user, text=text, top_k=top_k, class_filter=class_filter)
    assert str(caught.value) == message
    assert SearchQuery.objects.count() == 0


def test_text_of_exactly_the_limit_is_accepted(built, user):
    query = services.text_search(user=user, text="x" * 500, top_k=1)
    assert len(query.text) == 500


# --- image_search --------------------------------------------------------------------------


def test_image_search_saves_the_normalised_upload_and_finds_the_image(built, user, reference_clip):
    target = train_image(6)
    path = built.root / target.path
    query = services.image_search(user=user, data=png_bytes(path), top_k=5)
    query.refresh_from_db()
    assert (query.kind, query.text, query.top_k, query.filters) == ("image", "", 5, {})
    assert query.uploaded_image.name.startswith(f"uploads/{user.pk}/")
    assert query.uploaded_image.name.endswith(".png")  # a PNG stays a PNG, re-encoded
    with query.uploaded_image.open("rb") as stored, PILImage.open(path) as original:
        assert np.array_equal(
            np.asarray(PILImage.open(stored).convert("RGB")), np.asarray(original.convert("RGB"))
        )
    expected = ranking(built, encode_file(reference_clip, path), k=5)
    assert expected[0][0] == target.pk
    assert_ranked_as(query, expected)


def test_image_search_with_a_class_filter(built, user, reference_clip):
    path = built.root / train_image(0).path
    query = services.image_search(user=user, data=png_bytes(path), top_k=2, class_filter=LEMON)
    assert query.filters == {"class": LEMON}
    lemons = class_ids(LEMON)
    expected = ranking(built, encode_file(reference_clip, path), k=2, keep=lemons.__contains__)
    assert_ranked_as(query, expected)


def test_a_file_that_is_not_an_image_is_refused_and_nothing_saved(built, user):
    with pytest.raises(UploadError, match="not a JPEG, PNG, WebP, GIF or BMP"):
        services.image_search(user=user, data=b"<html>hello</html>", top_k=5)
    assert SearchQuery.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_an_upload_whose_query_cannot_be_saved_leaves_no_file(built, user, fp32):
    data = png_bytes(built.root / train_image(0).path)
    type(user).objects.filter(pk=user.pk).delete()  # the query's row cannot reference it now
    with pytest.raises(IntegrityError):
        services.image_search(user=user, data=data, top_k=3)
    assert SearchQuery.objects.count() == 0
    uploads = Path(fp32.MEDIA_ROOT) / "uploads"
    assert [p for p in uploads.rglob("*") if p.is_file()] == []


# --- similar_search ------------------------------------------------------------------------


def test_similar_search_leaves_the_source_out(built, user, reference_clip):
    source = train_image(3)
    query = services.similar_search(user=user, image_id=source.pk, top_k=4)
    query.refresh_from_db()
    assert (query.kind, query.source_image, query.text, query.uploaded_image.name) == (
        "similar",
        source,
        "",
        "",
    )
    expected = ranking(
        built,
        encode_file(reference_clip, built.root / source.path),
        k=4,
        keep=lambda image_id: image_id != source.pk,
    )
    assert_ranked_as(query, expected)


def test_similar_search_with_a_class_filter_of_its_own_class(built, user):
    source = Image.objects.filter(split="train", image_class__wnid=LEMON).order_by("id").first()
    query = services.similar_search(user=user, image_id=source.pk, top_k=10, class_filter=LEMON)
    found = {image_id for _, image_id, _ in saved_results(query)}
    assert found == class_ids(LEMON) - {source.pk}


def test_similar_search_of_an_unknown_image(built, user):
    with pytest.raises(NoSuchImage, match="No image with id 999999."):
        services.similar_search(user=user, image_id=999999)
    assert SearchQuery.objects.count() == 0


def test_similar_search_of_an_unreadable_file(built, user):
    source = train_image(2)
    (built.root / source.path).write_bytes(b"not an image any more")
    with pytest.raises(NoSuchImage, match=f"The file of image {source.pk} cannot be read."):
        services.similar_search(user=user, image_id=source.pk)
    assert SearchQuery.objects.count() == 0


# --- rerun ---------------------------------------------------------------------------------


def test_rerun_of_a_text_query_is_a_new_entry_with_the_same_input_and_results(built, user):
    first = services.text_search(user=user, text="lemon", top_k=3, class_filter=LEMON)
    again = services.rerun(query=first)
    assert again.pk != first.pk
    assert (again.user, again.kind, again.text, again.top_k, again.filters) == (
        user,
        "text",
        "lemon",
        3,
        {"class": LEMON},
    )
    assert saved_results(again) == saved_results(first)
    assert SearchQuery.objects.filter(user=user).count() == 2


def test_text_search_stores_how_the_text_was_read(built, user):
    detected = services.text_search(user=user, text="cari lemon kuning")
    detected.refresh_from_db()
    assert (detected.language, detected.language_chosen) == ("id", False)
    # no multilingual encoder is configured here: CLIP's own tower answers, recorded as such
    assert (detected.route, detected.embedded_text) == ("clip", "lemon kuning")
    chosen = services.text_search(user=user, text="cari lemon kuning", language="en")
    assert (chosen.language, chosen.language_chosen) == ("en", True)


def test_text_search_on_the_multilingual_route_records_its_encoder(
    built, user, multilingual_settings
):
    query = services.text_search(user=user, text="tampilkan gambar lemon kuning")
    assert (query.language, query.route, query.embedded_text) == (
        "id",
        "multilingual",
        "lemon kuning",
    )
    assert query.encoder == str(multilingual_settings.TINYRAG_TEXT_MODEL)


def test_an_unknown_language_is_refused_before_searching(built, user):
    from search.errors import InvalidInput

    with pytest.raises(InvalidInput, match="Unknown query language 'tlh'"):
        services.text_search(user=user, text="lemon", language="tlh")
    assert not SearchQuery.objects.exists()


def test_rerun_keeps_a_chosen_language_and_detects_again_otherwise(built, user):
    chosen = services.text_search(user=user, text="cari lemon kuning", language="en")
    again = services.rerun(query=chosen)
    assert (again.language, again.language_chosen, again.route) == ("en", True, "clip")
    detected = services.text_search(user=user, text="cari lemon kuning")
    again = services.rerun(query=detected)
    assert (again.language, again.language_chosen) == ("id", False)


def test_rerun_of_an_image_query_uses_its_stored_upload(built, user):
    path = built.root / train_image(5).path
    first = services.image_search(user=user, data=png_bytes(path), top_k=3)
    again = services.rerun(query=first)
    assert again.kind == "image"
    assert again.uploaded_image.name != first.uploaded_image.name  # its own copy
    assert saved_results(again) == saved_results(first)


def test_rerun_of_an_image_query_whose_upload_is_gone(built, user):
    first = services.image_search(
        user=user, data=png_bytes(built.root / train_image(5).path), top_k=3
    )
    first.uploaded_image.storage.delete(first.uploaded_image.name)
    with pytest.raises(SearchInputError, match="no longer stored"):
        services.rerun(query=first)


def test_rerun_of_a_similar_query_whose_source_was_deleted(built, user):
    source = train_image(4)
    first = services.similar_search(user=user, image_id=source.pk, top_k=3)
    source.delete()
    first.refresh_from_db()
    with pytest.raises(SearchInputError, match="source image of this query no longer exists"):
        services.rerun(query=first)


def test_rerun_of_a_similar_query(built, user):
    first = services.similar_search(user=user, image_id=train_image(1).pk, top_k=3)
    again = services.rerun(query=first)
    assert (again.kind, again.source_image_id) == ("similar", first.source_image_id)
    assert saved_results(again) == saved_results(first)


# --- minimum similarity ----------------------------------------------------------------------


def test_min_similarity_keeps_the_results_at_or_above_it_and_is_stored(
    built, fp32, user, reference_clip
):
    expected = ranking(built, encode_text(reference_clip, "a photo of a lemon."), k=8)
    # halfway between the 3rd and 4th scores: exactly the first three pass
    cutoff = (expected[2][1] + expected[3][1]) / 2
    query = services.text_search(user=user, text="lemon", top_k=8, min_similarity=cutoff)
    assert_ranked_as(query, expected[:3])
    assert query.filters == {"min_similarity": cutoff}


def test_min_similarity_with_a_class_filter_stores_both(built, user):
    query = services.text_search(
        user=user, text="lemon", top_k=5, class_filter=LEMON, min_similarity=0.0
    )
    assert query.filters == {"class": LEMON, "min_similarity": 0.0}


@pytest.mark.parametrize("bad", [-0.01, 1.01, float("nan")])
def test_min_similarity_outside_0_to_1_is_refused(built, user, bad):
    with pytest.raises(SearchInputError, match="between 0 and 1"):
        services.text_search(user=user, text="lemon", min_similarity=bad)
    assert not SearchQuery.objects.exists()


def test_rerun_applies_the_stored_min_similarity_again(built, user):
    first = services.text_search(user=user, text="reel", top_k=8)
    scores = [score for _, _, score in saved_results(first)]
    cutoff = (scores[4] + scores[5]) / 2
    cut = services.text_search(user=user, text="reel", top_k=8, min_similarity=cutoff)
    again = services.rerun(query=cut)
    assert again.filters == {"min_similarity": cutoff}
    assert saved_results(again) == saved_results(cut)
    assert len(saved_results(again)) == 5


# --- deletes -------------------------------------------------------------------------------


def test_delete_query_removes_it_with_its_results_and_descriptions(built, user):
    kept = services.text_search(user=user, text="cat", top_k=2)
    gone = services.text_search(user=user, text="reel", top_k=3)
    image = gone.results.first().image
    Description.objects.create(
        query=gone,
        image=image,
        image_key=f"image:{image.pk}",
        backend="test",
        model="m",
        prompt_version="v1",
        context_mode=Description.Context.NONE,
        status=Description.Status.DONE,
    )
    services.delete_query(query=gone)
    assert list(SearchQuery.objects.values_list("pk", flat=True)) == [kept.pk]
    assert SearchResult.objects.filter(query_id=gone.pk).count() == 0
    assert SearchResult.objects.filter(query=kept).count() == 2
    assert Description.objects.count() == 0


def test_delete_history_deletes_the_users_queries_only_and_counts_them(built, user, other_user):
    for text in ("cat", "reel", "lemon"):
        services.text_search(user=user, text=text, top_k=1)
    theirs = services.text_search(user=other_user, text="cat", top_k=1)
    assert services.delete_history(user=user) == 3
    assert list(SearchQuery.objects.values_list("pk", flat=True)) == [theirs.pk]
    assert services.delete_history(user=user) == 0
