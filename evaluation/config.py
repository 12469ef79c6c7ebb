"""What an evaluation run measures and how: its configuration, checked before anything runs.

The configuration is stored on the run (`EvaluationRun.configuration`), so a run says exactly
what was asked of it; the form, the command and the run service all validate through here.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace

from django.conf import settings
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy, pgettext_lazy

from evaluation.models import EvaluationRun
from search.catalog.models import Image
from search.descriptions.models import Description
from search.errors import InvalidInput
from search.languages import ENGLISH, PAGE_LANGUAGES
from search.queries.routing import Route, RoutingError, check_route, parse_route

MODES = ("image", "text", "zeroshot", "rag")
TEXT_ROUTES = tuple(Route)  # clip, multilingual, translate (search.queries.routing)
ROUTE_LABELS = {
    Route.CLIP: gettext_lazy("CLIP's text tower"),
    Route.MULTILINGUAL: gettext_lazy("the multilingual encoder"),
    Route.TRANSLATE: gettext_lazy("translated to English, then CLIP"),
}
ROUTE_SHORT_LABELS = {  # in a chart's narrow margin
    Route.CLIP: pgettext_lazy("text route", "CLIP"),
    Route.MULTILINGUAL: pgettext_lazy("text route", "multilingual"),
    Route.TRANSLATE: pgettext_lazy("text route", "translated"),
}
LANGUAGE_MODES = ("text", "zeroshot", "rag")  # what the language changes (image: nothing)
RAG_CONTEXTS = tuple(Description.Context.values)  # ("retrieved", "none")
DEFAULT_KS = (1, 5, 10)
DEFAULT_RAG_SAMPLE = 50  # each sample is one VLM generation per context: minutes, not hours
ZEROSHOT_KS = (1, 5)  # top-k accuracies of zero-shot classification
SEED_RANGE = (-(2**31), 2**31 - 1)  # EvaluationRun.seed: a 32-bit IntegerField
SAMPLE_MAX = 2**31 - 1  # EvaluationRun.sample_size: a PositiveIntegerField
# How the run searches: exactly (a flat search over the published index's embeddings, whatever
# its type: the metrics describe the embeddings, not an approximation), or the index as served.
EXACT_SEARCH, INDEX_SEARCH = "exact", "index"
SEARCHES = (EXACT_SEARCH, INDEX_SEARCH)


class EvaluationError(InvalidInput):
    """The run cannot go on; the message says why and what to do."""


@dataclass(frozen=True)
class EvaluationConfig:
    """What to measure and how; stored on the run as its configuration."""

    mode: str = EvaluationRun.Mode.ALL
    index_name: str = ""  # empty: TINYRAG_INDEX_NAME
    split: str = Image.Split.VAL
    sample: int | None = None  # query images for image/zeroshot; None: the whole split
    rag_sample: int | None = None  # None: DEFAULT_RAG_SAMPLE (or `sample` when mode is rag)
    seed: int = 0
    ks: tuple[int, ...] = DEFAULT_KS
    rag_contexts: tuple[str, ...] = RAG_CONTEXTS
    batch_size: int = 64
    workers: int = 0  # DataLoader processes decoding query images (0: in this process)
    # The language of the text queries (the class names in it) and of the descriptions, and
    # the route the text queries take (None: the product's default for that language).
    language: str = ENGLISH
    text_route: str | None = None
    search: str = EXACT_SEARCH  # SEARCHES

    @property
    def modes(self) -> tuple[str, ...]:
        return MODES if self.mode == EvaluationRun.Mode.ALL else (self.mode,)

    @property
    def resolved_index_name(self) -> str:
        return self.index_name or settings.TINYRAG_INDEX_NAME

    @property
    def resolved_rag_sample(self) -> int:
        if self.rag_sample is not None:
            return self.rag_sample
        if self.mode == EvaluationRun.Mode.RAG and self.sample is not None:
            return self.sample
        return DEFAULT_RAG_SAMPLE

    def validated(self) -> EvaluationConfig:
        """This configuration, normalised (ks sorted, unique), or EvaluationError."""
        if self.mode not in EvaluationRun.Mode.values:
            raise EvaluationError(
                _("mode must be one of %(choices)s; got %(mode)s")
                % {"choices": ", ".join(EvaluationRun.Mode.values), "mode": repr(self.mode)}
            )
        if self.split not in Image.Split.values:
            raise EvaluationError(
                _("split must be one of %(choices)s") % {"choices": ", ".join(Image.Split.values)}
            )
        check_ks(self.ks)
        for value, message in (
            (self.sample, _("the sample must be a positive number of images, at most %(max)s")),
            (
                self.rag_sample,
                _("the rag sample must be a positive number of images, at most %(max)s"),
            ),
        ):
            if value is not None and not 1 <= value <= SAMPLE_MAX:
                raise EvaluationError(message % {"max": f"{SAMPLE_MAX:,}"})
        if not SEED_RANGE[0] <= self.seed <= SEED_RANGE[1]:
            raise EvaluationError(
                _("the seed must be between %(low)s and %(high)s")
                % {"low": f"{SEED_RANGE[0]:,}", "high": f"{SEED_RANGE[1]:,}"}
            )
        unknown = set(self.rag_contexts) - set(RAG_CONTEXTS)
        if not self.rag_contexts or unknown:
            raise EvaluationError(
                _("RAG contexts are %(choices)s") % {"choices": ", ".join(RAG_CONTEXTS)}
            )
        if self.search not in SEARCHES:
            raise EvaluationError(
                _("search must be one of %(choices)s; got %(search)s")
                % {"choices": ", ".join(SEARCHES), "search": repr(self.search)}
            )
        if self.batch_size < 1:
            raise EvaluationError(_("the batch size must be positive"))
        if self.language not in PAGE_LANGUAGES:
            raise EvaluationError(
                _("language must be one of %(choices)s; got %(language)s")
                % {"choices": ", ".join(PAGE_LANGUAGES), "language": repr(self.language)}
            )
        route = None
        if self.text_route:
            try:
                route = parse_route(self.text_route)
                check_route(route, self.language)
            except RoutingError as exc:
                raise EvaluationError(str(exc)) from None
        contexts = tuple(c for c in RAG_CONTEXTS if c in self.rag_contexts)
        return replace(
            self, ks=tuple(sorted(set(self.ks))), rag_contexts=contexts,
            workers=max(0, self.workers), text_route=route.value if route else None,
        )  # fmt: skip

    def to_json(self) -> dict:
        data = asdict(self)
        data.update(ks=list(self.ks), rag_contexts=list(self.rag_contexts))
        data["index_name"] = self.resolved_index_name
        return data

    @classmethod
    def from_json(cls, data: Mapping) -> EvaluationConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        for key in ("ks", "rag_contexts"):
            if key in known:
                known[key] = tuple(known[key])
        return cls(**known)


def check_ks(ks: Sequence[int], *, given: str | None = None) -> None:
    """EvaluationError unless every cut-off k is one a search can return: 1 up to its own
    limit, TINYRAG_TOP_K_MAX."""
    limit = settings.TINYRAG_TOP_K_MAX
    given = _("e.g. 1,5,10") if given is None else given
    if not ks or any(not 1 <= k <= limit for k in ks):
        raise EvaluationError(
            _("k values must be positive integers up to %(limit)s, %(given)s")
            % {"limit": limit, "given": given}
        )


def parse_ks(text: str) -> tuple[int, ...]:
    """ "1,5,10" -> (1, 5, 10); EvaluationError for anything else."""
    try:
        ks = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise EvaluationError(
            _("k values are comma-separated integers, e.g. 1,5,10; got %(text)s")
            % {"text": repr(text)}
        ) from None
    check_ks(ks, given=_("got %(text)s") % {"text": repr(text)})
    return tuple(sorted(set(ks)))
