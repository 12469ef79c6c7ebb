"""Fixtures for the evaluation tests: a synthetic TinyImageNet whose classes are solid colours.

Every image of a class is the same solid colour, so a val image and the train images of its
class are pixel-identical: image -> image retrieval is perfect by construction, whatever the
(random-weight) CLIP, and the expected metrics can be written down by hand.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from PIL import Image

from search.index.service import clear_index_services
from tests.fixtures.tinyimagenet import (
    SyntheticTinyImageNet,
    build_tinyimagenet,
    write_zip,
)

# Far apart in colour, so the tiny CLIP cannot confuse them either.
SOLID_COLOURS = [(230, 20, 20), (20, 200, 40), (30, 40, 230), (240, 230, 30)]
INDEX_NAME = "tiny"


def solid_jpeg(rgb: tuple[int, int, int], size: int = 64) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (size, size), rgb).save(buf, "JPEG", quality=95)
    return buf.getvalue()


def build_solid_tinyimagenet() -> SyntheticTinyImageNet:
    """build_tinyimagenet's archive (4 classes, 5 train + 3 val each, 4 test), every image of a
    class replaced by the class's solid colour (all RGB)."""
    data = build_tinyimagenet()
    colour = dict(zip(data.wnids, SOLID_COLOURS, strict=True))
    for path in list(data.files):
        if not path.endswith(".JPEG"):
            continue
        if path.startswith("train/"):
            rgb = colour[path.split("/")[1]]
        elif path.startswith("val/"):
            rgb = colour[data.val_labels[path.rsplit("/", 1)[1]]]
        else:
            rgb = (128, 128, 128)
        data.files[path] = solid_jpeg(rgb)
    data.grayscale.clear()
    return data


@pytest.fixture(scope="session")
def solid_zip(tmp_path_factory):
    return write_zip(
        build_solid_tinyimagenet(), tmp_path_factory.mktemp("solid") / "tiny-imagenet-200.zip"
    )


@pytest.fixture
def solid_dataset(solid_zip, clip_settings, tmp_path):
    """The solid-colour dataset prepared and imported; the index folder in this test's tmp."""
    from search.catalog.datasets.tinyimagenet import prepare

    root = tmp_path / "tiny-imagenet-200"
    prepare(root, solid_zip)
    clip_settings.TINYRAG_INDEX_DIR = tmp_path / "vector_db"
    clip_settings.TINYRAG_INDEX_NAME = INDEX_NAME
    clip_settings.MEDIA_ROOT = tmp_path / "media"
    # fp32: the independent checks embed the same pixels through another batch path, and bf16
    # rounding could flip a close call between two classes
    clip_settings.TINYRAG_FORCE_FP32 = True
    call_command("import_dataset", "--root", str(root), "--workers", "0", verbosity=0)
    clear_index_services()
    yield root
    clear_index_services()


def build(name: str, splits: str = "train") -> None:
    call_command(
        "build_index", "--name", name, "--splits", splits, "--workers", "0",
        "--batch-size", "32", verbosity=0,
    )  # fmt: skip


@pytest.fixture
def solid_index(solid_dataset):
    """The solid-colour dataset with its 20 train images indexed (index "tiny")."""
    build(INDEX_NAME)
    return solid_dataset


def evaluate(*args: str) -> str:
    """Run the evaluate command quietly (no progress bars); return what it printed."""
    out = io.StringIO()
    call_command("evaluate", "--workers", "0", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


CATALOG_CLASSES = ["lemon", "reel", "alsatian", "goldfish"]
CATALOG_SPLITS = {"train": 5, "val": 3}  # labelled images per class; plus 4 unlabelled test


@pytest.fixture
def published_catalog(settings, tmp_path, db):
    """What the staff form reads, without any model (publish_catalog)."""
    from django.core.cache import cache

    yield publish_catalog(settings, tmp_path)
    cache.clear()


def publish_catalog(settings, tmp_path):
    """A dataset of 4 classes (5 train and 3 val images each, 4 unlabelled test images) in the
    database, and the manifest of an index "tiny" of its 20 train images published in
    tmp_path as TINYRAG_INDEX_DIR."""
    from django.core.cache import cache

    from search.catalog.models import Dataset, Image, ImageClass
    from search.index.service import IndexManifest

    settings.TINYRAG_INDEX_DIR = tmp_path / "vector_db"
    settings.TINYRAG_INDEX_NAME = INDEX_NAME
    dataset = Dataset.objects.create(
        name="tiny-imagenet-200", root=str(tmp_path / "data"), source="tinyimagenet"
    )
    images = []
    for n, name in enumerate(CATALOG_CLASSES):
        cls = ImageClass.objects.create(dataset=dataset, wnid=f"n{n:08d}", name=name, names=[name])
        for split, count in CATALOG_SPLITS.items():
            images += [
                Image(dataset=dataset, split=split, image_class=cls, path=f"{split}/{n}/{i}.JPEG",
                      width=64, height=64, mode="RGB")
                for i in range(count)
            ]  # fmt: skip
    images += [
        Image(dataset=dataset, split="test", path=f"test/{i}.JPEG", width=64, height=64, mode="RGB")
        for i in range(4)
    ]
    Image.objects.bulk_create(images)
    folder = settings.TINYRAG_INDEX_DIR / INDEX_NAME
    folder.mkdir(parents=True)
    manifest = IndexManifest(
        name=INDEX_NAME, model_id="tiny-clip", dim=32, index_type="flat", index_params={},
        count=20, dataset=dataset.name, splits=["train"], created_at="2026-01-01T00:00:00Z",
    )  # fmt: skip
    (folder / "manifest.json").write_text(manifest.to_json(), encoding="utf-8")
    cache.clear()  # the form's split counts are cached
    return dataset


# The image metrics of `solid_index` (by hand): 4 classes x 3 val queries, 5 identical train
# images per class, so the top 5 are all hits and the top 10 half
PERFECT = {
    "queries": 12,
    "recall@1": 1.0,
    "precision@1": 1.0,
    "recall@5": 1.0,
    "precision@5": 1.0,
    "recall@10": 1.0,
    "precision@10": 0.5,
    "mrr": 1.0,
    "self_excluded": 0,
}
