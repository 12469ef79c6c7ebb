"""import_dataset: classes and images into the database, idempotent, nothing removed silently."""

from __future__ import annotations

import shutil

import pytest
from django.core.management import CommandError, call_command

from search.catalog.models import Dataset, Image, ImageClass
from tests.fixtures.tinyimagenet import jpeg_bytes

pytestmark = pytest.mark.django_db


def run(root, *args):
    call_command("import_dataset", "--root", str(root), "--workers", "0", *args, verbosity=0)


def test_imports_classes_with_their_synonyms(prepared_root, synthetic_tinyimagenet):
    run(prepared_root)
    dataset = Dataset.objects.get(name="tiny-imagenet-200")
    assert dataset.source == "tinyimagenet"
    assert dataset.root == str(prepared_root.resolve())
    assert sorted(dataset.classes.values_list("wnid", flat=True)) == sorted(
        synthetic_tinyimagenet.wnids
    )
    shepherd = ImageClass.objects.get(wnid="n02106662")
    assert shepherd.name == "German shepherd"
    assert shepherd.names == [
        "German shepherd",
        "German shepherd dog",
        "German police dog",
        "alsatian",
    ]


def test_imports_every_image_with_split_class_size_and_mode(prepared_root, synthetic_tinyimagenet):
    run(prepared_root)
    data = synthetic_tinyimagenet
    assert Image.objects.count() == data.image_count
    assert Image.objects.filter(split="train").count() == 4 * 5
    assert Image.objects.filter(split="val").count() == 4 * 3
    assert Image.objects.filter(split="test", image_class=None).count() == 4
    img = Image.objects.get(path="val/n04067472/val_3.JPEG")
    assert (img.image_class.wnid, img.split, img.width, img.height) == ("n04067472", "val", 64, 64)
    assert Image.objects.filter(mode="L").count() == len(data.grayscale)
    assert set(Image.objects.filter(mode="L").values_list("path", flat=True)) == {
        p.replace("/images/", "/") if p.startswith("train/") else p for p in data.grayscale
    }


def test_rerun_adds_only_what_is_new(prepared_root, synthetic_tinyimagenet, capsys):
    run(prepared_root)
    ids_before = set(Image.objects.values_list("id", flat=True))
    (prepared_root / "train" / "n07749582" / "n07749582_77.JPEG").write_bytes(
        jpeg_bytes((1, 2, 3), seed=77)
    )

    call_command("import_dataset", "--root", str(prepared_root), "--workers", "0")

    out = capsys.readouterr().out
    assert "0 classes added, 0 updated; 1 images added (0 renamed), 0 changed, 36 unchanged." in out
    assert "Imported in" in out
    assert set(Image.objects.values_list("id", flat=True)) > ids_before
    assert Image.objects.count() == synthetic_tinyimagenet.image_count + 1


def test_vanished_files_are_reported_not_removed_unless_pruned(prepared_root, capsys):
    run(prepared_root)
    shutil.rmtree(prepared_root / "val" / "n02124075")
    call_command("import_dataset", "--root", str(prepared_root), "--workers", "0")
    assert "3 imported images are no longer on disk (kept; --prune removes them)" in (
        capsys.readouterr().err
    )
    assert Image.objects.filter(path__startswith="val/n02124075/").count() == 3

    run(prepared_root, "--prune")
    assert Image.objects.filter(path__startswith="val/n02124075/").count() == 0
    assert Image.objects.count() == 33


def stored_counts() -> tuple:
    """What the collections page reads, straight from the rows (no selector)."""
    (dataset,) = Dataset.objects.values_list(
        "class_count", "train_count", "val_count", "test_count"
    )
    classes = dict(ImageClass.objects.values_list("wnid", "image_total"))
    return dataset, classes


def test_an_import_stores_the_counts_of_the_collections_page(prepared_root):
    """4 classes of 5 train + 3 val images each, 4 unlabelled test images (the fixture)."""
    run(prepared_root)
    dataset, classes = stored_counts()
    assert dataset == (4, 20, 12, 4)
    assert set(classes.values()) == {8}


def test_a_rerun_and_a_prune_store_the_new_counts(prepared_root):
    run(prepared_root)
    (prepared_root / "train" / "n07749582" / "n07749582_77.JPEG").write_bytes(
        jpeg_bytes((1, 2, 3), seed=77)
    )
    shutil.rmtree(prepared_root / "val" / "n02124075")
    run(prepared_root, "--prune")
    dataset, classes = stored_counts()
    assert dataset == (4, 21, 9, 4)
    assert (classes["n07749582"], classes["n02124075"]) == (9, 5)


def test_unreadable_image_is_skipped_and_listed(prepared_root, capsys):
    (prepared_root / "test" / "images" / "test_9.JPEG").write_bytes(b"not a jpeg")
    call_command("import_dataset", "--root", str(prepared_root), "--workers", "0")
    assert "Skipped 1 unreadable images:\n  test/images/test_9.JPEG: " in capsys.readouterr().err
    assert not Image.objects.filter(path="test/images/test_9.JPEG").exists()


def test_parallel_header_reading_gives_the_same_rows(prepared_root):
    call_command(
        "import_dataset",
        "--root",
        str(prepared_root),
        "--workers",
        "2",
        "--name",
        "parallel",
        verbosity=0,
    )
    run(prepared_root, "--name", "serial")
    rows = lambda name: sorted(  # noqa: E731
        Image.objects.filter(dataset__name=name).values_list("path", "split", "width", "mode")
    )
    assert rows("parallel") == rows("serial")


def test_imagefolder_format(tmp_path):
    root = tmp_path / "pets"
    for split, cls, n in [("train", "tabby_cat", 3), ("train", "beagle", 2), ("val", "beagle", 1)]:
        (root / split / cls).mkdir(parents=True, exist_ok=True)
        for k in range(n):
            (root / split / cls / f"{k}.png").write_bytes(jpeg_bytes((9, 9, 9), k))
    (root / "train" / ".DS_Store").write_bytes(b"junk")

    run(root, "--format", "imagefolder", "--name", "pets")

    dataset = Dataset.objects.get(name="pets")
    assert dataset.source == "imagefolder"
    assert dict(dataset.classes.values_list("wnid", "name")) == {
        "beagle": "beagle",
        "tabby_cat": "tabby cat",
    }
    assert dataset.images.filter(split="train").count() == 5
    assert dataset.images.get(split="val").image_class.wnid == "beagle"


def test_same_name_other_format_is_refused(prepared_root, tmp_path):
    run(prepared_root)
    (tmp_path / "x" / "cls").mkdir(parents=True)
    (tmp_path / "x" / "cls" / "a.jpg").write_bytes(jpeg_bytes((1, 1, 1), 1))
    with pytest.raises(CommandError, match="was imported as tinyimagenet"):
        run(tmp_path / "x", "--format", "imagefolder")


def test_missing_root_is_a_clear_error(tmp_path):
    with pytest.raises(CommandError, match="does not exist"):
        run(tmp_path / "nothing")


def test_a_root_outside_the_allowed_folders_is_refused(prepared_root, settings, tmp_path):
    from search.catalog.models import Dataset

    settings.TINYRAG_DATA_DIR = tmp_path / "data"
    settings.TINYRAG_DATASET_ROOTS = []
    with pytest.raises(CommandError, match="The root must lie in"):
        run(prepared_root)  # its images would never be served
    assert not Dataset.objects.exists()


# --- the class names in Bahasa Indonesia (search/catalog/data) -------------------------------


def test_import_loads_the_indonesian_names_and_a_rerun_restores_them(prepared_root, capsys):
    call_command("import_dataset", "--root", str(prepared_root), "--workers", "0", verbosity=0)
    cat = ImageClass.objects.get(wnid="n02124075")
    assert cat.translations == {
        "id": {
            "name": "kucing mesir",
            "synonyms": ["kucing mesir", "mau mesir"],
            "source": "tinyrag",
        }
    }
    shepherd = ImageClass.objects.get(wnid="n02106662")
    assert shepherd.translations["id"]["synonyms"] == [
        "anjing herder",
        "herder",
        "anjing gembala jerman",
        "german shepherd",
    ]
    ImageClass.objects.filter(wnid="n02124075").update(translations={})

    call_command("import_dataset", "--root", str(prepared_root), "--workers", "0")

    assert "0 classes added, 1 updated" in capsys.readouterr().out
    assert ImageClass.objects.get(wnid="n02124075").translations["id"]["name"] == "kucing mesir"
