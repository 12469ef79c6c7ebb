"""Where dataset roots may lie: the app serves files from them to every signed-in user, so a
root is a directory the operator chose (TINYRAG_DATA_DIR, TINYRAG_DATASET_ROOTS), never `/`,
the uploads' folder (MEDIA_ROOT), a folder above it or one inside it, whatever is typed in the
admin."""

from __future__ import annotations

from pathlib import Path

from django.conf import settings


def allowed_bases() -> list[Path]:
    """TINYRAG_DATA_DIR and the directories of TINYRAG_DATASET_ROOTS, resolved."""
    bases = [settings.TINYRAG_DATA_DIR, *settings.TINYRAG_DATASET_ROOTS]
    return [Path(base).expanduser().resolve() for base in bases]


def root_problem(root: str) -> str | None:
    """Why `root` may not be a dataset root, or None if it may (symbolic links resolved)."""
    path = Path(root)
    if not path.is_absolute():
        return "The root must be an absolute path."
    resolved = path.resolve()
    bases = allowed_bases()
    if not any(resolved.is_relative_to(base) for base in bases):
        where = ", ".join(str(base) for base in bases)
        return f"The root must lie in {where} (TINYRAG_DATA_DIR or TINYRAG_DATASET_ROOTS)."
    media = Path(settings.MEDIA_ROOT).resolve()
    # above the uploads it serves every user's; inside them (media/uploads/<user>), one user's
    if media.is_relative_to(resolved) or resolved.is_relative_to(media):
        return "The root must not hold or lie among the uploaded images (MEDIA_ROOT)."
    return None
