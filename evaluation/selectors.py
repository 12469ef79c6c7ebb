"""Read queries for the evaluation pages and the run's downloads (JSON, CSV)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from django.conf import settings
from django.core.cache import cache
from django.db.models import Count, Q, QuerySet

from evaluation import estimate
from evaluation.models import EvaluationRun
from search.catalog.models import Dataset, Image, ImageClass
from search.errors import ApplicationError
from search.index.service import IndexManifest, read_manifest
from search.ml.names import display_model_id

SPLIT_COUNTS_SECONDS = 300  # the form's split counts are cached: an import changes them rarely
TIMED_RUNS = 50  # the newest finished runs read for the estimate's rates

CSV_HEADER = ["mode", "scope", "wnid", "name", "metric", "value"]


def run_list() -> QuerySet[EvaluationRun]:
    return (
        EvaluationRun.objects.select_related("created_by")
        .defer("per_class", "details", "index_manifest", "timings")  # the list shows none
        .order_by("-created_at", "-id")
    )


def get_run(*, run_id: int) -> EvaluationRun:
    return EvaluationRun.objects.select_related("created_by", "cancelled_by").get(pk=run_id)


def run_as_dict(run: EvaluationRun) -> dict:
    """Everything the run stored, as the JSON download and `evaluate --json` write it."""

    def when(value):
        return value.isoformat() if value else None

    return {
        "id": run.pk,
        "mode": run.mode,
        "status": run.status,
        "error": run.error,
        "configuration": run.configuration,
        "index_name": run.index_name,
        "index_manifest": run.index_manifest,
        "model_ids": run.model_ids,
        "sample_size": run.sample_size,
        "seed": run.seed,
        "created_by": run.created_by.get_username() if run.created_by else None,
        "created_at": when(run.created_at),
        "started_at": when(run.started_at),
        "finished_at": when(run.finished_at),
        "warnings": run.warnings,
        "metrics": run.metrics,
        "per_class": run.per_class,
        "details": run.details,
    }


def run_download(run: EvaluationRun, *, user) -> dict:
    """The JSON download of the run page: `run_as_dict`, with models named as the pages name
    them (a local directory by its name, not its path), and who started it for staff only."""
    data = run_as_dict(run)
    data["model_ids"] = {
        role: display_model_id(m) if isinstance(m, str) else m for role, m in run.model_ids.items()
    }
    if data["index_manifest"] and "model_id" in data["index_manifest"]:
        manifest = data["index_manifest"]
        data["index_manifest"] = {**manifest, "model_id": display_model_id(manifest["model_id"])}
    if not user.is_staff:
        del data["created_by"]
    return data


def _flatten(prefix: str, value, out: list[tuple[str, object]]) -> None:
    if isinstance(value, dict):
        for key, inner in value.items():
            _flatten(f"{prefix}.{key}" if prefix else str(key), inner, out)
    elif not isinstance(value, list):
        out.append((prefix, value))


def run_csv_rows(run: EvaluationRun) -> list[list]:
    """Long format, one number per row: the overall metrics, then every class's."""
    rows: list[list] = [CSV_HEADER]
    for mode, summary in run.metrics.items():
        flat: list[tuple[str, object]] = []
        _flatten("", summary, flat)
        rows.extend([mode, "overall", "", "", metric, value] for metric, value in flat)
    for mode, classes in run.per_class.items():
        for row in classes:
            for metric, value in row.items():
                if metric not in {"wnid", "name", "failures"}:
                    rows.append([mode, "class", row["wnid"], row["name"], metric, value])
    return rows


def retrieval_ks(run: EvaluationRun) -> list[int]:
    return sorted(int(k) for k in run.configuration.get("ks", []))


def retrieval_rows(run: EvaluationRun, ks: list[int]) -> list[dict]:
    """The run page's retrieval table: one row per k, recall and precision of each mode."""
    return [
        {
            "k": k,
            **{
                f"{mode}_{name}": run.metrics[mode].get(f"{name}@{k}")
                for mode in ("image", "text")
                if mode in run.metrics
                for name in ("recall", "precision")
            },
        }
        for k in ks
    ]


def available_indexes() -> list[str]:
    """Names of the published indexes in TINYRAG_INDEX_DIR (the form's choices)."""
    folder = Path(settings.TINYRAG_INDEX_DIR)
    if not folder.is_dir():
        return []
    return sorted(
        p.name for p in folder.iterdir()
        if not p.name.startswith(".") and (p / "manifest.json").is_file()
    )  # fmt: skip


def worst_classes(run: EvaluationRun, *, limit: int = 8) -> list[dict]:
    """The image -> image classes with the lowest Recall@(smallest k), with their failures."""
    ks = retrieval_ks(run)
    rows = run.per_class.get("image") or []
    if not ks or not rows:
        return []
    metric = f"recall@{ks[0]}"
    ranked = sorted(
        rows, key=lambda r: (r.get(metric) if r.get(metric) is not None else 1, r["name"])
    )
    return [{**r, "recall": r.get(metric)} for r in ranked[:limit] if r.get("failures")]


def headline(run: EvaluationRun) -> list[tuple[str, float | None]]:
    """The few numbers the run list shows: Recall@(smallest k), top-1, LIR per context."""
    ks = retrieval_ks(run)
    out: list[tuple[str, float | None]] = []
    for mode, label in (("image", "image"), ("text", "text")):
        if mode in run.metrics and ks:
            out.append((f"{label} R@{ks[0]}", run.metrics[mode].get(f"recall@{ks[0]}")))
    if "zeroshot" in run.metrics:
        out.append(("zero-shot top-1", run.metrics["zeroshot"].get("top1_accuracy")))
    for context, result in (run.metrics.get("rag") or {}).get("contexts", {}).items():
        out.append((f"LIR {context}", result.get("lir")))
    return out


# --- the staff form: what can be evaluated, and what it would cost ------------------------


@dataclass(frozen=True)
class IndexOption:
    """A published index the form offers: its manifest, and its dataset's splits."""

    manifest: IndexManifest
    labelled: dict[str, int]  # split -> labelled images (only splits that have some)
    unlabelled: tuple[str, ...]  # splits with images but no labels (TinyImageNet's test)
    classes: int

    @property
    def name(self) -> str:
        return self.manifest.name


def split_counts(dataset: Dataset) -> dict:
    """{"labelled": {split: n}, "unlabelled": [split], "classes": n} of a dataset, cached for
    SPLIT_COUNTS_SECONDS (one grouped count over its images)."""
    key = f"evaluation:split-counts:{dataset.pk}:{dataset.created_at.timestamp()}"
    if (found := cache.get(key)) is not None:
        return found
    rows = (
        Image.objects.filter(dataset=dataset)
        .values("split")
        .annotate(total=Count("id"), labelled=Count("id", filter=Q(image_class__isnull=False)))
    )
    counts = {
        "labelled": {r["split"]: r["labelled"] for r in rows if r["labelled"]},
        "unlabelled": sorted(r["split"] for r in rows if r["total"] and not r["labelled"]),
        "classes": ImageClass.objects.filter(dataset=dataset).count(),
    }
    cache.set(key, counts, SPLIT_COUNTS_SECONDS)
    return counts


def index_options() -> list[IndexOption]:
    """The indexes a run can query: published, readable, built from an imported dataset that
    has labelled images."""
    folder = Path(settings.TINYRAG_INDEX_DIR)
    manifests = []
    for name in available_indexes():
        try:
            manifests.append(read_manifest(folder, name))
        except ApplicationError:  # unreadable: `manage.py doctor` reports it
            continue
    datasets = Dataset.objects.in_bulk([m.dataset for m in manifests], field_name="name")
    options = []
    for manifest in manifests:
        if (dataset := datasets.get(manifest.dataset)) is None:
            continue
        counts = split_counts(dataset)
        if counts["labelled"]:
            options.append(
                IndexOption(
                    manifest=manifest,
                    labelled=counts["labelled"],
                    unlabelled=tuple(counts["unlabelled"]),
                    classes=counts["classes"],
                )
            )
    return options


def measured_rates() -> dict[str, estimate.Rate]:
    """Seconds per item measured by the newest finished runs (estimate.measured_rates)."""
    runs = (
        EvaluationRun.objects.filter(status__in=[EvaluationRun.Status.DONE,
                                                 EvaluationRun.Status.CANCELLED])
        .exclude(timings={})
        .order_by("-finished_at", "-id")
        .values_list("id", "timings")[:TIMED_RUNS]
    )  # fmt: skip
    return estimate.measured_rates(runs)
