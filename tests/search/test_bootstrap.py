"""bootstrap: from an archive to a published index in one command, skipping what is done."""

from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from search.catalog.models import Image
from search.index import service as fi
from tests.fixtures.http import unused_port

pytestmark = pytest.mark.django_db


@pytest.fixture
def fresh(clip_settings, tmp_path):
    clip_settings.TINYRAG_DATA_DIR = tmp_path / "data"
    clip_settings.TINYRAG_INDEX_DIR = tmp_path / "vector_db"
    clip_settings.TINYRAG_INDEX_NAME = "tiny"
    fi.clear_index_services()
    return clip_settings


def test_bootstrap_runs_every_step_then_skips_what_is_done(fresh, tinyimagenet_zip, capsys):
    call_command("bootstrap", "--archive", str(tinyimagenet_zip), "--limit-per-class", "2")
    out = capsys.readouterr().out
    for n, step in enumerate(
        ["download", "prepare", "check", "import", "setup_models", "build_index"], start=1
    ):
        assert f"[{n}/6] {step} ..." in out
    assert Image.objects.count() == 36
    manifest = fi.read_manifest(fresh.TINYRAG_INDEX_DIR, "tiny")
    assert (manifest.count, manifest.limit_per_class) == (8, 2)

    call_command("bootstrap", "--limit-per-class", "2")
    out = capsys.readouterr().out
    assert "[1/6] download: already done, skipped" in out
    assert "[5/6] setup_models: already done, skipped" in out
    assert "[6/6] build_index: already done, skipped" in out
    assert fi.read_manifest(fresh.TINYRAG_INDEX_DIR, "tiny").created_at == manifest.created_at


def test_a_model_added_after_the_index_is_set_up_by_the_next_bootstrap(
    fresh, tinyimagenet_zip, tiny_multilingual_dir, capsys
):
    """An upgrade that adds the multilingual encoder: the index is there, the model is not."""
    call_command("bootstrap", "--archive", str(tinyimagenet_zip), "--limit-per-class", "2")
    capsys.readouterr()
    fresh.TINYRAG_TEXT_MODEL = str(tiny_multilingual_dir.parent / "not-yet-copied")
    with pytest.raises(CommandError, match="TINYRAG_TEXT_MODEL"):
        call_command("bootstrap", "--limit-per-class", "2")
    assert "[5/6] setup_models ..." in capsys.readouterr().out  # tried, not skipped
    fresh.TINYRAG_TEXT_MODEL = str(tiny_multilingual_dir)
    call_command("bootstrap", "--limit-per-class", "2")
    assert "[5/6] setup_models: already done, skipped" in capsys.readouterr().out


def test_bootstrap_without_network_stops_with_the_way_out(fresh):
    url = f"http://127.0.0.1:{unused_port()}/tiny-imagenet-200.zip"  # what "no network" is
    with pytest.raises(
        CommandError, match="bootstrap stopped at download: could not reach.*pass --archive PATH"
    ):
        call_command("bootstrap", "--url", url, verbosity=0)
    assert not (fresh.TINYRAG_INDEX_DIR / "tiny").exists()


# --- the stamp: a later start skips reading every image again -----------------------------


def bootstrap(*args: str) -> str:
    import io

    out = io.StringIO()
    call_command("bootstrap", "--limit-per-class", "2", *args, stdout=out)
    return out.getvalue()


def checked(out: str) -> bool:
    """Whether this run checked the images (rather than skipping on the stamp)."""
    if "[3/6] check ..." in out:
        return True
    assert "[3/6] check: already done, skipped (--check does it again)" in out
    return False


def test_a_second_bootstrap_of_the_same_data_skips_prepare_check_and_import(
    fresh, tinyimagenet_zip
):
    assert checked(bootstrap("--archive", str(tinyimagenet_zip)))
    out = bootstrap()
    assert not checked(out)
    assert "[2/6] prepare: already done, skipped (--check does it again)" in out
    assert "[4/6] import: already done, skipped (--check does it again)" in out
    assert Image.objects.count() == 36


def test_check_forces_the_full_check(fresh, tinyimagenet_zip):
    bootstrap("--archive", str(tinyimagenet_zip))
    assert checked(bootstrap("--check"))
    assert not checked(bootstrap())  # and a clean check leaves the stamp again


def test_a_new_image_on_disk_means_checking_and_importing_again(fresh, tinyimagenet_zip):
    from tests.fixtures.tinyimagenet import jpeg_bytes

    bootstrap("--archive", str(tinyimagenet_zip))
    folder = fresh.TINYRAG_DATA_DIR / "tiny-imagenet-200" / "train" / "n07749582"
    (folder / "n07749582_77.JPEG").write_bytes(jpeg_bytes((1, 2, 3), seed=77))
    assert checked(bootstrap())
    assert Image.objects.count() == 37


def test_an_emptied_database_means_importing_again(fresh, tinyimagenet_zip):
    bootstrap("--archive", str(tinyimagenet_zip))
    Image.objects.all().delete()
    assert checked(bootstrap())
    assert Image.objects.count() == 36


def test_a_skipped_check_says_again_what_the_last_one_found(fresh, tinyimagenet_zip):
    """The synthetic dataset is smaller than TinyImageNet: check_dataset reports it."""
    import io

    bootstrap("--archive", str(tinyimagenet_zip))
    err = io.StringIO()
    call_command("bootstrap", "--limit-per-class", "2", stdout=io.StringIO(), stderr=err)
    assert err.getvalue().startswith("the last check of this data reported: 4 problems found in ")


def test_the_fingerprint_changes_with_a_renamed_file_and_not_with_a_read(fresh, tinyimagenet_zip):
    from search.ops.management.commands.bootstrap import data_fingerprint

    bootstrap("--archive", str(tinyimagenet_zip))
    root = fresh.TINYRAG_DATA_DIR / "tiny-imagenet-200"
    before = data_fingerprint(root)
    (root / "val" / "n04067472" / "val_3.JPEG").read_bytes()
    assert data_fingerprint(root) == before
    (root / "val" / "n04067472" / "val_3.JPEG").rename(root / "val" / "n04067472" / "x.JPEG")
    assert data_fingerprint(root) != before
