"""Embed the imported images with CLIP and publish a FAISS index to TINYRAG_INDEX_DIR/<name>.

Incremental: images whose files are unchanged since the last published build of the index (same
content hash, model and preprocessing) keep their vectors; only the rest are embedded.
Resumable: embeddings are saved in shards as they are computed, and the same command continues
after a crash or Ctrl-C (--restart starts over, reusing nothing). The published index is swapped
in atomically. With --distributed the shards are embedded by task workers on any machines
(search/index/distributed.py) and this command merges and publishes them.
"""

from __future__ import annotations

import argparse

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from search.catalog.models import Image
from search.errors import ApplicationError
from search.index.build import COMPILE_MIN_IMAGES, SHARD_TARGET, BuildOptions, build_index
from search.index.distributed import build_distributed
from search.index.selectors import index_choice
from search.index.service import IndexType
from search.ml.batches import default_decode_workers
from search.ops.progress import progress_factory


class Command(BaseCommand):
    help = "Embed images with CLIP and publish a FAISS index (train split by default)."

    def add_arguments(self, parser):
        parser.add_argument(
            "--name",
            default=settings.TINYRAG_INDEX_NAME,
            help="Index name, a folder under TINYRAG_INDEX_DIR "
            f"(default: TINYRAG_INDEX_NAME = {settings.TINYRAG_INDEX_NAME}).",
        )
        parser.add_argument("--dataset", help="Dataset to index (default: the only one imported).")
        parser.add_argument(
            "--splits",
            default="train",
            help="Comma-separated splits to index (default: train; val stays "
            "held out so evaluation never queries images that are indexed).",
        )
        parser.add_argument(
            "--index-type",
            choices=[t.value for t in IndexType],
            default=IndexType.AUTO,
            help="flat (exact), hnsw, ivfpq, or auto: exact up to TINYRAG_HNSW_MIN_VECTORS "
            "vectors, then HNSW where its recall@10 measured against exact search on held-out "
            "vectors reaches TINYRAG_HNSW_MIN_RECALL (else exact), then IVF-PQ past memory.",
        )
        parser.add_argument(
            "--batch-size",
            type=int,
            default=settings.TINYRAG_EMBED_BATCH_SIZE,
            help="Images per model batch (default: TINYRAG_EMBED_BATCH_SIZE).",
        )
        parser.add_argument(
            "--workers",
            type=int,
            default=default_decode_workers(),
            help="DataLoader processes decoding and resizing images while the model runs "
            "(default: half the usable CPUs, at most 4; 0 decodes in the model's process).",
        )
        parser.add_argument(
            "--limit-per-class",
            type=int,
            help="Index at most N images per class and split (quick builds).",
        )
        parser.add_argument(
            "--compile",
            action=argparse.BooleanOptionalAction,
            help="torch.compile the image tower: 1.2-1.4x faster, after 12-35 s of compilation "
            f"(default: when {COMPILE_MIN_IMAGES:,} or more images remain to embed).",
        )
        parser.add_argument(
            "--shard-size",
            type=int,
            default=SHARD_TARGET,
            help=f"Images per saved shard (default {SHARD_TARGET:,}): an interrupted build "
            "resumes after its last complete shard.",
        )
        parser.add_argument(
            "--distributed",
            action="store_true",
            help="Queue the shards as tasks for `manage.py worker` processes on any machines "
            "that share the database, the dataset's folder and TINYRAG_SHARD_DIR; wait for "
            "them, then merge and publish. Stopped, the same command goes on where it was.",
        )
        parser.add_argument(
            "--restart",
            action="store_true",
            help="Embed every image again: discard shards of an interrupted build and reuse no "
            "vector of the published one.",
        )

    def handle(self, *args, **options):
        splits = tuple(s.strip() for s in options["splits"].split(",") if s.strip())
        unknown = set(splits) - set(Image.Split.values)
        if unknown or not splits:
            raise CommandError(
                f"--splits takes {', '.join(Image.Split.values)}; got {options['splits']!r}"
            )
        if min(options["batch_size"], options["shard_size"], options["limit_per_class"] or 1) < 1:
            raise CommandError("--batch-size, --shard-size and --limit-per-class must be positive")
        build = BuildOptions(
            name=options["name"],
            dataset=options["dataset"],
            splits=splits,
            index_type=IndexType(options["index_type"]),
            batch_size=options["batch_size"],
            workers=max(0, options["workers"]),
            limit_per_class=options["limit_per_class"],
            restart=options["restart"],
            compile=options["compile"],
            shard_target=options["shard_size"],
        )
        verbose = options["verbosity"] >= 1
        run = build_distributed if options["distributed"] else build_index
        try:
            manifest = run(
                build,
                progress_factory=progress_factory(options["verbosity"]),
                log=self.stdout.write if verbose else (lambda _: None),
            )
        except ApplicationError as exc:
            raise CommandError(str(exc)) from None
        if manifest.skipped:
            self.stderr.write(f"Skipped {len(manifest.skipped)} unreadable images:")
            for line in manifest.skipped:
                self.stderr.write(f"  {line}")
        if verbose:
            self.stdout.write(
                self.style.SUCCESS(
                    f"Published index {manifest.name!r}: {manifest.count:,} vectors of dim "
                    f"{manifest.dim} ({index_choice(manifest)}); {manifest.reused:,} reused, "
                    f"{manifest.embedded:,} embedded at {manifest.images_per_second} img/s; "
                    f"{manifest.build_seconds} s."
                )
            )
