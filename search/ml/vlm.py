"""Image describers: Qwen2-VL in this process, or any OpenAI-compatible chat-completions server.

Both backends hand text pieces over as the model produces them, behind one `Describer`
protocol::

    describer = get_describer()            # None when TINYRAG_VLM_BACKEND=none; not yet loaded
    text = describer.describe(image, prompt, max_new_tokens=128, on_piece=save_progress)
    # the task writes the pieces into the row as they come

- `TransformersDescriber` runs Qwen2-VL with transformers: greedy decoding, bf16 weights where
  the device computes bf16 natively (fp32 elsewhere, never fp16 on a CPU), `generate()` in the
  calling thread with a streamer calling back per word. It loads once, lazily, from a local
  directory or an already-downloaded hub snapshot, never from the network.
- `OpenAIDescriber` POSTs to `{TINYRAG_VLM_URL}/chat/completions` with `stream: true` (vLLM,
  SGLang, Ollama), the image inline as a PNG data URL, and parses the server-sent events.

Configuration problems are `ModelLoadError`s (at `load()` or when `describe()` is called);
failures while generating are `GenerationError`s, raised after any pieces already handed over:
out of memory, an unreachable or failing server, a malformed or stalled stream.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import http.client
import io
import ipaddress
import json
import logging
import math
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

import torch
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from PIL import Image
from transformers import StoppingCriteria, StoppingCriteriaList, TextStreamer

from search.ml.device import Precision
from search.ml.errors import ModelError, ModelLoadError, first_line
from search.ml.local import LocalModel
from search.ml.registry import current_target, registry

if TYPE_CHECKING:
    from transformers import ProcessorMixin, Qwen2VLForConditionalGeneration

logger = logging.getLogger(__name__)

BACKENDS = ("transformers", "openai", "none")
MODEL_SETTING = "TINYRAG_VLM_MODEL"
URL_SETTING = "TINYRAG_VLM_URL"
TIMEOUT_SETTING = "TINYRAG_VLM_TIMEOUT"
# Qwen2-VL sees 14-pixel patches merged 2x2: image sides are multiples of 28.
PIXEL_FACTOR = 28
QWEN2_VL_MODEL_TYPES = frozenset({"qwen2_vl"})
ERROR_BODY_CHARS = 300  # of a server's error message, in our one-line errors
MAX_EVENT_LINE_BYTES = 1 << 20  # one server-sent event line; a longer one is a broken stream


class GenerationError(ModelError):
    """Generating a description failed at run time (not a configuration problem)."""


class VLMConfigurationError(ModelError, ImproperlyConfigured):
    """TINYRAG_VLM_BACKEND (or another VLM setting) has a value TinyRAG cannot use."""


@dataclass(frozen=True)
class Described:
    """A finished description: its text and how many tokens the model generated for it."""

    text: str
    tokens: int


@runtime_checkable
class Describer(Protocol):
    """Writes text about one image, handing each piece over as it is generated."""

    backend: str  # "transformers" | "openai"

    @property
    def model_id(self) -> str: ...

    def load(self) -> None: ...

    def describe(
        self,
        image: Image.Image,
        prompt: str,
        *,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        on_piece: Callable[[str], object] | None = None,
    ) -> Described: ...


def get_describer() -> Describer | None:
    """The describer the settings ask for (not loaded yet); None when TINYRAG_VLM_BACKEND=none.

    One instance per distinct configuration, from the process-wide model registry.
    """
    backend = (settings.TINYRAG_VLM_BACKEND or "").strip().lower()
    if backend == "none":
        return None
    min_pixels, max_pixels = pixel_bounds()
    timeout = float(settings.TINYRAG_VLM_TIMEOUT) or None  # 0: wait as long as it takes
    if backend == "transformers":
        target = current_target()
        model_id = settings.TINYRAG_VLM_MODEL
        cache_dir = settings.TINYRAG_MODEL_DIR or None
        # On by default (benchmarks/generate_speed.py): faster decoding on CPUs, +1 byte/param.
        int8_decode = settings.TINYRAG_VLM_INT8_DECODE
        key = (
            TransformersDescriber.__name__, model_id, target.device, target.precision,
            cache_dir, min_pixels, max_pixels, timeout, int8_decode,
        )  # fmt: skip
        return registry.get(
            key,
            lambda: TransformersDescriber(
                model_id,
                device=target.device,
                precision=target.precision,
                min_pixels=min_pixels,
                max_pixels=max_pixels,
                cache_dir=cache_dir,
                timeout=timeout,
                int8_decode=int8_decode,
            ),
        )
    if backend == "openai":
        url = settings.TINYRAG_VLM_URL
        served = settings.TINYRAG_VLM_SERVED_MODEL or settings.TINYRAG_VLM_MODEL
        api_key = settings.TINYRAG_VLM_API_KEY or ""
        # The key changes the instance, but a registry key is no place for a secret in clear.
        key_digest = hashlib.sha256(api_key.encode()).hexdigest() if api_key else ""
        key = (OpenAIDescriber.__name__, url, served, key_digest, timeout, min_pixels, max_pixels)
        return registry.get(
            key,
            lambda: OpenAIDescriber(
                url,
                served_model=served,
                api_key=api_key,
                timeout=timeout,
                min_pixels=min_pixels,
                max_pixels=max_pixels,
            ),
        )
    raise VLMConfigurationError(
        f"TINYRAG_VLM_BACKEND={settings.TINYRAG_VLM_BACKEND!r} is not one of {', '.join(BACKENDS)}."
    )


def pixel_bounds() -> tuple[int, int]:
    """(min, max) pixels of an image as the VLM sees it, from the settings, checked."""
    min_pixels = int(settings.TINYRAG_VLM_MIN_PIXELS)
    max_pixels = int(settings.TINYRAG_VLM_MAX_PIXELS)
    if min_pixels < PIXEL_FACTOR**2 or max_pixels < min_pixels:
        raise VLMConfigurationError(
            f"TINYRAG_VLM_MIN_PIXELS={min_pixels} and TINYRAG_VLM_MAX_PIXELS={max_pixels} must "
            f"satisfy {PIXEL_FACTOR**2} <= min <= max."
        )
    return min_pixels, max_pixels


def fit_pixels(
    width: int, height: int, *, min_pixels: int, max_pixels: int, factor: int = PIXEL_FACTOR
) -> tuple[int, int]:
    """The (width, height) Qwen2-VL resizes an image to: sides multiples of `factor`, area
    within [min_pixels, max_pixels], aspect ratio kept as far as that allows (qwen-vl-utils'
    `smart_resize`, restated here so the openai backend needs no torch)."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    if max(width, height) / min(width, height) > 200:
        raise ValueError(f"aspect ratio of {width}x{height} is beyond Qwen2-VL's limit of 200")
    h = max(factor, round(height / factor) * factor)
    w = max(factor, round(width / factor) * factor)
    if h * w > max_pixels:
        beta = math.sqrt(height * width / max_pixels)
        h = max(factor, math.floor(height / beta / factor) * factor)
        w = max(factor, math.floor(width / beta / factor) * factor)
    elif h * w < min_pixels:
        beta = math.sqrt(min_pixels / (height * width))
        h = math.ceil(height * beta / factor) * factor
        w = math.ceil(width * beta / factor) * factor
    return w, h


def _check_lengths(max_new_tokens: int, min_new_tokens: int) -> None:
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if not 0 <= min_new_tokens <= max_new_tokens:
        raise ValueError(
            f"min_new_tokens must be within [0, max_new_tokens={max_new_tokens}], "
            f"got {min_new_tokens}"
        )


def _truncate(text: str, limit: int = ERROR_BODY_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


# -- transformers ------------------------------------------------------------------------------


class TransformersDescriber(LocalModel):
    """Qwen2-VL (transformers) in this process: greedy decoding, text streamed per word.

    With `int8_decode` (CPU, bf16), decoding reads int8 copies of the text model's weights:
    one token costs a pass over all of them, so halving their bytes is what speeds it up
    (benchmarks/generate_speed.py). Heavy work happens in `load()` (idempotent, locked),
    never in `__init__`. One generation runs at a time per instance: a second `describe()`
    waits for the first to finish.
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
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()

    def _repr_extra(self) -> str:
        return ", int8 decode" if self.int8_decode else ""

    def load(self) -> None:
        """Load model and processor once; later calls return at once. Raises ModelLoadError."""
        if self._model is not None:
            return
        with self._load_lock:
            if self._model is not None:
                return
            from transformers import AutoProcessor, Qwen2VLForConditionalGeneration

            from search.ml.clip import configure_cpu_threads

            if self._device.startswith("cpu"):
                configure_cpu_threads()
            directory = self._local_directory()
            self._check_model_type(directory)
            started = time.perf_counter()
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
            logger.info("Loaded %r in %.1f s", self, time.perf_counter() - started)

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
        _check_lengths(max_new_tokens, min_new_tokens)
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
        from qwen_vl_utils import process_vision_info

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


# -- OpenAI-compatible server ------------------------------------------------------------------


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


class OpenAIDescriber:
    """A chat-completions server (vLLM, SGLang, Ollama) serving a vision model, streamed.

    The image is resized to the same pixel bounds as the local backend (so the server's model
    sees as many visual tokens) and sent inline as a PNG data URL. `timeout` bounds both the
    connection and every wait for the next bytes of the stream.
    """

    backend = "openai"

    def __init__(
        self,
        base_url: str,
        *,
        served_model: str,
        api_key: str = "",
        timeout: float | None = 120.0,
        min_pixels: int = 224 * 224,
        max_pixels: int = 448 * 448,
    ) -> None:
        self.base_url = base_url.strip().rstrip("/")
        self._served_model = served_model
        self._api_key = api_key
        self.timeout = timeout  # connect, then each wait for more bytes; None: no limit
        self.min_pixels = min_pixels
        self.max_pixels = max_pixels

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, model={self._served_model!r})"

    @property
    def model_id(self) -> str:
        return self._served_model

    @property
    def endpoint(self) -> str:
        return f"{self.base_url}/chat/completions"

    def load(self) -> None:
        """Nothing to load here; checks that TINYRAG_VLM_URL is an http(s) URL."""
        parts = urllib.parse.urlsplit(self.base_url)
        if parts.scheme not in {"http", "https"} or not parts.hostname:
            raise ModelLoadError(
                self._served_model, URL_SETTING, f"{self.base_url!r} is not an http(s) URL"
            )
        if not self._served_model.strip():
            raise ModelLoadError(
                self._served_model, "TINYRAG_VLM_SERVED_MODEL", "no served model name is set"
            )

    def describe(
        self,
        image: Image.Image,
        prompt: str,
        *,
        max_new_tokens: int,
        min_new_tokens: int = 0,
        on_piece: Callable[[str], object] | None = None,
    ) -> Described:
        """The description as the server streams it, each piece handed to `on_piece` as it
        arrives; GenerationError on any failure (after the pieces already handed over).
        Tokens are counted as the chunks that carried text (vLLM and SGLang send one per
        token)."""
        pieces = []
        for piece in self._stream(image, prompt, max_new_tokens, min_new_tokens):
            pieces.append(piece)
            if on_piece is not None:
                on_piece(piece)
        return Described("".join(pieces), len(pieces))

    def _stream(
        self, image: Image.Image, prompt: str, max_new_tokens: int, min_new_tokens: int
    ) -> Iterator[str]:
        _check_lengths(max_new_tokens, min_new_tokens)
        self.load()
        body: dict[str, Any] = {
            "model": self._served_model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": self.image_data_url(image)}},
                        {"type": "text", "text": prompt},
                    ],
                }
            ],
            "max_tokens": max_new_tokens,
            "temperature": 0,
            "stream": True,
        }
        if min_new_tokens:
            body["min_tokens"] = min_new_tokens  # vLLM / SGLang extension; omitted when 0
        return self._events(json.dumps(body).encode("utf-8"))

    def image_data_url(self, image: Image.Image) -> str:
        """The image, RGB, resized within the pixel bounds, as a base64 PNG data URL."""
        from search.ml.clip import to_rgb

        rgb = to_rgb(image)
        size = fit_pixels(*rgb.size, min_pixels=self.min_pixels, max_pixels=self.max_pixels)
        if size != rgb.size:
            rgb = rgb.resize(size, Image.Resampling.BICUBIC)
        buffer = io.BytesIO()
        rgb.save(buffer, format="PNG")
        return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")

    # -- internals ----------------------------------------------------------------------------

    def _events(self, payload: bytes) -> Iterator[str]:
        headers = {
            "Content-Type": "application/json",
            "Accept": "text/event-stream",
        }
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        request = urllib.request.Request(self.endpoint, data=payload, headers=headers)
        try:
            response = self._opener().open(request, timeout=self.timeout)
        except urllib.error.HTTPError as exc:
            raise self._http_error(exc) from exc
        except (OSError, http.client.HTTPException) as exc:  # refused, DNS, timeout, reset
            raise self._unreachable(exc) from exc
        with response:
            content_type = response.headers.get("Content-Type", "")
            if content_type.startswith("application/json"):
                raise self._malformed("a JSON answer instead of an event stream")
            finished = False
            while True:
                try:
                    raw = response.readline(MAX_EVENT_LINE_BYTES + 1)
                except TimeoutError as exc:
                    raise self._stalled() from exc
                except (OSError, http.client.HTTPException) as exc:  # reset, broken chunking
                    raise GenerationError(
                        f"the connection to the VLM server at {self.endpoint} broke while "
                        f"streaming ({first_line(exc)})."
                    ) from exc
                if not raw:
                    break
                if len(raw) > MAX_EVENT_LINE_BYTES:
                    raise self._malformed("an event line longer than 1 MiB")
                line = raw.decode("utf-8", errors="replace").strip()
                if not line or line.startswith(":") or not line.startswith("data:"):
                    continue  # blank separators, comments (keep-alives), event:/id: fields
                data = line[len("data:") :].strip()
                if data == "[DONE]":
                    return
                piece, done = self._delta(data)
                finished = finished or done
                if piece:
                    yield piece
            if not finished:
                raise GenerationError(
                    f"the VLM server at {self.endpoint} closed the stream before it finished "
                    "(no finish_reason, no data: [DONE])."
                )

    def _delta(self, data: str) -> tuple[str, bool]:
        """(text, finished) of one `data:` chunk of a chat.completion.chunk stream."""
        try:
            chunk = json.loads(data)
        except ValueError:
            raise self._malformed(f"invalid JSON in a data line: {_truncate(data, 80)!r}") from None
        if not isinstance(chunk, dict):
            raise self._malformed(f"a data line that is not a JSON object: {_truncate(data, 80)!r}")
        if "error" in chunk:  # vLLM reports failures met mid-stream this way
            raise GenerationError(
                f"the VLM server at {self.endpoint} reported an error while streaming: "
                f"{_truncate(_error_message(chunk) or data)}"
            )
        choices = chunk.get("choices")
        if not isinstance(choices, list):
            raise self._malformed(f"a chunk without 'choices': {_truncate(data, 80)!r}")
        if not choices:
            return "", False  # e.g. a final usage-only chunk
        choice = choices[0]
        if not isinstance(choice, dict):
            raise self._malformed(f"a choice that is not an object: {_truncate(data, 80)!r}")
        delta = choice.get("delta") or {}
        content = delta.get("content") if isinstance(delta, dict) else None
        if content is not None and not isinstance(content, str):
            raise self._malformed(f"delta content that is not text: {_truncate(data, 80)!r}")
        return content or "", choice.get("finish_reason") is not None

    def _opener(self) -> urllib.request.OpenerDirector:
        """urllib's opener; environment proxies apply, except to a server on this machine."""
        host = urllib.parse.urlsplit(self.base_url).hostname or ""
        if _is_loopback(host):
            return urllib.request.build_opener(urllib.request.ProxyHandler({}))
        return urllib.request.build_opener()

    def _http_error(self, exc: urllib.error.HTTPError) -> GenerationError:
        try:
            body = exc.read(64 * 1024).decode("utf-8", errors="replace")
        except OSError:
            body = ""
        message = ""
        with contextlib.suppress(ValueError):
            message = _error_message(json.loads(body))
        detail = _truncate(message or body or exc.reason or "")
        hint = ""
        if exc.code in {401, 403}:
            hint = " Check TINYRAG_VLM_API_KEY."
        elif exc.code == 404:
            hint = f" Check {URL_SETTING} (it should end in /v1) and TINYRAG_VLM_SERVED_MODEL."
        return GenerationError(
            f"the VLM server at {self.endpoint} answered HTTP {exc.code}"
            f"{': ' + detail if detail else ''}.{hint}"
        )

    def _unreachable(self, exc: BaseException) -> GenerationError:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        if isinstance(reason, TimeoutError):
            what = f"no answer within {self.timeout:g} s ({TIMEOUT_SETTING})"
        elif isinstance(reason, ConnectionRefusedError):
            what = "connection refused: is the server running?"
        else:
            what = first_line(reason) if isinstance(reason, BaseException) else str(reason)
        return GenerationError(
            f"cannot reach the VLM server at {self.endpoint} ({what}). Check {URL_SETTING}."
        )

    def _stalled(self) -> GenerationError:
        return GenerationError(
            f"the VLM server at {self.endpoint} sent nothing for {self.timeout:g} s "
            f"({TIMEOUT_SETTING}); the stream was abandoned."
        )

    def _malformed(self, what: str) -> GenerationError:
        return GenerationError(
            f"the VLM server at {self.endpoint} sent a malformed stream: {what}. Is "
            f"{URL_SETTING} an OpenAI-compatible /v1 endpoint?"
        )


def _error_message(data: Any) -> str:
    """The message of an OpenAI-style ({"error": {"message"}}) or vLLM/FastAPI error body."""
    if not isinstance(data, dict):
        return ""
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    for key in ("message", "detail"):
        if data.get(key):
            return str(data[key])
    return ""


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# -- int8 weight-only decoding (CPU) -----------------------------------------------------------

# At most this many rows (tokens) per matmul take the int8 kernel: measured on a 2-core AMX
# CPU, int8 x bf16 beats bf16 x bf16 for 1-2 rows (2.6x at 1) and loses from ~8 (prefill).
INT8_DECODE_MAX_ROWS = 4
QUANTIZE_BLOCK_ROWS = 4096


def int8_decode_supported() -> bool:
    """Whether this torch has the CPU int8 weight-only matmul kernel (aten, since 2.2)."""
    return hasattr(torch, "_weight_int8pack_mm")


def quantize_decoder_int8(model: Any, *, keep_dense: bool = True) -> int:
    """Give every Linear of the text model (and lm_head) int8 per-output-channel weights for
    decoding; return how many layers were converted.

    Decoding one token is a matrix-vector product per layer, bound by reading the weights:
    int8 halves the bytes of bf16. Prefill (many rows) stays on the dense bf16 weights when
    `keep_dense` (+1 byte per parameter of memory), else dequantizes them on the fly (slower
    prefill, less memory). The vision tower is untouched: it runs once per request.
    """
    language_model = model.model.language_model
    targets = [
        (parent, name, child)
        for parent in [*language_model.modules(), model]
        for name, child in parent.named_children()
        if isinstance(child, torch.nn.Linear) and (parent is not model or name == "lm_head")
    ]
    for parent, name, linear in targets:
        setattr(parent, name, Int8DecodeLinear.from_linear(linear, keep_dense=keep_dense))
    return len(targets)


class Int8DecodeLinear(torch.nn.Module):
    """A Linear computing few-row products (decoding) with int8 weights x per-channel scales.

    Symmetric per-output-channel int8 (weight-only: activations stay bf16/fp32), the scheme
    of torchao's int8_weight_only and gpt-fast; many-row products (prefill) use the dense
    weight, kept or dequantized.
    """

    def __init__(
        self,
        qweight: torch.Tensor,
        scales: torch.Tensor,
        bias: torch.Tensor | None,
        dense: torch.Tensor | None,
    ) -> None:
        super().__init__()
        self.register_buffer("qweight", qweight)
        self.register_buffer("scales", scales)
        self.bias = bias
        self.dense = dense  # the original weight (shared, not copied), or None
        self.out_features, self.in_features = qweight.shape
        self.max_rows = INT8_DECODE_MAX_ROWS  # 0 turns int8 off (benchmarks compare both)

    @classmethod
    def from_linear(cls, linear: torch.nn.Linear, *, keep_dense: bool) -> Int8DecodeLinear:
        weight = linear.weight.detach()
        qweight = torch.empty(weight.shape, dtype=torch.int8, device=weight.device)
        scales = torch.empty(weight.shape[0], dtype=torch.float32, device=weight.device)
        # In row blocks: an fp32 copy of lm_head at once would be ~1 GB of transient memory.
        for start in range(0, weight.shape[0], QUANTIZE_BLOCK_ROWS):
            block = weight[start : start + QUANTIZE_BLOCK_ROWS].float()
            block_scales = block.abs().amax(dim=1).clamp(min=1e-8) / 127.0
            quantized = torch.round(block / block_scales[:, None]).clamp(-127, 127)
            qweight[start : start + len(block)] = quantized
            scales[start : start + len(block)] = block_scales
        return cls(qweight, scales.to(weight.dtype), linear.bias, weight if keep_dense else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        rows = x.numel() // self.in_features
        if rows <= self.max_rows:
            flat = x.reshape(rows, self.in_features)
            out = torch._weight_int8pack_mm(flat, self.qweight, self.scales.to(x.dtype))
            out = out.reshape(*x.shape[:-1], self.out_features)
            return out if self.bias is None else out + self.bias
        weight = self.dense
        if weight is None:
            weight = self.qweight.to(x.dtype) * self.scales.to(x.dtype)[:, None]
        return torch.nn.functional.linear(x, weight, self.bias)

    def extra_repr(self) -> str:
        kept = "kept" if self.dense is not None else "dropped"
        return f"in_features={self.in_features}, out_features={self.out_features}, dense={kept}"
