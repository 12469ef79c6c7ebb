"""The describers: Qwen2-VL through transformers on the tiny offline model, and the
OpenAI-compatible client against a local fake server."""

from __future__ import annotations

import base64
import io
import threading
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from PIL import Image

from search.ml.device import compute_target
from search.ml.errors import ModelLoadError
from search.ml.registry import get_describer
from search.ml.vlm import transformers as vlm_transformers
from search.ml.vlm.base import Describer, GenerationError, VLMConfigurationError, fit_pixels
from search.ml.vlm.int8 import Int8DecodeLinear
from search.ml.vlm.openai import OpenAIDescriber
from search.ml.vlm.transformers import TransformersDescriber
from tests.fixtures.http import unused_port
from tests.fixtures.vlm import qwen2vl_token_ids

PROMPT = "Describe this image. Neighbours' labels: goldfish (3 votes), koi (2 votes)."
IM_END = qwen2vl_token_ids()["<|im_end|>"]
DEADLINE_S = 60.0  # a test that would hang fails after this instead, however loaded the machine


class FakeClock:
    """The transformers backend's clock, advanced by the test: the watchdog's timing without
    real sleeps, so a loaded machine cannot change the outcome."""

    def __init__(self) -> None:
        self.now = 1000.0

    def monotonic(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def watchdog_clock(monkeypatch) -> FakeClock:
    clock = FakeClock()
    monkeypatch.setattr(vlm_transformers, "time", clock)
    return clock


@pytest.fixture
def image() -> Image.Image:
    """A 64x64 image with some structure (TinyImageNet's size)."""
    pixels = bytes((x * 4 + y * 3) % 256 for y in range(64) for x in range(64) for _ in range(3))
    return Image.frombytes("RGB", (64, 64), pixels)


@pytest.fixture
def describer(vlm_settings) -> TransformersDescriber:
    loaded = get_describer()
    assert isinstance(loaded, TransformersDescriber)
    loaded.load()
    return loaded


def drain(
    describer, image, prompt: str, seconds: float = DEADLINE_S, **lengths
) -> tuple[list[str], BaseException | None]:
    """The pieces `describe()` handed over and the exception that ended it (None when it
    returned, and then the pieces make its return value); fails the test on a hang."""
    pieces: list[str] = []
    outcome: list = []

    def consume() -> None:
        try:
            outcome.append(describer.describe(image, prompt, on_piece=pieces.append, **lengths))
        except BaseException as exc:
            outcome.append(exc)

    worker = threading.Thread(target=consume, daemon=True)
    worker.start()
    worker.join(seconds)
    assert not worker.is_alive(), f"describe() did not end within {seconds} s"
    (result,) = outcome
    if isinstance(result, BaseException):
        return pieces, result
    assert result.text == "".join(pieces)  # what was handed over is what came back
    return pieces, None


def spy_generate(monkeypatch, model, new_tokens: list[list[int]]) -> None:
    """Record the ids each generate() call produces after the prompt (an independent count)."""
    original = model.generate

    def generate(*args, **kwargs):
        output = original(*args, **kwargs)
        prompt_length = kwargs["input_ids"].shape[1]
        new_tokens.append(output[0, prompt_length:].tolist())
        return output

    monkeypatch.setattr(model, "generate", generate)


def boost_logit(model, token_id: int) -> Callable[[], None]:
    """Make `token_id` the model's top choice at every step; returns the undo."""

    def hook(module, inputs, output):
        output = output.clone()
        output[..., token_id] += 1e4
        return output

    return model.lm_head.register_forward_hook(hook).remove


# -- transformers backend ----------------------------------------------------------------------


def test_get_describer_builds_transformers_describer_lazily(vlm_settings, tiny_qwen2vl_dir):
    describer = get_describer()

    assert isinstance(describer, TransformersDescriber)
    assert isinstance(describer, Describer)
    assert describer.backend == "transformers"
    assert describer.model_id == str(tiny_qwen2vl_dir)
    assert not describer.loaded
    assert get_describer() is describer


def test_loads_the_hub_layout_directory(describer):
    from transformers import Qwen2VLForConditionalGeneration, Qwen2VLProcessor

    expected = compute_target("cpu")

    assert describer.loaded
    assert isinstance(describer._model, Qwen2VLForConditionalGeneration)
    assert isinstance(describer._processor, Qwen2VLProcessor)
    assert describer._model.dtype == expected.dtype
    assert describer._model.dtype != torch.float16
    size = describer._processor.image_processor.size
    assert (size.shortest_edge, size.longest_edge) == (224 * 224, 448 * 448)


def test_load_is_idempotent(describer):
    model = describer._model

    describer.load()

    assert describer._model is model


def test_describe_hands_over_text_within_max_new_tokens(describer, image, monkeypatch):
    produced: list[list[int]] = []
    spy_generate(monkeypatch, describer._model, produced)

    pieces, failure = drain(describer, image, PROMPT, max_new_tokens=6)

    assert failure is None
    assert pieces
    assert all(isinstance(piece, str) and piece for piece in pieces)
    assert "".join(pieces)
    assert len(produced) == 1
    assert 1 <= len(produced[0]) <= 6
    # Byte-level vocabulary: every token decodes to at most one character.
    assert len("".join(pieces)) <= 6


def test_describe_counts_the_generated_tokens(describer, image, monkeypatch):
    produced: list[list[int]] = []
    spy_generate(monkeypatch, describer._model, produced)

    described = describer.describe(image, PROMPT, max_new_tokens=7, min_new_tokens=5)

    assert described.tokens == len(produced[0])  # counted independently, from generate's ids
    assert 5 <= described.tokens <= 7


def test_min_new_tokens_forces_that_many_tokens(describer, image, monkeypatch):
    produced: list[list[int]] = []
    spy_generate(monkeypatch, describer._model, produced)
    undo = boost_logit(describer._model, IM_END)  # the model now wants to stop at once
    try:
        unforced, _ = drain(describer, image, PROMPT, max_new_tokens=8)
        forced, failure = drain(describer, image, PROMPT, max_new_tokens=8, min_new_tokens=5)
    finally:
        undo()

    assert failure is None
    assert unforced == []
    assert produced[0] == [IM_END]
    assert len(produced[1]) == 6
    assert IM_END not in produced[1][:5]
    assert produced[1][5] == IM_END
    assert forced


def test_greedy_decoding_repeats_itself(describer, image):
    first, _ = drain(describer, image, PROMPT, max_new_tokens=8)
    second, _ = drain(describer, image, PROMPT, max_new_tokens=8)

    assert "".join(first) == "".join(second) != ""


def test_argument_errors_are_raised_at_the_call(describer, image):
    with pytest.raises(ValueError, match="max_new_tokens"):
        describer.describe(image, PROMPT, max_new_tokens=0)
    with pytest.raises(ValueError, match="min_new_tokens"):
        describer.describe(image, PROMPT, max_new_tokens=4, min_new_tokens=5)


def test_missing_directory_is_a_quick_load_error(vlm_settings, tmp_path, image, no_network):
    vlm_settings.TINYRAG_VLM_MODEL = str(tmp_path / "no-such-model")
    describer = get_describer()

    with pytest.raises(ModelLoadError, match="TINYRAG_VLM_MODEL") as caught:
        describer.describe(image, PROMPT, max_new_tokens=4)

    # Quick: decided on the filesystem, never by the hub client (whose retries take minutes).
    assert no_network == []
    assert "does not exist" in str(caught.value)


def test_unknown_hub_id_is_a_quick_load_error_without_network(vlm_settings, tmp_path, no_network):
    vlm_settings.TINYRAG_VLM_MODEL = "no-such-org/no-such-vlm"
    vlm_settings.TINYRAG_MODEL_DIR = str(tmp_path / "hub-cache")
    describer = get_describer()

    with pytest.raises(ModelLoadError, match="TINYRAG_VLM_MODEL") as caught:
        describer.load()

    assert no_network == []  # the cache was looked at, the hub never asked
    assert "no-such-org/no-such-vlm" in str(caught.value)
    assert not describer.loaded


def test_directory_of_another_model_is_a_load_error(vlm_settings, tmp_path):
    (tmp_path / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    vlm_settings.TINYRAG_VLM_MODEL = str(tmp_path)

    with pytest.raises(ModelLoadError, match="not Qwen2-VL"):
        get_describer().load()


def test_exception_in_generate_surfaces_as_generation_error(describer, image, monkeypatch):
    def out_of_memory(*args, **kwargs):
        raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(describer._model, "generate", out_of_memory)

    pieces, failure = drain(describer, image, PROMPT, max_new_tokens=8)

    assert pieces == []
    assert isinstance(failure, GenerationError)
    assert "out of memory" in str(failure)
    assert isinstance(failure.__cause__, RuntimeError)


def test_failure_midway_keeps_the_text_so_far_then_raises(describer, image):
    calls = []

    def fail_on_fourth_step(module, inputs, output):
        calls.append(1)
        if len(calls) == 4:
            raise RuntimeError("device lost")
        output = output.clone()
        output[..., qwen2vl_token_ids()["a"]] += 1e4  # "a" then " " ends a word: a piece
        return output

    handle = describer._model.lm_head.register_forward_hook(fail_on_fourth_step)
    try:
        pieces, failure = drain(describer, image, PROMPT, max_new_tokens=8)
    finally:
        handle.remove()

    assert "".join(pieces) == "aaa"
    assert isinstance(failure, GenerationError)
    assert "device lost" in str(failure)


def test_stalled_generation_times_out(describer, image, monkeypatch, watchdog_clock):
    describer.timeout = 1
    steps = []

    def slow_generate(*args, stopping_criteria, **kwargs):
        ids = kwargs["input_ids"]
        while True:  # steps of 0.2 s, then one of 1.5 s: longer than the timeout
            watchdog_clock.advance(1.5 if len(steps) == 3 else 0.2)
            steps.append(1)
            if stopping_criteria(ids, None).all():
                return ids

    monkeypatch.setattr(describer._model, "generate", slow_generate)

    pieces, failure = drain(describer, image, PROMPT, max_new_tokens=8)

    assert pieces == []
    assert isinstance(failure, GenerationError)
    assert "TINYRAG_VLM_TIMEOUT" in str(failure)
    assert len(steps) == 4  # stopped right after the slow step, not one step later


def test_a_slow_last_step_still_returns_the_complete_text(describer, image, watchdog_clock):
    describer.timeout = 1
    steps = []

    def slow_last_step(*args):
        steps.append(1)
        # longer than the timeout at the third step, but generation is complete after it
        watchdog_clock.advance(1.5 if len(steps) == 3 else 0.01)

    handle = describer._model.lm_head.register_forward_hook(slow_last_step)
    try:
        described = describer.describe(image, PROMPT, max_new_tokens=3, min_new_tokens=3)
    finally:
        handle.remove()

    assert described.tokens == 3


def test_a_callback_that_raises_stops_generation_and_its_error_comes_through(describer, image):
    steps = []
    handle = describer._model.lm_head.register_forward_hook(lambda *args: steps.append(1))

    class Enough(Exception):
        pass

    def stop_at_once(piece: str) -> None:
        raise Enough(piece)

    try:
        with pytest.raises(Enough) as caught:  # not wrapped in a GenerationError
            describer.describe(
                image, PROMPT, max_new_tokens=64, min_new_tokens=64, on_piece=stop_at_once
            )
    finally:
        handle.remove()

    assert str(caught.value)  # the first piece
    # one forward pass per token: generation ended with the first word, long before 64
    assert 1 <= len(steps) < 16
    # The instance is free again.
    pieces, failure = drain(describer, image, PROMPT, max_new_tokens=4)
    assert failure is None
    assert pieces


def test_generation_runs_in_the_calling_thread(describer, image, monkeypatch):
    original, threads = describer._model.generate, []

    def recording_generate(*args, **kwargs):
        threads.append(threading.current_thread())
        return original(*args, **kwargs)

    monkeypatch.setattr(describer._model, "generate", recording_generate)
    describer.describe(image, PROMPT, max_new_tokens=2)

    assert threads == [threading.current_thread()]


def test_one_generation_at_a_time(describer, image, monkeypatch):
    original, original_inputs = describer._model.generate, describer._inputs
    running, peak, prepared = [0], [0], [0]
    guard = threading.Lock()
    all_prepared = threading.Event()  # every caller is past its inputs, at the generation

    def counting_inputs(*args, **kwargs):
        inputs = original_inputs(*args, **kwargs)
        with guard:
            prepared[0] += 1
            if prepared[0] == 3:
                all_prepared.set()
        return inputs

    def counting_generate(*args, **kwargs):
        with guard:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            # The first generation holds on until the other two callers are ready to generate.
            assert all_prepared.wait(DEADLINE_S)
            return original(*args, **kwargs)
        finally:
            with guard:
                running[0] -= 1

    monkeypatch.setattr(describer, "_inputs", counting_inputs)
    monkeypatch.setattr(describer._model, "generate", counting_generate)
    results: list[tuple[list[str], BaseException | None]] = []
    threads = [
        threading.Thread(
            target=lambda: results.append(drain(describer, image, PROMPT, max_new_tokens=4))
        )
        for _ in range(3)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(DEADLINE_S)

    assert len(results) == 3
    assert all(failure is None for _, failure in results)
    assert peak[0] == 1


# -- get_describer -----------------------------------------------------------------------------


def test_backend_none_means_no_describer(settings):
    settings.TINYRAG_VLM_BACKEND = "none"

    assert get_describer() is None


def test_unknown_backend_is_a_configuration_error(settings):
    from django.core.exceptions import ImproperlyConfigured

    settings.TINYRAG_VLM_BACKEND = "llamacpp"

    with pytest.raises(VLMConfigurationError, match="TINYRAG_VLM_BACKEND") as caught:
        get_describer()

    assert isinstance(caught.value, ImproperlyConfigured)


def test_describers_are_keyed_by_their_settings(vlm_settings, tmp_path):
    first = get_describer()
    vlm_settings.TINYRAG_VLM_MAX_PIXELS = 224 * 224

    second = get_describer()

    assert second is not first
    assert second.max_pixels == 224 * 224


@pytest.mark.parametrize(
    ("width", "height"), [(64, 64), (500, 375), (1000, 20), (3000, 4000), (28, 28), (57, 113)]
)
def test_fit_pixels_agrees_with_qwen_vl_utils(width, height):
    from qwen_vl_utils.vision_process import smart_resize

    bounds = {"min_pixels": 224 * 224, "max_pixels": 448 * 448}
    expected_height, expected_width = smart_resize(height, width, factor=28, **bounds)

    assert fit_pixels(width, height, **bounds) == (expected_width, expected_height)


# -- openai backend ----------------------------------------------------------------------------


@pytest.fixture
def remote(openai_vlm_settings) -> OpenAIDescriber:
    describer = get_describer()
    assert isinstance(describer, OpenAIDescriber)
    return describer


def test_openai_streams_the_server_chunks(remote, fake_vlm_server, image):
    pieces, failure = drain(remote, image, PROMPT, max_new_tokens=8)

    assert failure is None
    assert "".join(pieces) == "".join(fake_vlm_server.chunks)
    assert isinstance(remote, Describer)
    assert (remote.backend, remote.model_id) == ("openai", "qwen2-vl-test")


def test_openai_request_carries_image_prompt_and_stream_flag(remote, fake_vlm_server, image):
    drain(remote, image, PROMPT, max_new_tokens=8)

    (request,) = fake_vlm_server.requests
    body = request.body
    assert request.path == "/v1/chat/completions"
    assert body["stream"] is True
    assert body["model"] == "qwen2-vl-test"
    assert body["max_tokens"] == 8
    assert body["temperature"] == 0
    assert "min_tokens" not in body
    (message,) = body["messages"]
    image_part, text_part = message["content"]
    assert text_part == {"type": "text", "text": PROMPT}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/png;base64,")
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.format == "PNG"
    assert sent.size == (224, 224)  # 64x64 brought up to TINYRAG_VLM_MIN_PIXELS
    assert "Authorization" not in request.headers


def test_openai_sends_min_tokens_when_asked(remote, fake_vlm_server, image):
    drain(remote, image, PROMPT, max_new_tokens=8, min_new_tokens=3)

    assert fake_vlm_server.requests[0].body["min_tokens"] == 3


def test_openai_sends_the_bearer_key(openai_vlm_settings, fake_vlm_server, image):
    openai_vlm_settings.TINYRAG_VLM_API_KEY = "sk-test-123"

    drain(get_describer(), image, PROMPT, max_new_tokens=8)

    assert fake_vlm_server.requests[0].headers["Authorization"] == "Bearer sk-test-123"


def test_openai_unreachable_server(openai_vlm_settings, image):
    port = unused_port()
    openai_vlm_settings.TINYRAG_VLM_URL = f"http://127.0.0.1:{port}/v1"

    pieces, failure = drain(get_describer(), image, PROMPT, max_new_tokens=8)

    assert pieces == []
    assert isinstance(failure, GenerationError)
    assert f"127.0.0.1:{port}" in str(failure)
    assert "TINYRAG_VLM_URL" in str(failure)
    assert "refused" in str(failure)


def test_openai_http_500_reports_the_server_message(remote, fake_vlm_server, image):
    fake_vlm_server.set_error(500, "CUDA out of memory while allocating KV cache")

    _, failure = drain(remote, image, PROMPT, max_new_tokens=8)

    assert isinstance(failure, GenerationError)
    assert "HTTP 500" in str(failure)
    assert "CUDA out of memory while allocating KV cache" in str(failure)


def test_openai_http_401_points_at_the_api_key(remote, fake_vlm_server, image):
    fake_vlm_server.set_error(401, "invalid api key")

    _, failure = drain(remote, image, PROMPT, max_new_tokens=8)

    assert "HTTP 401" in str(failure)
    assert "TINYRAG_VLM_API_KEY" in str(failure)


def test_openai_long_error_messages_are_truncated(remote, fake_vlm_server, image):
    fake_vlm_server.set_error(500, "x" * 5000)

    _, failure = drain(remote, image, PROMPT, max_new_tokens=8)

    assert isinstance(failure, GenerationError)
    assert len(str(failure)) < 500


def test_openai_malformed_stream(remote, fake_vlm_server, image):
    fake_vlm_server.mode = "malformed"

    pieces, failure = drain(remote, image, PROMPT, max_new_tokens=8)

    assert pieces == [fake_vlm_server.chunks[0]]
    assert isinstance(failure, GenerationError)
    assert "malformed" in str(failure)
    assert "invalid JSON" in str(failure)


def test_openai_chunk_without_choices_is_malformed(remote, fake_vlm_server, image):
    fake_vlm_server.mode = "malformed"
    fake_vlm_server.malformed_line = 'data: {"id": "x", "object": "chat.completion.chunk"}'

    _, failure = drain(remote, image, PROMPT, max_new_tokens=8)

    assert isinstance(failure, GenerationError)
    assert "choices" in str(failure)


def test_openai_stalled_stream_times_out(openai_vlm_settings, fake_vlm_server, image):
    openai_vlm_settings.TINYRAG_VLM_TIMEOUT = 1
    fake_vlm_server.mode = "stall"

    pieces, failure = drain(get_describer(), image, PROMPT, max_new_tokens=8)

    assert pieces == [fake_vlm_server.chunks[0]]
    assert isinstance(failure, GenerationError)
    # The client's read timeout ended it: the stalled server sends nothing for 60 s, then
    # closes the stream, which would be another error ("closed the stream before...").
    assert "sent nothing for 1 s" in str(failure)
    assert "TINYRAG_VLM_TIMEOUT" in str(failure)


def test_openai_load_rejects_a_url_that_is_not_http(openai_vlm_settings):
    openai_vlm_settings.TINYRAG_VLM_URL = "127.0.0.1:8001/v1"

    with pytest.raises(ModelLoadError, match="TINYRAG_VLM_URL"):
        get_describer().load()


def test_openai_served_model_defaults_to_the_model_setting(openai_vlm_settings):
    openai_vlm_settings.TINYRAG_VLM_SERVED_MODEL = ""
    openai_vlm_settings.TINYRAG_VLM_MODEL = "Qwen/Qwen2-VL-2B-Instruct"

    assert get_describer().model_id == "Qwen/Qwen2-VL-2B-Instruct"


def test_image_modes_are_sent_as_rgb(remote, fake_vlm_server):
    transparent = Image.new("RGBA", (30, 30), (0, 0, 0, 0))

    drain(remote, transparent, PROMPT, max_new_tokens=8)

    url = fake_vlm_server.requests[0].body["messages"][0]["content"][0]["image_url"]["url"]
    sent = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert sent.mode == "RGB"
    assert sent.getpixel((0, 0)) == (255, 255, 255)  # transparency flattened onto white


def test_path_fixture_is_a_hub_layout(tiny_qwen2vl_dir: Path):
    names = {path.name for path in tiny_qwen2vl_dir.iterdir()}

    assert {
        "config.json", "generation_config.json", "model.safetensors", "tokenizer.json",
        "tokenizer_config.json", "preprocessor_config.json", "chat_template.json",
    } <= names  # fmt: skip


# -- int8 weight-only decoding -----------------------------------------------------------------


@pytest.fixture
def linear() -> torch.nn.Linear:
    torch.manual_seed(0)
    return torch.nn.Linear(64, 48).to(torch.bfloat16)


def test_int8_linear_decodes_within_int8_error(linear):
    int8 = Int8DecodeLinear.from_linear(linear, keep_dense=True)
    x = torch.randn(1, 1, 64, dtype=torch.bfloat16)

    expected = torch.nn.functional.linear(x.float(), linear.weight.float(), linear.bias.float())
    got = int8(x).float()

    assert got.shape == expected.shape
    # Per-channel int8 steps are max|w|/127 apart: ~1% of an output at most here.
    assert ((got - expected).norm() / expected.norm()).item() < 0.02
    assert not torch.equal(got, linear(x).float())  # the int8 kernel did run


def test_int8_linear_prefills_on_the_dense_weight(linear):
    int8 = Int8DecodeLinear.from_linear(linear, keep_dense=True)
    x = torch.randn(1, 10, 64, dtype=torch.bfloat16)

    assert torch.equal(int8(x), linear(x))


def test_int8_linear_without_dense_copy_dequantizes_for_prefill(linear):
    lean = Int8DecodeLinear.from_linear(linear, keep_dense=False)
    x = torch.randn(1, 10, 64, dtype=torch.bfloat16)

    expected = linear(x).float()

    assert lean.dense is None
    assert ((lean(x).float() - expected).norm() / expected.norm()).item() < 0.02


def test_int8_decode_converts_the_text_model_only(vlm_settings):
    vlm_settings.TINYRAG_VLM_INT8_DECODE = True
    describer = get_describer()
    describer.load()
    model = describer._model

    converted = [name for name, m in model.named_modules() if isinstance(m, Int8DecodeLinear)]

    assert describer.int8_decode
    # 2 layers x (q, k, v, o, gate, up, down) + lm_head
    assert len(converted) == 2 * 7 + 1
    assert "lm_head" in converted
    assert not any(isinstance(m, Int8DecodeLinear) for m in model.model.visual.modules())


def test_int8_decode_is_the_default_where_the_cpu_runs_bf16(vlm_settings):
    from django.conf import settings as live

    assert live.TINYRAG_VLM_INT8_DECODE is True  # the project default, not set by the fixture
    bf16 = compute_target("cpu").dtype == torch.bfloat16
    assert get_describer().int8_decode is bf16


def test_int8_decode_off_keeps_plain_linears(vlm_settings):
    vlm_settings.TINYRAG_VLM_INT8_DECODE = False
    describer = get_describer()
    describer.load()

    assert not describer.int8_decode
    assert not any(isinstance(m, Int8DecodeLinear) for m in describer._model.modules())


def test_int8_decode_needs_bf16(vlm_settings):
    vlm_settings.TINYRAG_VLM_INT8_DECODE = True
    vlm_settings.TINYRAG_FORCE_FP32 = True

    assert not get_describer().int8_decode


def test_int8_decode_step_matches_the_dense_step(vlm_settings, image):
    vlm_settings.TINYRAG_VLM_INT8_DECODE = True
    describer = get_describer()
    pieces, failure = drain(describer, image, PROMPT, max_new_tokens=8)
    model = describer._model
    layers = [m for m in model.modules() if isinstance(m, Int8DecodeLinear)]
    inputs = describer._inputs(image, PROMPT)

    logits = []
    for rows in (0, layers[0].max_rows):  # the dense weights, then int8
        for layer in layers:
            layer.max_rows = rows
        with torch.inference_mode():
            out = model.generate(
                **inputs, max_new_tokens=2, do_sample=False, temperature=None, top_p=None,
                top_k=None, output_logits=True, return_dict_in_generate=True,
            )  # fmt: skip
        logits.append(out.logits[1][0].float())  # the first decode step: same inputs

    assert failure is None
    assert "".join(pieces)
    assert torch.nn.functional.cosine_similarity(*logits, dim=0).item() > 0.999
