"""The ready model that ships inside the package: where its files are, used when no --checkpoint is given."""

from __future__ import annotations

from pathlib import Path

from train.checkpoint import TrainError

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
DETECTOR = WEIGHTS_DIR / "detector.pt"
FILLER = WEIGHTS_DIR / "filler.pt"


def default_checkpoint() -> Path:
    """The shipped multi-kind detector (a seg checkpoint with a class per kind)."""
    if not DETECTOR.is_file():
        raise TrainError(f"no shipped model in this install ({DETECTOR} is missing): pass --checkpoint, "
                         "or rebuild it with `just release-model`.")
    return DETECTOR


def default_fill() -> Path | None:
    """The shipped N2N filler for the detector's masks, or None when it is absent (inpainting then)."""
    return FILLER if FILLER.is_file() else None
