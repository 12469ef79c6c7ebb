"""Errors of the model layer: one clear line each, fit for a page, an API error or a command."""

from __future__ import annotations

from search.errors import Unavailable
from search.ml.names import display_model_id


class ModelError(Unavailable):
    """Base class of the errors raised by search.ml: a model the server cannot use."""


class DeviceError(ModelError):
    """TINYRAG_DEVICE names a device that is unknown or absent on this machine."""


class ModelLoadError(ModelError):
    """A model cannot be loaded: missing, offline and not cached, or not the expected kind.

    The message names the model and the setting (environment variable) that can point at a
    local directory instead, because that is what an operator without network can act on. It
    reaches pages and API answers, so a local model is named by its directory's name, never its
    path (`model_id` keeps the setting's value).
    """

    def __init__(self, model_id: str, setting: str, reason: str) -> None:
        self.model_id = model_id
        self.setting = setting
        self.reason = reason
        super().__init__(
            f"Cannot load model {display_model_id(model_id)!r}: {reason}. Run "
            "`manage.py setup_models` where the "
            f"Hugging Face hub is reachable, or set {setting} to a local directory that holds "
            "the model."
        )


def first_line(exc: BaseException) -> str:
    """An exception as one line for a message: its first line, no final period."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0].rstrip(".")
