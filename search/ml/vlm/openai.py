"""A describer that streams from any OpenAI-compatible chat-completions server (vLLM, SGLang,
Ollama) serving a vision model.

It POSTs to `{TINYRAG_VLM_URL}/chat/completions` with `stream: true`, the image inline as a
PNG data URL resized within the same pixel bounds as the local backend, and parses the
server-sent events. The standard library and Pillow only: no torch, no transformers.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import io
import ipaddress
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from typing import Any

from PIL import Image

from search.ml.base import InferenceModel
from search.ml.errors import ModelLoadError, first_line
from search.ml.images import to_rgb
from search.ml.vlm.base import (
    TIMEOUT_SETTING,
    URL_SETTING,
    Described,
    GenerationError,
    check_lengths,
    fit_pixels,
)

ERROR_BODY_CHARS = 300  # of a server's error message, in our one-line errors
MAX_EVENT_LINE_BYTES = 1 << 20  # one server-sent event line; a longer one is a broken stream


class OpenAIDescriber(InferenceModel):
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
        super().__init__()
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

    def _load(self) -> None:
        """Nothing to load here; checks that TINYRAG_VLM_URL is an http(s) URL and that a
        served model name is set."""
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
        check_lengths(max_new_tokens, min_new_tokens)
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


def _truncate(text: str, limit: int = ERROR_BODY_CHARS) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
