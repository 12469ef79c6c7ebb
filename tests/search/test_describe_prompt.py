"""The RAG prompt: neighbours aggregated into candidate classes, and the exact prompt text in
each reader's language.

The expected prompts are written out by hand from the prompt template, not built from its
constants: a change to what the model is told must change this test too."""

from __future__ import annotations

from types import SimpleNamespace

import pytest

from search.catalog.models import ImageClass
from search.descriptions.rag import aggregate_neighbours, build_prompt, prompt_version
from search.queries.retrieval import Hit


def image_class(wnid, names, indonesian=None):
    """An unsaved class, as the catalogue holds it: English names, maybe Indonesian ones."""
    translations = {"id": indonesian} if indonesian else {}
    return ImageClass(wnid=wnid, name=names[0], names=names, translations=translations)


def hit(rank, class_id, cls, score):
    image = SimpleNamespace(image_class_id=class_id, image_class=cls if class_id else None)
    return Hit(rank=rank, image=image, score=score)


CAT = image_class(
    "n02124075", ["Egyptian cat"], {"name": "kucing mesir", "synonyms": ["mau mesir"]}
)
SHEPHERD = image_class(
    "n02106662",
    ["German shepherd", "German shepherd dog", "alsatian"],
    {"name": "anjing herder", "synonyms": ["herder", "anjing gembala jerman"]},
)
LEMON = image_class("n07749582", ["lemon"])  # no Indonesian name: English stands in


def test_votes_then_mean_score_order_the_candidates():
    hits = [
        hit(1, 2, SHEPHERD, 0.9),
        hit(2, 1, CAT, 0.8),
        hit(3, 2, SHEPHERD, 0.5),
        hit(4, 3, LEMON, 0.85),
        hit(5, None, None, 0.99),  # unlabelled neighbours carry no vote
    ]
    candidates = aggregate_neighbours(hits)
    assert [(c.wnid, c.votes, c.mean_score) for c in candidates] == [
        ("n02106662", 2, 0.7),  # (0.9 + 0.5) / 2
        ("n07749582", 1, 0.85),  # one vote each: higher mean score first
        ("n02124075", 1, 0.8),
    ]
    assert candidates[0].synonyms == ["German shepherd dog", "alsatian"]
    assert [c.name for c in candidates] == ["German shepherd", "lemon", "Egyptian cat"]


def test_candidates_are_named_in_the_readers_language_and_keep_their_wnid():
    hits = [hit(1, 2, SHEPHERD, 0.9), hit(2, 1, CAT, 0.8), hit(3, 3, LEMON, 0.7)]
    candidates = aggregate_neighbours(hits, language="id")
    assert [(c.wnid, c.name, c.synonyms) for c in candidates] == [
        ("n02106662", "anjing herder", ["herder", "anjing gembala jerman"]),
        ("n02124075", "kucing mesir", ["mau mesir"]),
        ("n07749582", "lemon", []),  # no Indonesian name: the English one
    ]


def test_no_neighbours_no_candidates():
    assert aggregate_neighbours([]) == []


def test_retrieved_prompt_lists_candidates_with_votes_scores_and_synonyms():
    context = {
        "k": 5,
        "candidates": [
            {
                "wnid": "n02106662",
                "name": "German shepherd",
                "synonyms": ["alsatian"],
                "votes": 3,
                "mean_score": 0.8123,
            },
            {"wnid": "n07749582", "name": "lemon", "synonyms": [], "votes": 2, "mean_score": 0.5},
        ],
    }
    assert build_prompt("retrieved", context) == (
        "Describe this image faithfully in two or three sentences: the main subject, its "
        "colours and the setting. Say only what you can see.\n"
        "A visual search over a labelled photo collection found similar images in these "
        "categories (votes among the 5 nearest neighbours, mean similarity):\n"
        "1. German shepherd (also: alsatian): 3 of 5, 0.81\n"
        "2. lemon: 2 of 5, 0.50\n"
        "Name the most likely category only if the image itself supports it; if none fits, "
        "say what it looks like instead."
    )


def test_image_only_prompt_has_no_labels():
    prompt = build_prompt("none", {})
    assert prompt == (
        "Describe this image faithfully in two or three sentences: the main subject, its "
        "colours and the setting. Say only what you can see. "
        "Then say what the main object most likely is."
    )
    assert "categor" not in prompt


INDONESIAN_CONTEXT = {
    "k": 5,
    "candidates": [
        {
            "wnid": "n02124075",
            "name": "kucing mesir",
            "synonyms": ["mau mesir"],
            "votes": 3,
            "mean_score": 0.8123,
        },
        {"wnid": "n07749582", "name": "lemon", "synonyms": [], "votes": 2, "mean_score": 0.5},
    ],
}


def test_indonesian_retrieved_prompt_asks_for_indonesian_with_the_labels_in_it():
    assert build_prompt("retrieved", INDONESIAN_CONTEXT, language="id") == (
        "Jelaskan gambar ini dengan setia dalam dua atau tiga kalimat dalam bahasa Indonesia: "
        "subjek utamanya, warna-warnanya, dan latarnya. Sebutkan hanya apa yang terlihat.\n"
        "Pencarian visual dalam koleksi foto berlabel menemukan gambar-gambar serupa dalam "
        "kategori berikut (jumlah suara di antara 5 tetangga terdekat, rata-rata kemiripan):\n"
        "1. kucing mesir (juga: mau mesir): 3 dari 5, kemiripan 0,81\n"
        "2. lemon: 2 dari 5, kemiripan 0,50\n"
        "Sebutkan kategori yang paling mungkin hanya jika gambar itu sendiri mendukungnya; "
        "jika tidak ada yang cocok, katakan gambar itu tampak seperti apa."
    )


def test_indonesian_image_only_prompt_has_no_labels():
    prompt = build_prompt("none", {}, language="id")
    assert prompt == (
        "Jelaskan gambar ini dengan setia dalam dua atau tiga kalimat dalam bahasa Indonesia: "
        "subjek utamanya, warna-warnanya, dan latarnya. Sebutkan hanya apa yang terlihat. "
        "Lalu katakan apa kemungkinan besar objek utamanya."
    )
    assert "kategori" not in prompt


def test_english_is_the_default_and_each_language_has_its_own_prompt_version():
    assert build_prompt("none", {}) == build_prompt("none", {}, language="en")
    assert prompt_version("en") == "rag-v1"  # the English words are rag-v1's
    assert prompt_version("id") == "rag-id-v1"


def test_a_language_without_a_prompt_is_refused():
    with pytest.raises(ValueError, match="not 'fr'"):
        build_prompt("none", {}, language="fr")
