"""Which models text and image queries need with the settings as they are, read from the
settings alone (no torch, no filesystem): what `setup_models` fetches by default, what the
first-run page and `doctor` count, what a warm-up loads.

CLIP always (images, English text, the translate route's English); the multilingual encoder
when queries not in English take it (TINYRAG_TEXT_ROUTE multilingual, or translate for the
languages the translation model does not translate); the translation model on the translate
route. search/queries/routing.py routes each query by these same settings.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from django.conf import settings

from search.ml.names import SENTENCE_TRANSFORMERS_MARKER, SENTENCE_TRANSFORMERS_ORG

# The hub organisation of bare MarianMT names ("opus-mt-id-en"), as on the hub.
MARIAN_ORG = "Helsinki-NLP"
MARIAN_MARKER = "config.json"


class QueryModelKind(StrEnum):
    CLIP = "clip"
    TEXT = "text"  # the multilingual text encoder
    TRANSLATE = "translate"  # the translation model


@dataclass(frozen=True)
class QueryModel:
    kind: QueryModelKind
    setting: str
    model_id: str

    @property
    def bare_name_org(self) -> str:
        return MARIAN_ORG if self.kind is QueryModelKind.TRANSLATE else SENTENCE_TRANSFORMERS_ORG

    @property
    def marker(self) -> str:
        """The file at a snapshot's root that shows it is downloaded."""
        if self.kind is QueryModelKind.TRANSLATE:
            return MARIAN_MARKER
        return SENTENCE_TRANSFORMERS_MARKER


def text_route() -> str:
    return str(settings.TINYRAG_TEXT_ROUTE).strip().lower()


def multilingual_needed() -> bool:
    """Queries not in English take the multilingual encoder (some of them, on the translate
    route: those in a language the translation model does not translate)."""
    return bool(settings.TINYRAG_TEXT_MODEL) and text_route() in ("multilingual", "translate")


def translator_needed() -> bool:
    return bool(settings.TINYRAG_TRANSLATE_MODEL) and text_route() == "translate"


def query_models() -> list[QueryModel]:
    """The models searches need, CLIP first."""
    models = [
        QueryModel(QueryModelKind.CLIP, "TINYRAG_CLIP_MODEL", str(settings.TINYRAG_CLIP_MODEL))
    ]
    if multilingual_needed():
        models.append(
            QueryModel(QueryModelKind.TEXT, "TINYRAG_TEXT_MODEL", str(settings.TINYRAG_TEXT_MODEL))
        )
    if translator_needed():
        models.append(
            QueryModel(
                QueryModelKind.TRANSLATE,
                "TINYRAG_TRANSLATE_MODEL",
                str(settings.TINYRAG_TRANSLATE_MODEL),
            )
        )
    return models
