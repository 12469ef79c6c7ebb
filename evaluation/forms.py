"""The staff form that starts an evaluation run: only choices that can work on this server
(published indexes of imported datasets, splits that have labels, RAG only when descriptions
are on), defaults that cost minutes, not hours, and the run's cost estimate, which a long run
must be confirmed against before it starts."""

from __future__ import annotations

from django import forms
from django.conf import settings
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from evaluation import estimate, selectors
from evaluation.config import (
    RAG_CONTEXTS,
    ROUTE_LABELS,
    SAMPLE_MAX,
    SEED_RANGE,
    EvaluationConfig,
    EvaluationError,
    parse_ks,
)
from evaluation.models import EvaluationRun
from search.descriptions.models import Description
from search.languages import ENGLISH, PAGE_LANGUAGE_NAMES
from search.ml.query_models import QueryModel, QueryModelKind
from search.ml.registry import describer_enabled
from search.ops.health import model_missing
from search.queries.routing import Route, RoutingError, check_route

DEFAULT_SAMPLE = 1000  # query images: 5 per class of TinyImageNet, a few seconds of work
DEFAULT_RAG_SAMPLE = 10  # images described: 20 generations with both contexts
RAG_SAMPLE_MAX = 2000  # a bound on what one form can ask of the describer

Mode = EvaluationRun.Mode
MODE_LABELS = {
    Mode.IMAGE: _("Image → image retrieval"),
    Mode.TEXT: _("Text → image retrieval"),
    Mode.ZEROSHOT: _("Zero-shot classification"),
    Mode.RAG: _("Descriptions (RAG)"),
    Mode.ALL: _("All of them"),
}
CONTEXT_LABELS = {
    Description.Context.RETRIEVED: _("with the retrieved neighbours' labels"),
    Description.Context.NONE: _("with the image only"),
}
LANGUAGE_LABELS = PAGE_LANGUAGE_NAMES


class RunForm(forms.Form):
    mode = forms.ChoiceField(
        label=_("What to measure"), initial=Mode.IMAGE,
        help_text=_("Text: one query per class name. Descriptions: does the text name the "
                    "true class?"),
    )  # fmt: skip
    index_name = forms.ChoiceField(label=_("Index"))
    split = forms.ChoiceField(label=_("Query images from the split"))
    sample = forms.IntegerField(
        label=_("Query images"),
        required=False,
        min_value=1,
        max_value=SAMPLE_MAX,
        initial=DEFAULT_SAMPLE,
        help_text=_("Spread evenly over the classes. Leave empty for the whole split."),
    )
    ks = forms.CharField(
        label=_("k values"), initial="1,5,10", max_length=100,
        help_text=_("Comma-separated: Recall@k and Precision@k for each."),
    )  # fmt: skip
    seed = forms.IntegerField(
        label=_("Seed"), initial=0, min_value=SEED_RANGE[0], max_value=SEED_RANGE[1],
        help_text=_("The same seed picks the same images."),
    )  # fmt: skip
    language = forms.ChoiceField(
        label=_("Language"), choices=list(LANGUAGE_LABELS.items()), initial=ENGLISH,
        required=False,  # a form from before languages: English
        help_text=_("Text queries use the class names in it; descriptions are written in it "
                    "and must name the class in it."),
    )  # fmt: skip
    text_route = forms.ChoiceField(
        label=_("Text route"), required=False, initial="",
        help_text=_("How the text queries are embedded. Compare the routes on the same "
                    "language."),
    )  # fmt: skip
    rag_sample = forms.IntegerField(
        label=_("Images to describe"), min_value=1, max_value=RAG_SAMPLE_MAX,
        initial=DEFAULT_RAG_SAMPLE, required=False,
        help_text=_("One generation per image and context. Used when measuring descriptions."),
    )  # fmt: skip
    rag_contexts = forms.MultipleChoiceField(
        label=_("Describe each image"),
        choices=[(c, CONTEXT_LABELS[c]) for c in RAG_CONTEXTS],
        initial=list(RAG_CONTEXTS),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    confirm = forms.BooleanField(label=_("Yes, start this long run"), required=False)

    def __init__(self, *args, starting: bool = False, **kwargs):
        """`starting`: the form is submitted to start the run (a long one must be confirmed),
        not to see its estimate."""
        super().__init__(*args, **kwargs)
        self.starting = starting
        self.estimate: estimate.Estimate | None = None
        self.describer = describer_enabled()
        self.options = {option.name: option for option in selectors.index_options()}

        modes = [m for m in Mode.values if m != Mode.RAG or self.describer]
        labels = dict(MODE_LABELS)
        if not self.describer:
            labels[Mode.ALL] = _("All but descriptions (they are off here)")
        self.fields["mode"].choices = [(m, labels[m]) for m in modes]

        names = list(self.options)
        self.fields["index_name"].choices = [(n, self._index_label(n)) for n in names]
        default = settings.TINYRAG_INDEX_NAME
        self.fields["index_name"].initial = (
            default if default in self.options else next(iter(names), None)
        )

        chosen = self.options.get(self.data.get("index_name") or self.fields["index_name"].initial)
        labelled = chosen.labelled if chosen else {}
        held = set(chosen.manifest.splits) if chosen else set()
        self.fields["split"].choices = [
            (
                split,
                gettext("%(split)s (in the index: not held out)") % {"split": split}
                if split in held
                else split,
            )
            for split in sorted(labelled, key=lambda s: (s in held, s))
        ]
        held_out = [s for s in labelled if s not in held]
        self.fields["split"].initial = (
            "val" if "val" in held_out else next(iter(held_out or labelled), None)
        )
        if chosen and chosen.unlabelled:
            splits = ", ".join(chosen.unlabelled)
            self.fields["split"].help_text = gettext(
                "Not offered: %(splits)s, whose images have no labels to score against."
            ) % {"splits": splits}
        self.fields["text_route"].choices = [("", _("The default for the language"))] + [
            (route.value, ROUTE_LABELS[route]) for route in self.available_routes()
        ]

    @property
    def usable(self) -> bool:
        """Whether there is anything to evaluate at all (an index with labelled images)."""
        return bool(self.options)

    @staticmethod
    def available_routes() -> list[Route]:
        """The text routes this server has the models for: CLIP always, the multilingual
        encoder and the translator when they are set and on disk (setup_models fetches the
        translator only on the translate route: a run must not fail minutes in)."""
        routes = [Route.CLIP]
        for route, kind, setting in (
            (Route.MULTILINGUAL, QueryModelKind.TEXT, "TINYRAG_TEXT_MODEL"),
            (Route.TRANSLATE, QueryModelKind.TRANSLATE, "TINYRAG_TRANSLATE_MODEL"),
        ):
            model_id = str(getattr(settings, setting) or "")
            if model_id and not model_missing(QueryModel(kind, setting, model_id)):
                routes.append(route)
        return routes

    def _index_label(self, name: str) -> str:
        manifest = self.options[name].manifest
        return gettext("%(name)s (%(count)s images of %(splits)s)") % {
            "name": name,
            "count": f"{manifest.count:,}",
            "splits": ", ".join(manifest.splits),
        }

    @classmethod
    def defaults(cls) -> dict:
        """The form's initial values as submitted data: the page shows their estimate."""
        form = cls()
        data = {name: field.initial for name, field in form.fields.items()}
        data["index_name"] = form.fields["index_name"].initial
        data["split"] = form.fields["split"].initial
        data["confirm"] = False
        return {k: v for k, v in data.items() if v is not None}

    def clean_language(self) -> str:
        return self.cleaned_data["language"] or ENGLISH

    def clean_ks(self) -> tuple[int, ...]:
        try:
            return parse_ks(self.cleaned_data["ks"])
        except EvaluationError as exc:
            raise forms.ValidationError(str(exc)) from None

    def clean(self):
        data = super().clean()
        if self.errors:
            return data
        modes = EvaluationConfig(mode=data["mode"]).modes
        if "rag" in modes and self.describer:
            if not data.get("rag_contexts"):
                self.add_error(
                    "rag_contexts", gettext("Choose at least one way to describe the images.")
                )
            if data.get("rag_sample") is None:
                self.add_error("rag_sample", gettext("How many images should be described?"))
        if data.get("text_route"):
            try:
                check_route(Route(data["text_route"]), data["language"])
            except RoutingError as exc:
                self.add_error("text_route", str(exc))
        if self.errors:
            return data
        option = self.options[data["index_name"]]
        if data["split"] not in option.labelled:
            self.add_error(
                "split",
                gettext("Index %(index)s has no labelled %(split)s images.")
                % {"index": option.name, "split": data["split"]},
            )
            return data
        self.estimate = estimate.estimate(
            estimate.workload(
                self.config(),
                pool=option.labelled[data["split"]],
                classes=option.classes,
                describer=self.describer,
            ),
            selectors.measured_rates(),
        )
        if self.starting and self.estimate.long and not data.get("confirm"):
            self.add_error(
                "confirm",
                gettext(
                    "This run takes %(duration)s. Tick the box to start it anyway, or make it "
                    "smaller."
                )
                % {"duration": self.estimate.duration},
            )
        return data

    def config(self) -> EvaluationConfig:
        data = self.cleaned_data
        return EvaluationConfig(
            mode=data["mode"],
            index_name=data["index_name"],
            split=data["split"],
            sample=data["sample"],
            rag_sample=data.get("rag_sample") or DEFAULT_RAG_SAMPLE,
            seed=data["seed"],
            ks=data["ks"],
            rag_contexts=tuple(data.get("rag_contexts") or RAG_CONTEXTS),
            language=data["language"],
            text_route=data.get("text_route") or None,
        )
