"""build_index through the tiny CLIP: self-retrieval, limits, resume, skips, refusals."""

from __future__ import annotations

import numpy as np
import pytest
from django.core.management import CommandError, call_command
from PIL import Image as PILImage

from search.catalog.models import Image
from search.index import build as indexing
from search.index import service as fi
from search.queries.retrieval import embed_image, embed_text, nearest_images

pytestmark = pytest.mark.django_db


@pytest.fixture
def imported(dataset_imported):
    return dataset_imported


def build(*args, **kwargs):
    call_command(
        "build_index",
        "--name",
        "tiny",
        "--workers",
        "0",
        "--batch-size",
        "4",
        *args,
        verbosity=kwargs.pop("verbosity", 0),
        **kwargs,
    )


def independent_clip(settings):
    """The tiny CLIP loaded by sentence-transformers itself, float32 on the CPU: a route to
    the vectors that shares none of search.ml's code."""
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(settings.TINYRAG_CLIP_MODEL), device="cpu")


def published(settings, name="tiny"):
    folder = settings.TINYRAG_INDEX_DIR / name
    return (
        fi.read_manifest(settings.TINYRAG_INDEX_DIR, name),
        np.load(folder / "ids.npy"),
        np.load(folder / "embeddings.npy"),
    )


def test_build_indexes_train_only_and_every_image_finds_itself(imported, clip_settings):
    build()
    manifest, ids, vectors = published(clip_settings)
    train_ids = sorted(Image.objects.filter(split="train").values_list("id", flat=True))
    assert sorted(ids) == train_ids
    assert (manifest.count, manifest.dim, manifest.splits) == (20, 16, ["train"])
    assert manifest.model_id == str(clip_settings.TINYRAG_CLIP_MODEL)
    assert manifest.index_type == "flat"
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)

    service = fi.get_index_service("tiny")
    _, found = service.search(vectors, k=1)
    assert list(found[:, 0]) == list(ids)


def test_stored_vectors_equal_embedding_the_files_directly(imported, clip_settings):
    from search.ml.registry import get_clip_embedder

    build()
    _, ids, vectors = published(clip_settings)
    images = Image.objects.in_bulk(list(map(int, ids[:5])))
    direct = get_clip_embedder().embed_images(
        [PILImage.open(imported / images[int(i)].path) for i in ids[:5]]
    )
    np.testing.assert_allclose(vectors[:5], direct, atol=1e-2)  # bf16 on some CPUs


def test_stored_vectors_equal_sentence_transformers_own_encoding(imported, clip_settings):
    clip_settings.TINYRAG_FORCE_FP32 = True  # float32 on both routes: equal to rounding
    build()
    _, ids, vectors = published(clip_settings)
    images = Image.objects.in_bulk(list(map(int, ids)))
    files = [PILImage.open(imported / images[int(i)].path).convert("RGB") for i in ids]
    direct = independent_clip(clip_settings).encode(
        files, normalize_embeddings=True, show_progress_bar=False
    )
    np.testing.assert_allclose(vectors, direct, atol=1e-5)


def test_search_image_finds_the_file_itself_first(imported, clip_settings):
    clip_settings.TINYRAG_FORCE_FP32 = True  # as the independent encoding below
    build()
    _, ids, vectors = published(clip_settings)
    target = Image.objects.filter(split="train").order_by("id")[7]
    index = fi.get_index_service("tiny")
    query = embed_image(PILImage.open(imported / target.path), index).vector
    hits = nearest_images(query, k=3, index=index)
    assert [h.rank for h in hits] == [1, 2, 3]
    assert hits[0].image == target
    assert hits[0].score > 0.99
    assert hits[0].score >= hits[1].score >= hits[2].score
    # the same ranking and scores by numpy, from the file encoded by sentence-transformers
    direct = independent_clip(clip_settings).encode(
        [PILImage.open(imported / target.path).convert("RGB")],
        normalize_embeddings=True,
        show_progress_bar=False,
    )[0]
    scores = vectors @ direct
    best = np.argsort(-scores, kind="stable")[:3]
    assert [h.image.id for h in hits] == [int(i) for i in ids[best]]
    np.testing.assert_allclose([h.score for h in hits], scores[best], atol=1e-5)
    # excluding it (as "more like this" does) gives the next ones
    again = nearest_images(query, k=2, index=index, exclude_ids=frozenset({target.id}))
    assert [h.image for h in again] == [h.image for h in hits[1:]]


def test_search_text_ranks_by_the_templated_prompt(imported, clip_settings):
    clip_settings.TINYRAG_FORCE_FP32 = True  # as the independent encoding below
    clip_settings.TINYRAG_TEXT_PROMPT = "a photo of a {query}."
    build()
    _, ids, vectors = published(clip_settings)
    index = fi.get_index_service("tiny")
    hits = nearest_images(embed_text("lemon", index).vector, k=5, index=index)
    # what CLIP must have embedded: the raw words in the template, written out by hand
    clip = independent_clip(clip_settings)
    direct = clip.encode(
        ["a photo of a lemon."], normalize_embeddings=True, show_progress_bar=False
    )[0]
    scores = vectors @ direct
    best = np.argsort(-scores, kind="stable")[:5]
    assert [h.rank for h in hits] == [1, 2, 3, 4, 5]
    assert [h.image.id for h in hits] == [int(i) for i in ids[best]]
    np.testing.assert_allclose([h.score for h in hits], scores[best], atol=1e-5)
    assert all(h.image.split == "train" for h in hits)
    # and neither the bare word nor the prompt templated twice
    for phrase in ("lemon", "a photo of a a photo of a lemon.."):
        other = clip.encode([phrase], normalize_embeddings=True, show_progress_bar=False)[0]
        assert not np.allclose([h.score for h in hits], vectors[best] @ other, atol=1e-3)


def test_limit_per_class_takes_the_first_images_of_each_class(imported, clip_settings):
    build("--limit-per-class", "2")
    _, ids, _ = published(clip_settings)
    expected = []
    for wnid in ["n02106662", "n02124075", "n04067472", "n07749582"]:
        rows = Image.objects.filter(split="train", image_class__wnid=wnid).order_by("id")
        expected += list(rows.values_list("id", flat=True)[:2])
    assert sorted(ids) == sorted(expected)
    assert published(clip_settings)[0].limit_per_class == 2


def test_worker_processes_give_the_same_vectors(imported, clip_settings):
    build()
    _, ids0, vectors0 = published(clip_settings)
    call_command(
        "build_index",
        "--name",
        "tiny",
        "--workers",
        "2",
        "--batch-size",
        "4",
        "--restart",
        verbosity=0,
    )
    _, ids2, vectors2 = published(clip_settings)
    np.testing.assert_array_equal(ids0, ids2)
    np.testing.assert_allclose(vectors0, vectors2, atol=1e-6)


def test_interrupted_build_resumes_after_the_last_complete_shard(
    imported, clip_settings, monkeypatch, capsys
):
    build("--name", "clean")
    _, clean_ids, clean_vectors = published(clip_settings, "clean")
    # A published "tiny" of one image per class: its 4 vectors are reused, 16 left to embed.
    build("--limit-per-class", "1")
    before = fi.read_manifest(clip_settings.TINYRAG_INDEX_DIR, "tiny").created_at

    real_save, saved = indexing.ShardStore.save, []

    def save_then_crash(self, number, *args):
        real_save(self, number, *args)
        saved.append(number)
        if number == 0:
            raise KeyboardInterrupt  # Ctrl-C right after the first shard

    monkeypatch.setattr(indexing.ShardStore, "save", save_then_crash)
    with pytest.raises(KeyboardInterrupt):
        build("--index-type", "hnsw", "--shard-size", "8")  # 16 to embed: shards of 8, 8
    # the published index is untouched by the failed build
    assert fi.read_manifest(clip_settings.TINYRAG_INDEX_DIR, "tiny").created_at == before

    monkeypatch.setattr(indexing.ShardStore, "save", real_save)
    saved.clear()
    build("--index-type", "hnsw", "--shard-size", "8", verbosity=1)
    assert "Resuming after 1 complete shards (8 images)." in capsys.readouterr().out
    manifest, ids, vectors = published(clip_settings)
    assert (manifest.index_type, manifest.reused, manifest.embedded) == ("hnsw", 4, 16)
    np.testing.assert_array_equal(ids, clean_ids)
    np.testing.assert_allclose(vectors, clean_vectors, atol=1e-6)
    assert not (fi.builds_dir(clip_settings.TINYRAG_INDEX_DIR) / "tiny.partial").exists()


def test_restart_discards_earlier_shards(imported, clip_settings, monkeypatch, capsys):
    real_save = indexing.ShardStore.save

    def crash_after_first(self, number, *args):
        real_save(self, number, *args)
        raise KeyboardInterrupt

    monkeypatch.setattr(indexing.ShardStore, "save", crash_after_first)
    with pytest.raises(KeyboardInterrupt):
        build("--shard-size", "8")
    monkeypatch.setattr(indexing.ShardStore, "save", real_save)
    build("--restart", "--shard-size", "8", verbosity=1)
    assert "Resuming" not in capsys.readouterr().out
    assert published(clip_settings)[0].count == 20


def test_unreadable_image_is_skipped_and_reported(imported, clip_settings, capsys):
    broken = Image.objects.filter(split="train").order_by("id")[3]
    (imported / broken.path).write_bytes(b"\xff\xd8\xff not really a jpeg")
    build()
    manifest, ids, _ = published(clip_settings)
    assert manifest.count == 19
    assert broken.id not in ids
    assert len(manifest.skipped) == 1
    assert broken.path in manifest.skipped[0]
    assert f"Skipped 1 unreadable images:\n  {imported / broken.path}" in capsys.readouterr().err


def test_a_different_model_is_refused(imported, clip_settings, tmp_path):
    from tests.fixtures.models import build_clip

    build()
    other = build_clip(tmp_path / "other-clip", seed=1)
    clip_settings.TINYRAG_CLIP_MODEL = str(other)
    with pytest.raises(fi.IndexMismatchError, match="rebuild it with"):
        embed_text("lemon", fi.get_index_service("tiny"))


def test_bad_arguments_and_missing_data_are_clear_errors(clip_settings, tmp_path):
    clip_settings.TINYRAG_INDEX_DIR = tmp_path
    with pytest.raises(CommandError, match="--splits takes"):
        build("--splits", "training")
    with pytest.raises(CommandError, match="--shard-size .* must be positive"):
        build("--shard-size", "0")
    with pytest.raises(CommandError, match="run import_dataset first"):
        build()


def test_missing_model_is_a_clear_error(imported, clip_settings, tmp_path):
    clip_settings.TINYRAG_CLIP_MODEL = str(tmp_path / "no-such-model")
    with pytest.raises(CommandError, match="TINYRAG_CLIP_MODEL"):
        build()


def test_home_page_describes_the_published_index(imported, clip_settings, auth_client, user):
    build()
    html = auth_client.get("/collections/").content.decode()
    assert "You can search <strong>20 images</strong> from tiny-imagenet-200." in html
    assert "Index <strong>tiny</strong>" not in html  # the index's internals are for staff
    user.is_staff = True
    user.save()
    html = auth_client.get("/collections/").content.decode()
    assert "Staff: index <strong>tiny</strong>: 20 images of tiny-imagenet-200 (train)" in html


@pytest.mark.parametrize(
    ("flag", "threshold", "compiled"),
    [
        ((), 20, True),  # 20 train images: as many as the threshold
        ((), 21, False),
        (("--no-compile",), 1, False),
        (("--compile",), 10**9, True),
    ],
)
def test_compiles_the_image_tower_for_large_builds_unless_told(
    imported, clip_settings, monkeypatch, flag, threshold, compiled
):
    from search.ml.registry import get_clip_embedder

    monkeypatch.setattr(indexing, "COMPILE_MIN_IMAGES", threshold)
    calls = []  # torch.compile itself takes too long for a test: record the request
    monkeypatch.setattr(
        type(get_clip_embedder()), "compile_image_batches", lambda self: calls.append(self)
    )
    build(*flag)
    assert bool(calls) is compiled
    assert published(clip_settings)[0].count == 20
