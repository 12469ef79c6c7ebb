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


@pytest.fixture(params=["tinyimagenet", "imagefolder"])
def collection(request, tmp_path):
    """(root, import arguments, class folder of train images) of a fresh collection."""
    if request.param == "tinyimagenet":
        root = request.getfixturevalue("prepared_root")
        return root, ["--root", str(root)], root / "train" / "n07749582"
    root = tmp_path / "pets"
    for split, cls, n in [("train", "tabby_cat", 4), ("val", "beagle", 2)]:
        (root / split / cls).mkdir(parents=True)
        for k in range(n):
            (root / split / cls / f"{k}.jpg").write_bytes(jpeg_bytes((90, 40, 9), seed=k))
    return (
        root,
        ["--root", str(root), "--format", "imagefolder", "--name", "pets"],
        (root / "train" / "tabby_cat"),
    )


def rescan(args, *extra):
    call_command("import_dataset", *args, "--workers", "0", *extra)


def sha256(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def images(folder) -> list:
    """The image files of a class folder, in order (TinyImageNet's also holds a boxes file)."""
    return sorted(p for p in folder.iterdir() if p.suffix in {".JPEG", ".jpg"})


def row(root, path) -> Image:
    return Image.objects.get(path=path.relative_to(root).as_posix())


def test_import_records_each_file_stat_and_sha256(collection):
    root, args, folder = collection
    rescan(args)
    first = images(folder)[0]
    img = row(root, first)
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
    root, args, folder = collection
    rescan(args)
    total = Image.objects.count()
    changed, touched = images(folder)[:2]
    changed_id, touched_before = row(root, changed).pk, row(root, touched)

    added = folder / f"new{changed.suffix}"
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
    rescan(args)

    out = capsys.readouterr().out
    assert f"1 images added (0 renamed), 1 changed, {total - 1} unchanged." in out
    rel = lambda p: p.relative_to(root).as_posix()  # noqa: E731
    assert sorted(read) == sorted([rel(changed), rel(touched), rel(added)])

    now = row(root, changed)
    assert now.pk == changed_id  # updated in place: its history stays attached
    assert (now.width, now.height) == (32, 32)
    assert (now.size, now.content_hash) == (changed.stat().st_size, sha256(changed))

    after = row(root, touched)
    assert after.mtime_ns == later
    assert after.content_hash == touched_before.content_hash == sha256(touched)
    assert row(root, added).content_hash == sha256(added)
    assert Image.objects.count() == total + 1

    read.clear()
    rescan(args)  # nothing moved since: not one file read
    assert read == []
    assert f"0 images added (0 renamed), 0 changed, {total + 1} unchanged." in (
        capsys.readouterr().out
    )


def test_a_moved_file_is_counted_renamed_and_prune_takes_its_history(collection, capsys):
    root, args, folder = collection
    rescan(args)
    old = images(folder)[0]
    image = row(root, old)
    user = get_user_model().objects.create_user("ana", password="pw-12345678")
    query = SearchQuery.objects.create(
        user=user, kind="text", text="cat", top_k=1, encoder="e", index_name="i", duration_ms=1
    )
    SearchResult.objects.create(query=query, rank=1, image=image, score=0.5)

    new = folder / f"moved{old.suffix}"
    old.rename(new)
    capsys.readouterr()
    rescan(args, "--prune")

    captured = capsys.readouterr()
    assert "1 images added (1 renamed), 0 changed," in captured.out
    assert "1 imported images are no longer on disk (removed)." in captured.err
    assert "1 search results and descriptions of users' history went with them." in captured.err
    assert not Image.objects.filter(pk=image.pk).exists()
    assert row(root, new).content_hash == image.content_hash
    assert not SearchResult.objects.filter(query=query).exists()
    assert SearchQuery.objects.filter(pk=query.pk).exists()  # the query itself stays


def test_a_file_that_no_longer_decodes_keeps_its_row_and_is_listed(collection, capsys):
    root, args, folder = collection
    rescan(args)
    broken = images(folder)[0]
    before = row(root, broken)
    broken.write_bytes(broken.read_bytes()[:300])  # truncated mid-scan

    capsys.readouterr()
    rescan(args)

    err = capsys.readouterr().err
    assert f"Skipped 1 unreadable images:\n  {broken.relative_to(root).as_posix()}: " in err
    after = row(root, broken)
    assert (after.width, after.size, after.mtime_ns, after.content_hash) == (
        before.width,
        before.size,
        before.mtime_ns,
        before.content_hash,
    )


def test_rows_imported_before_hashes_are_hashed_on_the_next_rescan(collection, capsys):
    root, args, folder = collection
    rescan(args)
    total = Image.objects.count()
    Image.objects.update(size=0, mtime_ns=0, content_hash="")  # as migration 0004 leaves them

    capsys.readouterr()
    rescan(args)

    assert f"0 images added (0 renamed), 0 changed, {total} unchanged." in capsys.readouterr().out
    for path in images(folder):
        assert row(root, path).content_hash == sha256(path)
    assert not Dataset.objects.get().images.filter(content_hash="").exists()
