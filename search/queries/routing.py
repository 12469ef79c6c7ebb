"""How a text query is read before it is embedded: its language, its subject, its route.

A query reaches one of three text routes (`Route`):

- English -> CLIP's own text tower with the prompt template (TINYRAG_TEXT_PROMPT): the
  encoder the index's images were aligned with, and the best one for English;
- Indonesian and every other language -> TINYRAG_TEXT_ROUTE: the multilingual encoder
  (TINYRAG_TEXT_MODEL, distilled into CLIP's space), or translation to English
  (TINYRAG_TRANSLATE_MODEL, for the languages of TINYRAG_TRANSLATE_LANGUAGES) and then CLIP.

The language is the caller's choice when it gives one, else detected. Detection is
py3langid (its model ships inside the package: no download) restricted to the languages the
multilingual encoder was trained on, with a prior for English and Indonesian (the languages
of TinyRAG's users), after two stronger signals for the one- or two-word queries people
type: the class names of the collections in both languages (the `ImageClass` table) and a
few common words of each. "kucing" is Indonesian because it names a class in Indonesian
only; "bus" names one in both and reads as English, where CLIP's own tower is the stronger
encoder. Malay is read as Indonesian: the written languages are close enough that the
detector confuses them, and both take the same route.

The subject is the query without the leading request words ("cari kucing mesir" -> "kucing
mesir", "show me pictures of a red bus" -> "red bus"): those describe no image. Never the
whole query: "cari" alone stays "cari".
"""

from __future__ import annotations

import re
import threading
import time
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from enum import StrEnum
from functools import cache

from django.conf import settings
from django.db.models.signals import post_delete, post_save
from django.dispatch import receiver
from django.utils.translation import gettext as _

from search.catalog.models import Dataset, ImageClass
from search.errors import InvalidInput
from search.languages import ENGLISH, INDONESIAN


class Route(StrEnum):
    CLIP = "clip"  # CLIP's own text tower, with the prompt template
    MULTILINGUAL = "multilingual"  # TINYRAG_TEXT_MODEL, the text as read
    TRANSLATE = "translate"  # TINYRAG_TRANSLATE_MODEL to English, then CLIP


# The `language` a caller passes for "not English, not Indonesian: tell which yourself": the
# query is read in the detected language among the others (never en or id), as chosen.
OTHER = "other"
# The `language` a caller passes for "detect it" (as None and "" do).
AUTO = "auto"
MALAY = "ms"


def _words_of(text: str) -> list[str]:
    return text.split()


# The languages of the multilingual encoder's training (sentence-transformers'
# clip-ViT-B-32-multilingual-v1 was distilled on these, minus Norwegian, which py3langid
# lacks): detection chooses among them. https://www.sbert.net/docs/sentence_transformer/pretrained_models.html#multilingual-models
DETECTED_LANGUAGES = _words_of(
    "ar bg ca cs da de el en es et fa fi fr gl gu he hi hr hu hy id it ja ka ko ku lt lv mk "
    "mn mr ms my nl pl pt ro ru sk sl sq sr sv th tr uk ur vi zh"
)
# Detector probability of any language but English and Indonesian is weighed down by this:
# TinyRAG's users write those two, and on one or two words the detector is often unsure
# ("kucing" scores Zulu first among all its languages). Measured on tests/search/
# test_routing.py's table: 0.3 reads every en/id query there right and keeps "Katze"
# German. Some one-word queries in other languages still read as Indonesian ("Hund",
# "perro"): they take the multilingual route all the same, which reads them right; only the
# header's language name is wrong, and "Another language" corrects it.
OTHER_LANGUAGE_PRIOR = 0.3

# Leading words that ask for a search rather than describe an image, longest first within a
# language; stripped repeatedly ("tolong carikan gambar kucing" -> "kucing"), both
# languages' at once (people mix them: "cari red bus").
REQUEST_WORDS = {
    INDONESIAN: [
        "tolong", "coba", "mohon", "bisakah", "bisa",
        "carikan", "cariin", "cari", "mencari", "tampilkan", "tampilin", "tunjukkan",
        "tunjukin", "perlihatkan", "lihatkan", "lihat", "melihat", "temukan", "saya", "aku",
        "ingin", "minta", "gambar-gambar", "gambar", "foto-foto", "foto", "citra",
        "sebuah", "seekor", "dari", "tentang",
    ],
    ENGLISH: [
        "please", "can you", "could you", "search for", "search", "look for", "looking for",
        "find me", "find", "show me", "show", "give me", "get me", "i want", "i need",
        "images of", "image of", "pictures of", "picture of", "photos of", "photo of",
        "photographs of", "photograph of", "some", "any", "an", "a", "the",
    ],
}  # fmt: skip
# Common words of each language that name no class but tell the language: a colour, a
# preposition, a counter word. With the class names they read the short queries people type.
COMMON_WORDS = {
    INDONESIAN: set(
        _words_of(
            "yang dan di ke pada dengan atau sedang sebuah seekor beberapa banyak dua tiga kecil "
            "besar lucu merah biru hijau kuning hitam putih cokelat coklat abu-abu ungu oranye "
            "jingga merah-muda atas bawah dalam luar depan samping sedang berenang terbang tidur "
            "makan bermain anak"
        )
    )
    | {w for w in REQUEST_WORDS[INDONESIAN] if " " not in w},
    ENGLISH: set(
        _words_of(
            "a an the of on in with and or at near under over two three small big little large "
            "cute red blue green yellow black white brown grey gray purple pink orange "
            "swimming flying sleeping eating playing"
        )
    )
    | {w for p in REQUEST_WORDS[ENGLISH] for w in p.split()},
}
_WORD = re.compile(r"[^\W\d_]+(?:['-][^\W\d_]+)*")
VOCABULARY_TTL_S = 60.0  # class names change on import: seen within a minute, or at once (signals)


@dataclass(frozen=True)
class ReadQuery:
    text: str  # as typed, whitespace-normalised
    subject: str  # without leading search verbs ("cari kucing mesir" -> "kucing mesir")
    language: str  # ISO 639-1 code it was read in
    chosen: bool  # True: the caller chose the language; False: detected
    route: Route  # the route that embeds it


class RoutingError(InvalidInput):
    """A language or route the caller asked for that this server cannot honour."""


def read_query(
    text: str, *, language: str | None = None, route: Route | str | None = None
) -> ReadQuery:
    """How `text` is searched: `language` None (or "", "auto") = detect, "other" = detect
    among the languages other than English and Indonesian; `route` None = the default route
    for that language (settings). RoutingError for an unknown language or route, or a route
    that cannot take that language."""
    text = " ".join(text.split())
    subject = strip_request_words(text)
    chosen_language = normalise_language(language)
    # the subject tells the language: "show me a kucing" is Indonesian words in an English
    # request, and the words searched for are what the encoder must understand
    if chosen_language is None:
        read_in, chosen = detect_language(subject), False
    elif chosen_language == OTHER:
        read_in, chosen = detect_language(subject, exclude=(ENGLISH, INDONESIAN, MALAY)), True
    else:
        read_in, chosen = chosen_language, True
    if route is None:
        chosen_route = default_route(read_in)
    else:
        chosen_route = parse_route(route)
        check_route(chosen_route, read_in)
    return ReadQuery(text, subject, read_in, chosen, chosen_route)


# -- languages ----------------------------------------------------------------------------------


def normalise_language(language: str | None) -> str | None:
    """A caller's language as read_query uses it: None (detect), OTHER, or a code of
    DETECTED_LANGUAGES ("id-ID" -> "id", "in" -> "id", Malay -> "id"). RoutingError else."""
    if language is None:
        return None
    code = language.strip().lower().replace("_", "-")
    if code in ("", AUTO):
        return None
    if code == OTHER:
        return OTHER
    base = code.split("-", 1)[0]
    base = {"in": INDONESIAN, MALAY: INDONESIAN}.get(base, base)
    if base not in DETECTED_LANGUAGES:
        raise RoutingError(
            _(
                "Unknown query language %(language)s: use auto, en, id, other, or a two-letter "
                "language code such as de or fr."
            )
            % {"language": repr(language)}
        )
    return base


def accepted_languages() -> list[str]:
    """Every `language` value read_query takes (the API's and the pages' choices)."""
    return [AUTO, ENGLISH, INDONESIAN, OTHER] + sorted(
        code for code in DETECTED_LANGUAGES if code not in (ENGLISH, INDONESIAN, MALAY)
    )


def detect_language(text: str, *, exclude: Iterable[str] = ()) -> str:
    """The ISO 639-1 code `text` reads as (see the module docstring); English for a text
    with nothing to read (digits, punctuation) unless excluded."""
    excluded = set(exclude)
    words = [w.lower() for w in _WORD.findall(text)]
    if not words:
        return ENGLISH if ENGLISH not in excluded else _first_other(excluded)
    latin = _mostly_latin(text)
    if latin and not {ENGLISH, INDONESIAN} & excluded:
        by_words = _language_by_words(words)
        if by_words is not None:
            return by_words
    return _language_by_detector(text, excluded, latin=latin)


def _language_by_words(words: list[str]) -> str | None:
    """English or Indonesian when the words say so: more of them are class names or common
    words of one language than of the other; English when every word is both."""
    vocabulary = class_vocabulary()
    english = vocabulary[ENGLISH] | COMMON_WORDS[ENGLISH]
    indonesian = vocabulary[INDONESIAN] | COMMON_WORDS[INDONESIAN]
    en_only = sum(1 for w in words if w in english and w not in indonesian)
    id_only = sum(1 for w in words if w in indonesian and w not in english)
    if en_only != id_only:
        return ENGLISH if en_only > id_only else INDONESIAN
    if en_only == 0 and all(w in english and w in indonesian for w in words):
        return ENGLISH  # loanwords named in both ("bus", "pizza"): CLIP's own tower is better
    return None


def _language_by_detector(text: str, excluded: set[str], *, latin: bool) -> str:
    scores = dict(_identifier().rank(text))
    scores[INDONESIAN] = scores.get(INDONESIAN, 0.0) + scores.pop(MALAY, 0.0)
    if not latin:  # no other script writes English or Indonesian
        excluded = excluded | {ENGLISH, INDONESIAN}
        script_language = _script_language(text)
        if script_language is not None and script_language not in excluded:
            return script_language
    weighted = {
        code: score * (1.0 if code in (ENGLISH, INDONESIAN) else OTHER_LANGUAGE_PRIOR)
        for code, score in scores.items()
        if code not in excluded
    }
    if not weighted:
        return _first_other(excluded)
    return max(weighted, key=weighted.__getitem__)


def _first_other(excluded: set[str]) -> str:
    return next(code for code in DETECTED_LANGUAGES if code not in excluded | {MALAY})


def _mostly_latin(text: str) -> bool:
    letters = [c for c in text if c.isalpha()]
    latin = sum(1 for c in letters if "LATIN" in unicodedata.name(c, ""))
    return latin * 2 >= len(letters)


def _script_language(text: str) -> str | None:
    """Scripts that one detected language writes alone: kana Japanese, hangul Korean, Thai;
    han without kana Chinese (the detector reads one han character as anything)."""
    names = [unicodedata.name(c, "") for c in text if c.isalpha()]
    if any(n.startswith(("HIRAGANA", "KATAKANA")) for n in names):
        return "ja"
    if any(n.startswith("HANGUL") for n in names):
        return "ko"
    if any(n.startswith("THAI") for n in names):
        return "th"
    if any(n.startswith("CJK") for n in names):
        return "zh"
    return None


@cache
def _identifier():
    """py3langid's identifier over DETECTED_LANGUAGES, built once per process (~0.7 s)."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier  # here: its model is 20 MB

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    identifier.set_languages([c for c in DETECTED_LANGUAGES if c in identifier.nb_classes])
    return _LockedIdentifier(identifier)


class _LockedIdentifier:
    """py3langid swaps arrays in set_languages; rank itself only reads. One lock anyway:
    it is cheap next to the search it serves, and the library promises nothing."""

    def __init__(self, identifier) -> None:
        self._identifier = identifier
        self._lock = threading.Lock()

    def rank(self, text: str) -> list[tuple[str, float]]:
        with self._lock:
            return self._identifier.rank(text)


# -- the class names as a vocabulary -----------------------------------------------------------

_vocabulary_lock = threading.Lock()
_vocabulary: tuple[float, dict[str, frozenset[str]]] | None = None


def class_vocabulary() -> dict[str, frozenset[str]]:
    """Every word of every class name and synonym, per language (en, id), lowercased; read
    from the database at most once a VOCABULARY_TTL_S, and again after a class changes."""
    global _vocabulary
    with _vocabulary_lock:
        if _vocabulary is not None and time.monotonic() - _vocabulary[0] < VOCABULARY_TTL_S:
            return _vocabulary[1]
    words: dict[str, set[str]] = {ENGLISH: set(), INDONESIAN: set()}
    for name, names, translations in ImageClass.objects.values_list(
        "name", "names", "translations"
    ).iterator(chunk_size=2000):
        words[ENGLISH].update(_words([name, *(names or [])]))
        indonesian = (translations or {}).get(INDONESIAN) or {}
        words[INDONESIAN].update(
            _words([indonesian.get("name") or "", *(indonesian.get("synonyms") or [])])
        )
    vocabulary = {code: frozenset(found) for code, found in words.items()}
    with _vocabulary_lock:
        _vocabulary = (time.monotonic(), vocabulary)
    return vocabulary


def forget_class_vocabulary() -> None:
    """Read the class names again on the next query (after an import, in tests)."""
    global _vocabulary
    with _vocabulary_lock:
        _vocabulary = None


@receiver(post_save, sender=ImageClass, dispatch_uid="routing-vocabulary-class-saved")
@receiver(post_delete, sender=ImageClass, dispatch_uid="routing-vocabulary-class-deleted")
@receiver(post_delete, sender=Dataset, dispatch_uid="routing-vocabulary-dataset-deleted")
def _class_changed(**kwargs) -> None:
    forget_class_vocabulary()


def _words(phrases: Iterable[str]) -> set[str]:
    found: set[str] = set()
    for phrase in phrases:
        for word in _WORD.findall(str(phrase).lower()):
            found.add(word)
            if "-" in word and not _is_reduplication(word):
                found.update(word.split("-"))
    return found


def _is_reduplication(word: str) -> bool:
    """Indonesian plurals and names like "kupu-kupu", "laba-laba": the halves are no words."""
    first, _, rest = word.partition("-")
    return first == rest


# -- the subject --------------------------------------------------------------------------------


def _request_pattern() -> re.Pattern[str]:
    phrases = sorted({p for group in REQUEST_WORDS.values() for p in group}, key=len, reverse=True)
    alternatives = "|".join(r"\s+".join(map(re.escape, p.split())) for p in phrases)
    return re.compile(rf"(?:{alternatives})(?=[\s,:]|$)[\s,:]*", re.IGNORECASE)


_REQUEST = _request_pattern()


def strip_request_words(text: str) -> str:
    """`text` without its leading request words ("cari", "show me", "pictures of", "a"), as
    long as something is left: a text of request words only is its own subject ("show me"
    stays "show me")."""
    text = " ".join(text.split())
    subject = text
    while True:
        match = _REQUEST.match(subject)
        if match is None or match.end() == 0:
            return subject
        rest = subject[match.end() :].strip()
        if not rest:  # request words only ("tolong cari"): nothing else to search for
            return text
        subject = rest


# -- routes -------------------------------------------------------------------------------------


def parse_route(route: Route | str) -> Route:
    try:
        return Route(str(route).strip().lower())
    except ValueError:
        raise RoutingError(
            _("Unknown text route %(route)s: use clip, multilingual or translate.")
            % {"route": repr(route)}
        ) from None


def translated_languages() -> frozenset[str]:
    """The languages TINYRAG_TRANSLATE_MODEL translates into English."""
    return frozenset(
        normalise_language(code) or "" for code in settings.TINYRAG_TRANSLATE_LANGUAGES
    ) - {"", OTHER}


def default_route(language: str) -> Route:
    """English -> CLIP. Others -> TINYRAG_TEXT_ROUTE: "translate" where the translation model
    is set and translates that language, else "multilingual" where TINYRAG_TEXT_MODEL is set;
    CLIP's own tower where neither is (the route it then is, recorded as such)."""
    if language == ENGLISH:
        return Route.CLIP
    configured = Route(settings.TINYRAG_TEXT_ROUTE)
    if (
        configured is Route.TRANSLATE
        and settings.TINYRAG_TRANSLATE_MODEL
        and language in translated_languages()
    ):
        return Route.TRANSLATE
    if configured is Route.CLIP or not settings.TINYRAG_TEXT_MODEL:
        return Route.CLIP
    return Route.MULTILINGUAL


def check_route(route: Route, language: str) -> None:
    """RoutingError when the route cannot take a text in `language` (translation from a
    language its model does not translate, or of English)."""
    if route is Route.TRANSLATE and language not in translated_languages():
        raise RoutingError(
            _(
                "The translate route translates %(languages)s into English, not "
                "%(language)s: choose another route or language."
            )
            % {
                "languages": ", ".join(sorted(translated_languages())) or "-",
                "language": language,
            }
        )


def default_routes() -> set[Route]:
    """The routes queries take by default: what a first search may need loaded."""
    return {default_route(ENGLISH), default_route(INDONESIAN)}
