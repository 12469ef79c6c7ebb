"""Data migrations keep every row: search 0004 keys existing descriptions and turns identical
generations already in flight into followers of the oldest, so its constraint can hold."""

from __future__ import annotations

import hashlib
import json

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

pytestmark = pytest.mark.django_db(transaction=True)

BEFORE = [("search", "0003_descriptions")]
AFTER = [("search", "0005_one_generation_in_flight")]


@pytest.fixture(autouse=True)
def _back_to_the_latest():
    yield
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def key(image_key: str, owner) -> str:
    parts = {
        "image_key": image_key,
        "context_mode": "retrieved",
        "backend": "openai",
        "model": "qwen",
        "prompt_version": "rag-v1",
        "owner": owner,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def test_0004_keys_rows_and_makes_in_flight_duplicates_followers():
    apps = migrate(BEFORE)
    User = apps.get_model("auth", "User")
    Dataset = apps.get_model("search", "Dataset")
    Image = apps.get_model("search", "Image")
    SearchQuery = apps.get_model("search", "SearchQuery")
    Description = apps.get_model("search", "Description")
    alice, bob = User.objects.create(username="alice"), User.objects.create(username="bob")
    dataset = Dataset.objects.create(name="d", root="/data/d", source="imagefolder")
    image = Image.objects.create(dataset=dataset, split="train", path="a.jpg", width=1, height=1)

    def description(user, status, image_key="image:1", with_image=True):
        query = SearchQuery.objects.create(
            user=user, kind="text", top_k=1, encoder="clip", index_name="i", duration_ms=1
        )
        return Description.objects.create(
            query=query,
            image=image if with_image else None,
            image_key=image_key,
            backend="openai",
            model="qwen",
            prompt_version="rag-v1",
            context_mode="retrieved",
            status=status,
        )

    first = description(alice, "queued")
    second = description(bob, "running")  # the same generation, started twice before 0004
    done = description(bob, "done")
    upload = description(alice, "queued", image_key="upload:abc", with_image=False)

    apps = migrate(AFTER)
    Description = apps.get_model("search", "Description")
    rows = {row.pk: row for row in Description.objects.all()}
    assert len(rows) == 4  # nothing lost
    assert {rows[pk].generation_key for pk in (first.pk, second.pk, done.pk)} == {
        key("image:1", None)
    }
    assert rows[upload.pk].generation_key == key("upload:abc", alice.pk)  # private to alice
    assert (rows[first.pk].generates, rows[first.pk].reused_from_id) == (True, None)
    assert (rows[second.pk].generates, rows[second.pk].reused_from_id) == (False, first.pk)
    assert (rows[done.pk].generates, rows[done.pk].reused_from_id) == (True, None)


def test_the_migration_keys_rows_as_the_service_does():
    from search.services.describe import generation_key

    same = {
        "image_key": "upload:abc",
        "context_mode": "retrieved",
        "backend": "openai",
        "model": "qwen",
        "prompt_version": "rag-v1",
    }
    assert generation_key(same, owner_id=7) == key("upload:abc", 7)
