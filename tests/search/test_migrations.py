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
    # (app, None) unapplies a whole app: there is no such node in the state to build
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


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
    from search.descriptions.services import generation_key

    same = {
        "image_key": "upload:abc",
        "context_mode": "retrieved",
        "backend": "openai",
        "model": "qwen",
        "prompt_version": "rag-v1",
    }
    assert generation_key(same, owner_id=7) == key("upload:abc", 7)


MOVE_BEFORE = [
    ("search", "0005_one_generation_in_flight"),
    ("descriptions", None),
    ("queries", None),
    ("catalog", None),
]


def test_the_move_to_domain_apps_keeps_every_row_and_what_points_at_it(tmp_path):
    """A database populated at the schema before search 0006 migrates to the domain apps:
    every row comes back through today's models, with its relations, its permissions and
    a queued description task that still runs."""
    from django.contrib.auth.models import Permission
    from django.contrib.contenttypes.models import ContentType
    from django_tasks_db.models import DBTaskResult

    from search.catalog.models import Dataset, Image, ImageClass
    from search.descriptions.models import Description
    from search.descriptions.tasks import generate_description
    from search.queries.models import SearchQuery, SearchResult

    generate_description.enqueue()  # a task queued by the code before the move...
    DBTaskResult.objects.update(task_path="search.tasks.generate_description")  # ...its path
    apps = migrate(MOVE_BEFORE)
    User = apps.get_model("auth", "User")
    OldPermission = apps.get_model("auth", "Permission")
    old = {
        name: apps.get_model("search", name)
        for name in ("Dataset", "ImageClass", "Image", "SearchQuery", "SearchResult", "Description")
    }
    alice = User.objects.create(username="alice")
    alice.user_permissions.add(
        OldPermission.objects.get(content_type__app_label="search", codename="view_image")
    )
    dataset = old["Dataset"].objects.create(name="d", root="/data/d", source="imagefolder")
    fish = old["ImageClass"].objects.create(
        dataset=dataset, wnid="n01443537", name="goldfish", names=["goldfish", "Carassius"]
    )
    image = old["Image"].objects.create(
        dataset=dataset,
        split="val",
        image_class=fish,
        path="n01443537/a.JPEG",
        width=64,
        height=64,
        mode="RGB",
    )
    query = old["SearchQuery"].objects.create(
        user=alice,
        kind="similar",
        source_image=image,
        top_k=1,
        encoder="clip",
        index_name="i",
        duration_ms=2.5,
        uploaded_image="uploads/1/x.jpg",
    )
    old["SearchResult"].objects.create(query=query, rank=1, image=image, score=0.75)
    described = {
        "query": query,
        "image": image,
        "image_key": f"image:{image.pk}",
        "backend": "openai",
        "model": "qwen",
        "prompt_version": "rag-v1",
        "context_mode": "retrieved",
        "status": "done",
        "text": "A goldfish.",
        "generation_key": "k",
    }
    first = old["Description"].objects.create(**described)
    old["Description"].objects.create(**described, generates=False, reused_from=first)

    # `migrate catalog` run first has made the new app's content type already (post_migrate)
    ContentType.objects.create(app_label="catalog", model="image")

    migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())

    assert Dataset.objects.get().classes.get() == ImageClass.objects.get(pk=fish.pk)
    moved = Image.objects.get()
    assert (moved.pk, moved.image_class.name, moved.path) == (image.pk, "goldfish", image.path)
    moved_query = SearchQuery.objects.get()
    assert (moved_query.user.username, moved_query.source_image_id) == ("alice", image.pk)
    assert moved_query.uploaded_image.name == "uploads/1/x.jpg"
    assert list(moved.similar_queries.all()) == [moved_query]
    assert list(SearchResult.objects.values_list("query_id", "rank", "image_id", "score")) == [
        (query.pk, 1, image.pk, 0.75)
    ]
    follower = Description.objects.get(generates=False)
    assert (follower.reused_from_id, follower.query_id, follower.image_id) == (
        first.pk,
        query.pk,
        image.pk,
    )
    assert list(moved_query.descriptions.order_by("pk").values_list("pk", flat=True)) == [
        first.pk,
        follower.pk,
    ]
    # permissions granted on the old models hold on the moved ones, under their new app
    permission = Permission.objects.get(user__username="alice")
    assert (permission.content_type.app_label, permission.codename) == ("catalog", "view_image")
    assert not Permission.objects.filter(content_type__app_label="search").exists()
    # the queued task is found at the task's new module path
    assert DBTaskResult.objects.get().task_path == generate_description.module_path
