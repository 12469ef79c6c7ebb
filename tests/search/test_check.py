"""check_dataset: a clean dataset passes; each kind of problem is named and fails the command."""

from __future__ import annotations

import json

import pytest
from django.core.management import CommandError, call_command
from PIL import Image

from search.catalog.datasets.tinyimagenet import check


def expect_args(e):
    return [
        "--expected-classes",
        str(e.classes),
        "--expected-train",
        str(e.train_per_class),
        "--expected-val",
        str(e.val_per_class),
        "--expected-test",
        str(e.test),
    ]


def test_clean_dataset_passes_with_exact_counts(
    prepared_root, expectations, synthetic_tinyimagenet, capsys
):
    call_command(
        "check_dataset", "--root", str(prepared_root), *expect_args(expectations), "--workers", "0"
    )
    out = capsys.readouterr().out
    n = len(synthetic_tinyimagenet.wnids)
    assert f"{n} classes" in out
    assert f"train: {n * 5} images (5-5 per class)" in out
    assert f"val: {n * 3} images (3-3 per class)" in out
    assert "test: 4 images" in out
    assert f"grayscale images: {len(synthetic_tinyimagenet.grayscale)}" in out
    assert "Complete and clean." in out


def test_json_report(prepared_root, expectations, synthetic_tinyimagenet, capsys):
    call_command(
        "check_dataset",
        "--root",
        str(prepared_root),
        *expect_args(expectations),
        "--json",
        "--workers",
        "2",
    )
    report = json.loads(capsys.readouterr().out)
    assert report["ok"] is True
    assert report["images"] == {"train": 20, "val": 12, "test": 4}
    assert report["per_class"]["val"] == {w: 3 for w in synthetic_tinyimagenet.wnids}
    assert report["modes"] == {"RGB": 31, "L": 5}


def test_default_expectations_are_tinyimagenet_200(prepared_root):
    report = check(prepared_root)
    assert "wnids.txt lists 4 classes, expected 200" in report.problems
    assert "test: 4 images, expected 10,000" in report.problems
    assert any(
        p.startswith("train: 4 classes have fewer than 500 images (5 found)")
        for p in report.problems
    )


def damage(root, wnid):
    """One of each problem, each in its own place."""
    train = root / "train" / wnid
    (train / f"{wnid}_0.JPEG").unlink()  # -> class short, box line without file
    (train / f"{wnid}_2.JPEG").write_bytes((train / f"{wnid}_2.JPEG").read_bytes()[:300])
    Image.new("RGB", (32, 32)).save(train / f"{wnid}_3.JPEG", "JPEG")
    (root / "val" / wnid / "val_0.JPEG").unlink()  # -> annotation without file
    (root / "val" / wnid / "notes.txt").write_text("stray")
    (root / "README").write_text("stray")


def test_each_problem_is_named(prepared_root, expectations, synthetic_tinyimagenet):
    wnid = synthetic_tinyimagenet.wnids[0]
    damage(prepared_root, wnid)
    report = check(prepared_root, expectations)

    [unreadable] = report.unreadable
    assert unreadable.startswith(f"train/{wnid}/{wnid}_2.JPEG: ")
    assert "runcated" in unreadable  # Pillow words it "truncated" or "Truncated File Read"
    assert report.wrong_size == [f"train/{wnid}/{wnid}_3.JPEG: 32x32"]
    assert report.val_annotations_without_file == ["val_0.JPEG"]
    assert report.box_lines_without_file == 1
    assert report.stray == ["README", f"val/{wnid}/notes.txt"]
    assert f"train: 1 classes have fewer than 5 images (4 found): {wnid}" in report.problems
    assert f"val: 1 classes have fewer than 3 images (2 found): {wnid}" in report.problems
    assert len(report.problems) == 7


def test_val_file_in_the_wrong_class_folder_is_a_mismatch(
    prepared_root, expectations, synthetic_tinyimagenet
):
    first, second = synthetic_tinyimagenet.wnids[:2]
    (prepared_root / "val" / first / "val_0.JPEG").rename(
        prepared_root / "val" / second / "val_0.JPEG"
    )
    report = check(prepared_root, expectations)
    assert report.val_files_without_annotation == [f"val/{second}/val_0.JPEG"]
    assert report.val_annotations_without_file == ["val_0.JPEG"]


def test_unprepared_layout_says_run_prepare(tmp_path, synthetic_tinyimagenet, expectations):
    from tests.fixtures.tinyimagenet import write_tree

    root = write_tree(synthetic_tinyimagenet, tmp_path / "raw")
    report = check(root, expectations)
    assert "images are still in the archive's layout: run prepare_dataset" in report.problems


def test_command_exits_non_zero_and_lists_problems(
    prepared_root, expectations, capsys, synthetic_tinyimagenet
):
    damage(prepared_root, synthetic_tinyimagenet.wnids[0])
    with pytest.raises(CommandError, match="7 problems found") as exc:
        call_command("check_dataset", "--root", str(prepared_root), *expect_args(expectations))
    assert exc.value.returncode == 1
    err = capsys.readouterr().err
    assert err.count("PROBLEM: ") == 7
    assert "1 images are not 64x64" in err


def test_missing_folder_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="run prepare_dataset first"):
        call_command("check_dataset", "--root", str(tmp_path / "nope"))
