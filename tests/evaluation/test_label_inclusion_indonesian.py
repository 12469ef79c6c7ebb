"""Whether an Indonesian description names its class: the Indonesian names and synonyms as whole
words, reduplicated plurals of the head noun, enclitics on the last word, and the derived or
longer words that must not count (evaluation.metrics' docstring states the rules)."""

from __future__ import annotations

import pytest

from evaluation import metrics
from evaluation.metrics import label_inclusion_rate, names_class

KUCING_MESIR = ["kucing mesir"]
KUCING = ["kucing"]
BUS_SEKOLAH = ["bus sekolah"]
KUPU_KUPU = ["kupu-kupu"]  # a word that is reduplicated in itself
ANJING_GEMBALA = ["anjing gembala jerman", "alsatian"]


@pytest.mark.parametrize(
    ("text", "synonyms"),
    [
        ("Seekor kucing mesir tidur di sofa.", KUCING_MESIR),
        ("KUCING MESIR", KUCING_MESIR),
        ("Kucing\nMesir", KUCING_MESIR),  # any white space between the words
        ("(kucing mesir)", KUCING_MESIR),
        ("kucing mesir, kemungkinan besar", KUCING_MESIR),
        # reduplicated plurals: the head noun (the first word), or a one-word name
        ("Dua kucing-kucing mesir bermain.", KUCING_MESIR),
        ("kucing-kucing di halaman", KUCING),
        ("Bus-bus sekolah berwarna kuning.", BUS_SEKOLAH),
        # enclitics on the last word: -nya, -ku, -mu, then -lah, -kah, -pun
        ("Kucingnya berwarna abu-abu.", KUCING),
        ("Bulu kucing mesirnya belang.", KUCING_MESIR),
        ("bus sekolahnya berhenti", BUS_SEKOLAH),
        ("kucing-kucingnya tidur", KUCING),
        ("Kucinglah yang duduk di sana.", KUCING),
        ("Apakah ini kucingkah?", KUCING),
        ("kucingku dan kucingmu", KUCING),
        ("kucingnyalah", KUCING),
        ("kucingpun tidur", KUCING),
        # a name that is reduplicated in itself, and its enclitic
        ("Seekor kupu-kupu hinggap.", KUPU_KUPU),
        ("Sayap kupu-kupunya oranye.", KUPU_KUPU),
        ("anjing gembala jerman yang besar", ANJING_GEMBALA),
        ("seekor Alsatian", ANJING_GEMBALA),  # a later synonym counts
        ("kucing- dan anjing", KUCING),  # a hyphen joins words only when one follows
    ],
)
def test_names_the_class_in_indonesian(text, synonyms):
    assert names_class(text, synonyms, "id")


@pytest.mark.parametrize(
    ("text", "synonyms"),
    [
        ("Seekor kucing tidur.", KUCING_MESIR),  # part of a name is not the name
        ("mesir", KUCING_MESIR),
        ("kucing dari mesir", KUCING_MESIR),  # the words apart
        ("perkucingan", KUCING),  # derivational affixes make other words
        ("kucingan", KUCING),
        ("mobil-mobilan merah", ["mobil"]),  # a toy car, not a car
        ("anak-kucing", KUCING),  # a hyphenated word is one word
        ("kucing2", KUCING),  # informal: not accepted
        ("kucing mesir-kucing mesir", ["mesir kucing"]),
        ("bus-sekolah", BUS_SEKOLAH),  # a name's words are apart by white space
        ("busnya sekolah", BUS_SEKOLAH),  # an enclitic ends the phrase
        ("kupu", KUPU_KUPU),
        ("kupu-kupu-an", KUPU_KUPU),
        ("sekolahan", ["sekolah"]),
        ("bus sekolahan", BUS_SEKOLAH),
        ("gembala", ANJING_GEMBALA),
        ("", KUCING),
        ("kucing", []),
        ("kucing", ["", "  "]),  # blank synonyms name nothing
    ],
)
def test_does_not_name_the_class_in_indonesian(text, synonyms):
    assert not names_class(text, synonyms, "id")


@pytest.mark.parametrize(
    ("text", "synonyms", "english", "indonesian"),
    [
        # English plurals are English: "buses" is no Indonesian form of "bus"
        ("two buses", ["bus"], True, False),
        # Indonesian enclitics are Indonesian: "busnya" is no English form of "bus"
        ("busnya", ["bus"], False, True),
        # a hyphen separates English words, joins Indonesian ones
        ("a lemon-yellow car", ["lemon"], True, False),
    ],
)
def test_each_language_has_its_own_forms(text, synonyms, english, indonesian):
    assert names_class(text, synonyms, "en") is english
    assert names_class(text, synonyms) is english  # English is the default
    assert names_class(text, synonyms, "id") is indonesian


def test_regex_characters_in_an_indonesian_name_are_literal():
    assert names_class("sebuah bola (voli)", ["bola (voli)"], "id")
    assert not names_class("sebuah bolaxvoli", ["bola.voli"], "id")


def test_indonesian_lir_is_the_share_of_texts_naming_their_own_class():
    texts = ["Kucing-kucing mesir.", "Seekor kucing.", "Bus sekolahnya kuning.", "Mobil."]
    classes = [KUCING_MESIR, KUCING_MESIR, BUS_SEKOLAH, BUS_SEKOLAH]
    assert label_inclusion_rate(texts, classes, "id") == pytest.approx(2 / 4)


def test_a_longer_name_of_another_class_does_not_name_this_one():
    """Indonesian puts the head noun first: "jeruk nipis" (lemon) begins with "jeruk"
    (orange), "singa gunung" (cougar) with "singa" (lion). A description of the other class
    is no hit for this one; the class's own name beside it still is."""
    others = ["jeruk nipis", "jeruk lemon", "singa gunung", "kucing mesir"]
    rivals = metrics.rival_names(["jeruk", "jeruk manis"], others)
    assert rivals == ["jeruk lemon", "jeruk nipis"]  # not "kucing mesir", not "singa gunung"
    assert not metrics.names_class("Sebuah jeruk nipis di meja.", ["jeruk"], "id", rivals)
    assert not metrics.names_class("Jeruk-jeruk nipis segar.", ["jeruk"], "id", rivals)
    assert metrics.names_class("Sebuah jeruk di meja.", ["jeruk"], "id", rivals)
    assert metrics.names_class("Jeruk nipis dan sebuah jeruk.", ["jeruk"], "id", rivals)
    # without rivals (as before), the prefix counts
    assert metrics.names_class("Sebuah jeruk nipis di meja.", ["jeruk"], "id")
    texts = ["Sebuah jeruk nipis.", "Sebuah jeruk.", "Seekor singa gunung."]
    assert metrics.label_inclusion_rate(
        texts, [["jeruk"], ["jeruk"], ["singa"]], "id",
        [rivals, rivals, metrics.rival_names(["singa"], others)],
    ) == pytest.approx(1 / 3)  # fmt: skip
