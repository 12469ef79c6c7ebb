"""Query translation to English (MarianMT, e.g. Helsinki-NLP/opus-mt-id-en) for the translate
route: the translation is then embedded by CLIP's own text tower with the prompt template.

The model loads once, lazily (`search.ml.base.InferenceModel`), from a local directory or an
already-downloaded hub snapshot in the layout of the Helsinki-NLP repositories (config.json,
the weights, source.spm, target.spm, vocab.json), never from the network. Decoding is
bounded: a few beams and at most `max_new_tokens` tokens per query, whatever the input.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Sequence

import torch
from transformers import MarianMTModel, MarianTokenizer

from search.ml.device import Precision, configure_cpu_threads
from search.ml.errors import first_line
from search.ml.local import LocalModel

MARIAN_MODEL_TYPES = frozenset({"marian"})
# Source tokens kept per query (fewer where the model has fewer positions): a query is at
# most 500 characters, a few hundred tokens; opus-mt's limit is 512 positions.
MAX_SOURCE_TOKENS = 256


class Translator(LocalModel):
    """A MarianMT model that translates query texts into English, in batches."""

    setting = "TINYRAG_TRANSLATE_MODEL"
    marker_required = True  # config.json: its model_type is checked before loading
    bare_name_org = "Helsinki-NLP"  # "opus-mt-id-en" is Helsinki-NLP's, as on the hub

    def __init__(
        self,
        model_id: str,
        *,
        device: str = "cpu",
        precision: Precision = Precision.FP32,
        cache_dir: str | os.PathLike[str] | None = None,
        num_beams: int = 4,
        max_new_tokens: int = 64,
        batch_size: int = 32,
    ) -> None:
        super().__init__()
        self._model_id = model_id
        self._device = device
        self._precision = Precision(precision)
        self._cache_dir = str(cache_dir) if cache_dir else None
        self.num_beams = max(1, int(num_beams))
        self.max_new_tokens = max(1, int(max_new_tokens))
        self.batch_size = max(1, int(batch_size))
        self._model: MarianMTModel | None = None
        self._tokenizer: MarianTokenizer | None = None
        self._generate_lock = threading.Lock()  # one generate() at a time per instance

    def _repr_extra(self) -> str:
        return f", beams={self.num_beams}"

    def _load(self) -> None:
        if self._device.startswith("cpu"):
            configure_cpu_threads()
        directory = self._local_directory()
        self._check_config(directory)
        try:
            tokenizer = MarianTokenizer.from_pretrained(directory)
            model = MarianMTModel.from_pretrained(directory, dtype=self._precision.dtype)
        except Exception as exc:  # a broken or foreign directory fails in many ways
            raise self._error(f"{type(exc).__name__}: {first_line(exc)}") from exc
        self._model = model.to(self._device).eval()
        self._tokenizer = tokenizer

    def translate(self, texts: Sequence[str]) -> list[str]:
        """The English of each text, in order (an empty text stays empty)."""
        texts = [" ".join(str(t).split()) for t in texts]
        if not texts:
            return []
        self.load()
        out = [""] * len(texts)
        todo = [i for i, t in enumerate(texts) if t]
        for start in range(0, len(todo), self.batch_size):
            chunk = todo[start : start + self.batch_size]
            for i, english in zip(chunk, self._translate([texts[i] for i in chunk]), strict=True):
                out[i] = english
        return out

    def _translate(self, texts: list[str]) -> list[str]:
        assert self._model is not None
        assert self._tokenizer is not None
        batch = self._tokenizer(
            texts,
            return_tensors="pt",
            padding=True,
            truncation=True,
            max_length=min(MAX_SOURCE_TOKENS, self._model.config.max_position_embeddings),
        ).to(self._device)
        with self._generate_lock, torch.inference_mode():
            generated = self._model.generate(
                **batch,
                num_beams=self.num_beams,
                do_sample=False,
                max_new_tokens=self.max_new_tokens,
            )
        decoded = self._tokenizer.batch_decode(generated, skip_special_tokens=True)
        return [" ".join(text.split()) for text in decoded]

    def _check_config(self, directory: str) -> None:
        try:
            with open(os.path.join(directory, self.marker), encoding="utf-8") as f:
                model_type = json.load(f).get("model_type")
        except (OSError, ValueError) as exc:
            raise self._error(f"its config.json cannot be read ({first_line(exc)})") from exc
        if model_type not in MARIAN_MODEL_TYPES:
            raise self._error(
                f"it is a {model_type or 'unknown'} model, not a MarianMT translation model"
            )
