"""Shared pytest fixtures."""

import os
from pathlib import Path

import pytest

DEVDATA = Path(__file__).resolve().parents[2] / "shared" / "devdata" / "mmotu"


@pytest.fixture(scope="session")
def devdata() -> Path:
    """The internal MMOTU dev scans (annotated/, clean/, manifest.csv), read in place, never copied into
    the repository. Skips the test when absent, or fails it when REQUIRE_DEVDATA=1."""
    if not (DEVDATA / "annotated").is_dir():
        msg = f"dev data not found at {DEVDATA}"
        if os.environ.get("REQUIRE_DEVDATA") == "1":
            pytest.fail(msg + " (REQUIRE_DEVDATA=1)")
        pytest.skip(msg)
    return DEVDATA
