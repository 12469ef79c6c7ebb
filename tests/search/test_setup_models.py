"""manage.py setup_models on tiny offline models: success lines, and one clear line per failure."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from io import StringIO
from pathlib import Path

import huggingface_hub.constants
import pytest
from django.core.management import CommandError, call_command

from search.ml.setup import ignored_files
from tests.fixtures.models import install_in_hub_cache

ROOT = Path(__file__).resolve().parents[2]


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command("setup_models", *args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def run_failing(*args: str) -> tuple[CommandError, str]:
    err = StringIO()
    with pytest.raises(CommandError) as caught:
        call_command("setup_models", *args, stdout=StringIO(), stderr=err)
    return caught.value, err.getvalue()


@pytest.fixture
def hub_offline(monkeypatch):
    """As with HF_HUB_OFFLINE=1 (read by huggingface_hub at import, so set on its constants)."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)


@pytest.fixture
def vlm_dir(tmp_path) -> Path:
    """A sharded transformers checkpoint: config, index and both shards (contents irrelevant:
    the command must not load it)."""
    directory = tmp_path / "vlm"
    directory.mkdir()
    (directory / "config.json").write_text('{"model_type": "qwen2_vl"}')
    weight_map = {"a.weight": "model-00001-of-00002.safetensors",
                  "b.weight": "model-00002-of-00002.safetensors"}  # fmt: skip
    index = {"metadata": {}, "weight_map": weight_map}
    (directory / "model.safetensors.index.json").write_text(json.dumps(index))
    for shard in set(weight_map.values()):
        (directory / shard).write_bytes(b"not really weights")
    return directory


def test_local_clip_and_text_models_are_loaded_and_reported(clip_settings, tiny_multilingual_dir):
    clip_settings.TINYRAG_TEXT_MODEL = str(tiny_multilingual_dir)

    out, err = run()

    lines = out.strip().splitlines()
    clip_line = next(
        line for line in lines if line.startswith("TINYRAG_CLIP_MODEL") and "dim" in line
    )
    text_line = next(
        line for line in lines if line.startswith("TINYRAG_TEXT_MODEL") and "dim" in line
    )
    assert "dim 16" in clip_line
    assert str(clip_settings.TINYRAG_CLIP_MODEL) in clip_line
    assert "dim 16" in text_line
    assert str(tiny_multilingual_dir) in text_line
    assert err == ""


def test_without_text_model_only_clip_is_set_up(clip_settings):
    out, _ = run("--verbosity", "0")

    assert "TINYRAG_CLIP_MODEL" in out
    assert "TINYRAG_TEXT_MODEL" not in out


def test_clip_flag_skips_the_configured_text_model(clip_settings, tiny_multilingual_dir):
    clip_settings.TINYRAG_TEXT_MODEL = str(tiny_multilingual_dir)

    out, _ = run("--clip")

    assert "TINYRAG_TEXT_MODEL" not in out


def test_text_flag_without_text_model_is_an_error(clip_settings):
    error, _ = run_failing("--text")

    assert "TINYRAG_TEXT_MODEL" in str(error)


def test_a_fresh_install_sets_up_the_multilingual_encoder_by_default(settings):
    from search.ml.setup import ModelKind, ModelSpec, selected_models

    # the shipped defaults (tests/settings.py keeps them): Indonesian answers out of the box
    assert selected_models(clip=False, text=False, vlm=False) == [
        ModelSpec(ModelKind.CLIP, "sentence-transformers/clip-ViT-B-32", "TINYRAG_CLIP_MODEL"),
        ModelSpec(
            ModelKind.TEXT,
            "sentence-transformers/clip-ViT-B-32-multilingual-v1",
            "TINYRAG_TEXT_MODEL",
        ),
    ]
    settings.TINYRAG_TEXT_ROUTE = "clip"  # every query on CLIP's tower: no other model
    assert [s.kind for s in selected_models(clip=False, text=False, vlm=False)] == ["clip"]
    settings.TINYRAG_TEXT_ROUTE = "translate"
    assert [(s.kind, s.model_id) for s in selected_models(clip=False, text=False, vlm=False)] == [
        ("clip", "sentence-transformers/clip-ViT-B-32"),
        ("text", "sentence-transformers/clip-ViT-B-32-multilingual-v1"),
        ("translate", "Helsinki-NLP/opus-mt-id-en"),
    ]


def test_the_translation_model_is_set_up_on_the_translate_route(translate_settings):
    out, err = run()

    lines = out.strip().splitlines()
    (line,) = [line for line in lines if line.startswith("TINYRAG_TRANSLATE_MODEL")]
    assert "works (local directory): translated a query on cpu/" in line
    assert str(translate_settings.TINYRAG_TRANSLATE_MODEL) in line
    assert any(line.startswith("TINYRAG_TEXT_MODEL") for line in lines)
    assert err == ""


def test_translate_flag_sets_up_only_the_translation_model(translate_settings):
    out, _ = run("--translate")

    assert "TINYRAG_TRANSLATE_MODEL" in out
    assert "TINYRAG_CLIP_MODEL" not in out


def test_translate_flag_without_translation_model_is_an_error(clip_settings):
    error, _ = run_failing("--translate")

    assert "TINYRAG_TRANSLATE_MODEL is empty" in str(error)


def test_a_missing_translation_model_fails_naming_the_variable(translate_settings, tmp_path):
    translate_settings.TINYRAG_TRANSLATE_MODEL = str(tmp_path / "no-such-marian")

    error, err = run_failing("--translate")

    assert "TINYRAG_TRANSLATE_MODEL" in err
    assert "does not exist" in err
    assert "TINYRAG_TRANSLATE_MODEL" in str(error)


def test_missing_clip_directory_fails_with_one_line_naming_the_variable(clip_settings, tmp_path):
    clip_settings.TINYRAG_CLIP_MODEL = str(tmp_path / "no-such-clip")

    error, err = run_failing()

    assert err.strip().count("\n") == 0
    assert "TINYRAG_CLIP_MODEL" in err
    assert "does not exist" in err
    assert "TINYRAG_CLIP_MODEL" in str(error)


def test_every_model_is_tried_before_failing(clip_settings, tmp_path, tiny_multilingual_dir):
    clip_settings.TINYRAG_CLIP_MODEL = str(tmp_path / "absent")
    clip_settings.TINYRAG_TEXT_MODEL = str(tiny_multilingual_dir)
    out = StringIO()

    with pytest.raises(CommandError, match="1 of 2"):
        call_command("setup_models", stdout=out, stderr=StringIO())

    assert "dim 16" in out.getvalue()  # the text model was still set up


def test_a_text_encoder_as_clip_fails_naming_the_variable(clip_settings, tiny_multilingual_dir):
    clip_settings.TINYRAG_CLIP_MODEL = str(tiny_multilingual_dir)

    _, err = run_failing()

    assert "TINYRAG_CLIP_MODEL" in err
    assert "no image encoder" in err


def test_absent_device_is_one_error_for_all_models(clip_settings):
    clip_settings.TINYRAG_DEVICE = "tpu"

    error, _ = run_failing()

    assert "TINYRAG_DEVICE='tpu'" in str(error)


def test_unknown_hub_id_offline_fails_fast(clip_settings, hub_offline, tmp_path):
    clip_settings.TINYRAG_CLIP_MODEL = "tinyrag-tests/no-such-clip"
    clip_settings.TINYRAG_MODEL_DIR = str(tmp_path)

    started = time.monotonic()
    _, err = run_failing()

    assert time.monotonic() - started < 10
    assert "TINYRAG_CLIP_MODEL='tinyrag-tests/no-such-clip'" in err
    assert "not in" in err


def test_cached_hub_id_offline_is_verified_from_the_cache(clip_settings, hub_offline, tmp_path):
    snapshot = install_in_hub_cache(
        Path(clip_settings.TINYRAG_CLIP_MODEL), tmp_path, "tinyrag-tests/tiny-clip"
    )
    clip_settings.TINYRAG_CLIP_MODEL = "tinyrag-tests/tiny-clip"

    out, _ = run("--dir", str(tmp_path))

    assert "dim 16" in out
    assert str(snapshot) in out
    assert f"TINYRAG_MODEL_DIR={tmp_path}" in out  # how the app will find --dir


def test_vlm_snapshot_is_checked_but_not_loaded(clip_settings, vlm_dir):
    clip_settings.TINYRAG_VLM_MODEL = str(vlm_dir)

    out, _ = run("--vlm")

    assert "TINYRAG_VLM_MODEL" in out
    assert "not loaded" in out
    assert "TINYRAG_CLIP_MODEL" not in out  # a flag was given: only what it names


def test_incomplete_vlm_snapshot_fails(clip_settings, vlm_dir):
    clip_settings.TINYRAG_VLM_MODEL = str(vlm_dir)
    (vlm_dir / "model-00002-of-00002.safetensors").unlink()

    _, err = run_failing("--vlm")

    assert "TINYRAG_VLM_MODEL" in err
    assert "model-00002-of-00002.safetensors" in err


def test_vlm_defaults_to_qwen2_vl_when_unset(clip_settings, hub_offline, tmp_path):
    clip_settings.TINYRAG_MODEL_DIR = str(tmp_path)
    if hasattr(clip_settings, "TINYRAG_VLM_MODEL"):
        del clip_settings.TINYRAG_VLM_MODEL

    _, err = run_failing("--vlm")

    assert "TINYRAG_VLM_MODEL='Qwen/Qwen2-VL-2B-Instruct'" in err


def test_duplicate_pytorch_weights_and_foreign_formats_are_skipped():
    names = [
        "modules.json",
        "0_CLIPModel/pytorch_model.bin",
        "0_CLIPModel/model.safetensors",
        "2_Dense/pytorch_model.bin",  # the only weights of that folder: kept
        "onnx/model.onnx",
    ]

    ignored = ignored_files(names)

    assert "0_CLIPModel/pytorch_model.bin" in ignored
    assert "2_Dense/pytorch_model.bin" not in ignored
    assert "onnx/*" in ignored


def test_manage_py_failure_is_one_line_without_traceback(tmp_path):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TINYRAG_CLIP_MODEL": str(tmp_path / "no-such-clip"),
        "TINYRAG_TEXT_MODEL": "",
        "HF_HUB_OFFLINE": "1",
    }

    result = subprocess.run(
        [sys.executable, "manage.py", "setup_models"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )

    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    assert "TINYRAG_CLIP_MODEL" in result.stderr
