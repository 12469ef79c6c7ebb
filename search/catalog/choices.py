"""The class picker of the search form: the classes people can type, and what each means."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass


@dataclass(frozen=True)
class ClassOptions:
    """The class picker's entries, in the order given (by name, as people read): each class by
    its name, or "name (wnid)" where two classes share a name."""

    entries: list[tuple[str, str]]  # (label, wnid)

    def __iter__(self):
        return iter(self.entries)

    def wnid_of(self, typed: str) -> str | None:
        """A label typed in any case, or a wnid as sent by a link or an old form."""
        wanted = typed.casefold()
        for label, wnid in self.entries:
            if wanted in (label.casefold(), wnid.casefold()):
                return wnid
        return None


def class_options(classes) -> ClassOptions:
    classes = list(classes)
    names = Counter(c.name.casefold() for c in classes)
    return ClassOptions(
        [
            (c.name if names[c.name.casefold()] == 1 else f"{c.name} ({c.wnid})", c.wnid)
            for c in classes
        ]
    )
