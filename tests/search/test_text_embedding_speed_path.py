"""embed_texts runs the sentence-transformers modules itself, without `encode`: the vectors,
and what a search finds with them, are `encode`'s (the independent route here: the same
directory loaded by sentence-transformers, `encode`, normalised in float32)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sentence_transformers import SentenceTransformer

from search.ml.clip import ClipEmbedder, SentenceTransformerEmbedder
from search.ml.device import Precision

# lengths from 1 to 60 characters, one repeated, not in length order
TEXTS = [
    "a photo of a school bus.",
    "x",
    "a photo of a tabby cat asleep on a sofa next to a red umbrella.",
    "a goldfish",
    "a photo of a school bus.",
    "kucing di atas sofa",
]


def encode_route(directory, precision: Precision, texts: list[str]) -> np.ndarray:
    model = SentenceTransformer(
        str(directory), device="cpu", model_kwargs={"dtype": precision.dtype}
    )
    with torch.inference_mode():
        vectors = model.encode(texts, convert_to_tensor=True, show_progress_bar=False)
    return torch.nn.functional.normalize(vectors.float(), dim=-1).numpy()


def top_k(queries: np.ndarray, collection: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    scores = queries @ collection.T
    ids = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return ids, np.take_along_axis(scores, ids, axis=1)


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.BF16])
def test_clip_text_vectors_equal_encodes(tiny_clip_dir, precision):
    expected = encode_route(tiny_clip_dir, precision, TEXTS)

    vectors = ClipEmbedder(str(tiny_clip_dir), precision=precision).embed_texts(TEXTS)

    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_chunks_smaller_than_the_texts_keep_the_order_given(tiny_clip_dir):
    expected = encode_route(tiny_clip_dir, Precision.FP32, TEXTS)
    embedder = ClipEmbedder(str(tiny_clip_dir), precision=Precision.FP32, batch_size=2)

    vectors = embedder.embed_texts(TEXTS)

    np.testing.assert_allclose(vectors, expected, atol=1e-5)


def test_multilingual_encoder_vectors_equal_encodes(tiny_multilingual_dir):
    expected = encode_route(tiny_multilingual_dir, Precision.FP32, TEXTS)

    vectors = SentenceTransformerEmbedder(str(tiny_multilingual_dir)).embed_texts(TEXTS)

    np.testing.assert_allclose(vectors, expected, atol=1e-5)


@pytest.mark.parametrize("precision", [Precision.FP32, Precision.BF16])
def test_a_search_finds_what_encodes_vectors_find(tiny_clip_dir, precision):
    rng = np.random.default_rng(3)
    collection = rng.normal(size=(500, 16)).astype(np.float32)
    collection /= np.linalg.norm(collection, axis=1, keepdims=True)
    expected_ids, expected_scores = top_k(
        encode_route(tiny_clip_dir, precision, TEXTS), collection, 10
    )

    vectors = ClipEmbedder(str(tiny_clip_dir), precision=precision).embed_texts(TEXTS)
    ids, scores = top_k(vectors, collection, 10)

    np.testing.assert_array_equal(ids, expected_ids)
    np.testing.assert_allclose(scores, expected_scores, atol=1e-5)
