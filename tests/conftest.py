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
