"""Class names in the page languages: TinyRAG's table of the TinyImageNet classes in Bahasa
Indonesia, and the optional `class_names.tsv` an image folder may bring.

Both become `ImageClass.translations` (search/catalog/models.py) when `import_dataset` runs:
``{"id": {"name": ..., "synonyms": [name, ...], "source": ...}}``.

An image folder's own names
---------------------------
A collection imported with ``--format imagefolder`` may hold, at its root, a UTF-8 file
``class_names.tsv``: tab-separated, one row per class and language, under this header::

    class	language	name	synonyms
    tabby_cat	en	tabby cat	tabby
    tabby_cat	id	kucing belang	kucing tabby; kucing loreng

- ``class``: the class's folder name, as the collection's folders spell it.
- ``language``: ``en`` or ``id`` (search/languages.py). An ``en`` row replaces the English
  name taken from the folder name ("tabby_cat" -> "tabby cat"); an ``id`` row gives the
  Indonesian name the pages show when the page language is Bahasa Indonesia.
- ``name``: the name pages show (at most 255 characters).
- ``synonyms`` (optional column, may be empty): other names a person may type, ``; ``
  between them; the class picker accepts them too.
- ``source`` (optional column): where the name came from, kept with it (default
  ``collection``).

Blank lines and lines starting with ``#`` are skipped. A class without a row keeps its
folder name (and English where it has no Indonesian one). A file with any bad line (a class
the folders lack, another language, an empty name, a second row for the same class and
language, a missing column) stops the check and the import with every bad line named, before
anything is written: nothing imported before is changed or lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from pathlib import Path

from search.catalog.datasets import DatasetError
from search.languages import ENGLISH, INDONESIAN, PAGE_LANGUAGES

DATA_DIR = Path(__file__).resolve().parent / "data"
TINYIMAGENET_NAMES = DATA_DIR / "tinyimagenet-200-id.tsv"
# Where a TinyImageNet row's name came from (the table's `source` column).
SOURCES = frozenset({"wordnet-bahasa", "wiktionary-cldr", "tinyrag"})
CLASS_NAMES_FILE = "class_names.tsv"  # an image folder's own names, at its root
COLLECTION_SOURCE = "collection"
NAME_MAX_LENGTH = 255  # ImageClass.name
SHOWN_PROBLEMS = 10  # bad lines an error names before "and N more"
REQUIRED_COLUMNS = ("class", "language", "name")
OPTIONAL_COLUMNS = ("synonyms", "source")


@dataclass(frozen=True)
class ClassName:
    """A class's name in one language and the other names a person may type."""

    name: str
    synonyms: tuple[str, ...] = ()  # without the name
    source: str = COLLECTION_SOURCE

    @property
    def names(self) -> tuple[str, ...]:
        """The name first, then the synonyms (as ImageClass.names holds the English ones)."""
        return (self.name, *self.synonyms)

    def as_translation(self) -> dict:
        """The value ImageClass.translations holds for the language."""
        return {"name": self.name, "synonyms": list(self.names), "source": self.source}


def split_names(text: str) -> tuple[str, ...]:
    """`; `-separated names, each stripped, empty ones and repeats (in any case) dropped."""
    names, seen = [], set()
    for part in text.split(";"):
        name = " ".join(part.split())
        if name and name.casefold() not in seen:
            seen.add(name.casefold())
            names.append(name)
    return tuple(names)


def _rows(path: Path) -> list[tuple[int, list[str]]]:
    """(line number, fields) of every line that is not blank or a # comment."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DatasetError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    rows = []
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append((number, line.split("\t")))
    return rows


def _fail(path: Path, problems: list[str]) -> None:
    shown = "; ".join(problems[:SHOWN_PROBLEMS])
    more = f"; and {len(problems) - SHOWN_PROBLEMS} more" if len(problems) > SHOWN_PROBLEMS else ""
    raise DatasetError(f"{path}: {shown}{more}")


# --- TinyRAG's table of the TinyImageNet classes -------------------------------------------


@cache
def tinyimagenet_names() -> dict[str, ClassName]:
    """wnid -> the class's Indonesian name, from search/catalog/data/tinyimagenet-200-id.tsv
    (columns wnid, english, name, synonyms, source, not_used; see data/README.md)."""
    rows = _rows(TINYIMAGENET_NAMES)
    header, *body = rows
    columns = {c: i for i, c in enumerate(header[1])}
    problems, names = [], {}
    for number, fields in body:
        row = dict(zip(columns, fields, strict=False))
        wnid, name, source = row.get("wnid", ""), row.get("name", "").strip(), row.get("source")
        if len(fields) != len(columns) or not wnid or not name or source not in SOURCES:
            problems.append(f"line {number}: {len(columns)} fields with a name and a source")
            continue
        synonyms = tuple(s for s in split_names(row["synonyms"]) if s.casefold() != name.casefold())
        names[wnid] = ClassName(name, synonyms, source)
    if problems:
        _fail(TINYIMAGENET_NAMES, problems)
    return names


def tinyimagenet_translations(wnid: str) -> dict[str, dict]:
    """ImageClass.translations for a TinyImageNet class (none for a wnid the table lacks)."""
    name = tinyimagenet_names().get(wnid)
    return {INDONESIAN: name.as_translation()} if name else {}


# --- an image folder's own class_names.tsv --------------------------------------------------


def read_class_names_file(path: Path, classes: set[str]) -> dict[str, dict[str, ClassName]]:
    """class -> language -> ClassName from an image folder's class_names.tsv (module
    docstring); DatasetError naming every bad line. `classes`: the folder's class names."""
    rows = _rows(path)
    if not rows:
        return {}
    (header_line, header), *body = rows
    header = [h.strip().casefold() for h in header]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    unknown = [c for c in header if c not in REQUIRED_COLUMNS + OPTIONAL_COLUMNS]
    if missing or unknown or len(set(header)) != len(header):
        expected = "\t".join((*REQUIRED_COLUMNS, OPTIONAL_COLUMNS[0]))
        _fail(path, [f"line {header_line}: the header must be {expected!r} (source optional)"])
    problems: list[str] = []
    found: dict[str, dict[str, ClassName]] = {}
    first_line: dict[tuple[str, str], int] = {}
    languages = ", ".join(PAGE_LANGUAGES)
    for number, fields in body:
        if len(fields) > len(header):
            problems.append(f"line {number}: {len(fields)} fields, the header has {len(header)}")
            continue
        row = dict(zip(header, (f.strip() for f in fields), strict=False))
        cls, language, name = row.get("class", ""), row.get("language", ""), row.get("name", "")
        name = " ".join(name.split())
        where = f"line {number}"
        if cls not in classes:
            problems.append(f"{where}: there is no class folder called {cls!r}")
        elif language.lower() not in PAGE_LANGUAGES:
            problems.append(f"{where}: the language must be one of {languages}, not {language!r}")
        elif not name:
            problems.append(f"{where}: the name of {cls!r} is empty")
        elif len(name) > NAME_MAX_LENGTH:
            problems.append(f"{where}: the name is longer than {NAME_MAX_LENGTH} characters")
        elif (cls, language.lower()) in first_line:
            earlier = first_line[(cls, language.lower())]
            problems.append(f"{where}: {cls!r} in {language!r} is already named on line {earlier}")
        else:
            language = language.lower()
            first_line[(cls, language)] = number
            synonyms = tuple(
                s[:NAME_MAX_LENGTH]
                for s in split_names(row.get("synonyms", ""))
                if s.casefold() != name.casefold()
            )
            source = row.get("source") or COLLECTION_SOURCE
            found.setdefault(cls, {})[language] = ClassName(name, synonyms, source)
    if problems:
        _fail(path, problems)
    return found


def english_names(names: dict[str, ClassName]) -> tuple[str, ...] | None:
    """The English names a class_names.tsv gives a class (None: keep the folder's)."""
    english = names.get(ENGLISH)
    return english.names if english else None


def translations_of(names: dict[str, ClassName]) -> dict[str, dict]:
    """ImageClass.translations from a class's rows of class_names.tsv (English excluded: it
    is ImageClass.name/names)."""
    return {lang: n.as_translation() for lang, n in sorted(names.items()) if lang != ENGLISH}
