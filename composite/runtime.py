"""Old import path of the local backend, kept for users and tests: see `composite.backends.local`."""

from __future__ import annotations

from .backends.base import Backend, ModelInfo
from .backends.local import (
    DEVICES,
    DTYPES,
    EMBEDDED_MODEL_DIR,
    MIN_ANSWER_TOKENS,
    SMALL_MODEL_PARAMETERS,
    LocalRuntime,
    fit_history,
    load_model,
    pick_device,
    pick_dtype,
    resolve_model_path,
)

__all__ = [
    "EMBEDDED_MODEL_DIR",
    "DEVICES",
    "DTYPES",
    "MIN_ANSWER_TOKENS",
    "SMALL_MODEL_PARAMETERS",
    "Backend",
    "ModelInfo",
    "LocalRuntime",
    "load_model",
    "resolve_model_path",
    "fit_history",
    "pick_device",
    "pick_dtype",
]
