"""import_dataset as a rescan: added, changed, touched, renamed, deleted and unreadable files,
in both formats; a file is read again only when its stat moved."""

from __future__ import annotations

import hashlib
import os

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command

from search.catalog.datasets import importer
from search.catalog.models import Dataset, Image
from search.queries.models import SearchQuery, SearchResult
from tests.fixtures.tinyimagenet import jpeg_bytes

pytestmark = pytest.mark.django_db


def rescan(collection, *extra):
    call_command("import_dataset", *collection.import_args, "--workers", "0", *extra)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def row(collection, path) -> Image:
    return Image.objects.get(path=collection.path(path))


def test_import_records_each_file_stat_and_sha256(collection):
    rescan(collection)
    first = collection.images()[0]
    img = row(collection, first)
    stat = first.stat()
    assert (img.size, img.mtime_ns, img.content_hash) == (
        stat.st_size,
        stat.st_mtime_ns,
        sha256(first),
    )
    assert not Image.objects.filter(content_hash="").exists()


def test_a_rescan_adds_new_updates_changed_and_only_restats_the_rest(
    collection, capsys, monkeypatch
):
    rescan(collection)
    total = Image.objects.count()
    changed, touched = collection.images()[:2]
    changed_id, touched_before = row(collection, changed).pk, row(collection, touched)

    added = collection.folder / f"new{changed.suffix}"
    added.write_bytes(jpeg_bytes((1, 2, 3), seed=77))
    changed.write_bytes(jpeg_bytes((200, 10, 10), seed=5, size=32))  # other bytes, other size
    later = touched.stat().st_mtime_ns + 10**10
    os.utime(touched, ns=(later, later))  # same bytes, mtime moved

    read: list[str] = []
    real_read = importer.read_image_infos

    def spy(root_, paths, **kwargs):
        read.extend(paths)
        return real_read(root_, paths, **kwargs)

    monkeypatch.setattr(importer, "read_image_infos", spy)
    capsys.readouterr()
    rescan(collection)

    out = capsys.readouterr().out
    assert f"1 images added (0 renamed), 1 changed, {total - 1} unchanged." in out
    assert sorted(read) == sorted(map(collection.path, [changed, touched, added]))

    now = row(collection, changed)
    assert now.pk == changed_id  # updated in place: its history stays attached
    assert (now.width, now.height) == (32, 32)
    assert (now.size, now.content_hash) == (changed.stat().st_size, sha256(changed))

    after = row(collection, touched)
    assert after.mtime_ns == later
    assert after.content_hash == touched_before.content_hash == sha256(touched)
    assert row(collection, added).content_hash == sha256(added)
    assert Image.objects.count() == total + 1

    read.clear()
    rescan(collection)  # nothing moved since: not one file read
    assert read == []
    assert f"0 images added (0 renamed), 0 changed, {total + 1} unchanged." in (
        capsys.readouterr().out
    )


def test_a_moved_file_is_counted_renamed_and_prune_takes_its_history(collection, capsys):
    rescan(collection)
    old = collection.images()[0]
    image = row(collection, old)
    user = get_user_model().objects.create_user("ana", password="pw-12345678")
    query = SearchQuery.objects.create(
        user=user, kind="text", text="cat", top_k=1, encoder="e", index_name="i", duration_ms=1
    )
    SearchResult.objects.create(query=query, rank=1, image=image, score=0.5)

    new = collection.folder / f"moved{old.suffix}"
    old.rename(new)
    capsys.readouterr()
    rescan(collection, "--prune")

    captured = capsys.readouterr()
    assert "1 images added (1 renamed), 0 changed," in captured.out
    assert "1 imported images are no longer on disk (removed)." in captured.err
    assert "1 search results and descriptions of users' history went with them." in captured.err
    assert not Image.objects.filter(pk=image.pk).exists()
    assert row(collection, new).content_hash == image.content_hash
    assert not SearchResult.objects.filter(query=query).exists()
    assert SearchQuery.objects.filter(pk=query.pk).exists()  # the query itself stays


def test_a_file_that_no_longer_decodes_keeps_its_row_and_is_listed(collection, capsys):
    rescan(collection)
    broken = collection.images()[0]
    before = row(collection, broken)
    broken.write_bytes(broken.read_bytes()[:300])  # truncated mid-scan

    capsys.readouterr()
    rescan(collection)

    err = capsys.readouterr().err
    assert f"Skipped 1 unreadable images:\n  {collection.path(broken)}: " in err
    after = row(collection, broken)
    assert (after.width, after.size, after.mtime_ns, after.content_hash) == (
        before.width,
        before.size,
        before.mtime_ns,
        before.content_hash,
    )


def test_rows_imported_before_hashes_are_hashed_on_the_next_rescan(collection, capsys):
    rescan(collection)
    total = Image.objects.count()
    Image.objects.update(size=0, mtime_ns=0, content_hash="")  # as migration 0004 leaves them

    capsys.readouterr()
    rescan(collection)

    assert f"0 images added (0 renamed), 0 changed, {total} unchanged." in capsys.readouterr().out
    for path in collection.images():
        assert row(collection, path).content_hash == sha256(path)
    assert not Dataset.objects.get().images.filter(content_hash="").exists()
