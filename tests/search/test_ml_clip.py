"""CLIP and text embedders, device/precision choice and the model registry, on tiny models."""

from __future__ import annotations

import pickle
import platform
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from search.ml import device as ml_device
from search.ml.clip import (
    ClipEmbedder,
    ImagePreprocessor,
    SentenceTransformerEmbedder,
    collate_pixels,
)
from search.ml.device import Precision, choose_precision, resolve_device
from search.ml.errors import DeviceError, ModelLoadError
from search.ml.registry import ModelRegistry, get_clip_embedder, get_text_embedder, registry
from tests.fixtures.models import TINY_CLIP, install_in_hub_cache

DIM = TINY_CLIP.projection_dim  # 16


def photo(seed: int, size: tuple[int, int] = (64, 48)) -> Image.Image:
    """A random RGB picture (not square, so resize and crop both matter)."""
    pixels = np.random.default_rng(seed).integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return Image.fromarray(pixels, "RGB")


def assert_unit_float32(vectors: np.ndarray, rows: int) -> None:
    assert vectors.dtype == np.float32
    assert vectors.shape == (rows, DIM)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


# -- embeddings ----------------------------------------------------------------------------------


def test_text_embeddings_are_float32_unit_vectors(clip_settings):
    vectors = get_clip_embedder().embed_texts(["a red double-decker bus", "a cat", "x"])

    assert_unit_float32(vectors, 3)


def test_same_text_gives_identical_vectors_alone_or_in_a_batch(clip_settings):
    embedder = get_clip_embedder()

    batch = embedder.embed_texts(["a goldfish", "a tabby cat on a sofa", "a goldfish"])
    alone = embedder.embed_texts(["a goldfish"])

    np.testing.assert_array_equal(batch[0], batch[2])
    np.testing.assert_allclose(alone[0], batch[0], atol=1e-6)
    assert not np.allclose(batch[0], batch[1])


def test_text_longer_than_clips_context_is_truncated_not_refused(clip_settings):
    long_query = "a very long description of a golden retriever " * 20  # > 77 tokens

    vectors = get_clip_embedder().embed_texts([long_query, long_query[:400]])

    assert_unit_float32(vectors, 2)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)  # both cut at 77 tokens


def test_image_embeddings_are_float32_unit_vectors(clip_settings):
    vectors = get_clip_embedder().embed_images([photo(1), photo(2, (20, 90))])

    assert_unit_float32(vectors, 2)
    assert not np.allclose(vectors[0], vectors[1])


def test_empty_inputs_give_empty_arrays(clip_settings):
    embedder = get_clip_embedder()

    assert embedder.embed_texts([]).shape == (0, DIM)
    assert embedder.embed_images([]).shape == (0, DIM)


def test_grayscale_image_embeds_as_its_three_channel_copy(clip_settings):
    gray = photo(3).convert("L")
    rgb = Image.merge("RGB", (gray, gray, gray))

    vectors = get_clip_embedder().embed_images([gray, rgb])

    assert_unit_float32(vectors, 2)
    np.testing.assert_allclose(vectors[0], vectors[1], atol=1e-6)


def test_rgba_image_is_flattened_onto_white(clip_settings):
    rgb = np.asarray(photo(4), dtype=np.float64)
    alpha = np.random.default_rng(5).integers(0, 256, rgb.shape[:2]).astype(np.float64)
    rgba = Image.fromarray(np.dstack([rgb, alpha]).astype(np.uint8), "RGBA")
    weight = alpha[..., None] / 255
    by_hand = Image.fromarray(np.rint(rgb * weight + 255 * (1 - weight)).astype(np.uint8), "RGB")

    vectors = get_clip_embedder().embed_images([rgba, by_hand])

    assert_unit_float32(vectors, 2)
    # Rounding of the compositing may differ by one level on a few pixels.
    assert float(vectors[0] @ vectors[1]) > 0.999


def test_preprocessor_and_pixel_batch_equal_embed_images(clip_settings):
    embedder = get_clip_embedder()
    images = [photo(6), photo(7, (100, 30)).convert("L"), photo(8).convert("RGBA")]
    # The preprocessor travels to DataLoader workers by pickle: use a round-tripped copy.
    preprocess = pickle.loads(pickle.dumps(embedder.image_preprocessor()))

    pixels = collate_pixels([preprocess(image) for image in images])
    via_pixels = embedder.embed_pixel_batch(pixels)

    assert pixels.shape == (3, 3, TINY_CLIP.image_size, TINY_CLIP.image_size)
    assert_unit_float32(via_pixels, 3)
    np.testing.assert_allclose(via_pixels, embedder.embed_images(images), atol=1e-5)


def test_preprocessor_holds_no_model(clip_settings):
    preprocess = get_clip_embedder().image_preprocessor()

    assert isinstance(preprocess, ImagePreprocessor)
    assert len(pickle.dumps(preprocess)) < 10_000  # the tiny CLIP's weights alone are ~320 KB
    assert not any(isinstance(value, torch.nn.Module) for value in vars(preprocess).values())


def test_dataloader_workers_decode_files_like_embed_images(clip_settings, tmp_path):
    embedder = get_clip_embedder()
    paths = []
    for index, mode in enumerate(["RGB", "L", "RGB", "L", "RGB"]):
        path = tmp_path / f"{index}.png"  # lossless, so both routes see the same pixels
        photo(10 + index).convert(mode).save(path)
        paths.append(path)
    preprocess = embedder.image_preprocessor()
    loader = DataLoader(
        _MappedPaths(paths, preprocess), batch_size=2, num_workers=2, collate_fn=collate_pixels
    )

    via_workers = np.concatenate([embedder.embed_pixel_batch(batch) for batch in loader])
    direct = embedder.embed_images([Image.open(path) for path in paths])

    np.testing.assert_allclose(via_workers, direct, atol=1e-5)


class _MappedPaths(torch.utils.data.Dataset):
    def __init__(self, paths: list[Path], preprocess: ImagePreprocessor) -> None:
        self.paths = paths
        self.preprocess = preprocess

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.preprocess(self.paths[index])


@pytest.mark.slow
def test_compiled_image_batches_equal_eager_ones(tiny_clip_dir):
    embedder = ClipEmbedder(str(tiny_clip_dir), precision=Precision.FP32)
    preprocess = embedder.image_preprocessor()
    pixels = collate_pixels([preprocess(photo(seed)) for seed in range(4)])
    eager = embedder.embed_pixel_batch(pixels)

    embedder.compile_image_batches()
    compiled = embedder.embed_pixel_batch(pixels)
    smaller = embedder.embed_pixel_batch(pixels[:3])  # another shape: eager, no recompilation

    np.testing.assert_allclose(compiled, eager, atol=1e-4)
    np.testing.assert_allclose(smaller, eager[:3], atol=1e-5)
    assert embedder._compiled_shape == tuple(pixels.shape)


def test_failed_compilation_falls_back_to_eager(tiny_clip_dir, monkeypatch, caplog):
    def broken_compile(function, **kwargs):
        def run(pixels):
            raise RuntimeError("no C++ compiler found\nmore details")

        return run

    monkeypatch.setattr(torch, "compile", broken_compile)
    embedder = ClipEmbedder(str(tiny_clip_dir))
    pixels = collate_pixels([embedder.image_preprocessor()(photo(40))])
    eager = embedder.embed_pixel_batch(pixels)

    embedder.compile_image_batches()
    vectors = embedder.embed_pixel_batch(pixels)

    np.testing.assert_array_equal(vectors, eager)
    assert "no C++ compiler found" in caplog.text
    assert embedder._compiled_forward is None


def test_bf16_weights_agree_with_fp32(tiny_clip_dir):
    fp32 = ClipEmbedder(str(tiny_clip_dir), precision=Precision.FP32)
    bf16 = ClipEmbedder(str(tiny_clip_dir), precision=Precision.BF16)
    images = [photo(20), photo(21)]

    assert bf16.dtype == torch.bfloat16
    assert fp32.dtype == torch.float32
    image_cosines = np.sum(fp32.embed_images(images) * bf16.embed_images(images), axis=1)
    text_cosines = np.sum(fp32.embed_texts(["a bus"]) * bf16.embed_texts(["a bus"]), axis=1)
    assert bf16.embed_images(images).dtype == np.float32
    assert np.all(image_cosines > 0.99)
    assert np.all(text_cosines > 0.99)


def test_embedder_reports_what_it_runs(clip_settings):
    settings = clip_settings
    settings.TINYRAG_FORCE_FP32 = True
    embedder = get_clip_embedder()

    assert embedder.model_id == str(settings.TINYRAG_CLIP_MODEL)
    assert (embedder.device, embedder.precision, embedder.dtype) == (
        "cpu",
        Precision.FP32,
        torch.float32,
    )
    assert not embedder.loaded  # the accessor builds the instance, not the model
    assert embedder.dim == DIM
    assert embedder.loaded


def test_load_is_idempotent_and_thread_safe(tiny_clip_dir):
    embedder = ClipEmbedder(str(tiny_clip_dir))
    threads = [threading.Thread(target=embedder.load) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    model = embedder._model

    embedder.load()

    assert model is not None
    assert embedder._model is model


# -- the multilingual text encoder ---------------------------------------------------------------


def test_text_embedder_is_clip_itself_without_text_model(clip_settings):
    assert get_text_embedder() is get_clip_embedder()


def test_multilingual_text_embedder_outputs_clip_sized_unit_vectors(
    clip_settings, tiny_multilingual_dir
):
    clip_settings.TINYRAG_TEXT_MODEL = str(tiny_multilingual_dir)

    embedder = get_text_embedder()
    vectors = embedder.embed_texts(["a cat", "un chat sur un canapé", "кошка", "猫"])

    assert isinstance(embedder, SentenceTransformerEmbedder)
    assert not isinstance(embedder, ClipEmbedder)
    assert embedder.dim == get_clip_embedder().dim == DIM
    assert_unit_float32(vectors, 4)
    assert len({vector.tobytes() for vector in vectors}) == 4


def test_text_only_model_as_clip_is_a_load_error(tiny_multilingual_dir):
    with pytest.raises(ModelLoadError, match="no image encoder") as caught:
        ClipEmbedder(str(tiny_multilingual_dir)).load()

    assert "TINYRAG_CLIP_MODEL" in str(caught.value)


# -- load failures -------------------------------------------------------------------------------


def test_missing_directory_is_a_load_error_naming_the_setting(tmp_path):
    missing = tmp_path / "no-such-model"

    with pytest.raises(ModelLoadError) as caught:
        ClipEmbedder(str(missing)).load()

    assert caught.value.setting == "TINYRAG_CLIP_MODEL"
    assert caught.value.model_id == str(missing)
    # the message reaches pages and API answers: the model by its name, never the server's path
    assert "Cannot load model 'no-such-model': its directory does not exist." in str(caught.value)
    assert str(tmp_path) not in str(caught.value)
    assert "TINYRAG_CLIP_MODEL" in str(caught.value)


def test_missing_text_model_names_its_own_setting(clip_settings, tmp_path):
    clip_settings.TINYRAG_TEXT_MODEL = str(tmp_path / "absent")

    with pytest.raises(ModelLoadError, match="TINYRAG_TEXT_MODEL"):
        get_text_embedder().embed_texts(["hola"])


def test_directory_without_a_model_is_a_load_error(tmp_path):
    with pytest.raises(ModelLoadError, match="TINYRAG_CLIP_MODEL"):
        ClipEmbedder(str(tmp_path)).load()


def test_unknown_hub_id_fails_at_once_without_network(no_network, tmp_path):
    with pytest.raises(ModelLoadError) as caught:
        ClipEmbedder("tinyrag-tests/no-such-clip", cache_dir=tmp_path).load()

    # At once: decided on the filesystem, never by the hub client (whose retries take minutes).
    assert no_network == []
    assert "'tinyrag-tests/no-such-clip'" in str(caught.value)
    assert "TINYRAG_CLIP_MODEL" in str(caught.value)


def test_hub_id_already_in_the_cache_folder_loads_without_network(
    no_network, tiny_clip_dir, tmp_path
):
    install_in_hub_cache(tiny_clip_dir, tmp_path, "tinyrag-tests/tiny-clip")

    embedder = ClipEmbedder("tinyrag-tests/tiny-clip", cache_dir=tmp_path)

    assert_unit_float32(embedder.embed_images([photo(30)]), 1)
    assert no_network == []


# -- registry ------------------------------------------------------------------------------------


def test_registry_returns_the_same_instance_twice(clip_settings):
    assert get_clip_embedder() is get_clip_embedder()


def test_registry_gives_a_new_instance_when_settings_change(clip_settings, tmp_path):
    first = get_clip_embedder()
    clip_settings.TINYRAG_FORCE_FP32 = not clip_settings.TINYRAG_FORCE_FP32
    toggled = get_clip_embedder()
    clip_settings.TINYRAG_CLIP_MODEL = str(tmp_path)
    moved = get_clip_embedder()

    assert len({id(first), id(toggled), id(moved)}) == 3
    assert moved.model_id == str(tmp_path)


def test_registry_clear_forgets_models(clip_settings):
    first = get_clip_embedder()
    registry.clear()

    assert get_clip_embedder() is not first


def test_registry_builds_each_key_once_across_threads():
    models = ModelRegistry()
    calls = []
    barrier = threading.Barrier(6)
    results = []
    arrived = [0]
    guard = threading.Lock()
    all_arrived = threading.Event()

    def factory():
        calls.append(1)
        assert all_arrived.wait(60)  # build while the other threads are asking for it
        return object()

    def worker():
        barrier.wait()
        with guard:
            arrived[0] += 1
            if arrived[0] == 6:
                all_arrived.set()
        results.append(models.get("clip", factory))

    threads = [threading.Thread(target=worker) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert len(calls) == 1
    assert len({id(result) for result in results}) == 1
    assert "clip" in models


def test_importing_the_registry_builds_nothing(clip_settings):
    assert len(registry) == 0
    get_clip_embedder()
    assert len(registry) == 1


# -- device and precision ------------------------------------------------------------------------


def test_auto_device_prefers_cuda_then_mps_then_cpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(ml_device, "_mps_available", lambda: False)
    assert resolve_device("auto") == "cpu"
    monkeypatch.setattr(ml_device, "_mps_available", lambda: True)
    assert resolve_device("auto") == "mps"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert resolve_device("auto") == "cuda"


@pytest.mark.parametrize("value", ["tpu", "cpu:0", "gpu", "mps:1"])
def test_unknown_device_is_an_error(value):
    with pytest.raises(DeviceError, match="TINYRAG_DEVICE"):
        resolve_device(value)


def test_absent_cuda_is_an_error(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)

    with pytest.raises(DeviceError, match="no CUDA GPU"):
        resolve_device("cuda")


def test_precision_on_cpu_follows_native_bf16(monkeypatch):
    monkeypatch.setattr(ml_device, "cpu_has_native_bf16", lambda: True)
    assert choose_precision("cpu") is Precision.BF16
    assert choose_precision("cpu", force_fp32=True) is Precision.FP32
    monkeypatch.setattr(ml_device, "cpu_has_native_bf16", lambda: False)
    assert choose_precision("cpu") is Precision.FP32


def test_mps_runs_fp32():
    assert choose_precision("mps") is Precision.FP32


@pytest.mark.skipif(
    platform.system() != "Linux" or platform.machine() != "x86_64", reason="x86 Linux flags"
)
def test_native_bf16_detection_matches_proc_cpuinfo():
    flags = set()
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break

    assert ml_device.cpu_has_native_bf16() == bool(flags & {"avx512_bf16", "amx_bf16"})
