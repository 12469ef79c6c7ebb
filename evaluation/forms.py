"""The staff form that starts an evaluation run: only choices that can work on this server
(published indexes of imported datasets, splits that have labels, RAG only when descriptions
are on), defaults that cost minutes, not hours, and the run's cost estimate, which a long run
must be confirmed against before it starts."""

from __future__ import annotations

from django import forms
from django.conf import settings

from evaluation import estimate, selectors
from evaluation.config import (
    RAG_CONTEXTS,
    SAMPLE_MAX,
    SEED_RANGE,
    EvaluationConfig,
    EvaluationError,
    parse_ks,
)
from evaluation.models import EvaluationRun
from search.descriptions.models import Description
from search.ml.registry import describer_enabled

DEFAULT_SAMPLE = 1000  # query images: 5 per class of TinyImageNet, a few seconds of work
DEFAULT_RAG_SAMPLE = 10  # images described: 20 generations with both contexts
RAG_SAMPLE_MAX = 2000  # a bound on what one form can ask of the describer

Mode = EvaluationRun.Mode
MODE_LABELS = {
    Mode.IMAGE: "Image → image retrieval",
    Mode.TEXT: "Text → image retrieval",
    Mode.ZEROSHOT: "Zero-shot classification",
    Mode.RAG: "Descriptions (RAG)",
    Mode.ALL: "All of them",
}
CONTEXT_LABELS = {
    Description.Context.RETRIEVED: "with the retrieved neighbours' labels",
    Description.Context.NONE: "with the image only",
}


class RunForm(forms.Form):
    mode = forms.ChoiceField(
        label="What to measure", initial=Mode.IMAGE,
        help_text="Text: one query per class name. Descriptions: does the text name the "
        "true class?",
    )  # fmt: skip
    index_name = forms.ChoiceField(label="Index")
    split = forms.ChoiceField(label="Query images from the split")
    sample = forms.IntegerField(
        label="Query images",
        required=False,
        min_value=1,
        max_value=SAMPLE_MAX,
        initial=DEFAULT_SAMPLE,
        help_text="Spread evenly over the classes. Leave empty for the whole split.",
    )
    ks = forms.CharField(
        label="k values", initial="1,5,10", max_length=100,
        help_text="Comma-separated: Recall@k and Precision@k for each.",
    )  # fmt: skip
    seed = forms.IntegerField(
        initial=0, min_value=SEED_RANGE[0], max_value=SEED_RANGE[1],
        help_text="The same seed picks the same images.",
    )  # fmt: skip
    rag_sample = forms.IntegerField(
        label="Images to describe", min_value=1, max_value=RAG_SAMPLE_MAX,
        initial=DEFAULT_RAG_SAMPLE, required=False,
        help_text="One generation per image and context. Used when measuring descriptions.",
    )  # fmt: skip
    rag_contexts = forms.MultipleChoiceField(
        label="Describe each image",
        choices=[(c, CONTEXT_LABELS[c]) for c in RAG_CONTEXTS],
        initial=list(RAG_CONTEXTS),
        required=False,
        widget=forms.CheckboxSelectMultiple,
    )
    confirm = forms.BooleanField(label="Yes, start this long run", required=False)

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
            labels[Mode.ALL] = "All but descriptions (they are off here)"
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
            (split, f"{split} (in the index: not held out)" if split in held else split)
            for split in sorted(labelled, key=lambda s: (s in held, s))
        ]
        held_out = [s for s in labelled if s not in held]
        self.fields["split"].initial = (
            "val" if "val" in held_out else next(iter(held_out or labelled), None)
        )
        if chosen and chosen.unlabelled:
            splits = ", ".join(chosen.unlabelled)
            self.fields[
                "split"
            ].help_text = f"Not offered: {splits}, whose images have no labels to score against."

    @property
    def usable(self) -> bool:
        """Whether there is anything to evaluate at all (an index with labelled images)."""
        return bool(self.options)

    def _index_label(self, name: str) -> str:
        manifest = self.options[name].manifest
        return f"{name} ({manifest.count:,} images of {', '.join(manifest.splits)})"

    @classmethod
    def defaults(cls) -> dict:
        """The form's initial values as submitted data: the page shows their estimate."""
        form = cls()
        data = {name: field.initial for name, field in form.fields.items()}
        data["index_name"] = form.fields["index_name"].initial
        data["split"] = form.fields["split"].initial
        data["confirm"] = False
        return {k: v for k, v in data.items() if v is not None}

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
                self.add_error("rag_contexts", "Choose at least one way to describe the images.")
            if data.get("rag_sample") is None:
                self.add_error("rag_sample", "How many images should be described?")
        if self.errors:
            return data
        option = self.options[data["index_name"]]
        if data["split"] not in option.labelled:
            self.add_error("split", f"Index {option.name} has no labelled {data['split']} images.")
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
                f"This run takes {self.estimate.duration}. Tick the box to start it anyway, "
                "or make it smaller.",
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
        )
