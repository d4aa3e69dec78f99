"""Ctrl-C stops `synth build` within seconds at any point, keeps complete shards, exits non-zero with a
sentence, and the rerun finishes the same build byte for byte."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

BUILD = ["--type", "body_marker", "--n", "96", "--size", "256", "--shard-size", "16", "--phantoms", "8"]
STOP_WITHIN_S = 10.0
"""Seconds from Ctrl-C to exit. Measured on an idle 2-core machine: about 1 s at every point; the bound leaves
room for a machine that is busy with other work (a load of 13 on 2 cores took 6.8 s at worker start-up)."""


def _synth(*args: str) -> list[str]:
    return [sys.executable, "-c", "from synth.cli import main; main()", "build", *BUILD, *args]


def _shards(out: Path) -> dict[str, str]:
    manifest = json.loads((out / "manifest.json").read_text())
    return {e["file"]: e["sha256"] for e in manifest["shards"]}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> dict[str, str]:
    out = tmp_path_factory.mktemp("reference") / "shards"
    subprocess.run(_synth("--workers", "2", "--out", str(out)), check=True, capture_output=True, timeout=300)
    return _shards(out)


def _wait_for(what: str, out: Path, proc: subprocess.Popen, timeout_s: float = 120) -> None:
    """Block until the build reaches `what` (the point at which the test sends Ctrl-C)."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if proc.poll() is not None:
            pytest.fail(f"the build ended (rc {proc.returncode}) before reaching {what!r}")
        if what == "start":
            return
        if what == "workers starting" and (out / "manifest.json").exists():
            return  # the manifest is written just before the pool starts
        if what == "first shard" and any(p.name.endswith(".tmp") for p in out.glob("*")):
            return
        if what == "between shards" and out.is_dir() and any(p.suffix == ".h5" for p in out.glob("*.h5")):
            return
        time.sleep(0.01)
    pytest.fail(f"the build never reached {what!r}")


@pytest.mark.parametrize("point,workers,delay_s", [
    ("start", 2, 0.3),               # imports and the plan: before any pool exists
    ("workers starting", 2, 0.0),    # the pool's processes are being forked and import the renderer
    ("first shard", 2, 0.0),         # a shard's temp file is being written
    ("between shards", 2, 0.0),      # some shards complete, others queued
    ("first shard", 1, 0.0),         # the single-process path
])
def test_ctrl_c_stops_keeps_and_resumes(point, workers, delay_s, reference, tmp_path):
    out = tmp_path / "shards"
    # a new session: the signal goes to the whole process group, as a terminal's Ctrl-C does
    proc = subprocess.Popen(_synth("--workers", str(workers), "--out", str(out)), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _wait_for(point, out, proc)
        time.sleep(delay_s)
        t_sent = time.monotonic()
        os.killpg(proc.pid, signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
        stopped_s = time.monotonic() - t_sent
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode != 0, f"the build ignored Ctrl-C at {point!r} and finished:\n{stderr}"
    assert stopped_s < STOP_WITHIN_S, f"took {stopped_s:.1f} s to stop at {point!r}"
    assert "interrupted:" in stderr and "shards" in stderr and "Rerun" in stderr.replace("rerun", "Rerun"), stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    if out.is_dir():
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")], "half-written shards left behind"
        kept = _shards(out) if (out / "manifest.json").exists() else {}
        assert all(reference[name] == sha for name, sha in kept.items())
        assert f"{len(kept)} complete shards" in stderr or (not kept and "0 shards" in stderr)
    done = subprocess.run(_synth("--workers", str(workers), "--out", str(out)), capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert _shards(out) == reference
