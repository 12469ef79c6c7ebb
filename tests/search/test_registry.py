"""The model registry and the model base: every model created once, lazily, loaded once (also
under concurrent first use), forgotten by clear(); the factories follow the settings."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from search.descriptions.selectors import descriptions_enabled
from search.ml.base import InferenceModel
from search.ml.clip import ClipEmbedder, SentenceTransformerEmbedder
from search.ml.errors import ModelLoadError
from search.ml.registry import (
    describer_enabled,
    get_clip_embedder,
    get_describer,
    get_text_embedder,
    registry,
)
from search.ml.vlm.base import VLMConfigurationError
from search.ml.vlm.openai import OpenAIDescriber
from search.ml.vlm.transformers import TransformersDescriber
from tests.fixtures.models import TINY_CLIP

ROOT = Path(__file__).resolve().parents[2]
THREADS = 6
WAIT_S = 60  # a hang guard only: every wait below ends as soon as its event is set


class CountingModel(InferenceModel):
    """A model whose `_load()` counts its calls and, when told to, waits for a go-ahead."""

    def __init__(self, hold: threading.Event | None = None, fail: bool = False) -> None:
        super().__init__()
        self.calls = 0
        self.hold = hold
        self.fail = fail

    def _load(self) -> None:
        self.calls += 1
        if self.hold is not None:
            assert self.hold.wait(WAIT_S)
        if self.fail:
            raise ModelLoadError("counting-model", "TINYRAG_TEST_MODEL", "told to fail")


def run_together(count: int, target: Callable[[], object]) -> list[BaseException]:
    """Run `target()` in `count` threads released at once; the exceptions they raised."""
    barrier = threading.Barrier(count)
    errors: list[BaseException] = []

    def worker() -> None:
        barrier.wait()
        try:
            target()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT_S)
    assert not any(thread.is_alive() for thread in threads)
    return errors


def arrivals(count: int) -> tuple[threading.Event, Callable[[], None]]:
    """An event set once `arrive()` has been called `count` times."""
    all_arrived = threading.Event()
    seen = [0]
    guard = threading.Lock()

    def arrive() -> None:
        with guard:
            seen[0] += 1
            if seen[0] == count:
                all_arrived.set()

    return all_arrived, arrive


# -- the base: one locked, idempotent load ---------------------------------------------------------


def test_a_model_is_not_loaded_until_load_is_called():
    model = CountingModel()

    assert not model.loaded
    assert model.calls == 0
    model.load()
    model.load()

    assert model.loaded
    assert model.calls == 1


def test_concurrent_first_loads_load_once():
    # The first loader holds until every thread has asked: the others must wait, not load.
    all_asked, ask = arrivals(THREADS)
    model = CountingModel(hold=all_asked)

    def load() -> None:
        ask()
        model.load()

    errors = run_together(THREADS, load)

    assert errors == []
    assert model.calls == 1
    assert model.loaded


def test_a_failed_load_leaves_the_model_unloaded_and_is_tried_again():
    model = CountingModel(fail=True)

    for _ in range(2):
        with pytest.raises(ModelLoadError, match="told to fail"):
            model.load()

    assert model.calls == 2
    assert not model.loaded


# -- the registry: created lazily, once ------------------------------------------------------------


def test_getting_a_model_creates_it_but_does_not_load_it(clip_settings):
    embedder = get_clip_embedder()

    assert isinstance(embedder, ClipEmbedder)
    assert not embedder.loaded
    assert len(registry) == 1
    assert get_clip_embedder() is embedder  # the same instance, still unloaded
    assert not embedder.loaded

    vectors = embedder.embed_texts(["a goldfish"])

    assert embedder.loaded
    assert vectors.shape == (1, TINY_CLIP.projection_dim)


def test_concurrent_first_uses_create_and_load_the_embedder_once(clip_settings, monkeypatch):
    loads = []
    original_load = ClipEmbedder._load
    all_asked, ask = arrivals(THREADS)

    def counting_load(self) -> None:
        loads.append(self)
        assert all_asked.wait(WAIT_S)  # load while every other thread is asking for it
        original_load(self)

    monkeypatch.setattr(ClipEmbedder, "_load", counting_load)
    embedders = []
    guard = threading.Lock()

    def first_use() -> None:
        ask()
        embedder = get_clip_embedder()
        embedder.embed_texts(["a cat"])
        with guard:
            embedders.append(embedder)

    errors = run_together(THREADS, first_use)

    assert errors == []
    assert len(embedders) == THREADS
    assert len({id(embedder) for embedder in embedders}) == 1
    assert loads == embedders[:1]
    assert len(registry) == 1


def test_clear_forgets_every_model(clip_settings):
    first = get_clip_embedder()
    first.load()

    registry.clear()
    second = get_clip_embedder()

    assert len(registry) == 1
    assert second is not first
    assert not second.loaded  # created anew, and lazily again


def test_django_setup_and_the_urlconf_create_no_model():
    """Nothing at import time or in AppConfig.ready(): a fresh process that sets Django up and
    imports every view has an empty registry (tests/test_web_imports.py: and no torch)."""
    probe = (
        "import json, django; django.setup(); import tinyrag_site.urls; "
        "from search.ml.registry import registry; "
        "print(json.dumps(len(registry)))"
    )
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "tests.settings"}
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,  # a hang guard only
    )

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == 0


# -- the factories follow the settings -------------------------------------------------------------


def test_the_text_embedder_is_clip_unless_a_text_model_is_set(clip_settings, tiny_multilingual_dir):
    assert get_text_embedder() is get_clip_embedder()

    clip_settings.TINYRAG_TEXT_MODEL = str(tiny_multilingual_dir)
    text = get_text_embedder()

    assert type(text) is SentenceTransformerEmbedder
    assert text.model_id == str(tiny_multilingual_dir)
    assert text.setting == "TINYRAG_TEXT_MODEL"


def test_the_multilingual_embedder_and_the_translator_follow_their_settings(
    translate_settings, tiny_multilingual_dir, tiny_marian_dir
):
    from search.ml.registry import get_multilingual_embedder, get_translator
    from search.ml.translate import Translator

    encoder = get_multilingual_embedder()
    assert (encoder.model_id, encoder.setting) == (str(tiny_multilingual_dir), "TINYRAG_TEXT_MODEL")
    assert get_text_embedder() is encoder
    translator = get_translator()
    assert type(translator) is Translator
    assert (translator.model_id, translator.setting) == (
        str(tiny_marian_dir),
        "TINYRAG_TRANSLATE_MODEL",
    )


def test_query_models_loaded_counts_the_models_of_the_default_routes(
    translate_settings, tiny_multilingual_dir
):
    from search.ml.registry import get_multilingual_embedder, get_translator
    from search.queries.retrieval import query_models_loaded

    get_clip_embedder().load()
    get_multilingual_embedder().load()  # languages the translator does not translate take it
    assert query_models_loaded() is False  # the translator of the translate route is not
    get_translator().load()
    assert query_models_loaded() is True
    translate_settings.TINYRAG_TEXT_ROUTE = "multilingual"
    assert query_models_loaded() is True
    translate_settings.TINYRAG_TEXT_MODEL = str(tiny_multilingual_dir.parent / "another")
    assert query_models_loaded() is False  # that encoder is not loaded
    translate_settings.TINYRAG_TEXT_ROUTE = "clip"
    assert query_models_loaded() is True  # CLIP alone answers every query


def test_transformers_backend_gives_the_local_describer(vlm_settings, tiny_qwen2vl_dir):
    describer = get_describer()

    assert isinstance(describer, TransformersDescriber)
    assert describer.model_id == str(tiny_qwen2vl_dir)
    assert not describer.loaded
    assert describer_enabled() is True
    assert descriptions_enabled() is True


def test_openai_backend_gives_the_streaming_client(openai_vlm_settings, fake_vlm_server):
    describer = get_describer()

    assert isinstance(describer, OpenAIDescriber)
    assert describer.endpoint == f"{fake_vlm_server.base_url}/chat/completions"
    assert get_describer() is describer
    assert describer_enabled() is True


@pytest.mark.parametrize("backend", ["none", "None", " NONE ", "", "   ", None])
def test_descriptions_are_off_for_none_and_empty_backends(settings, backend):
    settings.TINYRAG_VLM_BACKEND = backend
    registry.clear()

    assert describer_enabled() is False
    assert descriptions_enabled() is False  # what the pages show: no Describe buttons
    assert get_describer() is None
    assert len(registry) == 0


def test_an_unknown_backend_is_enabled_and_fails_naming_the_setting(settings):
    settings.TINYRAG_VLM_BACKEND = "llamacpp"

    assert describer_enabled() is True  # not silently hidden: describing says what is wrong
    with pytest.raises(VLMConfigurationError, match="TINYRAG_VLM_BACKEND='llamacpp'"):
        get_describer()


def test_describer_enabled_loads_nothing(vlm_settings, tmp_path):
    vlm_settings.TINYRAG_VLM_MODEL = str(tmp_path / "no-such-model")  # would fail to load

    assert describer_enabled() is True
    assert len(registry) == 0


# -- a model id may be a local directory -----------------------------------------------------------


def test_clip_model_setting_accepts_a_local_directory(clip_settings, tiny_clip_dir):
    clip_settings.TINYRAG_CLIP_MODEL = tiny_clip_dir  # a Path, as a settings override may give

    embedder = get_clip_embedder()
    vectors = embedder.embed_texts(["a red bus", "a cat"])

    assert embedder.model_id == str(tiny_clip_dir)
    assert embedder.dim == TINY_CLIP.projection_dim
    assert vectors.shape == (2, TINY_CLIP.projection_dim)


def test_vlm_model_setting_accepts_a_local_directory(vlm_settings, tiny_qwen2vl_dir):
    vlm_settings.TINYRAG_VLM_MODEL = str(tiny_qwen2vl_dir)

    describer = get_describer()
    describer.load()

    assert describer.loaded
    assert describer.model_id == str(tiny_qwen2vl_dir)


def test_a_missing_local_directory_fails_at_load_naming_the_setting(clip_settings, tmp_path):
    clip_settings.TINYRAG_CLIP_MODEL = str(tmp_path / "absent")
    embedder = get_clip_embedder()  # creating it checks nothing yet

    with pytest.raises(ModelLoadError, match="TINYRAG_CLIP_MODEL") as caught:
        embedder.embed_texts(["a cat"])

    assert "its directory does not exist" in str(caught.value)
    assert not embedder.loaded
