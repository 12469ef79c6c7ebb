"""build_index reuses the vectors of unchanged files: added, changed, renamed and deleted files
in both formats give the index a full rebuild (--restart) gives, embedding only what moved."""

from __future__ import annotations

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command

from search.catalog.models import Image
from search.index import service as fi
from search.ml.clip import ImagePreprocessor
from tests.fixtures.tinyimagenet import jpeg_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def imported(collection, clip_settings, tmp_path):
    clip_settings.TINYRAG_INDEX_DIR = tmp_path / "vector_db"
    clip_settings.TINYRAG_FORCE_FP32 = True  # both routes compared in float32
    fi.clear_index_services()
    rescan(collection)
    yield collection
    fi.clear_index_services()


def rescan(collection, *extra):
    call_command("import_dataset", *collection.import_args, "--workers", "0", *extra, verbosity=0)


def build(collection, *args, name="tiny"):
    call_command(
        "build_index",
        "--name",
        name,
        "--dataset",
        collection.name,
        "--workers",
        "0",
        "--batch-size",
        "4",
        *args,
        verbosity=0,
    )
    return published(name)


def published(name):
    """The manifest, ids, vectors and hashes of the published index `name`."""
    folder = settings.TINYRAG_INDEX_DIR / name
    return (
        fi.read_manifest(settings.TINYRAG_INDEX_DIR, name),
        np.load(folder / "ids.npy"),
        np.load(folder / "embeddings.npy"),
        np.load(folder / "hashes.npy"),
    )


def train_ids(collection) -> list[int]:
    rows = Image.objects.filter(dataset__name=collection.name, split="train")
    return sorted(rows.values_list("id", flat=True))


def assert_same_index_as_a_full_rebuild(collection, ids, vectors):
    _, full_ids, full_vectors, _ = build(collection, "--restart", name="full")
    np.testing.assert_array_equal(ids, full_ids)
    np.testing.assert_allclose(vectors, full_vectors, atol=1e-6)


def test_a_first_build_embeds_everything_and_records_each_file_hash(imported):
    manifest, ids, _, hashes = build(imported)
    assert list(ids) == train_ids(imported)
    assert (manifest.reused, manifest.embedded) == (0, len(ids))
    assert manifest.preprocessing
    recorded = dict(Image.objects.filter(id__in=ids.tolist()).values_list("id", "content_hash"))
    assert [h.decode() for h in hashes] == [recorded[i] for i in ids.tolist()]


def test_a_rebuild_of_an_unchanged_collection_embeds_nothing(imported):
    _, ids, vectors, _ = build(imported)
    manifest, again_ids, again_vectors, _ = build(imported)
    assert (manifest.reused, manifest.embedded, manifest.count) == (len(ids), 0, len(ids))
    np.testing.assert_array_equal(again_ids, ids)
    np.testing.assert_array_equal(again_vectors, vectors)


def test_added_changed_and_deleted_files_are_all_that_is_embedded(imported):
    _, before_ids, _, _ = build(imported)
    changed, deleted = imported.images()[:2]
    (imported.folder / f"new{changed.suffix}").write_bytes(jpeg_bytes((5, 250, 5), seed=91))
    changed.write_bytes(jpeg_bytes((250, 5, 5), seed=92))
    deleted_id = Image.objects.get(path=imported.path(deleted)).id
    deleted.unlink()
    rescan(imported, "--prune")

    manifest, ids, vectors, _ = build(imported)

    assert list(ids) == train_ids(imported)
    assert deleted_id not in ids
    assert len(ids) == len(before_ids)  # one in, one out
    assert (manifest.reused, manifest.embedded) == (len(ids) - 2, 2)  # the new and the changed
    assert_same_index_as_a_full_rebuild(imported, ids, vectors)


def test_a_renamed_file_keeps_its_vector_under_its_new_row(imported):
    _, _, before_vectors, before_hashes = build(imported)
    old = imported.images()[0]
    old_row = Image.objects.get(path=imported.path(old))
    new = imported.folder / f"renamed{old.suffix}"
    old.rename(new)
    rescan(imported, "--prune")

    manifest, ids, vectors, _ = build(imported)

    new_id = Image.objects.get(path=imported.path(new)).id
    assert old_row.id not in ids
    assert (manifest.reused, manifest.embedded) == (len(ids), 0)
    row = list(before_hashes).index(old_row.content_hash.encode())
    np.testing.assert_array_equal(vectors[list(ids).index(new_id)], before_vectors[row])
    assert_same_index_as_a_full_rebuild(imported, ids, vectors)


def test_restart_embeds_everything_again(imported):
    build(imported)
    manifest, ids, _, _ = build(imported, "--restart")
    assert (manifest.reused, manifest.embedded) == (0, len(ids))


def test_other_preprocessing_or_model_reuses_nothing(
    imported, monkeypatch, clip_settings, tmp_path
):
    from tests.fixtures.models import build_clip

    build(imported)
    monkeypatch.setattr(ImagePreprocessor, "DECODE_VERSION", ImagePreprocessor.DECODE_VERSION + 1)
    manifest, ids, _, _ = build(imported)
    assert (manifest.reused, manifest.embedded) == (0, len(ids))

    clip_settings.TINYRAG_CLIP_MODEL = str(build_clip(tmp_path / "other-clip", seed=1))
    manifest, ids, _, _ = build(imported)
    assert (manifest.reused, manifest.embedded) == (0, len(ids))
    assert manifest.model_id == clip_settings.TINYRAG_CLIP_MODEL


def test_a_published_build_without_hashes_is_rebuilt_in_full(imported):
    _, ids, vectors, _ = build(imported)
    (settings.TINYRAG_INDEX_DIR / "tiny" / "hashes.npy").unlink()  # as builds before this one left
    manifest, again_ids, again_vectors, _ = build(imported)
    assert (manifest.reused, manifest.embedded) == (0, len(ids))
    np.testing.assert_array_equal(again_ids, ids)
    np.testing.assert_allclose(again_vectors, vectors, atol=1e-6)


def test_rows_not_hashed_yet_are_embedded(imported):
    _, ids, _, _ = build(imported)
    Image.objects.filter(id=int(ids[0])).update(content_hash="")
    manifest, _, _, hashes = build(imported)
    assert (manifest.reused, manifest.embedded) == (len(ids) - 1, 1)
    assert hashes[0] == b""
