"""Evaluation metrics: pure functions, numbers and strings in, numbers out (no ORM, no models).

Retrieval. A query's results are given best first as relevance flags (True: the result has the
query's class), optionally with their similarity scores:

- Recall@k: the share of queries with at least one hit in their top k.
- Precision@k: the mean share of the top k that are hits. The denominator is always k: a query
  that got fewer than k results counts the missing ones as misses.
- MRR: the mean of 1/(rank of the first hit), 0 for a query with no hit within the cutoff
  (the largest k of the run).

Ties. When scores are given, results with equal scores are ordered pessimistically, misses
before hits, so the arbitrary order FAISS returns inside a tie never flatters a metric.

Aggregates over no queries at all are None, not 0: no queries, no measurement.

Label inclusion. A description names a class when it contains one of the class's synonyms as
whole words, case-insensitively, in the description's language:

- English (words.txt synonyms): words apart by spaces or hyphens ("German-shepherd"), the last
  one with a simple plural (-s, -es, -y -> -ies).
- Bahasa Indonesia (the class's Indonesian name and synonyms): a word is a run of letters and
  digits that hyphens may join ("kupu-kupu" is one word, "mobil-mobilan" is not "mobil"); words
  of a name are apart by white space. Indonesian marks the plural by reduplicating the head
  noun, the first word of a name: "kucing-kucing", "kucing-kucing mesir", "bus-bus sekolah".
  Its enclitics attach to the word before them without changing it, so they are accepted on
  the last word: a possessive or definite -nya, -ku, -mu, then a particle -lah, -kah, -pun
  ("kucingnya", "bus sekolahnya", "kucing-kucingnyalah"). Nothing else: derivational affixes
  make other words ("kucingan", "perkucingan"), and "kucing2" and spaced "kucing kucing"
  are informal (the latter still contains "kucing", so a one-word name matches it anyway).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from search.languages import ENGLISH, INDONESIAN

Relevance = Sequence[bool]
Scores = Sequence[float]


def _check_k(k: int) -> None:
    if k < 1:
        raise ValueError(f"k must be a positive integer, got {k}")


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return sum(values) / len(values) if values else None


# --- one query --------------------------------------------------------------------------------


def pessimistic_order(relevant: Relevance, scores: Scores | None = None) -> list[bool]:
    """The relevance flags in rank order, ties in score broken with misses first."""
    flags = [bool(r) for r in relevant]
    if scores is None:
        return flags
    if len(scores) != len(flags):
        raise ValueError(f"{len(flags)} relevance flags but {len(scores)} scores")
    # sorted() is stable: results with different scores keep FAISS's order of decreasing score
    order = sorted(range(len(flags)), key=lambda i: (-float(scores[i]), flags[i]))
    return [flags[i] for i in order]


def first_hit_rank(relevant: Relevance, scores: Scores | None = None) -> int | None:
    """The 1-based rank of the first hit, or None when there is none."""
    for rank, hit in enumerate(pessimistic_order(relevant, scores), start=1):
        if hit:
            return rank
    return None


def hit_in_top_k(relevant: Relevance, k: int, scores: Scores | None = None) -> bool:
    _check_k(k)
    rank = first_hit_rank(relevant, scores)
    return rank is not None and rank <= k


def precision_at_k(relevant: Relevance, k: int, scores: Scores | None = None) -> float:
    _check_k(k)
    return sum(pessimistic_order(relevant, scores)[:k]) / k


def reciprocal_rank(relevant: Relevance, cutoff: int, scores: Scores | None = None) -> float:
    _check_k(cutoff)
    rank = first_hit_rank(relevant, scores)
    return 1.0 / rank if rank is not None and rank <= cutoff else 0.0


# --- many queries -----------------------------------------------------------------------------


def _pairs(queries: Sequence[Relevance], scores: Sequence[Scores] | None):
    if scores is None:
        return [(q, None) for q in queries]
    if len(scores) != len(queries):
        raise ValueError(f"{len(queries)} queries but {len(scores)} score lists")
    return list(zip(queries, scores, strict=True))


def recall_at_k(
    queries: Sequence[Relevance], k: int, scores: Sequence[Scores] | None = None
) -> float | None:
    _check_k(k)
    return _mean(float(hit_in_top_k(q, k, s)) for q, s in _pairs(queries, scores))


def mean_precision_at_k(
    queries: Sequence[Relevance], k: int, scores: Sequence[Scores] | None = None
) -> float | None:
    _check_k(k)
    return _mean(precision_at_k(q, k, s) for q, s in _pairs(queries, scores))


def mean_reciprocal_rank(
    queries: Sequence[Relevance], cutoff: int, scores: Sequence[Scores] | None = None
) -> float | None:
    _check_k(cutoff)
    return _mean(reciprocal_rank(q, cutoff, s) for q, s in _pairs(queries, scores))


def retrieval_summary(
    queries: Sequence[Relevance], ks: Sequence[int], scores: Sequence[Scores] | None = None
) -> dict[str, float | int | None]:
    """{"queries": n, "recall@k": ..., "precision@k": ... for each k, "mrr": ...}; MRR is cut
    off at the largest k."""
    if not ks:
        raise ValueError("at least one k is needed")
    summary: dict[str, float | int | None] = {"queries": len(queries)}
    for k in sorted(set(ks)):
        summary[f"recall@{k}"] = recall_at_k(queries, k, scores)
        summary[f"precision@{k}"] = mean_precision_at_k(queries, k, scores)
    summary["mrr"] = mean_reciprocal_rank(queries, max(ks), scores)
    return summary


# --- classification ---------------------------------------------------------------------------


def true_class_rank(scores: Scores, true_index: int) -> int:
    """The 1-based rank of the true class among all classes' scores; a class tied with the true
    one ranks ahead of it (pessimistic)."""
    if not 0 <= true_index < len(scores):
        raise ValueError(f"true class {true_index} is not among {len(scores)} classes")
    true_score = float(scores[true_index])
    ahead = sum(1 for i, s in enumerate(scores) if i != true_index and float(s) >= true_score)
    return 1 + ahead


def top_k_accuracy(ranks: Sequence[int], k: int) -> float | None:
    """The share of true-class ranks within the top k."""
    _check_k(k)
    return _mean(float(rank <= k) for rank in ranks)


def share(flags: Iterable[bool]) -> float | None:
    """The share of True among flags; None for none."""
    return _mean(float(bool(f)) for f in flags)


# --- label inclusion --------------------------------------------------------------------------


def _word_pattern(word: str, *, last: bool) -> str:
    escaped = re.escape(word)
    if not last:
        return escaped
    lowered = word.lower()
    if len(lowered) > 1 and lowered.endswith("y") and lowered[-2] not in "aeiou":
        # butterfly -> butterflies (and butterflys, a common misspelling, harmlessly)
        return f"(?:{escaped}|{re.escape(word[:-1])}ies)s?"
    return f"{escaped}(?:e?s)?"


@lru_cache(maxsize=4096)
def synonym_pattern(synonym: str, language: str = ENGLISH) -> re.Pattern[str] | None:
    """A case-insensitive, whole-word regular expression for one synonym in `language` (None
    when blank): see the module's docstring for what each language accepts.

    English: words may be separated by spaces or hyphens ("German shepherd" = "german-shepherd"),
    and the last word may take a simple plural ("lemons", "buses", "butterflies").
    """
    if language == INDONESIAN:
        return _indonesian_pattern(synonym)
    words = re.split(r"[\s\-]+", synonym.strip())
    words = [w for w in words if w]
    if not words:
        return None
    parts = [_word_pattern(w, last=i == len(words) - 1) for i, w in enumerate(words)]
    body = r"[\s\-]+".join(parts)
    return re.compile(rf"(?<!\w){body}(?!\w)", re.IGNORECASE)


# Indonesian enclitics, in the order they stack: a pronoun (or -nya), then a particle.
_INDONESIAN_CLITICS = r"(?:nya|ku|mu)?(?:lah|kah|pun)?"
# A word ends where no letter (or a hyphen joining one) follows, starts where none precedes.
_ID_START = r"(?<!\w)(?<!\w-)"
_ID_END = r"(?!\w)(?!-\w)"


def _indonesian_pattern(synonym: str) -> re.Pattern[str] | None:
    words = synonym.split()
    if not words:
        return None
    parts = [re.escape(w) for w in words]
    parts[0] = f"{parts[0]}(?:-{parts[0]})?"  # the head noun reduplicated: the plural
    parts[-1] += _INDONESIAN_CLITICS
    body = r"\s+".join(parts)
    return re.compile(f"{_ID_START}{body}{_ID_END}", re.IGNORECASE)


def rival_names(own: Iterable[str], others: Iterable[str]) -> list[str]:
    """The names among `others` (other classes' names) that begin with one of `own` as whole
    words: in Indonesian the head noun comes first, so "singa gunung" (cougar) contains
    "singa" (lion) and "jeruk nipis" (lemon) contains "jeruk" (orange)."""
    prefixes = [o.strip().casefold() + " " for o in own if o.strip()]
    return sorted({n for n in others if any(n.strip().casefold().startswith(p) for p in prefixes)})


def names_class(
    text: str, synonyms: Iterable[str], language: str = ENGLISH, rivals: Iterable[str] = ()
) -> bool:
    """Whether `text` names the class: any synonym, as whole words, in the forms `language`
    gives a noun (English plurals; Indonesian reduplication and enclitics). Words that are
    part of a `rivals` name (another class's, see rival_names) do not count: "jeruk nipis"
    names the lemon, not the orange ("jeruk")."""
    for rival in rivals:
        pattern = synonym_pattern(rival, language)
        if pattern is not None:
            text = pattern.sub(" ", text)
    for synonym in synonyms:
        pattern = synonym_pattern(synonym, language)
        if pattern is not None and pattern.search(text):
            return True
    return False


def label_inclusion_rate(
    texts: Sequence[str],
    synonyms: Sequence[Sequence[str]],
    language: str = ENGLISH,
    rivals: Sequence[Sequence[str]] | None = None,
) -> float | None:
    """LIR: the share of texts that name their own class (texts[i] against synonyms[i], not
    counting rivals[i]: names of other classes that contain one of them)."""
    if len(texts) != len(synonyms):
        raise ValueError(f"{len(texts)} texts but {len(synonyms)} synonym lists")
    rivals = rivals if rivals is not None else [()] * len(texts)
    return share(
        names_class(t, s, language, r) for t, s, r in zip(texts, synonyms, rivals, strict=True)
    )
