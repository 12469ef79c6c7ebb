"""Download the configured models and prove that they load, so search works offline later.

    manage.py setup_models                    # the models searches take: CLIP, the
                                              # multilingual encoder, the translation
                                              # model on the translate route
    manage.py setup_models --clip --text --translate --vlm
    manage.py setup_models --dir /srv/models  # download there (then set TINYRAG_MODEL_DIR)

The work is `search.ml.setup`'s (fetch, then load and embed once; the VLM snapshot is only
checked); this command picks the models, prints one line per model, and exits non-zero if
any failed, each failure naming the variable that can point at a local directory instead.
"""

from __future__ import annotations

from pathlib import Path

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from search.errors import ApplicationError
from search.ml.registry import current_target
from search.ml.setup import (
    ModelKind,
    ModelSpec,
    SetupFailed,
    SetUpModel,
    format_size,
    selected_models,
    set_up_model,
)


class Command(BaseCommand):
    help = (
        "Download the configured models (CLIP, the multilingual text encoder, the translation "
        "model, the VLM) and check that each one loads, so the app can run offline."
    )
    # Needs no URLconf, database or app checks; it must work on a half-configured machine.
    requires_system_checks = []

    def add_arguments(self, parser):
        parser.add_argument(
            "--clip",
            action="store_true",
            help="Set up TINYRAG_CLIP_MODEL (the default when no flag is given).",
        )
        parser.add_argument(
            "--text",
            action="store_true",
            help="Set up TINYRAG_TEXT_MODEL, the multilingual text encoder "
            "(default: included when queries not in English take it).",
        )
        parser.add_argument(
            "--translate",
            action="store_true",
            help="Set up TINYRAG_TRANSLATE_MODEL, the translation model "
            "(default: included when TINYRAG_TEXT_ROUTE=translate).",
        )
        parser.add_argument(
            "--vlm",
            action="store_true",
            help="Download and check TINYRAG_VLM_MODEL without loading it.",
        )
        parser.add_argument(
            "--dir",
            type=Path,
            help="Download into this cache folder instead of TINYRAG_MODEL_DIR "
            "or the Hugging Face cache.",
        )

    def handle(self, *args, **options):
        verbosity = options["verbosity"]
        try:
            specs = selected_models(
                clip=options["clip"],
                text=options["text"],
                vlm=options["vlm"],
                translate=options["translate"],
            )
            current_target()  # a wrong TINYRAG_DEVICE fails every model: say it once
        except ApplicationError as exc:
            raise CommandError(str(exc)) from None
        cache_dir = options["dir"] or settings.TINYRAG_MODEL_DIR or None
        cache_dir = Path(cache_dir).expanduser() if cache_dir else None

        failed: list[ModelSpec] = []
        for spec in specs:
            if verbosity >= 2:
                self.stdout.write(f"{spec.setting}: {spec.model_id}")
            try:
                done = set_up_model(
                    spec,
                    cache_dir=cache_dir,
                    quiet=verbosity < 2,
                    progress_bars=verbosity >= 1,
                    notify=self.stdout.write if verbosity >= 1 else lambda line: None,
                )
            except SetupFailed as exc:
                failed.append(spec)
                self.stderr.write(
                    self.style.ERROR(
                        f"{spec.setting}={spec.model_id!r}: {exc}. Without network, copy the model "
                        f"folder to this machine and set {spec.setting} to that directory."
                    )
                )
            else:
                self.stdout.write(self.style.SUCCESS(_summary(done)))
        if failed:
            names = ", ".join(spec.setting for spec in failed)
            raise CommandError(f"{len(failed)} of {len(specs)} model(s) not set up: {names}.")
        moved = cache_dir and options["dir"] and str(cache_dir) != settings.TINYRAG_MODEL_DIR
        if moved and verbosity >= 1:
            self.stdout.write(
                f"Set TINYRAG_MODEL_DIR={cache_dir} so that the app finds these models."
            )


def _summary(done: SetUpModel) -> str:
    spec, fetched, size = done.spec, done.fetched, format_size(done.size)
    if done.verified is None:
        return (
            f"{spec.setting}: {spec.model_id} is complete ({fetched.source}), {size} at "
            f"{fetched.path}; not loaded here (the describe worker loads it)."
        )
    verified = done.verified
    if spec.kind is ModelKind.TRANSLATE:
        return (
            f"{spec.setting}: {spec.model_id} works ({fetched.source}): translated a query on "
            f"{verified.device}/{verified.precision}, loaded and ran in {verified.seconds:.1f} s; "
            f"{size} at {fetched.path}"
        )
    return (
        f"{spec.setting}: {spec.model_id} works ({fetched.source}): dim {verified.dim}, "
        f"{verified.device}/{verified.precision}, loaded and ran in {verified.seconds:.1f} s; "
        f"{size} at {fetched.path}"
    )
