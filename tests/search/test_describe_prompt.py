"""The RAG prompt: neighbours aggregated into candidate classes, and the exact prompt text.

The expected prompts are written out by hand from the prompt template, not built from its
constants: a change to what the model is told must change this test too."""

from __future__ import annotations

from types import SimpleNamespace

from search.descriptions.rag import aggregate_neighbours, build_prompt
from search.queries.retrieval import Hit


def hit(rank, class_id, wnid, names, score):
    image_class = SimpleNamespace(wnid=wnid, name=names[0], names=names) if class_id else None
    image = SimpleNamespace(image_class_id=class_id, image_class=image_class)
    return Hit(rank=rank, image=image, score=score)


CAT = ["Egyptian cat"]
SHEPHERD = ["German shepherd", "German shepherd dog", "alsatian"]
LEMON = ["lemon"]


def test_votes_then_mean_score_order_the_candidates():
    hits = [
        hit(1, 2, "n02106662", SHEPHERD, 0.9),
        hit(2, 1, "n02124075", CAT, 0.8),
        hit(3, 2, "n02106662", SHEPHERD, 0.5),
        hit(4, 3, "n07749582", LEMON, 0.85),
        hit(5, None, None, None, 0.99),  # unlabelled neighbours carry no vote
    ]
    candidates = aggregate_neighbours(hits)
    assert [(c.wnid, c.votes, c.mean_score) for c in candidates] == [
        ("n02106662", 2, 0.7),  # (0.9 + 0.5) / 2
        ("n07749582", 1, 0.85),  # one vote each: higher mean score first
        ("n02124075", 1, 0.8),
    ]
    assert candidates[0].synonyms == ["German shepherd dog", "alsatian"]


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
