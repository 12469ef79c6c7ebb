"""Measure retrieval and RAG on held-out images and store the run (see /evaluation/).

    python manage.py evaluate                          # everything, on the whole val split
    python manage.py evaluate --mode image --sample 2000 --k 1,5,10
    python manage.py evaluate --mode rag --sample 50 --rag-context retrieved,none --json rag.json
    python manage.py evaluate --mode text --language id                 # Indonesian class names
    python manage.py evaluate --mode text --language id --text-route translate
    python manage.py evaluate --mode rag --language id --sample 50      # Indonesian descriptions
    python manage.py evaluate --mode image --search index    # through the HNSW graph as served

Queries never find themselves: a query image that is in the index is excluded from its own
results (and the run says so), an index holding val images is a warning on the run, and the
describer is never given the true label. Searches are exact (a flat search over the index's
embeddings, whatever its type) unless --search index asks for the index as served.
"""

from __future__ import annotations

import json
from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from evaluation.config import (
    DEFAULT_RAG_SAMPLE,
    EXACT_SEARCH,
    RAG_CONTEXTS,
    SEARCHES,
    TEXT_ROUTES,
    EvaluationConfig,
    EvaluationError,
    parse_ks,
)
from evaluation.models import EvaluationRun
from evaluation.selectors import run_as_dict
from evaluation.services import evaluate
from search.catalog.models import Image
from search.languages import ENGLISH, PAGE_LANGUAGES
from search.ops.progress import DEFAULT_WORKERS


def _value(value) -> str:
    return "-" if value is None else f"{value:.3f}" if isinstance(value, float) else str(value)


def format_run(run: EvaluationRun) -> str:
    """The run as a plain-text table."""
    cfg = run.configuration
    manifest = run.index_manifest
    lines = [
        f"Evaluation run #{run.pk} ({run.mode}) on index {run.index_name!r}"
        + (f" ({manifest.get('count')} images of {', '.join(manifest.get('splits', []))})"
           if manifest else "")
        + f", split {cfg.get('split')}, seed {run.seed}, language {run.language}"
        + (f", text route {cfg['text_route']}" if cfg.get("text_route") else ""),
        f"Search: {search_line(cfg, manifest)}",
    ]  # fmt: skip
    ks = cfg.get("ks", [])
    for mode, title in (("image", "image -> image"), ("text", "text -> image")):
        summary = run.metrics.get(mode)
        if not summary:
            continue
        unit = "queries" if mode == "image" else "classes"
        lines += ["", f"{title}  ({summary['queries']} {unit})", "  k     Recall@k  Precision@k"]
        lines += [
            f"  {k:<5} {_value(summary.get(f'recall@{k}')):<9} "
            f"{_value(summary.get(f'precision@{k}'))}"
            for k in ks
        ]
        lines.append(f"  MRR@{max(ks)}: {_value(summary.get('mrr'))}")
        if summary.get("self_excluded"):
            lines.append(f"  {summary['self_excluded']} queries excluded from their own results")
    if zeroshot := run.metrics.get("zeroshot"):
        lines += [
            "",
            f"zero-shot  ({zeroshot['queries']} images, {zeroshot['classes']} classes)",
            f"  top-1 accuracy {_value(zeroshot.get('top1_accuracy'))}   "
            f"top-5 accuracy {_value(zeroshot.get('top5_accuracy'))}",
        ]
    if rag := run.metrics.get("rag"):
        lines += ["", f"rag  ({rag['samples']} images, context k={rag['rag_k']})"]
        if "context_hit_rate" in rag:
            lines.append(f"  context hit rate {_value(rag['context_hit_rate'])}")
        lines.append("  context     LIR     named/generated  errors")
        for context, result in rag["contexts"].items():
            lines.append(
                f"  {context:<11} {_value(result['lir']):<7} "
                f"{result['named']}/{result['generated']:<14} {result['errors']}"
            )
    if run.warnings:
        lines += ["", "Warnings:"] + [f"  - {w}" for w in run.warnings]
    return "\n".join(lines)


def search_line(cfg: dict, manifest: dict | None) -> str:
    """How the run searched: exactly, or through the index as served (and its type)."""
    kind = cfg.get("searched_index_type") or (manifest or {}).get("index_type", "?")
    if cfg.get("search", EXACT_SEARCH) == EXACT_SEARCH:
        served = (manifest or {}).get("index_type")
        return "exact" + (f" (flat over the embeddings of the {served} index)"
                          if served and served != kind else "")  # fmt: skip
    return f"the index as served ({kind})"


class Command(BaseCommand):
    help = "Evaluate retrieval (image/text), zero-shot classification and RAG; store the run."

    def add_arguments(self, parser):
        parser.add_argument(
            "--mode",
            choices=EvaluationRun.Mode.values,
            default=EvaluationRun.Mode.ALL,
            help="What to measure: image (image -> image retrieval), text (one query per "
            "class), zeroshot (top-1/top-5 over the class names), rag (label inclusion of "
            "descriptions), or all (default; rag is skipped when descriptions are disabled).",
        )
        parser.add_argument(
            "--index",
            default=settings.TINYRAG_INDEX_NAME,
            help=f"Index to query (default: TINYRAG_INDEX_NAME = {settings.TINYRAG_INDEX_NAME}).",
        )
        parser.add_argument(
            "--split",
            choices=Image.Split.values,
            default=Image.Split.VAL,
            help="Split whose labelled images are the queries (default: val).",
        )
        parser.add_argument(
            "--sample",
            type=int,
            help="Query images, stratified by class (default: the whole split; for --mode rag "
            f"it is the RAG sample, default {DEFAULT_RAG_SAMPLE}).",
        )
        parser.add_argument(
            "--rag-sample",
            type=int,
            help=f"Images to describe for rag (default: {DEFAULT_RAG_SAMPLE}; one generation "
            "per image and context).",
        )
        parser.add_argument(
            "--seed", type=int, default=0, help="Seed of the stratified samples (default: 0)."
        )
        parser.add_argument(
            "--k", default="1,5,10", help="Comma-separated cut-offs k (default: 1,5,10)."
        )
        parser.add_argument(
            "--rag-context",
            default=",".join(RAG_CONTEXTS),
            help="Comma-separated contexts to describe with: retrieved (the neighbours' "
            "labels), none (the image only). Default: both.",
        )
        parser.add_argument(
            "--language",
            choices=PAGE_LANGUAGES,
            default=ENGLISH,
            help="Language of the text queries (the class names in it, for text and zeroshot) "
            "and of the descriptions and their label inclusion (rag): en (default) or id.",
        )
        parser.add_argument(
            "--text-route",
            choices=[route.value for route in TEXT_ROUTES],
            help="Route of the text queries, to compare them: clip (CLIP's text tower with the "
            "prompt template), multilingual (TINYRAG_TEXT_MODEL), translate "
            "(TINYRAG_TRANSLATE_MODEL, then CLIP). Default: the one search takes for the "
            "language.",
        )
        parser.add_argument(
            "--search",
            choices=SEARCHES,
            default=EXACT_SEARCH,
            help="exact (default): every search is exact, a flat search over the published "
            "index's embeddings whatever its type, so the metrics describe the embeddings; "
            "index: search the index as served (HNSW's approximation included).",
        )
        parser.add_argument("--json", type=Path, help="Also write the whole run to this file.")
        parser.add_argument(
            "--batch-size",
            type=int,
            default=settings.TINYRAG_EMBED_BATCH_SIZE,
            help="Query images per model batch (default: TINYRAG_EMBED_BATCH_SIZE).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=DEFAULT_WORKERS,
            help="DataLoader processes decoding query images (default: up to 4).",
        )

    def handle(self, *args, **options):
        try:
            config = EvaluationConfig(
                mode=options["mode"],
                index_name=options["index"],
                split=options["split"],
                sample=options["sample"],
                rag_sample=options["rag_sample"],
                seed=options["seed"],
                ks=parse_ks(options["k"]),
                rag_contexts=tuple(
                    c.strip() for c in options["rag_context"].split(",") if c.strip()
                ),
                batch_size=options["batch_size"],
                workers=options["workers"],
                language=options["language"],
                text_route=options["text_route"],
                search=options["search"],
            ).validated()
            run = evaluate(config=config, console=options["verbosity"] >= 1)
        except EvaluationError as exc:
            raise CommandError(str(exc)) from None

        if options["json"]:
            options["json"].parent.mkdir(parents=True, exist_ok=True)
            options["json"].write_text(
                json.dumps(run_as_dict(run), indent=2, ensure_ascii=False) + "\n", encoding="utf-8"
            )
        if options["verbosity"] >= 1:
            self.stdout.write(format_run(run))  # a failed run shows what it measured before
            if options["json"]:
                self.stdout.write(f"\nWrote {options['json']}")
        elif run.warnings:
            for warning in run.warnings:
                self.stderr.write(f"warning: {warning}")
        if run.status == EvaluationRun.Status.FAILED:
            raise CommandError(f"evaluation run #{run.pk} failed: {run.error}")
        if run.status == EvaluationRun.Status.CANCELLED:  # from its page, while it ran
            raise CommandError(f"evaluation run #{run.pk} was cancelled; it kept what it measured")
        if options["verbosity"] >= 1:
            self.stdout.write(self.style.SUCCESS(f"Stored evaluation run #{run.pk}."))
