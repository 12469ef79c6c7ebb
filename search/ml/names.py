"""What a configured model id names, read from the string alone (no torch, no filesystem):
importable by the web tier, which shows model ids to people."""

from __future__ import annotations

from pathlib import Path, PurePosixPath

# The hub organisation of bare sentence-transformers names ("clip-ViT-B-32").
SENTENCE_TRANSFORMERS_ORG = "sentence-transformers"
# sentence-transformers' own file at a model folder's root (a hub snapshot or a local copy)
SENTENCE_TRANSFORMERS_MARKER = "modules.json"


def looks_like_path(model_id: str) -> bool:
    """A filesystem path rather than a hub id ("org/name" or a bare "name")."""
    return (
        model_id.startswith((".", "~", "/"))
        or Path(model_id).is_absolute()
        or model_id.count("/") > 1
        or "\\" in model_id
    )


def hub_repo_id(model_id: str, bare_name_org: str | None = None) -> str | None:
    """The hub repository a model id names: "org/name" as is, a bare name in `bare_name_org`
    (as sentence-transformers resolves "clip-ViT-B-32"), or None where bare names are not hub
    ids."""
    if "/" in model_id:
        return model_id
    return f"{bare_name_org}/{model_id}" if bare_name_org else None


def display_model_id(model_id: str) -> str:
    """A model id as people (pages, API answers, downloads) see it: a hub id as is, a local
    directory by its name alone, since its path tells how the server's disk is laid out."""
    raw = model_id.strip()
    if not looks_like_path(raw):
        return raw
    return PurePosixPath(raw.replace("\\", "/").rstrip("/")).name or "local model"
