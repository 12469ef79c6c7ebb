"""Whether a description names its class: synonyms, plurals, and substrings that must not count."""

from __future__ import annotations

import pytest

from evaluation.metrics import label_inclusion_rate, names_class

LEMON = ["lemon"]
SHEPHERD = ["German shepherd", "German shepherd dog", "German police dog", "alsatian"]
EGYPTIAN_CAT = ["Egyptian cat"]


@pytest.mark.parametrize(
    ("text", "synonyms"),
    [
        ("A lemon on a table.", LEMON),
        ("LEMON", LEMON),
        ("Two lemons in a bowl", LEMON),
        ("the lemon's peel is bright", LEMON),
        ("(lemon)", LEMON),
        ("Lemon-yellow, a lemon", LEMON),
        ("A german shepherd runs", SHEPHERD),
        ("three German shepherds", SHEPHERD),
        ("a German-shepherd puppy", SHEPHERD),
        ("a German\nshepherd", SHEPHERD),
        ("probably an Alsatian.", SHEPHERD),  # a later synonym counts
        ("an egyptian cat asleep", EGYPTIAN_CAT),
        ("two Egyptian cats", EGYPTIAN_CAT),
        ("busy buses", ["bus"]),
        ("a pile of boxes", ["box"]),
        ("monarch butterflies", ["butterfly"]),
        ("a jack-o'-lantern glowing", ["jack-o'-lantern"]),
        ("jack o' lanterns", ["jack-o'-lantern"]),
        ("a reel of film", ["reel"]),
    ],
)
def test_names_the_class(text, synonyms):
    assert names_class(text, synonyms)


@pytest.mark.parametrize(
    ("text", "synonyms"),
    [
        ("a glass of lemonade", LEMON),  # a longer word
        ("lemongrass", LEMON),
        ("a shepherd dog", SHEPHERD),  # part of a synonym is not the synonym
        ("a German dog", SHEPHERD),
        ("a cat on a sofa", EGYPTIAN_CAT),  # only words.txt synonyms count
        ("concatenate", ["cat"]),
        ("a bobcat", ["cat"]),
        ("the business district", ["bus"]),
        ("she was reeling", ["reel"]),
        ("pants", ["ant"]),
        ("a giant", ["ant"]),
        ("", LEMON),
        ("a lemon", []),
        ("a lemon", ["", "  "]),  # blank synonyms name nothing
    ],
)
def test_does_not_name_the_class(text, synonyms):
    assert not names_class(text, synonyms)


def test_regex_characters_in_a_synonym_are_literal():
    assert names_class("a C++ manual", ["C++ manual"])
    assert not names_class("a Cxx manual", ["C.. manual"])


def test_lir_is_the_share_of_texts_naming_their_own_class():
    texts = ["A lemon on a table.", "A lemon on a table.", "A cat.", "An alsatian."]
    classes = [LEMON, EGYPTIAN_CAT, EGYPTIAN_CAT, SHEPHERD]
    assert label_inclusion_rate(texts, classes) == pytest.approx(2 / 4)
