"""`evaluate --language id`: text queries with the Indonesian class names through the product's
routing (and `--text-route` to compare the routes), descriptions in Indonesian with their
label inclusion counted in Indonesian; the run stores its language and route.

On the tiny models and the solid-colour dataset (tests/evaluation/conftest.py). The expected
text numbers come from a brute-force search that embeds the names through the models
directly, not through the evaluation or the search code.
"""

from __future__ import annotations

import numpy as np
import pytest
from django.core.management.base import CommandError

from evaluation.models import EvaluationRun
from search.catalog.models import Image, ImageClass
from search.ml.registry import get_clip_embedder, get_multilingual_embedder, get_translator
from tests.evaluation.conftest import INDEX_NAME, evaluate

pytestmark = pytest.mark.django_db

# Indonesian names unlike any English one, so that only the Indonesian rules can find them.
INDONESIAN = {
    "n07749582": ("jeruk sitrun", ["limau"]),  # lemon
    "n02124075": ("kucing mesir", ["mau mesir"]),  # Egyptian cat
    "n04067472": ("gulungan pancing", []),  # reel
    "n02106662": ("anjing herder", ["anjing gembala jerman"]),  # German shepherd
}


@pytest.fixture
def indonesian_names(solid_index):
    for cls in ImageClass.objects.all():
        name, synonyms = INDONESIAN[cls.wnid]
        cls.translations = {"id": {"name": name, "synonyms": synonyms, "source": "test"}}
        cls.save(update_fields=["translations"])
    return solid_index


def only_run() -> EvaluationRun:
    return EvaluationRun.objects.get()


def brute_force_text_metrics(query_vectors: np.ndarray, classes: list[ImageClass], folder):
    """Recall@1/5/10 and MRR@10 of one query per class (row i: classes[i]) over the index's
    stored vectors, by sorting every score."""
    ids, vectors = np.load(folder / "ids.npy"), np.load(folder / "embeddings.npy")
    class_of = dict(Image.objects.values_list("id", "image_class__wnid"))
    scores = vectors @ query_vectors.T
    expected = {"recall@1": 0.0, "recall@5": 0.0, "recall@10": 0.0, "mrr": 0.0}
    for column, cls in enumerate(classes):
        ranked = [class_of[int(i)] == cls.wnid for i in ids[np.argsort(-scores[:, column])]]
        first = ranked.index(True) + 1
        for k in (1, 5, 10):
            expected[f"recall@{k}"] += (first <= k) / len(classes)
        expected["mrr"] += (1 / first if first <= 10 else 0) / len(classes)
    return expected


def assert_text_metrics(expected: dict) -> None:
    text = only_run().metrics["text"]
    assert text["queries"] == 4
    for key, value in expected.items():
        assert text[key] == pytest.approx(value, abs=1e-6), key


def classes_by_wnid() -> list[ImageClass]:
    return list(ImageClass.objects.order_by("wnid"))


def test_indonesian_text_queries_take_the_multilingual_route_by_default(
    indonesian_names, multilingual_settings
):
    out = evaluate("--mode", "text", "--language", "id", "--k", "1,5,10")

    run = only_run()
    assert (run.status, run.language) == ("done", "id"), run.error
    assert run.configuration["language"] == "id"
    assert run.configuration["text_route"] == "multilingual"  # the product's default for id
    assert run.model_ids["text"] == str(multilingual_settings.TINYRAG_TEXT_MODEL)
    classes = classes_by_wnid()
    # the multilingual encoder gets the name as typed: no CLIP prompt template
    queries = get_multilingual_embedder().embed_texts([INDONESIAN[c.wnid][0] for c in classes])
    folder = multilingual_settings.TINYRAG_INDEX_DIR / INDEX_NAME
    assert_text_metrics(brute_force_text_metrics(queries, classes, folder))
    assert "language id, text route multilingual" in out


def test_the_clip_route_embeds_the_indonesian_names_with_the_prompt_template(
    indonesian_names, multilingual_settings
):
    evaluate("--mode", "text", "--language", "id", "--text-route", "clip")

    run = only_run()
    assert (run.status, run.language, run.configuration["text_route"]) == ("done", "id", "clip")
    assert run.model_ids["text"] == str(multilingual_settings.TINYRAG_CLIP_MODEL)
    classes = classes_by_wnid()
    phrases = [f"a photo of a {INDONESIAN[c.wnid][0]}." for c in classes]
    queries = get_clip_embedder().embed_texts(phrases)
    folder = multilingual_settings.TINYRAG_INDEX_DIR / INDEX_NAME
    assert_text_metrics(brute_force_text_metrics(queries, classes, folder))


def test_the_translate_route_translates_the_names_then_uses_clip(
    indonesian_names, translate_settings
):
    evaluate("--mode", "text", "--language", "id", "--text-route", "translate")

    run = only_run()
    assert (run.status, run.configuration["text_route"]) == ("done", "translate"), run.error
    assert run.model_ids["translator"] == str(translate_settings.TINYRAG_TRANSLATE_MODEL)
    classes = classes_by_wnid()
    english = get_translator().translate([INDONESIAN[c.wnid][0] for c in classes])
    queries = get_clip_embedder().embed_texts([f"a photo of a {e}." for e in english])
    folder = translate_settings.TINYRAG_INDEX_DIR / INDEX_NAME
    assert_text_metrics(brute_force_text_metrics(queries, classes, folder))


def test_english_stays_on_clip_with_the_english_names(indonesian_names, multilingual_settings):
    evaluate("--mode", "text")

    run = only_run()
    assert (run.language, run.configuration["text_route"]) == ("en", "clip")
    classes = classes_by_wnid()
    queries = get_clip_embedder().embed_texts([f"a photo of a {c.name}." for c in classes])
    folder = multilingual_settings.TINYRAG_INDEX_DIR / INDEX_NAME
    assert_text_metrics(brute_force_text_metrics(queries, classes, folder))


def test_zeroshot_in_indonesian_scores_against_the_indonesian_names(
    indonesian_names, multilingual_settings
):
    evaluate("--mode", "zeroshot", "--language", "id")

    run = only_run()
    assert (run.status, run.configuration["text_route"]) == ("done", "multilingual"), run.error
    assert run.metrics["zeroshot"]["classes"] == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--language", "en", "--text-route", "translate"], "translates id into English, not en"),
        (["--language", "fr"], "invalid choice: 'fr'"),
        (["--text-route", "babel"], "invalid choice: 'babel'"),
    ],
)
def test_a_route_or_language_that_cannot_work_is_refused_before_anything_runs(
    indonesian_names, multilingual_settings, args, message
):
    with pytest.raises(CommandError, match=message):
        evaluate("--mode", "text", *args)
    assert not EvaluationRun.objects.exists()


# --- descriptions in Indonesian --------------------------------------------------------------


@pytest.fixture
def sitrun_vlm(openai_vlm_settings, fake_vlm_server):
    """The fake VLM describes every image, in Indonesian, as lemons (a reduplicated plural of
    the lemon class's Indonesian name), whatever it is shown."""
    fake_vlm_server.chunks = ["Jeruk-jeruk sitrun", " di atas meja."]
    return fake_vlm_server


def sent_prompts(server) -> list[str]:
    sent = []
    for request in server.requests:
        parts = request.body["messages"][-1]["content"]
        sent.extend(p["text"] for p in parts if p.get("type") == "text")
    return sent


def test_rag_in_indonesian_asks_in_indonesian_and_counts_indonesian_names(
    indonesian_names, sitrun_vlm
):
    evaluate("--mode", "rag", "--language", "id", "--sample", "12")

    run = only_run()
    assert (run.status, run.language) == ("done", "id"), run.error
    assert run.configuration["prompt_version"] == "rag-id-v1"
    # 12 images, 3 per class; "Jeruk-jeruk sitrun" names the class of the 3 lemons only
    assert run.metrics["rag"]["contexts"] == {
        "retrieved": {"lir": 0.25, "named": 3, "generated": 12, "errors": 0},
        "none": {"lir": 0.25, "named": 3, "generated": 12, "errors": 0},
    }
    prompts = sent_prompts(sitrun_vlm)
    assert len(prompts) == 24
    assert all(p.startswith("Jelaskan gambar ini") for p in prompts)
    for record in run.details["rag"]:
        name = INDONESIAN[record["wnid"]][0]
        assert record["name"] == name
        # the retrieved context: the 5 identical train images of its class, named in Indonesian
        assert record["candidates"] == [{"wnid": record["wnid"], "name": name, "votes": 5}]
    retrieved = [p for p in prompts if "kategori berikut" in p]
    assert len(retrieved) == 12
    assert {p.split("\n")[2].rsplit(": ", 1)[0] for p in retrieved} == {
        f"1. {name}" + (f" (juga: {', '.join(synonyms)})" if synonyms else "")
        for name, synonyms in INDONESIAN.values()
    }
    lemons = {r["wnid"] for r in run.details["rag"] if r["descriptions"]["none"]["named"]}
    assert lemons == {"n07749582"}


def test_the_same_indonesian_text_names_nothing_in_english(indonesian_names, sitrun_vlm):
    evaluate("--mode", "rag", "--sample", "4", "--rag-context", "none")

    run = only_run()
    assert (run.language, run.configuration["prompt_version"]) == ("en", "rag-v1")
    assert run.metrics["rag"]["contexts"]["none"]["named"] == 0  # "lemon" is not in the text
    assert all(p.startswith("Describe this image") for p in sent_prompts(sitrun_vlm))


def test_rag_in_indonesian_on_the_tiny_qwen2_vl(indonesian_names, vlm_settings):
    vlm_settings.TINYRAG_VLM_MIN_NEW_TOKENS = 2  # a random-weight model may stop at once
    vlm_settings.TINYRAG_VLM_MAX_NEW_TOKENS = 4
    evaluate("--mode", "rag", "--language", "id", "--sample", "2", "--rag-context", "retrieved")

    run = only_run()
    assert (run.status, run.language) == ("done", "id"), run.error
    assert run.configuration["prompt_version"] == "rag-id-v1"
    assert run.model_ids["vlm"] == str(vlm_settings.TINYRAG_VLM_MODEL)
    records = run.details["rag"]
    assert len(records) == 2
    for record in records:
        described = record["descriptions"]["retrieved"]
        assert described["error"] == ""
        assert described["text"]
        assert record["candidates"][0]["name"] == INDONESIAN[record["wnid"]][0]
