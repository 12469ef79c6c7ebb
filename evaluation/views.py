"""Evaluation pages: the list of runs (with the staff-only form that starts one and its cost
estimate), a run's metrics and charts, its cancel button, and its JSON and CSV downloads.
Thin: they call a service or a selector."""

from __future__ import annotations

import csv
import json

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRefresh

from evaluation import charts, selectors
from evaluation.config import EvaluationError
from evaluation.forms import RunForm
from evaluation.models import EvaluationRun
from evaluation.services import cancel_run, may_cancel, request_run, with_stall_check
from search.ops.health import manage_command

RUNS_SHOWN = 200  # the newest; older runs stay in the admin
RAG_EXAMPLES = 24  # descriptions shown on the page; the JSON download has them all


def _list_page(request: HttpRequest, form: RunForm | None, *, status: int = 200) -> HttpResponse:
    runs = list(selectors.run_list()[:RUNS_SHOWN])
    for run in runs:
        run.headline = selectors.headline(run)
        run.route_name = selectors.route_name(run.configuration.get("text_route"))
    if form is not None and not form.is_bound:
        form = RunForm(RunForm.defaults())  # bound to its defaults: the page shows their cost
    if form is not None:
        form.is_valid()
    context = {"runs": runs, "form": form, "comparisons": _comparisons()}
    if request.user.is_staff:  # commands are for operators, as they work typed
        context["commands"] = {
            "evaluate": manage_command("evaluate --sample 1000"),
            "help": manage_command("evaluate --help"),
            "bootstrap": manage_command("bootstrap"),
        }
    return render(request, "evaluation/runs.html", context, status=status)


COMPARISON_TITLES = {
    "text": gettext_lazy("Text → image by language and route"),
    "zeroshot": gettext_lazy("Zero-shot classification by language and route"),
    "rag": gettext_lazy("Descriptions that name the class, by language"),
}


def _comparisons() -> list[dict]:
    """The latest finished run per language (and route) of each mode, with its chart."""
    return [
        {
            "comparison": comparison,
            "title": COMPARISON_TITLES[comparison.mode],
            "chart": charts.grouped_bars_svg(
                {run.label: cells for run, cells in comparison.rows},
                comparison.headings,
                title="",  # the card's heading says it
            ),
        }
        for comparison in selectors.language_comparison()
    ]


@require_http_methods(["GET", "POST"])
def run_list(request: HttpRequest) -> HttpResponse:
    """The runs; for staff, the form that starts one. POST with action=estimate (the form's
    Estimate button, without JavaScript) shows the form's cost and starts nothing."""
    if request.method == "GET":
        return _list_page(request, RunForm() if request.user.is_staff else None)
    if not request.user.is_staff:
        raise PermissionDenied(_("Only staff can start an evaluation run."))
    starting = request.POST.get("action") != "estimate"
    form = RunForm(request.POST, starting=starting)
    if form.is_valid() and starting:
        try:
            run = request_run(config=form.config(), user=request.user)
        except EvaluationError as exc:
            form.add_error(None, str(exc))
        else:
            return redirect("evaluation:run", pk=run.pk)
    return _list_page(request, form, status=400 if form.errors else 200)


@require_GET
def run_estimate(request: HttpRequest) -> HttpResponse:
    """The form's cost as it is being filled in (HTMX swaps it in); a full page without HTMX."""
    if not request.user.is_staff:
        raise PermissionDenied(_("Only staff can start an evaluation run."))
    form = RunForm(request.GET)
    if not request.htmx:
        return _list_page(request, form)
    form.is_valid()
    return render(request, "evaluation/runs.html#estimate", {"form": form, "estimate_only": True})


def _run(pk: int) -> EvaluationRun:
    try:
        return selectors.get_run(run_id=pk)
    except EvaluationRun.DoesNotExist:
        raise Http404(_("No such evaluation run.")) from None


@require_GET
def run_detail(request: HttpRequest, pk: int) -> HttpResponse:
    run = with_stall_check(_run(pk))
    can_cancel = may_cancel(run, request.user)
    if request.htmx:
        if run.finished:  # the results are a whole page: reload it
            return HttpResponseClientRefresh()
        return render(request, "evaluation/run.html#status", {"run": run, "can_cancel": can_cancel})
    ks = selectors.retrieval_ks(run)
    rag = run.metrics.get("rag")
    names = selectors.class_names(run)  # the classes in the page's language
    per_class = {mode: selectors.named_rows(rows, names) for mode, rows in run.per_class.items()}
    examples = [
        {**ex, "name": names.get(ex["wnid"], ex["name"])}
        for ex in (run.details.get("rag") or [])[:RAG_EXAMPLES]
    ]
    context = {
        "run": run,
        "can_cancel": can_cancel,
        "ks": ks,
        "language_name": selectors.language_name(run.language),
        "route_name": selectors.route_name(run.configuration.get("text_route")),
        "retrieval_rows": selectors.retrieval_rows(run, ks),
        "charts": charts.run_charts(run.metrics, per_class, ks) if run.finished else {},
        "worst_classes": selectors.worst_classes(run, per_class=per_class),
        "rag": rag,
        "rag_contexts": [(c, selectors.context_name(c)) for c in rag["contexts"]] if rag else [],
        "rag_examples": examples,
        "configuration_json": json.dumps(run.configuration, indent=2, ensure_ascii=False),
    }
    return render(request, "evaluation/run.html", context)


@require_POST
def run_cancel(request: HttpRequest, pk: int) -> HttpResponse:
    """Cancel a run: staff, or whoever started it (403 for anyone else)."""
    run = cancel_run(run=_run(pk), user=request.user)
    if request.htmx and not run.finished:  # stopping: the status says so, and polls on
        return render(request, "evaluation/run.html#status", {"run": run, "can_cancel": True})
    if run.status == EvaluationRun.Status.CANCELLED:
        messages.success(request, _("The run is cancelled."))
    elif run.cancelling:
        messages.success(
            request, _("The run stops after its current step and keeps what it finished.")
        )
    if request.htmx:
        return HttpResponseClientRefresh()
    return redirect("evaluation:run", pk=run.pk)


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
