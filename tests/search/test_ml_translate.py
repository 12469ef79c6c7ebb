"""search/ml/translate.py: the MarianMT translator of the translate route, on the tiny random
model in the Helsinki-NLP/opus-mt-id-en layout (tests/fixtures/models.py), loaded through the
real loading code. Expected outputs come from transformers itself, called directly."""

from __future__ import annotations

import json
import shutil

import pytest

from search.ml.errors import ModelLoadError
from search.ml.registry import get_translator, registry, translator_loaded
from search.ml.translate import Translator
from tests.fixtures.models import install_in_hub_cache


@pytest.fixture(scope="module")
def reference(tiny_marian_dir):
    from transformers import MarianMTModel, MarianTokenizer

    tokenizer = MarianTokenizer.from_pretrained(str(tiny_marian_dir))
    model = MarianMTModel.from_pretrained(str(tiny_marian_dir)).eval()

    def translate(texts: list[str], *, beams: int, max_new_tokens: int) -> list[str]:
        batch = tokenizer(texts, return_tensors="pt", padding=True)
        out = model.generate(
            **batch, num_beams=beams, do_sample=False, max_new_tokens=max_new_tokens
        )
        return [" ".join(t.split()) for t in tokenizer.batch_decode(out, skip_special_tokens=True)]

    return tokenizer, translate


def test_the_layout_is_opus_mt_id_en(tiny_marian_dir):
    names = {path.name for path in tiny_marian_dir.iterdir()}
    assert {"config.json", "model.safetensors", "source.spm", "target.spm", "vocab.json"} <= names
    assert {"tokenizer_config.json", "generation_config.json"} <= names
    config = json.loads((tiny_marian_dir / "config.json").read_text())
    assert config["model_type"] == "marian"
    vocab = json.loads((tiny_marian_dir / "vocab.json").read_text())
    assert config["vocab_size"] == len(vocab)
    assert (vocab["</s>"], vocab["<pad>"]) == (0, len(vocab) - 1)  # as opus-mt numbers them


def test_the_tokenizer_is_a_real_sentencepiece_model(reference):
    tokenizer, _ = reference
    pieces = tokenizer.tokenize("kucing mesir")
    assert "".join(pieces).replace("\u2581", " ").strip() == "kucing mesir"
    assert "<unk>" not in pieces


def test_translate_matches_transformers_and_keeps_order(tiny_marian_dir, reference):
    _, translate = reference
    translator = Translator(str(tiny_marian_dir), num_beams=2, max_new_tokens=6)
    texts = ["kucing mesir", "bus sekolah kuning", "anjing di pantai"]
    assert translator.translate(texts) == translate(texts, beams=2, max_new_tokens=6)
    one_by_one = [translator.translate([text])[0] for text in texts]
    assert one_by_one == [translate([t], beams=2, max_new_tokens=6)[0] for t in texts]


def test_translate_is_bounded_and_skips_empty_texts(tiny_marian_dir, reference):
    tokenizer, _ = reference
    translator = Translator(str(tiny_marian_dir), num_beams=1, max_new_tokens=3, batch_size=2)
    out = translator.translate(["", "kucing " * 300, "  ", "bus sekolah"])
    assert (out[0], out[2]) == ("", "")
    for english in (out[1], out[3]):
        # at most 3 tokens written (the decoder start token is not text)
        assert len(tokenizer(text_target=english, add_special_tokens=False)["input_ids"]) <= 3
    assert translator.translate([]) == []


def test_loads_once_lazily(tiny_marian_dir):
    translator = Translator(str(tiny_marian_dir))
    assert not translator.loaded
    translator.translate(["kucing"])
    assert translator.loaded
    assert "beams=4" in repr(translator)


def test_a_missing_model_names_the_setting(tmp_path):
    translator = Translator(str(tmp_path / "absent"))
    with pytest.raises(ModelLoadError, match="TINYRAG_TRANSLATE_MODEL") as error:
        translator.translate(["kucing"])
    assert "its directory does not exist" in str(error.value)
    assert not translator.loaded


def test_a_model_of_another_kind_is_refused(tmp_path):
    not_marian = tmp_path / "bert"
    not_marian.mkdir()
    (not_marian / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(ModelLoadError, match="a bert model, not a MarianMT translation model"):
        Translator(str(not_marian)).load()
    with pytest.raises(ModelLoadError, match="its directory has no config.json"):
        Translator(str(tmp_path)).load()  # a folder that holds no model at all


def test_a_broken_directory_is_a_load_error(tiny_marian_dir, tmp_path):
    broken = tmp_path / "broken"
    shutil.copytree(tiny_marian_dir, broken)
    (broken / "source.spm").write_bytes(b"not a sentencepiece model")
    with pytest.raises(ModelLoadError, match="TINYRAG_TRANSLATE_MODEL"):
        Translator(str(broken)).load()


def test_a_bare_name_is_found_in_the_hub_cache(tiny_marian_dir, tmp_path, no_network):
    install_in_hub_cache(tiny_marian_dir, tmp_path, "Helsinki-NLP/opus-mt-id-en")
    translator = Translator("opus-mt-id-en", cache_dir=tmp_path)
    assert (
        translator.translate(["kucing"])[0]
        == Translator(str(tiny_marian_dir)).translate(["kucing"])[0]
    )
    assert no_network == []


def test_the_registry_gives_one_translator_per_configuration(translate_settings):
    assert not translator_loaded()
    first = get_translator()
    assert get_translator() is first
    assert (first.num_beams, first.max_new_tokens) == (2, 8)  # translate_settings'
    first.translate(["kucing"])
    assert translator_loaded()
    translate_settings.TINYRAG_TRANSLATE_BEAMS = 1
    assert get_translator() is not first
    registry.clear()
