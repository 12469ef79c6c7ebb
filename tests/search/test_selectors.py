"""The selectors, called directly: history reads are scoped to their owner, the collection's
reads count what is there, and an image's file never lies outside its dataset's root.

Rows are made by hand here (a small collection with files on disk, queries with results), so
every expected count and order is known before the selector runs.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image as PILImage

from search.catalog import selectors as catalog
from search.catalog.models import Dataset, Image, ImageClass
from search.descriptions import selectors as descriptions
from search.descriptions.models import Description
from search.index import selectors as index
from search.queries import selectors as queries
from search.queries.models import SearchQuery, SearchResult

pytestmark = pytest.mark.django_db


@pytest.fixture
def collection(tmp_path) -> Dataset:
    """Two classes: "cat" with 2 train images and 1 val, "reel" with 1 train; 1 unlabelled
    test image. Every file is a real 8x8 PNG under the dataset root."""
    root = tmp_path / "pets"
    dataset = Dataset.objects.create(name="pets", root=str(root), source="imagefolder")
    cat = ImageClass.objects.create(dataset=dataset, wnid="n1cat", name="cat", names=["cat"])
    reel = ImageClass.objects.create(dataset=dataset, wnid="n2reel", name="reel", names=["reel"])
    for split, image_class, path in [
        ("train", cat, "train/n1cat/a.png"),
        ("train", cat, "train/n1cat/b.png"),
        ("val", cat, "val/n1cat/c.png"),
        ("train", reel, "train/n2reel/d.png"),
        ("test", None, "test/e.png"),
    ]:
        file = root / path
        file.parent.mkdir(parents=True, exist_ok=True)
        PILImage.new("RGB", (8, 8), (200, 10, 10)).save(file)
        Image.objects.create(
            dataset=dataset,
            split=split,
            image_class=image_class,
            path=path,
            width=8,
            height=8,
            mode="RGB",
        )
    return dataset


def image(path: str) -> Image:
    return Image.objects.get(path=path)


def make_query(user, text: str, result_paths: list[str]) -> SearchQuery:
    query = SearchQuery.objects.create(
        user=user,
        kind="text",
        text=text,
        top_k=5,
        encoder="clip",
        index_name="tiny",
        duration_ms=1.0,
    )
    for rank, path in enumerate(result_paths, start=1):
        SearchResult.objects.create(query=query, rank=rank, image=image(path), score=1 - rank / 10)
    return query


def make_description(query: SearchQuery, path: str) -> Description:
    return Description.objects.create(
        query=query,
        image=image(path),
        image_key=f"image:{image(path).pk}",
        backend="test",
        model="m",
        prompt_version="v1",
        context_mode=Description.Context.NONE,
        status=Description.Status.DONE,
        text="a red square",
    )


# --- history: owner-scoped ---------------------------------------------------------------


def test_query_history_holds_only_the_owners_queries_newest_first(collection, user, other_user):
    first = make_query(user, "first", ["train/n1cat/a.png", "train/n2reel/d.png"])
    make_query(other_user, "theirs", ["train/n1cat/b.png"])
    second = make_query(user, "second", ["train/n2reel/d.png"])
    history = list(queries.query_history(user=user))
    assert [q.pk for q in history] == [second.pk, first.pk]
    assert [q.result_count for q in history] == [1, 2]
    assert [[r.image.path for r in q.top_results] for q in history] == [
        ["train/n2reel/d.png"],
        ["train/n1cat/a.png"],
    ]
    assert list(queries.query_history(user=other_user).values_list("text", flat=True)) == ["theirs"]


def test_get_query_finds_the_owners_and_not_another_users(collection, user, other_user):
    mine = make_query(user, "mine", [])
    assert queries.get_query(user=user, query_id=mine.pk) == mine
    with pytest.raises(SearchQuery.DoesNotExist):
        queries.get_query(user=other_user, query_id=mine.pk)
    with pytest.raises(SearchQuery.DoesNotExist):
        queries.get_query(user=user, query_id=mine.pk + 1000)


def test_query_results_are_in_rank_order(collection, user):
    query = make_query(user, "q", ["train/n2reel/d.png", "train/n1cat/b.png", "val/n1cat/c.png"])
    results = list(queries.query_results(query))
    assert [(r.rank, r.image.path) for r in results] == [
        (1, "train/n2reel/d.png"),
        (2, "train/n1cat/b.png"),
        (3, "val/n1cat/c.png"),
    ]


def test_get_description_is_the_owners_only(collection, user, other_user):
    description = make_description(make_query(user, "q", []), "train/n1cat/a.png")
    found = descriptions.get_description(user=user, description_id=description.pk)
    assert (found.pk, found.image.image_class.wnid) == (description.pk, "n1cat")
    with pytest.raises(Description.DoesNotExist):
        descriptions.get_description(user=other_user, description_id=description.pk)


def test_query_descriptions_are_the_querys_own_newest_first_and_none_for_others(
    collection, user, other_user
):
    query = make_query(user, "q", [])
    older = make_description(query, "train/n1cat/a.png")
    newer = make_description(query, "train/n2reel/d.png")
    make_description(make_query(user, "another", []), "val/n1cat/c.png")
    assert list(descriptions.query_descriptions(user=user, query=query)) == [newer, older]
    assert list(descriptions.query_descriptions(user=other_user, query=query)) == []


# --- the collection ------------------------------------------------------------------------


def test_classes_with_counts_counts_every_split(collection):
    other = Dataset.objects.create(name="aaa", root=collection.root, source="imagefolder")
    ImageClass.objects.create(dataset=other, wnid="n9empty", name="empty", names=["empty"])
    rows = [(c.dataset.name, c.wnid, c.image_count) for c in catalog.classes_with_counts()]
    assert rows == [("aaa", "n9empty", 0), ("pets", "n1cat", 3), ("pets", "n2reel", 1)]


def test_dataset_overview_counts_classes_and_images_per_split(collection):
    (row,) = catalog.dataset_overview()
    assert (row.class_count, row.train_count, row.val_count, row.test_count) == (2, 3, 1, 1)


def test_collection_size(collection):
    assert catalog.collection_size() == catalog.CollectionSize(datasets=1, images=5)


def test_class_choices_are_the_datasets_classes_by_name(collection):
    assert [c.wnid for c in catalog.class_choices("pets")] == ["n1cat", "n2reel"]
    assert list(catalog.class_choices(None)) == []
    assert list(catalog.class_choices("no-such-dataset")) == []


def add_classes_of_every_case(dataset: Dataset) -> None:
    for wnid, name in [("n7york", "Yorkshire terrier"), ("n8aba", "abacus"), ("n0bee", "Bee")]:
        ImageClass.objects.create(dataset=dataset, wnid=wnid, name=name, names=[name])


def test_class_choices_sort_for_people_not_by_code_point(collection):
    """Code-point order puts every capital first: "Bee", "Yorkshire terrier", "abacus"..."""
    add_classes_of_every_case(collection)
    names = [c.name for c in catalog.class_choices("pets")]
    assert names == ["abacus", "Bee", "cat", "reel", "Yorkshire terrier"]


def test_class_overview_lists_one_datasets_classes_for_people_with_their_counts(collection):
    add_classes_of_every_case(collection)
    other = Dataset.objects.create(name="other", root=collection.root, source="imagefolder")
    ImageClass.objects.create(dataset=other, wnid="n1cat", name="aardvark", names=["aardvark"])
    rows = [(c.name, c.image_count) for c in catalog.class_overview(collection)]
    assert rows == [("abacus", 0), ("Bee", 0), ("cat", 3), ("reel", 1), ("Yorkshire terrier", 0)]


# --- the stored counts: cheap to read, never stale ------------------------------------------


def overview_counts() -> list[tuple]:
    return [
        (d.name, d.class_count, d.train_count, d.val_count, d.test_count)
        for d in catalog.dataset_overview()
    ]


def test_the_overview_reads_stored_counts_without_counting_images(collection):
    """Counting the images per request was the 7.5 s query: with the counts current, the
    overview's queries are the check (whole-table COUNT(*)s) and the rows, no GROUP BY."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    with CaptureQueriesContext(connection) as queries:
        assert overview_counts() == [("pets", 2, 3, 1, 1)]
    sql = " ".join(q["sql"] for q in queries.captured_queries).upper()
    assert "GROUP BY" not in sql
    assert "DISTINCT" not in sql
    assert len(queries.captured_queries) == 4  # stored sums, two COUNT(*)s, the rows


def test_counts_follow_an_image_moved_to_another_split_and_class(collection):
    """A single save (the admin's change form) recounts in the same transaction."""
    moved = image("train/n1cat/a.png")
    moved.split, moved.image_class = "val", ImageClass.objects.get(wnid="n2reel")
    moved.save()
    assert overview_counts() == [("pets", 2, 2, 2, 1)]
    assert [(c.wnid, c.image_count) for c in catalog.class_overview(collection)] == [
        ("n1cat", 2),
        ("n2reel", 2),
    ]


def test_counts_follow_a_bulk_delete_that_sends_no_signal(collection):
    """A queryset delete (the admin's "delete selected", a cascade) recounts nothing itself:
    the next read sees the totals differ and recounts."""
    Image.objects.filter(split="train").delete()
    assert overview_counts() == [("pets", 2, 0, 1, 1)]
    assert [(c.wnid, c.image_count) for c in catalog.classes_with_counts()] == [
        ("n1cat", 1),
        ("n2reel", 0),
    ]


def test_counts_follow_a_deleted_class_and_its_images(collection):
    ImageClass.objects.filter(wnid="n1cat").delete()
    assert overview_counts() == [("pets", 1, 1, 0, 1)]


def test_the_check_recounts_only_the_datasets_whose_totals_differ(collection):
    other = Dataset.objects.create(name="other", root=collection.root, source="imagefolder")
    Image.objects.create(dataset=other, split="test", path="x.png", width=1, height=1, mode="L")
    # Marked by hand: pets' split counts are wrong but add up to its 5 images.
    Dataset.objects.filter(name="pets").update(train_count=2, val_count=2)
    Image.objects.filter(dataset=other).delete()
    assert overview_counts() == [("other", 0, 0, 0, 1 - 1), ("pets", 2, 2, 2, 1)]


def test_get_image_and_an_unknown_id(collection):
    found = catalog.get_image(image_id=image("val/n1cat/c.png").pk)
    assert (found.dataset.name, found.image_class.wnid, found.split) == ("pets", "n1cat", "val")
    with pytest.raises(Image.DoesNotExist):
        catalog.get_image(image_id=10**9)


def test_image_file_is_the_file_under_the_root(collection):
    row = image("train/n2reel/d.png")
    expected = Path(collection.root).resolve() / "train" / "n2reel" / "d.png"
    assert catalog.image_file_path(row) == expected
    assert catalog.image_file(image_id=row.pk) == expected


def test_image_file_of_a_file_gone_from_disk_is_file_not_found(collection):
    row = image("train/n1cat/a.png")
    (Path(collection.root) / row.path).unlink()
    with pytest.raises(FileNotFoundError, match="not on disk"):
        catalog.image_file(image_id=row.pk)


@pytest.mark.parametrize(
    "path",
    [
        "../outside.png",  # climbs out of the root
        "train/../../outside.png",
        "/etc/hostname.png",  # absolute: the join discards the root
    ],
)
def test_image_file_path_refuses_paths_outside_the_root(collection, path):
    row = image("train/n1cat/a.png")
    row.path = path
    with pytest.raises(FileNotFoundError, match="points outside its dataset"):
        catalog.image_file_path(row)


def test_image_file_path_refuses_a_link_out_of_the_root(collection, tmp_path):
    outside = tmp_path / "secret.png"
    PILImage.new("RGB", (8, 8)).save(outside)
    (Path(collection.root) / "train" / "link.png").symlink_to(outside)
    row = image("train/n1cat/a.png")
    row.path = "train/link.png"
    with pytest.raises(FileNotFoundError, match="points outside its dataset"):
        catalog.image_file_path(row)


def test_image_file_path_refuses_a_file_that_is_not_an_image(collection):
    (Path(collection.root) / "notes.txt").write_text("not an image")
    row = image("train/n1cat/a.png")
    row.path = "notes.txt"
    with pytest.raises(FileNotFoundError, match="is not an image file"):
        catalog.image_file_path(row)


@pytest.mark.parametrize("root", ["/", "relative/pets"])
def test_image_file_path_refuses_a_root_where_roots_may_not_lie(collection, root):
    Dataset.objects.filter(pk=collection.pk).update(root=root)
    with pytest.raises(FileNotFoundError, match="dataset 'pets'"):
        catalog.image_file_path(Image.objects.select_related("dataset").first())


# --- the index -----------------------------------------------------------------------------


def test_is_published_reads_the_manifest(settings, tmp_path):
    settings.TINYRAG_INDEX_DIR = tmp_path
    assert index.is_published(name="tiny") is False  # no folder at all
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "manifest.json").write_text("{", encoding="utf-8")
    assert index.is_published(name="tiny") is False  # unreadable
    manifest = {
        "name": "tiny", "model_id": "clip", "dim": 16, "index_type": "flat",
        "index_params": {}, "count": 3, "dataset": "pets", "splits": ["train"],
        "created_at": "2025-01-01T00:00:00+00:00", "format_version": 1,
    }  # fmt: skip
    (folder / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    assert index.is_published(name="tiny") is True
    settings.TINYRAG_INDEX_NAME = "tiny"
    assert index.is_published() is True  # TINYRAG_INDEX_NAME by default
    settings.TINYRAG_INDEX_NAME = "other"
    assert index.is_published() is False
