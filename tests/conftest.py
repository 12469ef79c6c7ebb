"""Shared fixtures: users and clients, a synthetic TinyImageNet, tiny offline models."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.fixtures.tinyimagenet import (
    SyntheticTinyImageNet,
    build_tinyimagenet,
    jpeg_bytes,
    write_zip,
)

pytest_plugins = [
    "tests.fixtures.http",
    "tests.fixtures.models",
    "tests.fixtures.site",
    "tests.fixtures.backends",
    "tests.fixtures.vlm",
]

PASSWORD = "correct-horse-battery-staple-42"


@pytest.fixture(autouse=True)
def _english_outside_requests():
    """Every test starts in the default language, whatever an earlier one activated in this
    thread (a request activates its own; code outside one, such as render_to_string, uses
    the thread's)."""
    from django.conf import settings
    from django.utils import translation

    translation.activate(settings.LANGUAGE_CODE)
    yield
    translation.activate(settings.LANGUAGE_CODE)


@pytest.fixture
def fresh_throttle_state():
    """Rate limits and login throttles count in the (database) cache, keyed by user id or
    address: ids and addresses repeat across tests, so these start and end with none."""
    from django.core.cache import cache

    cache.clear()
    yield
    cache.clear()


@pytest.fixture
def password() -> str:
    return PASSWORD


@pytest.fixture
def user(django_user_model):
    return django_user_model.objects.create_user("alice", "alice@example.com", PASSWORD)


@pytest.fixture
def other_user(django_user_model):
    return django_user_model.objects.create_user("bob", "bob@example.com", PASSWORD)


@pytest.fixture
def auth_client(client, user):
    client.force_login(user)
    return client


@pytest.fixture(scope="session")
def synthetic_tinyimagenet() -> SyntheticTinyImageNet:
    return build_tinyimagenet()


@pytest.fixture(scope="session")
def tinyimagenet_zip(synthetic_tinyimagenet, tmp_path_factory):
    return write_zip(
        synthetic_tinyimagenet, tmp_path_factory.mktemp("archive") / "tiny-imagenet-200.zip"
    )


@pytest.fixture
def prepared_root(tinyimagenet_zip, tmp_path):
    """A fresh, prepared copy of the synthetic dataset (function scope: tests may damage it)."""
    from search.catalog.datasets.tinyimagenet import prepare

    root = tmp_path / "tiny-imagenet-200"
    prepare(root, tinyimagenet_zip)
    return root


@dataclass(frozen=True)
class Collection:
    """A collection on disk, not imported yet: how import_dataset takes it, and one of its
    class folders of train images (to add, change, move and delete files in)."""

    name: str
    root: Path
    import_args: list[str]
    folder: Path

    def images(self) -> list[Path]:
        """The class folder's image files, in order (TinyImageNet's also holds a boxes file)."""
        return sorted(p for p in self.folder.iterdir() if p.suffix in {".JPEG", ".jpg"})

    def path(self, file: Path) -> str:
        """`file` as its Image row's path."""
        return file.relative_to(self.root).as_posix()


@pytest.fixture(params=["tinyimagenet", "imagefolder"])
def collection(request, tmp_path) -> Collection:
    """The synthetic TinyImageNet, prepared, and a small image folder (two formats, one test)."""
    if request.param == "tinyimagenet":
        root = request.getfixturevalue("prepared_root")
        return Collection(
            "tiny-imagenet-200", root, ["--root", str(root)], root / "train" / "n07749582"
        )
    root = tmp_path / "pets"
    for split, cls, n in [("train", "tabby_cat", 4), ("train", "beagle", 3), ("val", "beagle", 2)]:
        (root / split / cls).mkdir(parents=True)
        for k in range(n):
            rgb = (90, 40, 9) if cls == "tabby_cat" else (20, 60, 200)
            (root / split / cls / f"{k}.jpg").write_bytes(jpeg_bytes(rgb, seed=k))
    args = ["--root", str(root), "--format", "imagefolder", "--name", "pets"]
    return Collection("pets", root, args, root / "train" / "tabby_cat")


@pytest.fixture
def expectations(synthetic_tinyimagenet):
    from search.catalog.datasets.tinyimagenet import Expectations

    d = synthetic_tinyimagenet
    return Expectations(
        classes=len(d.wnids),
        train_per_class=d.train_per_class,
        val_per_class=d.val_per_class,
        test=d.test_count,
    )


@pytest.fixture
def dataset_imported(prepared_root, clip_settings, tmp_path, db):
    """The synthetic TinyImageNet in the database, with the tiny CLIP configured; the index
    ("tiny") and uploads go to this test's tmp_path."""
    from django.core.management import call_command

    from search.index.service import clear_index_services

    clip_settings.TINYRAG_INDEX_DIR = tmp_path / "vector_db"
    clip_settings.TINYRAG_INDEX_NAME = "tiny"
    clip_settings.MEDIA_ROOT = tmp_path / "media"
    call_command("import_dataset", "--root", str(prepared_root), "--workers", "0", verbosity=0)
    clear_index_services()
    yield prepared_root
    clear_index_services()


@pytest.fixture
def search_index(dataset_imported):
    """The train split of the synthetic dataset published as the flat index "tiny"."""
    from django.core.management import call_command

    call_command(
        "build_index", "--name", "tiny", "--workers", "0", "--batch-size", "4", verbosity=0
    )
    return dataset_imported
