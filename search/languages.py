"""The languages TinyRAG's pages, class names and descriptions come in: English and Bahasa
Indonesia. Query texts may be in any language (search.queries.routing reads them); everything
TinyRAG itself writes is in one of these two.

Language codes are ISO 639-1 ("en", "id"), as in settings.LANGUAGES. Anything else that names
a page language ("id-ID", "en-us", a browser's "in") comes down to one of them with
`page_language()`.
"""

from __future__ import annotations

from django.utils import translation
from django.utils.translation import gettext_lazy as _

ENGLISH = "en"
INDONESIAN = "id"
PAGE_LANGUAGES = (ENGLISH, INDONESIAN)
# The page languages as the pages name them, in the page language (the search form's query
# language, the result header, the evaluation's runs per language).
PAGE_LANGUAGE_NAMES = {ENGLISH: _("English"), INDONESIAN: _("Bahasa Indonesia")}
# "in" is the old ISO 639 code for Indonesian that some systems still send.
_ALIASES = {"in": INDONESIAN}


def page_language(code: str | None = None) -> str:
    """One of PAGE_LANGUAGES for `code` (default: the active language); English for anything
    else, as Django falls back to LANGUAGE_CODE."""
    code = (code or translation.get_language() or ENGLISH).lower().replace("_", "-")
    base = code.split("-", 1)[0]
    base = _ALIASES.get(base, base)
    return base if base in PAGE_LANGUAGES else ENGLISH


def language_name(code: str) -> str:
    """Any language's name in the page language (the page languages as PAGE_LANGUAGE_NAMES
    says, others as Django's own catalogue does); its code where Django does not know it."""
    if code in PAGE_LANGUAGE_NAMES:
        return str(PAGE_LANGUAGE_NAMES[code])
    try:
        return str(translation.get_language_info(code)["name_translated"])
    except KeyError:
        return code
