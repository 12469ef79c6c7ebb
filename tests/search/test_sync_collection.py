"""sync_collection: a rescan and an incremental build as one recorded sync, here and now or
by the background worker (once or on a schedule), one at a time per collection; the
Collections page says when each collection was last synced and what changed."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import CommandError
from django.urls import reverse
from django.utils import timezone

from search.catalog.models import CollectionSync, Dataset, Image
from search.index import service as fi
from search.index.sync import SYNCS
from tests.fixtures.backends import run_queued_tasks
from tests.fixtures.tinyimagenet import jpeg_bytes

pytestmark = pytest.mark.django_db


@pytest.fixture
def synced(collection, clip_settings, tmp_path):
    """The collection imported, its index `tiny` built by a first sync."""
    clip_settings.TINYRAG_INDEX_DIR = tmp_path / "vector_db"
    clip_settings.TINYRAG_INDEX_NAME = "tiny"
    fi.clear_index_services()
    call_command("import_dataset", *collection.import_args, "--workers", "0", verbosity=0)
    sync(collection)
    yield collection
    fi.clear_index_services()


def sync(collection, *args, **kwargs):
    call_command("sync_collection", collection.name, "--workers", "0", *args, **kwargs)
    return CollectionSync.objects.filter(dataset__name=collection.name).first()


def index_ids():
    return np.load(settings.TINYRAG_INDEX_DIR / "tiny" / "ids.npy").tolist()


def train_ids(collection):
    rows = Image.objects.filter(dataset__name=collection.name, split="train")
    return sorted(rows.values_list("id", flat=True))


def change_the_folder(collection):
    """One file added, one changed, one deleted; returns the deleted file's row id."""
    changed, deleted = collection.images()[:2]
    (collection.folder / f"new{changed.suffix}").write_bytes(jpeg_bytes((5, 250, 5), seed=81))
    changed.write_bytes(jpeg_bytes((250, 5, 5), seed=82))
    deleted_id = Image.objects.get(path=collection.path(deleted)).id
    deleted.unlink()
    return deleted_id


def test_a_first_sync_embeds_the_whole_collection(synced):
    first = CollectionSync.objects.get()
    assert (first.status, first.trigger, first.error) == ("done", "command", "")
    assert first.images_added == 0  # the import before it added them; this rescan found them
    assert first.images_unchanged == Image.objects.filter(dataset__name=synced.name).count()
    assert (first.vectors_reused, first.vectors_embedded) == (0, len(train_ids(synced)))
    assert index_ids() == train_ids(synced)


def test_a_sync_rescans_and_embeds_only_what_changed(synced, capsys):
    deleted_id = change_the_folder(synced)

    done = sync(synced, "--prune")

    counts = (done.images_added, done.images_changed, done.images_missing, done.images_pruned)
    assert counts == (1, 1, 1, 1)
    total = len(train_ids(synced))
    assert (done.vectors_embedded, done.vectors_reused, done.vectors_total) == (2, total - 2, total)
    assert index_ids() == train_ids(synced)
    assert deleted_id not in index_ids()
    said = capsys.readouterr().out
    assert "1 images added (0 renamed), 1 changed, 1 gone (1 pruned)" in said
    assert f"{total - 2:,} reused, 2 embedded" in said


def test_without_prune_a_vanished_file_stays_imported_but_leaves_the_index(synced):
    deleted_id = change_the_folder(synced)
    done = sync(synced)
    assert (done.images_missing, done.images_pruned) == (1, 0)
    assert Image.objects.filter(pk=deleted_id).exists()
    assert done.vectors_total == len(train_ids(synced)) - 1 == len(index_ids())


def test_a_sync_is_refused_while_another_runs(synced):
    CollectionSync.objects.create(
        dataset=Dataset.objects.get(name=synced.name),
        index_name="tiny",
        trigger="worker",
        status="running",
        started_at=timezone.now(),
    )
    with pytest.raises(CommandError, match="is being synced since"):
        sync(synced)
    assert CollectionSync.objects.filter(status="running").count() == 1


def test_a_sync_whose_worker_died_is_failed_and_the_next_one_runs(synced):
    dead = CollectionSync.objects.create(
        dataset=Dataset.objects.get(name=synced.name),
        index_name="tiny",
        trigger="worker",
        status="running",
    )
    silent = timezone.now() - timedelta(seconds=settings.TINYRAG_SYNC_STALL_SECONDS + 1)
    CollectionSync.objects.filter(pk=dead.pk).update(updated_at=silent)

    done = sync(synced)

    dead.refresh_from_db()
    assert (dead.status, dead.error) == ("failed", SYNCS.stalled_error)
    assert done.status == "done"
    assert done.pk != dead.pk


def test_a_folder_that_has_gone_fails_the_sync_with_a_readable_error(synced):
    Dataset.objects.filter(name=synced.name).update(root=str(synced.root) + "-moved")
    before = index_ids()
    with pytest.raises(CommandError, match="failed: .*-moved"):
        sync(synced)
    failed = CollectionSync.objects.first()
    assert failed.status == "failed"
    assert failed.finished_at is not None
    assert index_ids() == before  # the published index is untouched


@pytest.mark.django_db(transaction=True)
def test_the_worker_runs_a_scheduled_sync_and_queues_the_next(synced):
    deleted_id = change_the_folder(synced)
    call_command("sync_collection", synced.name, "--every", "30", verbosity=0)
    queued = CollectionSync.objects.get(status="queued")
    assert (queued.trigger, queued.every_minutes) == ("worker", 30)

    run_queued_tasks()

    queued.refresh_from_db()
    assert queued.status == "done", queued.error
    assert (queued.images_added, queued.vectors_embedded) == (1, 2)
    assert index_ids() == [i for i in train_ids(synced) if i != deleted_id]  # no --prune
    following = CollectionSync.objects.get(status="queued")
    wait = following.run_after - queued.finished_at
    assert timedelta(minutes=29) < wait <= timedelta(minutes=30, seconds=1)
    run_queued_tasks()  # not due for half an hour: it waits
    assert CollectionSync.objects.get(pk=following.pk).status == "queued"

    call_command("sync_collection", synced.name, "--every", "0", verbosity=0)
    assert not CollectionSync.objects.filter(status="queued").exists()
    from search.catalog.selectors import sync_overview  # its stall check restores schedules

    assert sync_overview()[queued.dataset_id].pending is None  # an ended schedule stays ended


@pytest.mark.django_db(transaction=True)
def test_a_schedule_whose_sync_died_goes_on(synced):
    call_command("sync_collection", synced.name, "--every", "15", verbosity=0)
    dead = CollectionSync.objects.get(status="queued")
    silent = timezone.now() - timedelta(seconds=settings.TINYRAG_SYNC_STALL_SECONDS + 1)
    CollectionSync.objects.filter(pk=dead.pk).update(status="running", updated_at=silent)

    from search.catalog.selectors import sync_overview  # the Collections page's stall check

    overview = sync_overview()[dead.dataset_id]
    assert (overview.last.pk, overview.last.status) == (dead.pk, "failed")
    assert overview.pending.status == "queued"
    assert overview.pending.every_minutes == 15
    run_queued_tasks()
    assert CollectionSync.objects.get(pk=overview.pending.pk).status == "done"


def test_the_collections_page_says_when_and_what(synced, auth_client, admin_client):
    change_the_folder(synced)
    sync(synced, "--prune")
    page = auth_client.get(reverse("search:collections")).content.decode()
    assert "Last synced" in page
    assert "1 added, 1 changed, 1 gone from the folder;" in page
    total = len(train_ids(synced))
    assert f"2 embedded, {total - 2} kept their embeddings." in page

    Dataset.objects.filter(name=synced.name).update(root=str(synced.root) + "-moved")
    with pytest.raises(CommandError):
        sync(synced)
    page = auth_client.get(reverse("search:collections")).content.decode()
    assert "failed." in page
    assert "-moved" not in page
    assert "-moved" in admin_client.get(reverse("search:collections")).content.decode()


def test_a_running_sync_shows_its_step_and_a_queued_one_its_time(synced, auth_client):
    dataset = Dataset.objects.get(name=synced.name)
    CollectionSync.objects.create(
        dataset=dataset, index_name="tiny", trigger="worker", status="running",
        progress={"step": "embed", "done": 3, "total": 12},
    )  # fmt: skip
    CollectionSync.objects.create(
        dataset=dataset, index_name="tiny", trigger="worker", every_minutes=60,
        run_after=timezone.now() + timedelta(minutes=59),
    )  # fmt: skip
    page = auth_client.get(reverse("search:collections")).content.decode()
    assert "Embedding the images: 3 of 12" in page
    assert '<progress max="12" value="3">' in page
    assert "Synced every 60 minutes." not in page  # the running one has no schedule
    status_url = reverse("search:collection-sync", args=[dataset.pk])
    assert f'hx-get="{status_url}" hx-trigger="every 2s"' in page  # the status polls


def test_the_sync_status_polls_until_no_sync_is_pending(synced, auth_client):
    dataset = Dataset.objects.get(name=synced.name)
    running = CollectionSync.objects.create(
        dataset=dataset, index_name="tiny", trigger="worker", status="running",
        progress={"step": "rescan images", "done": 40, "total": 100},
    )  # fmt: skip
    url = reverse("search:collection-sync", args=[dataset.pk])

    fragment = auth_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert fragment.lstrip().startswith('<div class="sync-status"')  # the status alone
    assert "Checking the changed files: 40 of 100" in fragment
    assert 'hx-trigger="every 2s"' in fragment
    indonesian = auth_client.get(url, HTTP_ACCEPT_LANGUAGE="id").content.decode()
    assert "Memeriksa berkas yang berubah: 40 dari 100" in indonesian

    CollectionSync.objects.filter(pk=running.pk).update(
        status="done", finished_at=timezone.now(), images_added=2, vectors_embedded=2
    )
    fragment = auth_client.get(url, HTTP_HX_REQUEST="true").content.decode()
    assert "Last synced" in fragment
    assert "hx-trigger" not in fragment  # nothing pending: the page stops asking
    assert (
        auth_client.get(reverse("search:collection-sync", args=[dataset.pk + 999])).status_code
        == 404
    )


def test_a_queued_sync_that_finds_its_collection_busy_is_skipped_and_its_schedule_goes_on(synced):
    from search.index.sync import execute_sync, request_sync

    dataset = Dataset.objects.get(name=synced.name)
    running = CollectionSync.objects.create(
        dataset=dataset, index_name="tiny", trigger="command", status="running",
        started_at=timezone.now(),
    )  # fmt: skip
    queued = request_sync(synced.name, every_minutes=45)

    skipped = execute_sync(queued.pk)

    skipped.refresh_from_db()
    assert skipped.status == "failed"
    assert "Another sync of this collection was running" in skipped.error
    assert CollectionSync.objects.get(pk=running.pk).status == "running"  # untouched
    following = CollectionSync.objects.get(status="queued")
    assert following.every_minutes == 45
    assert following.waits_until is not None


@pytest.mark.parametrize(("built_with", "synced_with"), [("auto", "auto"), ("flat", "flat")])
def test_a_sync_builds_with_the_index_type_the_published_build_was_asked_for(
    synced, built_with, synced_with
):
    from search.index.sync import _build_options

    call_command("build_index", "--name", "tiny", "--index-type", built_with, "--workers", "0",
                 verbosity=0)  # fmt: skip
    published = fi.read_manifest(settings.TINYRAG_INDEX_DIR, "tiny")
    assert (published.index_type, published.requested_type) == ("flat", built_with)

    options = _build_options(CollectionSync.objects.first(), workers=0)

    # auto chose exact search for a small collection; as it grows, auto may choose HNSW
    assert options.index_type == synced_with
