"""`evaluate` end to end on the tiny CLIP and the solid-colour dataset (tests/evaluation/conftest).

The dataset has 4 classes, 5 train and 3 val images each, every image of a class the same
solid colour: a val query and the train images of its class are pixel-identical, so image ->
image retrieval is perfect by construction and its numbers are written down by hand. Text and
zero-shot numbers depend on the random-weight CLIP: they are checked against a brute-force
computation that does not go through the evaluation code.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from django.core.management.base import CommandError
from PIL import Image as PILImage

from evaluation.models import EvaluationRun
from search.catalog.models import Image, ImageClass
from search.descriptions.rag import build_prompt
from search.ml.registry import get_clip_embedder
from search.queries.models import SearchQuery
from tests.evaluation.conftest import INDEX_NAME, PERFECT, build, evaluate

pytestmark = pytest.mark.django_db

CLASSES, TRAIN, VAL = 4, 5, 3


def only_run() -> EvaluationRun:
    return EvaluationRun.objects.get()


def test_image_retrieval_is_perfect_on_solid_colours(solid_index):
    out = evaluate("--mode", "image", "--k", "1,5,10")

    run = only_run()
    assert (run.status, run.error, run.warnings) == ("done", "", [])
    assert run.sample_size == CLASSES * VAL
    assert run.metrics == {"image": PERFECT}
    rows = run.per_class["image"]
    assert [r["wnid"] for r in rows] == sorted(ImageClass.objects.values_list("wnid", flat=True))
    assert all((r["queries"], r["recall@1"], r["failures"]) == (3, 1.0, []) for r in rows)
    assert "Recall@k" in out
    assert f"Stored evaluation run #{run.pk}." in out


def test_the_run_records_what_was_measured(solid_index, clip_settings):
    evaluate("--mode", "image", "--seed", "7", "--k", "5,1")

    run = only_run()
    assert (run.mode, run.index_name, run.seed) == ("image", INDEX_NAME, 7)
    assert run.configuration["ks"] == [1, 5]
    assert run.configuration["split"] == "val"
    assert run.index_manifest["name"] == INDEX_NAME
    assert run.index_manifest["splits"] == ["train"]
    assert run.model_ids["clip"] == str(clip_settings.TINYRAG_CLIP_MODEL)
    assert run.started_at <= run.finished_at
    assert run.created_by is None


def test_an_index_holding_val_images_is_flagged_and_no_query_finds_itself(solid_dataset):
    build("leaky", splits="train,val")

    evaluate("--mode", "image", "--index", "leaky")

    run = only_run()
    image = run.metrics["image"]
    assert image["self_excluded"] == 12
    # each query's own image is gone: its class's 2 other val + 5 train images lead the top 10
    assert (image["recall@1"], image["precision@5"]) == (1.0, 1.0)
    assert image["precision@10"] == pytest.approx(0.7)
    assert any("contains 12 of the 12 val images" in w for w in run.warnings)
    assert any("12 query images were in the index and were excluded" in w for w in run.warnings)


def test_sample_is_stratified_by_class(solid_index):
    evaluate("--mode", "image", "--sample", "8", "--seed", "3")

    run = only_run()
    assert run.sample_size == 8
    assert [r["queries"] for r in run.per_class["image"]] == [2, 2, 2, 2]


def brute_force_scores(texts: list[str], vectors: np.ndarray) -> np.ndarray:
    clip = get_clip_embedder()
    return vectors @ clip.embed_texts(texts).T


def test_text_to_image_matches_a_brute_force_search(solid_index, clip_settings):
    evaluate("--mode", "text", "--k", "1,5,10")

    folder = clip_settings.TINYRAG_INDEX_DIR / INDEX_NAME
    ids, vectors = np.load(folder / "ids.npy"), np.load(folder / "embeddings.npy")
    class_of = dict(Image.objects.values_list("id", "image_class__wnid"))
    classes = list(ImageClass.objects.order_by("wnid"))
    scores = brute_force_scores([f"a photo of a {c.name}." for c in classes], vectors)
    expected = {"recall@1": 0, "recall@5": 0, "recall@10": 0, "precision@10": 0.0, "mrr": 0.0}
    for column, cls in enumerate(classes):
        ranked = [class_of[int(i)] == cls.wnid for i in ids[np.argsort(-scores[:, column])]]
        first = ranked.index(True) + 1
        for k in (1, 5, 10):
            expected[f"recall@{k}"] += (first <= k) / len(classes)
        expected["precision@10"] += sum(ranked[:10]) / 10 / len(classes)
        expected["mrr"] += (1 / first if first <= 10 else 0) / len(classes)

    text = only_run().metrics["text"]
    assert text["queries"] == CLASSES
    for key, value in expected.items():
        assert text[key] == pytest.approx(value), key


def test_zeroshot_matches_a_brute_force_classification(solid_index):
    evaluate("--mode", "zeroshot")

    classes = list(ImageClass.objects.order_by("wnid"))
    correct = 0
    for cls in classes:
        val = Image.objects.filter(image_class=cls, split="val").first()
        with PILImage.open(solid_index / val.path) as img:
            vector = get_clip_embedder().embed_images([img.convert("RGB")])
        scores = brute_force_scores([f"a photo of a {c.name}." for c in classes], vector)[0]
        correct += int(np.argmax(scores)) == classes.index(cls)

    zeroshot = only_run().metrics["zeroshot"]
    assert (zeroshot["queries"], zeroshot["classes"]) == (12, 4)
    assert zeroshot["top1_accuracy"] == pytest.approx(correct / CLASSES)  # 3 identical per class
    assert zeroshot["top5_accuracy"] == 1.0  # 4 classes: always within the top 5


@pytest.fixture
def lemon_vlm(openai_vlm_settings, fake_vlm_server):
    """The fake VLM describes every image as a lemon, whatever it is shown."""
    fake_vlm_server.chunks = ["A lemon", " on a table."]
    return fake_vlm_server


def prompts(server, mode: str) -> list[str]:
    sent = []
    for request in server.requests:
        parts = request.body["messages"][-1]["content"]
        sent.extend(p["text"] for p in parts if p.get("type") == "text")
    context_marker = "similar images in these categories"
    return [p for p in sent if (context_marker in p) == (mode == "retrieved")]


def test_rag_lir_and_context_hit_rate_computed_by_hand(solid_index, lemon_vlm):
    evaluate("--mode", "rag", "--sample", "12")

    run = only_run()
    rag = run.metrics["rag"]
    # 12 images; "A lemon on a table." names the class of the 3 lemons only
    assert rag["samples"] == 12
    assert rag["contexts"] == {
        "retrieved": {"lir": 0.25, "named": 3, "generated": 12, "errors": 0},
        "none": {"lir": 0.25, "named": 3, "generated": 12, "errors": 0},
    }
    # the 5 nearest neighbours are the 5 identical train images of the same class
    assert rag["context_hit_rate"] == 1.0
    assert rag["lir_when_context_hit"] == 0.25
    assert rag["lir_when_context_missed"] is None
    assert len(lemon_vlm.requests) == 24
    assert run.model_ids["vlm"] == "qwen2-vl-test"
    records = run.details["rag"]
    assert {r["wnid"] for r in records if r["descriptions"]["none"]["named"]} == {"n07749582"}


def test_rag_prompts_never_carry_the_true_label(solid_index, lemon_vlm):
    evaluate("--mode", "rag", "--sample", "4")

    none_prompts = prompts(lemon_vlm, "none")
    assert none_prompts == [build_prompt("none", {})] * 4
    names = [n.lower() for c in ImageClass.objects.all() for n in c.names]
    assert not any(name in none_prompts[0].lower() for name in names)
    # the retrieved prompts hold the neighbours' labels, which are the product's prompt
    for record in only_run().details["rag"]:
        assert record["candidates"] == [
            {"wnid": record["wnid"], "name": record["name"], "votes": 5}
        ]


def test_rag_context_leaves_the_image_out_of_its_own_neighbours(solid_dataset, lemon_vlm):
    build("leaky", splits="train,val")

    evaluate("--mode", "rag", "--index", "leaky", "--sample", "4", "--rag-context", "retrieved")

    run = only_run()
    assert list(run.metrics["rag"]["contexts"]) == ["retrieved"]
    for record in run.details["rag"]:
        assert len(record["neighbour_ids"]) == 5
        assert record["image_id"] not in record["neighbour_ids"]


def test_evaluation_leaves_no_search_history(solid_index, lemon_vlm):
    evaluate("--mode", "all", "--sample", "4")

    run = only_run()
    assert run.status == "done", run.error
    assert set(run.metrics) == {"image", "text", "zeroshot", "rag"}
    assert SearchQuery.objects.count() == 0


def test_all_skips_rag_when_descriptions_are_disabled(solid_index, settings):
    settings.TINYRAG_VLM_BACKEND = "none"

    evaluate("--mode", "all")

    run = only_run()
    assert set(run.metrics) == {"image", "text", "zeroshot"}
    assert any("rag skipped" in w for w in run.warnings)


def test_rag_alone_needs_a_describer(solid_index, settings):
    settings.TINYRAG_VLM_BACKEND = "none"

    with pytest.raises(CommandError, match="descriptions are disabled"):
        evaluate("--mode", "rag")
    assert only_run().status == "failed"


def test_failed_generations_fail_the_rag_run_readably(solid_index, lemon_vlm):
    lemon_vlm.set_error(503, "model is loading")

    with pytest.raises(CommandError, match="every retrieved generation failed.*503"):
        evaluate("--mode", "rag", "--sample", "2")


def test_json_output_holds_the_whole_run(solid_index, tmp_path):
    path = tmp_path / "out" / "run.json"

    evaluate("--mode", "image", "--json", str(path))

    data = json.loads(path.read_text(encoding="utf-8"))
    run = only_run()
    assert (data["id"], data["status"], data["mode"]) == (run.pk, "done", "image")
    assert data["metrics"] == run.metrics
    assert data["per_class"] == run.per_class
    assert data["index_manifest"]["name"] == INDEX_NAME


def test_missing_index_fails_with_the_command_to_run(solid_dataset):
    with pytest.raises(CommandError, match="build_index --name nowhere"):
        evaluate("--mode", "image", "--index", "nowhere")
    run = only_run()
    assert run.status == "failed"
    assert "no index named 'nowhere'" in run.error


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--k", "0,5"], "positive integers"),
        (["--k", "one"], "comma-separated integers"),
        (["--rag-context", "everything"], "RAG contexts are retrieved, none"),
        (["--sample", "0"], "positive number"),
        (["--k", "1,1000000000"], "positive integers up to 100"),
        (["--seed", str(10**20)], "the seed must be between -2,147,483,648 and 2,147,483,647"),
        (["--sample", str(10**20)], "at most 2,147,483,647"),
    ],
)
def test_bad_options_are_refused_before_anything_runs(args, message):
    with pytest.raises(CommandError, match=message):
        evaluate(*args)
    assert not EvaluationRun.objects.exists()
