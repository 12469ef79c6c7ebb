"""The class picker of the search form: the classes people can type, and what each means.

The picker lists each class by its name in the page language, sorted as people read; what a
person types is taken in either language: a name, a synonym or the wnid.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from search.catalog.models import ImageClass
from search.languages import PAGE_LANGUAGES, page_language


def _key(text: str) -> str:
    """What two spellings of one name share: case and runs of spaces do not count."""
    return " ".join(text.split()).casefold()


@dataclass(frozen=True)
class ClassOptions:
    """The class picker's entries in the order shown (by label): each class by its name in
    the page language, or "name (wnid)" where two classes share that name."""

    entries: list[tuple[str, str]]  # (label, wnid)
    # name or synonym (_key) -> the wnids it names, in any page language: the class's names
    # first (``names``), then its synonyms (``synonyms``), so a name wins over a synonym.
    names: dict[str, set[str]] = field(default_factory=dict)
    synonyms: dict[str, set[str]] = field(default_factory=dict)
    # wnid -> its names in the other page languages, for a hint beside the label.
    other_names: dict[str, list[str]] = field(default_factory=dict)

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def wnid_of(self, typed: str) -> str | None:
        """The class meant by `typed`, in any case: a label as listed, a wnid (as a link or an
        old form sends it), or a name or synonym in any page language that names one class
        only. None for anything else, a name two classes share included."""
        wanted = _key(typed)
        if not wanted:
            return None
        for label, wnid in self.entries:
            if wanted in (_key(label), wnid.casefold()):
                return wnid
        for table in (self.names, self.synonyms):
            matches = table.get(wanted, set())
            if matches:
                return next(iter(matches)) if len(matches) == 1 else None
        return None

    @property
    def hinted(self) -> list[tuple[str, str, str]]:
        """(label, wnid, hint) per entry, for a template: e.g. a datalist option whose label
        attribute shows the class's name in the other language (and lets it be found by it)."""
        return [(label, wnid, self.hint(wnid)) for label, wnid in self.entries]

    def hint(self, wnid: str) -> str:
        """The class's names in the other language(s), e.g. for a datalist option's label."""
        return ", ".join(self.other_names.get(wnid, []))


def class_options(classes: Iterable[ImageClass], language: str | None = None) -> ClassOptions:
    """The picker for `classes` in `language` (default: the page's): labels in that language,
    sorted case-insensitively (then by wnid); every name of every page language accepted."""
    language = page_language(language)
    classes = list(classes)
    labels = {c.wnid: c.name_in(language) for c in classes}
    shared = Counter(_key(label) for label in labels.values())
    ordered = sorted(classes, key=lambda c: (_key(labels[c.wnid]), c.wnid))
    entries = [
        (
            labels[c.wnid] if shared[_key(labels[c.wnid])] == 1 else f"{labels[c.wnid]} ({c.wnid})",
            c.wnid,
        )
        for c in ordered
    ]
    names: dict[str, set[str]] = defaultdict(set)
    synonyms: dict[str, set[str]] = defaultdict(set)
    other_names: dict[str, list[str]] = {}
    for c in classes:
        for lang in PAGE_LANGUAGES:
            first, *rest = c.names_in(lang)
            names[_key(first)].add(c.wnid)
            for synonym in rest:
                synonyms[_key(synonym)].add(c.wnid)
        other_names[c.wnid] = [
            c.name_in(lang)
            for lang in PAGE_LANGUAGES
            if lang != language and _key(c.name_in(lang)) != _key(labels[c.wnid])
        ]
    return ClassOptions(entries, dict(names), dict(synonyms), other_names)
