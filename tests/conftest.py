"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest

DEVDATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "devdata"
DEVDATA = DEVDATA_ROOT / "mmotu"
PUMCH = DEVDATA_ROOT / "pumch_thyroid"


def _require(path: Path) -> Path:
    """path, or skip the test when it is absent (fail instead under REQUIRE_DEVDATA=1)."""
    if not path.is_dir():
        msg = f"dev data not found at {path}"
        if os.environ.get("REQUIRE_DEVDATA") == "1":
            pytest.fail(msg + " (REQUIRE_DEVDATA=1)")
        pytest.skip(msg)
    return path


@pytest.fixture(scope="session")
def devdata() -> Path:
    """The internal MMOTU dev scans (annotated/, clean/, manifest.csv), read in place, never copied into
    the repository. Skips the test when absent, or fails it when REQUIRE_DEVDATA=1."""
    _require(DEVDATA / "annotated")
    return DEVDATA


@pytest.fixture(scope="session")
def devdata_pumch() -> Path:
    """The internal PUMCH thyroid dev scans (images/, manifest.csv with kinds and colour per scan: mostly
    white and grey marks), read in place; skipped or failed like `devdata`."""
    _require(PUMCH / "images")
    return PUMCH


LOCK = Path(__file__).resolve().parents[1] / "requirements.lock"


def locked_version(package: str) -> str | None:
    """The version requirements.lock pins for `package` (None when the lock does not list it)."""
    for line in LOCK.read_text().splitlines():
        name, sep, version = line.partition("==")
        if sep and name.strip().lower() == package.lower():
            return version.split()[0]
    return None


def drawing_cause(what_to_do_under_the_lock: str) -> str:
    """The sentence a test comparing against committed drawings fails with: the installed OpenCV differs from
    the locked one (the usual cause: 5.1 rasterises some glyphs differently from 5.0), or, under the lock, the
    drawing code changed."""
    import cv2

    locked = locked_version("opencv-python-headless")
    if locked and not locked.startswith(cv2.__version__):
        return (f"OpenCV {cv2.__version__} is installed, but the committed drawings were made with the locked "
                f"{locked} (requirements.lock), and OpenCV versions rasterise glyphs differently: install the locked "
                f"environment with `just setup` (or `pip install -r requirements.lock`) and rerun")
    return f"under the locked OpenCV {locked}, so the drawing code changed: {what_to_do_under_the_lock}"


SHARDS_SIZE_PX = 64
"""Image size of the `shards` fixture's samples."""


@pytest.fixture(scope="session")
def shards(tmp_path_factory) -> Path:
    """Tiny body_marker shards shared by the train, data, infer and report tests: train/ (16 samples in
    shards of 4) and val/ (6), SHARDS_SIZE_PX square, on 3 phantoms. Built once per session; read only."""
    from synth.build import BuildConfig, make_plan, run_build

    root = tmp_path_factory.mktemp("shards")
    for name, seed, n in (("train", 0, 16), ("val", 1, 6)):
        cfg = BuildConfig(kind="body_marker", n=n, size_px=SHARDS_SIZE_PX, shard_size=4, seed=seed, n_phantoms=3)
        run_build(make_plan(cfg), root / name)
    return root


@pytest.fixture(scope="session")
def runs(shards, tmp_path_factory) -> Path:
    """Tiny trained runs on `shards` with validation: n2n/, seg/ and seg2/ (another seed, for ensembles)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from train.config import TrainConfig
    from train.loop import train_run

    root = tmp_path_factory.mktemp("runs")
    for name, mode, seed in (("n2n", "n2n", 0), ("seg", "seg", 0), ("seg2", "seg", 1)):
        train_run(TrainConfig(shards=str(shards / "train"), out=str(root / name), val_shards=str(shards / "val"),
                              preset="cpu", width=8, batch_size=2, samples=8, crop=32, mode=mode, val_samples=6,
                              seed=seed))
    return root
