"""Qwen2-VL in this process, with transformers: greedy decoding, text streamed per word.

Weights are bf16 where the device computes bf16 natively (fp32 elsewhere, never fp16 on a
CPU); `generate()` runs in the calling thread with a streamer calling back per word, and a
watchdog stops it when no token comes for `timeout` seconds. The model loads once, lazily,
from a local directory or an already-downloaded hub snapshot, never from the network.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
from PIL import Image
from qwen_vl_utils import process_vision_info
from transformers import (
    AutoProcessor,
    ProcessorMixin,
    Qwen2VLForConditionalGeneration,
    StoppingCriteria,
    StoppingCriteriaList,
    TextStreamer,
)

from search.ml.device import Precision, configure_cpu_threads
from search.ml.errors import first_line
from search.ml.local import LocalModel
from search.ml.vlm.base import (
    MODEL_SETTING,
    TIMEOUT_SETTING,
    Described,
    GenerationError,
    check_lengths,
)
from search.ml.vlm.int8 import int8_decode_supported, quantize_decoder_int8

QWEN2_VL_MODEL_TYPES = frozenset({"qwen2_vl"})


class TransformersDescriber(LocalModel):
    """Qwen2-VL (transformers) in this process: greedy decoding, text streamed per word.

    With `int8_decode` (CPU, bf16), decoding reads int8 copies of the text model's weights:
    one token costs a pass over all of them, so halving their bytes is what speeds it up
    (benchmarks/generate_speed.py). Heavy work happens in `_load()`, never in `__init__`.
    One generation runs at a time per instance: a second `describe()` waits for the first
    to finish.
    """

    backend = "transformers"
    marker_required = True  # config.json: its model_type is checked before loading

    def __init__(
        self,
        model_id: str,
        *,
        device: str = "cpu",
        precision: Precision = Precision.FP32,
        min_pixels: int = 224 * 224,
        max_pixels: int = 448 * 448,
        cache_dir: str | Path | None = None,
        timeout: float | None = None,
        int8_decode: bool = False,
        setting: str = MODEL_SETTING,
    ) -> None:
        super().__init__()
        self._model_id = model_id
        self._device = device
        self._precision = Precision(precision)
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels
        self._cache_dir = str(cache_dir) if cache_dir else None
        self.timeout = timeout  # seconds without a new token before giving up; None: no limit
        # int8 weights for decoding (quantize_decoder_int8), on CPUs running bf16 only: with
        # fp32 activations the int8 kernel is slower than dense fp32, and GPUs gain little.
        self.int8_decode = (
            int8_decode
            and device.startswith("cpu")
            and self._precision is Precision.BF16
            and int8_decode_supported()
        )
        self.setting = setting
        self._model: Qwen2VLForConditionalGeneration | None = None
        self._processor: ProcessorMixin | None = None
        self._generate_lock = threading.Lock()

    def _repr_extra(self) -> str:
        return ", int8 decode" if self.int8_decode else ""

    def _load(self) -> None:
        if self._device.startswith("cpu"):
            configure_cpu_threads()
        directory = self._local_directory()
        self._check_model_type(directory)
        try:
            processor = AutoProcessor.from_pretrained(
                directory,
                local_files_only=True,
                size={"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels},
            )
            model = Qwen2VLForConditionalGeneration.from_pretrained(
                directory, dtype=self._precision.dtype, local_files_only=True
            )
            model = model.to(self._device).eval()
            if self.int8_decode:
                quantize_decoder_int8(model)
        except torch.OutOfMemoryError as exc:
            raise self._error(f"out of memory on {self._device} ({first_line(exc)})") from exc
        except Exception as exc:  # a broken or foreign directory fails in many ways
            raise self._error(f"{type(exc).__name__}: {first_line(exc)}") from exc
        if getattr(processor, "tokenizer", None) is None or not processor.chat_template:
            raise self._error("its processor has no tokenizer or no chat template")
        self._processor = processor
        self._model = model

    def describe(
        self,
        image: Image.Image,
        prompt: str,
        *,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        on_piece: Callable[[str], object] | None = None,
    ) -> Described:
        """The description (greedy, so deterministic); `on_piece` gets each word as it comes.

        Generation runs in the calling thread: in another one, PyTorch's OpenMP pool would be
        a second team on the same cores and decoding ~20% slower. Loads the model first
        (ModelLoadError). A failure inside generation (out of memory, no new token for
        `timeout` seconds) raises GenerationError after the pieces already handed over; an
        exception raised by `on_piece` stops the generation and propagates unchanged.
        """
        check_lengths(max_new_tokens, min_new_tokens)
        self.load()
        inputs = self._inputs(image, prompt)
        assert self._processor is not None
        assert self._model is not None
        with self._generate_lock:
            watchdog = _Watchdog(self.timeout)
            streamer = _PieceStreamer(self._processor.tokenizer, on_piece)
            try:
                with torch.inference_mode():
                    self._model.generate(
                        **inputs,
                        streamer=streamer,
                        max_new_tokens=max_new_tokens,
                        min_new_tokens=min_new_tokens or None,
                        do_sample=False,
                        # greedy: the hub's sampling knobs would only warn
                        temperature=None, top_p=None, top_k=None,
                        stopping_criteria=StoppingCriteriaList([watchdog]),
                    )  # fmt: skip
            except Exception as exc:
                if exc is streamer.consumer_error:
                    raise
                raise self._generation_error(exc) from exc
            if watchdog.expired and not self._complete(streamer, max_new_tokens):
                raise GenerationError(
                    f"{self._model_id} produced no text for {self.timeout:g} s "
                    f"({TIMEOUT_SETTING}); generation was stopped."
                )
            return Described(streamer.text, streamer.tokens)

    # -- internals ----------------------------------------------------------------------------

    def _inputs(self, image: Image.Image, prompt: str) -> dict[str, Any]:
        """The chat-templated prompt and the image as model tensors, on the model's device."""
        assert self._processor is not None
        assert self._model is not None
        content = [
            # qwen-vl-utils resizes within these bounds (the processor's own then hold as is).
            {"type": "image", "image": image,
             "min_pixels": self.min_pixels, "max_pixels": self.max_pixels},
            {"type": "text", "text": prompt},
        ]  # fmt: skip
        messages = [{"role": "user", "content": content}]
        text = self._processor.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True
        )
        images, videos = process_vision_info(messages)
        batch = self._processor(
            text=[text], images=images, videos=videos, padding=True, return_tensors="pt"
        )
        batch = batch.to(self._device)
        if "pixel_values" in batch:  # the vision tower runs in the weights' dtype
            batch["pixel_values"] = batch["pixel_values"].to(self._model.dtype)
        return dict(batch)

    def _complete(self, streamer: _PieceStreamer, max_new_tokens: int) -> bool:
        """Whether generation would have ended at this point anyway (length or end token)."""
        assert self._model is not None
        eos = self._model.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos])
        return streamer.tokens >= max_new_tokens or streamer.last_token in eos_ids

    def _generation_error(self, exc: BaseException) -> GenerationError:
        message = first_line(exc)
        out_of_memory = isinstance(exc, torch.OutOfMemoryError) or "out of memory" in message
        if out_of_memory:
            if self._device.startswith("cuda"):
                torch.cuda.empty_cache()
            return GenerationError(
                f"{self._model_id} ran out of memory on {self._device} while generating "
                f"({message}). Lower TINYRAG_VLM_MAX_PIXELS or TINYRAG_VLM_MAX_NEW_TOKENS, or "
                "serve the model elsewhere with TINYRAG_VLM_BACKEND=openai."
            )
        return GenerationError(
            f"{self._model_id} failed while generating: {type(exc).__name__}: {message}"
        )

    def _check_model_type(self, directory: str) -> None:
        try:
            config = json.loads((Path(directory) / "config.json").read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise self._error(f"cannot read its config.json ({first_line(exc)})") from exc
        model_type = config.get("model_type") if isinstance(config, dict) else None
        if model_type not in QWEN2_VL_MODEL_TYPES:
            raise self._error(f"it is a {model_type!r} model, not Qwen2-VL")


class _PieceStreamer(TextStreamer):
    """transformers' word-by-word streamer, handing pieces to a callback and keeping the text.
    The first exception the callback raises is remembered: it stops `generate()`, and the
    describer lets it through as it is."""

    def __init__(self, tokenizer: Any, on_piece: Callable[[str], object] | None) -> None:
        super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
        self.on_piece = on_piece
        self.pieces: list[str] = []
        self.tokens = 0  # generated, special ones included
        self.last_token: int | None = None
        self.consumer_error: BaseException | None = None

    def put(self, value: torch.Tensor) -> None:
        if not (self.skip_prompt and self.next_tokens_are_prompt):
            self.tokens += value.numel()  # one sequence: one token per step
            self.last_token = int(value.reshape(-1)[-1])
        super().put(value)

    @property
    def text(self) -> str:
        return "".join(self.pieces)

    def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
        if not text:
            return
        self.pieces.append(text)
        if self.on_piece is not None:
            try:
                self.on_piece(text)
            except BaseException as exc:
                self.consumer_error = exc
                raise


class _Watchdog(StoppingCriteria):
    """Stops generation after a step that took longer than `timeout` seconds (None: never)."""

    def __init__(self, timeout: float | None) -> None:
        self.timeout = timeout
        self.expired = False
        self._last = time.monotonic()

    def __call__(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        now = time.monotonic()
        if self.timeout is not None and now - self._last > self.timeout:
            self.expired = True
        self._last = now
        return torch.full(
            (input_ids.shape[0],), self.expired, dtype=torch.bool, device=input_ids.device
        )
