"""search/queries/routing.py and the text routes of search/queries/retrieval.py: the language a
query is read in, its subject, the route per setting, and what each route embeds.

The detection table is real queries people type, in both languages, read against a catalogue
of real TinyImageNet classes with their Indonesian names (as import_dataset stores them).
Expected vectors on each route are computed independently: the tiny models loaded by
sentence-transformers / transformers themselves on the text written out by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from search.catalog.models import Dataset, ImageClass
from search.ml.errors import ModelLoadError
from search.queries import routing
from search.queries.retrieval import embed_text, embed_texts
from search.queries.routing import (
    ReadQuery,
    Route,
    RoutingError,
    detect_language,
    read_query,
    strip_request_words,
)

pytestmark = pytest.mark.django_db

# (wnid, English names as words.txt has them, Indonesian name and synonyms)
CATALOGUE = [
    ("n02124075", ["Egyptian cat"], ["kucing mesir", "kucing"]),
    ("n04146614", ["school bus"], ["bus sekolah", "bus"]),
    ("n04540053", ["volleyball"], ["bola voli"]),
    ("n01443537", ["goldfish", "Carassius auratus"], ["ikan emas", "ikan mas"]),
    ("n07749582", ["lemon"], ["lemon", "jeruk lemon"]),
    ("n07873807", ["pizza", "pizza pie"], ["pizza"]),
    ("n01882714", ["koala", "koala bear"], ["koala"]),
    ("n02123045", ["tabby", "tabby cat"], ["kucing belang"]),
    ("n02085620", ["Chihuahua"], ["chihuahua", "anjing chihuahua"]),
    ("n02099601", ["golden retriever"], ["anjing golden retriever"]),
    ("n02279972", ["monarch", "monarch butterfly"], ["kupu-kupu raja", "kupu-kupu"]),
    ("n01774750", ["tarantula"], ["tarantula", "laba-laba"]),
    ("n06874185", ["traffic light", "traffic signal", "stoplight"], ["lampu lalu lintas"]),
    ("n02437312", ["Arabian camel", "dromedary"], ["unta"]),
    ("n04596742", ["wok"], ["wajan"]),
    ("n02814533", ["beach wagon", "station wagon"], ["mobil station wagon"]),
    ("n02504458", ["African elephant"], ["gajah afrika", "gajah"]),
    ("n01910747", ["jellyfish"], ["ubur-ubur"]),
    ("n07753592", ["banana"], ["pisang"]),
    ("n04398044", ["teapot"], ["teko"]),
]

ENGLISH_QUERIES = [
    "red bus", "bus", "cat", "lemon", "pizza", "koala", "school bus", "golden retriever",
    "Egyptian cat", "tabby cat", "goldfish", "volleyball", "a photo of a cat", "show me cats",
    "search for red bus", "find a yellow school bus", "pictures of a goldfish",
    "monarch butterfly", "beach wagon", "a dog on the beach", "traffic light", "banana",
    "jellyfish", "teapot",
]  # fmt: skip
INDONESIAN_QUERIES = [
    "kucing", "anjing", "cari kucing mesir", "kucing mesir", "bus sekolah", "bola voli",
    "ikan mas", "ikan emas", "tampilkan gambar anjing", "carikan foto anjing", "cariin kucing",
    "tunjukkan bus sekolah", "lihat gajah", "mobil merah", "bus merah", "kupu-kupu",
    "laba-laba", "lampu lalu lintas", "unta", "wajan", "ubur-ubur", "pisang", "rumah",
    "kucing hitam di atas meja", "anak kucing", "burung hantu", "sepeda", "jembatan",
]  # fmt: skip
OTHER_QUERIES = [
    ("Katze", "de"), ("schwarze Katze", "de"), ("un chien sur la plage", "fr"),
    ("perro en la playa", "es"), ("猫", "zh"), ("黒い猫", "ja"), ("고양이", "ko"), ("แมว", "th"),
]  # fmt: skip


@pytest.fixture
def catalogue(clip_settings):
    dataset = Dataset.objects.create(name="routing", root="/nowhere", source="tinyimagenet")
    ImageClass.objects.bulk_create(
        ImageClass(
            dataset=dataset,
            wnid=wnid,
            name=english[0],
            names=english,
            translations={"id": {"name": indonesian[0], "synonyms": indonesian}},
        )
        for wnid, english, indonesian in CATALOGUE
    )
    routing.forget_class_vocabulary()  # bulk_create sends no signal
    return dataset


# --- the language a query is read in -----------------------------------------------------


@pytest.mark.parametrize("text", ENGLISH_QUERIES)
def test_english_queries_read_as_english(catalogue, text):
    assert detect_language(text) == "en"


@pytest.mark.parametrize("text", INDONESIAN_QUERIES)
def test_indonesian_queries_read_as_indonesian(catalogue, text):
    assert detect_language(text) == "id"


@pytest.mark.parametrize(("text", "language"), OTHER_QUERIES)
def test_other_languages_read_as_themselves(catalogue, text, language):
    assert detect_language(text) == language


def test_the_class_names_decide_the_one_word_queries(clip_settings):
    # Without a catalogue the detector alone reads "bus" and "koala" as Indonesian...
    assert (detect_language("bus"), detect_language("koala")) == ("id", "id")
    dataset = Dataset.objects.create(name="two", root="/nowhere", source="tinyimagenet")
    # ...and once they name classes in both languages they read as English (CLIP's tower);
    # a class saved through the ORM is seen at once (no waiting for the cache to expire).
    for wnid, english, indonesian in CATALOGUE[1:2] + CATALOGUE[6:7]:
        ImageClass.objects.create(
            dataset=dataset, wnid=wnid, name=english[0], names=english,
            translations={"id": {"name": indonesian[0], "synonyms": indonesian}},
        )  # fmt: skip
    assert (detect_language("bus"), detect_language("koala")) == ("en", "en")


def test_malay_reads_as_indonesian_and_digits_as_english(catalogue):
    assert detect_language("saya hendak mencari gambar kucing comel") == "id"  # Malay
    assert detect_language("2024") == "en"
    assert detect_language("?!") == "en"


# --- the subject: leading request words ---------------------------------------------------

STRIPPED = [
    ("cari kucing mesir", "kucing mesir"),
    ("Cari kucing mesir", "kucing mesir"),
    ("carikan anjing", "anjing"),
    ("cariin kucing", "kucing"),
    ("tampilkan gambar bola voli", "bola voli"),
    ("tunjukkan foto-foto kucing", "kucing"),
    ("tolong carikan saya gambar anjing", "anjing"),
    ("lihat gajah", "gajah"),
    ("gambar kucing", "kucing"),
    ("foto kucing", "kucing"),
    ("search for red bus", "red bus"),
    ("search: red bus", "red bus"),
    ("find a yellow school bus", "yellow school bus"),
    ("show me pictures of a red bus", "red bus"),
    ("Show me some cats", "cats"),
    ("a photo of a cat", "cat"),
    ("images of goldfish", "goldfish"),
    ("please find the lemon", "lemon"),
    ("red bus", "red bus"),
    ("kucing mesir", "kucing mesir"),
    ("showcase", "showcase"),  # a word that begins like one is not one
    ("findings", "findings"),
    ("cariboo", "cariboo"),
    ("mau mesir", "mau mesir"),  # the Egyptian Mau: "mau" (want) is not stripped
]


@pytest.mark.parametrize(("text", "subject"), STRIPPED)
def test_leading_request_words_are_stripped(text, subject):
    assert strip_request_words(text) == subject


@pytest.mark.parametrize("text", ["cari", "show me", "search for", "gambar", "a", "tolong cari"])
def test_the_whole_query_is_never_stripped(text):
    assert strip_request_words(text) == text


# --- read_query: language chosen or detected, route per settings ---------------------------


def test_read_query_detects_and_routes_by_the_settings(catalogue, multilingual_settings):
    assert read_query("  cari   kucing mesir ") == ReadQuery(
        text="cari kucing mesir",
        subject="kucing mesir",
        language="id",
        chosen=False,
        route=Route.MULTILINGUAL,
    )
    assert read_query("search for red bus") == ReadQuery(
        "search for red bus", "red bus", "en", False, Route.CLIP
    )


def test_a_chosen_language_overrides_detection(catalogue, multilingual_settings):
    read = read_query("bus", language="id")  # detected as English, read as the user says
    assert (read.language, read.chosen, read.route) == ("id", True, Route.MULTILINGUAL)
    read = read_query("kucing", language="en")
    assert (read.language, read.chosen, read.route) == ("en", True, Route.CLIP)
    for spelling in ("id-ID", "ID", "in", "ms"):
        assert read_query("kucing", language=spelling).language == "id"
    for auto in (None, "", "auto", " AUTO "):
        assert read_query("kucing", language=auto).chosen is False


@pytest.mark.parametrize(
    ("text", "subject"),
    [
        ("show me a kucing", "kucing"),
        ("search for kucing mesir", "kucing mesir"),
        ("pictures of kucing", "kucing"),
        ("find a bus sekolah", "bus sekolah"),
    ],
)
def test_the_subject_decides_the_language_not_the_request_words(
    catalogue, multilingual_settings, text, subject
):
    """English request words around Indonesian words: what is searched for is Indonesian,
    and goes to the encoder that reads it (not CLIP's "a photo of a kucing.")."""
    read = read_query(text)
    assert (read.subject, read.language, read.route) == (subject, "id", Route.MULTILINGUAL)


def test_other_means_neither_english_nor_indonesian(catalogue, multilingual_settings):
    read = read_query("kucing", language="other")
    assert read.language not in ("en", "id", "ms")
    assert (read.chosen, read.route) == (True, Route.MULTILINGUAL)
    assert read_query("schwarze Katze", language="other").language == "de"
    assert read_query("schwarze Katze", language="de").language == "de"


@pytest.mark.parametrize("language", ["xx", "english", "e", "zz-ZZ", "klingon"])
def test_an_unknown_language_is_refused(catalogue, clip_settings, language):
    with pytest.raises(RoutingError, match="Unknown query language"):
        read_query("kucing", language=language)


def test_routes_per_setting(catalogue, clip_settings, tiny_multilingual_dir, tiny_marian_dir):
    # no multilingual encoder configured: every query takes CLIP's tower, and says so
    assert read_query("kucing").route is Route.CLIP
    clip_settings.TINYRAG_TEXT_MODEL = str(tiny_multilingual_dir)
    assert read_query("kucing").route is Route.MULTILINGUAL
    clip_settings.TINYRAG_TEXT_ROUTE = "translate"
    clip_settings.TINYRAG_TRANSLATE_MODEL = str(tiny_marian_dir)
    assert read_query("kucing").route is Route.TRANSLATE
    assert read_query("red bus").route is Route.CLIP  # English is never translated
    # a language the translation model does not translate takes the multilingual route
    assert read_query("schwarze Katze").route is Route.MULTILINGUAL
    clip_settings.TINYRAG_TEXT_ROUTE = "clip"
    assert read_query("kucing").route is Route.CLIP


def test_a_route_asked_for_is_taken_or_refused(catalogue, translate_settings):
    assert read_query("kucing", route="clip").route is Route.CLIP
    assert read_query("red bus", route="multilingual").route is Route.MULTILINGUAL
    assert read_query("kucing", route=" Translate ").route is Route.TRANSLATE
    with pytest.raises(RoutingError, match="translates id into English, not de"):
        read_query("schwarze Katze", route="translate")
    with pytest.raises(RoutingError, match="not en"):
        read_query("red bus", route="translate")
    with pytest.raises(RoutingError, match="Unknown text route 'fast'"):
        read_query("kucing", route="fast")


# --- what each route embeds -----------------------------------------------------------------


@pytest.fixture(scope="module")
def reference_models(tiny_clip_dir, tiny_multilingual_dir, tiny_marian_dir):
    from sentence_transformers import SentenceTransformer
    from transformers import MarianMTModel, MarianTokenizer

    return {
        "clip": SentenceTransformer(str(tiny_clip_dir), device="cpu"),
        "multilingual": SentenceTransformer(str(tiny_multilingual_dir), device="cpu"),
        "marian": (
            MarianTokenizer.from_pretrained(str(tiny_marian_dir)),
            MarianMTModel.from_pretrained(str(tiny_marian_dir)).eval(),
        ),
    }


def encode(model, text: str) -> np.ndarray:
    return model.encode([text], normalize_embeddings=True, show_progress_bar=False)[0]


def translate(marian, text: str, *, beams: int, max_new_tokens: int) -> str:
    tokenizer, model = marian
    batch = tokenizer([text], return_tensors="pt")
    out = model.generate(**batch, num_beams=beams, do_sample=False, max_new_tokens=max_new_tokens)
    return " ".join(tokenizer.batch_decode(out, skip_special_tokens=True)[0].split())


@pytest.fixture
def index(index_built, clip_settings):
    from search.index.service import get_index_service

    clip_settings.TINYRAG_FORCE_FP32 = True  # float32 queries, as the references compute
    return get_index_service("tiny")


def test_english_takes_clip_with_the_prompt(index, multilingual_settings, reference_models):
    multilingual_settings.TINYRAG_TEXT_PROMPT = "a photo of a {query}."
    query = embed_text("search for a red lemon", index)
    assert (query.read.language, query.read.route, query.embedded_text) == (
        "en", Route.CLIP, "red lemon",
    )  # fmt: skip
    assert query.encoder == str(multilingual_settings.TINYRAG_CLIP_MODEL)
    expected = encode(reference_models["clip"], "a photo of a red lemon.")
    np.testing.assert_allclose(query.vector, expected, atol=1e-5)


def test_indonesian_takes_the_multilingual_encoder(index, multilingual_settings, reference_models):
    query = embed_text("cari kucing mesir", index)
    assert (query.read.language, query.read.route, query.embedded_text) == (
        "id", Route.MULTILINGUAL, "kucing mesir",
    )  # fmt: skip
    assert query.encoder == str(multilingual_settings.TINYRAG_TEXT_MODEL)
    expected = encode(reference_models["multilingual"], "kucing mesir")  # no prompt template
    np.testing.assert_allclose(query.vector, expected, atol=1e-5)


def test_the_translate_route_end_to_end(index, translate_settings, reference_models):
    query = embed_text("cari kucing mesir", index)
    english = translate(reference_models["marian"], "kucing mesir", beams=2, max_new_tokens=8)
    assert english  # the tiny model writes something, if nothing meaningful
    assert (query.read.route, query.embedded_text) == (Route.TRANSLATE, english)
    assert query.encoder == str(translate_settings.TINYRAG_CLIP_MODEL)  # CLIP embedded it
    assert query.translator == str(translate_settings.TINYRAG_TRANSLATE_MODEL)
    expected = encode(
        reference_models["clip"], translate_settings.TINYRAG_TEXT_PROMPT.format(query=english)
    )
    np.testing.assert_allclose(query.vector, expected, atol=1e-5)


def test_embed_texts_batches_per_route_in_order(index, translate_settings, reference_models):
    texts = ["red lemon", "cari kucing mesir", "schwarze Katze", "school bus"]
    vectors, reads = embed_texts(texts, index)
    assert [r.route for r in reads] == [
        Route.CLIP, Route.TRANSLATE, Route.MULTILINGUAL, Route.CLIP,
    ]  # fmt: skip
    single = np.stack([embed_text(text, index).vector for text in texts])
    np.testing.assert_allclose(vectors, single, atol=1e-5)
    # one language and one route for all, as the evaluation asks
    vectors, reads = embed_texts(["kucing", "anjing"], index, language="id", route="clip")
    assert {(r.language, r.chosen, r.route) for r in reads} == {("id", True, Route.CLIP)}
    prompt = translate_settings.TINYRAG_TEXT_PROMPT
    expected = [
        encode(reference_models["clip"], prompt.format(query=w)) for w in ("kucing", "anjing")
    ]
    np.testing.assert_allclose(vectors, np.stack(expected), atol=1e-5)


def test_a_missing_multilingual_model_names_its_setting(index, multilingual_settings, tmp_path):
    multilingual_settings.TINYRAG_TEXT_MODEL = str(tmp_path / "absent")
    with pytest.raises(ModelLoadError, match="TINYRAG_TEXT_MODEL"):
        embed_text("kucing mesir", index)
    assert embed_text("red lemon", index).read.route is Route.CLIP  # English still works


def test_a_missing_translation_model_names_its_setting(index, translate_settings, tmp_path):
    translate_settings.TINYRAG_TRANSLATE_MODEL = str(tmp_path / "absent")
    with pytest.raises(ModelLoadError, match="TINYRAG_TRANSLATE_MODEL"):
        embed_text("kucing mesir", index)


def test_an_explicit_multilingual_route_without_a_model_names_the_setting(index, clip_settings):
    with pytest.raises(ModelLoadError, match="TINYRAG_TEXT_MODEL"):
        embed_text("kucing mesir", index, route="multilingual")
