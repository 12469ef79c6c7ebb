"""Evaluation pages: the list of runs (with the staff-only form that starts one), a run's
metrics and charts, and its JSON and CSV downloads. Thin: they call a service or a selector."""

from __future__ import annotations

import csv
import json

from django import forms
from django.conf import settings
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_GET, require_http_methods
from django_htmx.http import HttpResponseClientRefresh

from evaluation import charts, selectors
from evaluation.config import (
    DEFAULT_RAG_SAMPLE,
    RAG_CONTEXTS,
    SAMPLE_MAX,
    SEED_RANGE,
    EvaluationConfig,
    EvaluationError,
    parse_ks,
)
from evaluation.models import EvaluationRun
from evaluation.services import request_run, with_stall_check
from search.catalog.models import Image
from search.descriptions.models import Description

RUNS_SHOWN = 200  # the newest; older runs stay in the admin
RAG_EXAMPLES = 24  # descriptions shown on the page; the JSON download has them all


class RunForm(forms.Form):
    mode = forms.ChoiceField(choices=EvaluationRun.Mode.choices, initial=EvaluationRun.Mode.ALL)
    index_name = forms.ChoiceField(label="Index")
    split = forms.ChoiceField(choices=Image.Split.choices, initial=Image.Split.VAL)
    sample = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=SAMPLE_MAX,
        help_text="Query images, stratified by class; empty: all.",
    )
    rag_sample = forms.IntegerField(
        label="RAG sample", min_value=1, max_value=2000, initial=DEFAULT_RAG_SAMPLE,
        help_text="Images to describe (one generation per image and context).",
    )  # fmt: skip
    seed = forms.IntegerField(initial=0, min_value=SEED_RANGE[0], max_value=SEED_RANGE[1])
    ks = forms.CharField(label="k", initial="1,5,10", max_length=100)
    rag_contexts = forms.MultipleChoiceField(
        label="RAG contexts",
        choices=Description.Context.choices,
        initial=list(RAG_CONTEXTS),
        widget=forms.CheckboxSelectMultiple,
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        names = selectors.available_indexes()
        default = settings.TINYRAG_INDEX_NAME
        self.fields["index_name"].choices = [(n, n) for n in names] or [(default, default)]
        self.fields["index_name"].initial = default

    def clean_ks(self) -> tuple[int, ...]:
        try:
            return parse_ks(self.cleaned_data["ks"])
        except EvaluationError as exc:
            raise forms.ValidationError(str(exc)) from None

    def config(self) -> EvaluationConfig:
        data = self.cleaned_data
        return EvaluationConfig(
            mode=data["mode"],
            index_name=data["index_name"],
            split=data["split"],
            sample=data["sample"],
            rag_sample=data["rag_sample"],
            seed=data["seed"],
            ks=data["ks"],
            rag_contexts=tuple(data["rag_contexts"]),
        )


@require_http_methods(["GET", "POST"])
def run_list(request: HttpRequest) -> HttpResponse:
    form = None
    if request.method == "POST":
        if not request.user.is_staff:
            raise PermissionDenied("Only staff can start an evaluation run.")
        form = RunForm(request.POST)
        if form.is_valid():
            try:
                run = request_run(config=form.config(), user=request.user)
            except EvaluationError as exc:
                form.add_error(None, str(exc))
            else:
                return redirect("evaluation:run", pk=run.pk)
    elif request.user.is_staff:
        form = RunForm()
    runs = list(selectors.run_list()[:RUNS_SHOWN])
    for run in runs:
        run.headline = selectors.headline(run)
    return render(
        request,
        "evaluation/runs.html",
        {"runs": runs, "form": form},
        status=400 if form is not None and form.errors else 200,
    )


def _run(pk: int) -> EvaluationRun:
    try:
        return selectors.get_run(run_id=pk)
    except EvaluationRun.DoesNotExist:
        raise Http404("No such evaluation run.") from None


@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = with_stall_check(_run(pk))
    if request.htmx:
        if run.finished:  # the results are a whole page: reload it
            return HttpResponseClientRefresh()
        return render(request, "evaluation/run.html#status", {"run": run})
    ks = selectors.retrieval_ks(run)
    rag = run.metrics.get("rag")
    context = {
        "run": run,
        "ks": ks,
        "retrieval_rows": selectors.retrieval_rows(run, ks),
        "charts": charts.run_charts(run.metrics, run.per_class, ks) if run.finished else {},
        "worst_classes": selectors.worst_classes(run),
        "rag": rag,
        "rag_contexts": list(rag["contexts"]) if rag else [],
        "rag_examples": (run.details.get("rag") or [])[:RAG_EXAMPLES],
        "configuration_json": json.dumps(run.configuration, indent=2, ensure_ascii=False),
    }
    return render(request, "evaluation/run.html", context)


@require_GET
def run_json(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run(pk)
    response = HttpResponse(
        json.dumps(selectors.run_download(run, user=request.user), indent=2, ensure_ascii=False),
        content_type="application/json; charset=utf-8",
    )
    response["Content-Disposition"] = f'attachment; filename="evaluation-run-{run.pk}.json"'
    return response


@require_GET
def run_csv(request: HttpRequest, pk: int) -> HttpResponse:
    run = _run(pk)
    response = HttpResponse(content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="evaluation-run-{run.pk}.csv"'
    csv.writer(response).writerows(selectors.run_csv_rows(run))
    return response
