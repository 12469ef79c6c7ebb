"""Evaluation searches exactly unless told otherwise (`evaluate --search index`).

The published index here is an HNSW graph whose vectors carry the wrong ids: each train image's
vector is keyed by an image of the next class. Searching the graph as served therefore never
finds a query's own class at the top, while the exact search over the folder's embeddings.npy
and ids.npy (what evaluation uses by default) is perfect on the solid colours (see
tests/evaluation/conftest.py), so which search a run used shows in its numbers.
"""

from __future__ import annotations

import numpy as np
import pytest

from evaluation.config import EvaluationConfig, EvaluationError
from evaluation.models import EvaluationRun
from search.catalog.models import Image, ImageClass
from search.index import service as fi
from tests.evaluation.conftest import INDEX_NAME, PERFECT, evaluate

pytestmark = pytest.mark.django_db


@pytest.fixture
def misleading_hnsw(solid_index, clip_settings):
    """Republish index "tiny" as an HNSW graph over the same embeddings, each vector keyed by
    the id of an image of the next class (by primary key); embeddings.npy and ids.npy stay
    true."""
    folder = clip_settings.TINYRAG_INDEX_DIR / INDEX_NAME
    vectors, ids = np.load(folder / "embeddings.npy"), np.load(folder / "ids.npy")
    class_of = dict(Image.objects.filter(id__in=ids.tolist()).values_list("id", "image_class"))
    classes = sorted(set(class_of.values()))
    members = {c: sorted(i for i in ids.tolist() if class_of[i] == c) for c in classes}
    wrong = {
        image_id: members[classes[(classes.index(c) + 1) % len(classes)]][n]
        for c in classes
        for n, image_id in enumerate(members[c])
    }
    graph, params = fi.build_faiss_index(
        vectors, np.array([wrong[i] for i in ids.tolist()]), fi.IndexType.HNSW
    )
    manifest = fi.read_manifest(clip_settings.TINYRAG_INDEX_DIR, INDEX_NAME)
    manifest = fi.IndexManifest(**{**manifest.__dict__, **fi.manifest_fields(params)})
    staged = fi.builds_dir(clip_settings.TINYRAG_INDEX_DIR) / "tiny-misleading"
    fi.write_index_folder(staged, graph, vectors, ids, manifest)
    fi.publish(staged, clip_settings.TINYRAG_INDEX_DIR, INDEX_NAME)
    fi.clear_index_services()
    return solid_index


def test_by_default_a_run_searches_exactly_and_says_so(misleading_hnsw):
    out = evaluate("--mode", "image", "--k", "1,5,10")

    run = EvaluationRun.objects.get()
    assert run.status == "done", run.error
    assert run.metrics == {"image": PERFECT}
    assert run.index_manifest["index_type"] == "hnsw"  # what is published
    assert run.configuration["search"] == "exact"
    assert run.configuration["searched_index_type"] == "flat"
    assert "Search: exact (flat over the embeddings of the hnsw index)" in out


def test_search_index_goes_through_the_graph_as_served(misleading_hnsw):
    out = evaluate("--mode", "image", "--k", "1,5,10", "--search", "index")

    run = EvaluationRun.objects.get()
    assert run.status == "done", run.error
    # the top 5 of every query are its own colour's vectors, keyed by the next class's ids
    assert run.metrics["image"]["recall@1"] == 0.0
    assert run.metrics["image"]["recall@5"] == 0.0
    assert run.configuration["search"] == "index"
    assert run.configuration["searched_index_type"] == "hnsw"
    assert "Search: the index as served (hnsw)" in out


def test_text_queries_are_searched_exactly_too(misleading_hnsw):
    def top1_class(run: EvaluationRun) -> dict[str, str]:
        """Each class name's top-1 result's class (one text query per class)."""
        return {
            row["wnid"]: row["failures"][0]["retrieved_wnid"] if row["failures"] else row["wnid"]
            for row in run.per_class["text"]
        }

    evaluate("--mode", "text", "--k", "1")
    exact = top1_class(EvaluationRun.objects.get())
    EvaluationRun.objects.all().delete()
    evaluate("--mode", "text", "--k", "1", "--search", "index")
    served = top1_class(EvaluationRun.objects.get())
    # through the graph, the same nearest vector answers with an image of the next class
    wnids = list(ImageClass.objects.order_by("pk").values_list("wnid", flat=True))
    assert served == {c: wnids[(wnids.index(exact[c]) + 1) % len(wnids)] for c in wnids}


def test_the_configuration_defaults_to_exact_and_refuses_other_searches():
    assert EvaluationConfig().search == "exact"
    assert EvaluationConfig(search="index").validated().to_json()["search"] == "index"
    with pytest.raises(EvaluationError, match="search must be one of exact, index; got 'fuzzy'"):
        EvaluationConfig(search="fuzzy").validated()
