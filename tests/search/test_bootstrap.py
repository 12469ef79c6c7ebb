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


def test_bootstrap_without_network_stops_with_the_way_out(fresh):
    url = f"http://127.0.0.1:{unused_port()}/tiny-imagenet-200.zip"  # what "no network" is
    with pytest.raises(
        CommandError, match="bootstrap stopped at download: could not reach.*pass --archive PATH"
    ):
        call_command("bootstrap", "--url", url, verbosity=0)
    assert not (fresh.TINYRAG_INDEX_DIR / "tiny").exists()
