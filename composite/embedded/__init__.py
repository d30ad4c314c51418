"""The embedded default model: a tiny ChatGLM3-format GLM trained in this repo (data, trainer, eval, export).

`python -m composite.embedded train|eval|bench|export` reproduces and measures the committed model in `model/`.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DEFAULT_WORKDIR", "MODEL_DIR", "MODEL_NAME"]

MODEL_DIR = Path(__file__).resolve().parent / "model"
MODEL_NAME = "composite-embedded"
DEFAULT_WORKDIR = Path.home() / ".cache" / "composite-embedded"
