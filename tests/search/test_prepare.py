"""prepare_dataset: safe extraction, the class-folder layout, idempotence, interruptions."""

from __future__ import annotations

import os
import zipfile

import pytest
from django.core.management import CommandError, call_command

from search.catalog.datasets import tinyimagenet
from tests.fixtures.tinyimagenet import build_tinyimagenet, write_tree, write_zip


def tree(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def expected_tree(data):
    """Where every file of the archive must end up, computed from the builder's records."""
    files = set()
    for name in data.files:
        parts = name.split("/")
        if parts[0] == "train" and parts[2] == "images":
            files.add(f"train/{parts[1]}/{parts[3]}")
        elif parts[:2] == ["val", "images"]:
            files.add(f"val/{data.val_labels[parts[2]]}/{parts[2]}")
        else:
            files.add(name)
    return sorted(files)


def test_extracts_and_lays_out_every_image_once(synthetic_tinyimagenet, tinyimagenet_zip, tmp_path):
    root = tmp_path / "tiny-imagenet-200"
    call_command(
        "prepare_dataset", "--root", str(root), "--archive", str(tinyimagenet_zip), verbosity=0
    )
    assert tree(root) == expected_tree(synthetic_tinyimagenet)
    # bytes are the archive's own
    with zipfile.ZipFile(tinyimagenet_zip) as zf:
        original = zf.read("tiny-imagenet-200/val/images/val_4.JPEG")
    wnid = synthetic_tinyimagenet.val_labels["val_4.JPEG"]
    assert (root / "val" / wnid / "val_4.JPEG").read_bytes() == original
    # archive junk never lands; the empty images/ folders are gone
    assert not list(root.rglob(".DS_Store"))
    assert not (tmp_path / "__MACOSX").exists()
    assert not (root / "val" / "images").exists()
    assert not list(root.glob("train/*/images"))


def test_archive_beside_the_folder_is_found(tinyimagenet_zip, tmp_path):
    (tmp_path / "tiny-imagenet-200.zip").write_bytes(tinyimagenet_zip.read_bytes())
    call_command("prepare_dataset", "--root", str(tmp_path / "tiny-imagenet-200"), verbosity=0)
    assert (tmp_path / "tiny-imagenet-200" / "wnids.txt").is_file()


def test_second_run_changes_nothing_and_says_so(prepared_root, capsys):
    before = {p: p.stat().st_mtime_ns for p in prepared_root.rglob("*")}
    call_command("prepare_dataset", "--root", str(prepared_root))
    assert "already prepared; nothing changed" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in prepared_root.rglob("*")} == before


def test_interrupted_run_completes_when_run_again(
    synthetic_tinyimagenet, tinyimagenet_zip, tmp_path, monkeypatch
):
    root = tmp_path / "tiny-imagenet-200"
    real_replace, calls = os.replace, []

    def replace_then_crash(src, dst):
        calls.append(src)
        if len(calls) == 12:  # the extraction rename plus 10 image moves, then Ctrl-C
            raise KeyboardInterrupt
        real_replace(src, dst)

    monkeypatch.setattr(tinyimagenet.os, "replace", replace_then_crash)
    with pytest.raises(KeyboardInterrupt):
        tinyimagenet.prepare(root, tinyimagenet_zip)
    monkeypatch.setattr(tinyimagenet.os, "replace", real_replace)

    report = tinyimagenet.prepare(root, tinyimagenet_zip)
    assert report.extracted_files == 0
    assert sum(report.moved.values()) == synthetic_tinyimagenet.image_count - 10 - 4  # test stays
    assert tree(root) == expected_tree(synthetic_tinyimagenet)


def test_interrupted_extraction_leaves_no_half_folder(tinyimagenet_zip, tmp_path, monkeypatch):
    root = tmp_path / "tiny-imagenet-200"
    real_copy = tinyimagenet.shutil.copyfileobj
    count = []

    def copy_then_crash(*args):
        count.append(1)
        if len(count) == 7:
            raise KeyboardInterrupt
        real_copy(*args)

    monkeypatch.setattr(tinyimagenet.shutil, "copyfileobj", copy_then_crash)
    with pytest.raises(KeyboardInterrupt):
        tinyimagenet.prepare(root, tinyimagenet_zip)
    assert not root.exists()
    monkeypatch.undo()
    tinyimagenet.prepare(root, tinyimagenet_zip)
    assert (root / "wnids.txt").is_file()
    assert not (tmp_path / ".tiny-imagenet-200.extracting").exists()


@pytest.mark.parametrize("evil", ["../escaped.txt", "/etc/escaped.txt", "a/../../escaped.txt"])
def test_entries_escaping_the_destination_are_refused(synthetic_tinyimagenet, tmp_path, evil):
    archive = write_zip(synthetic_tinyimagenet, tmp_path / "evil.zip", extra={evil: b"owned"})
    root = tmp_path / "out" / "tiny-imagenet-200"
    with pytest.raises(CommandError, match="refusing to extract"):
        call_command("prepare_dataset", "--root", str(root), "--archive", str(archive), verbosity=0)
    assert not root.exists()
    assert not list(tmp_path.rglob("escaped.txt"))


def test_missing_archive_says_what_to_run(tmp_path):
    with pytest.raises(CommandError, match="run download_dataset first"):
        call_command("prepare_dataset", "--root", str(tmp_path / "tiny-imagenet-200"), verbosity=0)


def test_unannotated_and_conflicting_files_are_reported_and_kept(tmp_path, capsys):
    data = build_tinyimagenet(
        wnids=["n02124075", "n04067472"], train_per_class=2, val_per_class=2, test_count=1
    )
    root = write_tree(data, tmp_path / "tiny-imagenet-200")  # extracted by hand, not prepared
    (root / "val" / "images" / "val_99.JPEG").write_bytes(b"not annotated")
    placed = root / "val" / data.val_labels["val_0.JPEG"] / "val_0.JPEG"
    placed.parent.mkdir()
    placed.write_bytes(b"an earlier copy")

    call_command("prepare_dataset", "--root", str(root))

    err = capsys.readouterr().err
    assert "2 files could not be placed" in err
    assert "val/images/val_99.JPEG: not in val_annotations.txt" in err
    assert f"val/images/val_0.JPEG: val/{data.val_labels['val_0.JPEG']}/val_0.JPEG exists" in err
    assert (root / "val" / "images" / "val_99.JPEG").read_bytes() == b"not annotated"
    assert (root / "val" / "images" / "val_0.JPEG").read_bytes() == data.files[
        "val/images/val_0.JPEG"
    ]
    assert placed.read_bytes() == b"an earlier copy"
