"""From nothing to a searchable index in one command, skipping every step already done.

download_dataset -> prepare_dataset -> check_dataset -> import_dataset -> setup_models (CLIP
and the models of the text route: the multilingual encoder by default) -> build_index.
Default: 50 train images per class (10,000 images, minutes on a CPU); --full indexes all
100,000.

Checking and importing read every one of the 120,000 files (tens of seconds), so a bootstrap
that got through them leaves a stamp in TINYRAG_DATA_DIR: the folders' modification times
and the number of rows imported. While both are unchanged, later runs skip prepare, check
and import; `--check` runs them regardless.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError
from django.utils import timezone

from search.catalog.datasets.download import TINYIMAGENET_URL
from search.catalog.datasets.tinyimagenet import ARCHIVE_NAME, DIR_NAME
from search.catalog.models import Image
from search.catalog.selectors import collection_size
from search.index.selectors import is_published
from search.ops.health import QUICK_INDEX_PER_CLASS, models_problem

DEFAULT_LIMIT = QUICK_INDEX_PER_CLASS
STAMP_NAME = ".bootstrap-stamp.json"
STAMPED_STEPS = ("prepare", "check", "import")  # what a current stamp skips


def data_fingerprint(root: Path) -> str:
    """What the stamp compares: the modification time of the prepared folder and of every
    folder two levels down (adding, removing or renaming a file changes its folder's), and
    the images imported from that folder. A few hundred stats and one indexed count."""
    if not root.is_dir():
        return ""
    folders = [root, *sorted(p for p in root.iterdir() if p.is_dir())]
    folders += sorted(q for p in folders[1:] for q in p.iterdir() if q.is_dir())
    digest = hashlib.sha256(str(root.resolve()).encode())
    for folder in folders:
        digest.update(f"{folder.relative_to(root)}:{folder.stat().st_mtime_ns}\n".encode())
    imported = Image.objects.filter(dataset__root=str(root.resolve())).count()
    digest.update(f"imported:{imported}".encode())
    return digest.hexdigest()


def read_stamp(data_dir: Path) -> dict:
    """The stamp's fingerprint, when, and what the check reported ({} when there is none)."""
    try:
        stamp = json.loads((data_dir / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return stamp if isinstance(stamp, dict) and isinstance(stamp.get("fingerprint"), str) else {}


def write_stamp(data_dir: Path, fingerprint: str, *, problems: str) -> None:
    stamp = {
        "fingerprint": fingerprint,
        "checked_at": timezone.now().isoformat(),
        "problems": problems,
    }
    (data_dir / STAMP_NAME).write_text(json.dumps(stamp) + "\n", encoding="utf-8")


class Command(BaseCommand):
    help = (
        "Download, prepare, check and import TinyImageNet-200, set up the models and build "
        "the index, skipping steps already done."
    )

    def add_arguments(self, parser):
        group = parser.add_mutually_exclusive_group()
        group.add_argument(
            "--limit-per-class",
            type=int,
            default=DEFAULT_LIMIT,
            help=f"Train images indexed per class (default {DEFAULT_LIMIT}).",
        )
        group.add_argument(
            "--full", action="store_true", help="Index every train image (100,000) instead."
        )
        parser.add_argument("--archive", help="A local tiny-imagenet-200.zip (no download).")
        parser.add_argument(
            "--check",
            action="store_true",
            help="Prepare, check every image and import again, even when the last bootstrap "
            "of this data got through them (its stamp in TINYRAG_DATA_DIR says so).",
        )
        parser.add_argument(
            "--url",
            default=TINYIMAGENET_URL,
            help=f"Where to download the archive from (default {TINYIMAGENET_URL}).",
        )

    def handle(self, *args, **options):
        data = settings.TINYRAG_DATA_DIR
        root = data / DIR_NAME
        sub = {"verbosity": options["verbosity"], "stdout": self.stdout, "stderr": self.stderr}
        stamp = {} if options["check"] else read_stamp(data)
        stamped = bool(stamp) and stamp["fingerprint"] == data_fingerprint(root)
        check = {"problems": ""}
        steps = [
            (
                "download",
                not (root.exists() or (data / ARCHIVE_NAME).exists()),
                lambda: call_command(
                    "download_dataset",
                    *(
                        ["--archive", options["archive"]]
                        if options["archive"]
                        else ["--url", options["url"]]
                    ),
                    **sub,
                ),
            ),
            ("prepare", not stamped, lambda: call_command("prepare_dataset", **sub)),
            ("check", not stamped, lambda: check.update(problems=self._check(sub))),
            ("import", not stamped, lambda: self._import(sub, problems=check["problems"])),
            (
                "setup_models",
                # also after an upgrade that adds a model (the multilingual text encoder)
                not is_published() or bool(models_problem()),
                lambda: call_command("setup_models", **sub),
            ),
            (
                "build_index",
                not is_published(),
                lambda: call_command(
                    "build_index",
                    *(
                        []
                        if options["full"]
                        else ["--limit-per-class", str(options["limit_per_class"])]
                    ),
                    **sub,
                ),
            ),
        ]
        for number, (name, needed, run) in enumerate(steps, start=1):
            prefix = f"[{number}/{len(steps)}] {name}"
            if not needed:
                again = " (--check does it again)" if name in STAMPED_STEPS and stamped else ""
                self.stdout.write(f"{prefix}: already done, skipped{again}")
                if name == "check" and stamped and stamp.get("problems"):
                    self.stderr.write(f"the last check of this data reported: {stamp['problems']}")
                continue
            self.stdout.write(f"{prefix} ...")
            try:
                run()
            except CommandError as exc:
                raise CommandError(f"bootstrap stopped at {name}: {exc}") from None
        self.stdout.write(
            self.style.SUCCESS(
                f"Ready: index {settings.TINYRAG_INDEX_NAME!r}; "
                f"{collection_size().images:,} images in the database."
            )
        )

    def _import(self, sub, *, problems: str) -> None:
        """Import, then leave the stamp: the data part is done (with what the check said)."""
        call_command("import_dataset", **sub)
        data = settings.TINYRAG_DATA_DIR
        write_stamp(data, data_fingerprint(data / DIR_NAME), problems=problems)

    def _check(self, sub) -> str:
        """Problems are reported but do not stop the bootstrap: what is there is still usable.
        Returns the problem line ("" when clean), which the stamp keeps to say again."""
        try:
            call_command("check_dataset", **sub)
        except CommandError as exc:
            self.stderr.write(f"check_dataset: {exc}; continuing with the images that are there")
            return str(exc)
        return ""
