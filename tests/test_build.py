"""synth build: determinism across workers and parts, manifest, resume after a kill, refusals."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest

from synth import build
from synth.build import BuildConfig, BuildError, make_plan, run_build
from synth.kinds import CLASS_IDS, KINDS
from synth.shards import MANIFEST_NAME, Shard, list_shards, shard_sha256

SMALL = dict(size_px=96, n_phantoms=4, shard_size=3)


def _build(tmp_path, name, workers=1, part=None, **kw):
    cfg = BuildConfig(**{"kind": "body_marker", "n": 7, **SMALL, **kw})
    out = tmp_path / name
    return run_build(make_plan(cfg), out, workers=workers, part=part), out


def _hashes(out):
    return {p.name: shard_sha256(p) for p in list_shards(out)}


def test_build_writes_contract_and_manifest(tmp_path):
    summary, out = _build(tmp_path, "a")
    assert summary["status"] == "complete" and summary["shards_built"] == 3
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["n_samples"] == 7 and [e["n"] for e in manifest["shards"]] == [3, 3, 1]
    assert manifest["class_ids"] == {"body_marker": 1}
    for key in ("seed", "image_size", "compression", "package_version", "params", "icons_sha256", "clean_sha256"):
        assert key in manifest
    assert len(manifest["clean_sources"]) == 4
    with h5py.File(out / "shard-00000.h5", "r") as f:  # plain h5py, as users do
        assert f["noisy_a"][0].shape == (96, 96, 3) and f["noisy_a"].dtype == np.uint8
        assert f["mask"].shape == (3, 96, 96) and f["sample_id"][:].tolist() == [0, 1, 2]
        assert f["clean_id"].dtype == np.int32 and f["sample_id"].dtype == np.int64
        assert json.loads(f.attrs["params"])["kind"] == "body_marker"
        for j in range(3):
            a, b, m, mb = f["noisy_a"][j], f["noisy_b"][j], f["mask"][j], f["mask_b"][j]
            assert m.any() and mb.any(), "every sample carries its annotation"
            assert set(np.unique(m)) <= {0, 1}
            assert not np.array_equal(a, b)


def test_phantom_chrome_and_reflectors_are_in_the_clean_scan_and_never_masked(tmp_path):
    from synth.phantom import make_phantom, phantom_seed

    _, out = _build(tmp_path, "chrome", kind="radial_line", n=6, size_px=192, phantom_chrome=True,
                    phantom_reflectors=True, augment=False, soften=False)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["params"]["phantom_chrome"] is True and manifest["params"]["phantom_reflectors"] is True
    assert all(name.startswith("phantom+chrome+reflectors:") for name in manifest["clean_sources"])
    for shard in list_shards(out):
        with h5py.File(shard, "r") as f:
            for j in range(f["clean"].shape[0]):
                clean, noisy, mask = f["clean"][j], f["noisy_a"][j], f["mask"][j]
                # no augmentation: the clean scan is the phantom itself
                phantom = make_phantom(phantom_seed(0, int(f["clean_id"][j])), 192, chrome=True, reflectors=True)
                assert np.array_equal(clean, phantom)
                # no softening: the mask is exactly the changed pixels, so chrome (in both images) is never in it
                assert np.array_equal(mask > 0, (noisy != clean).any(axis=2))
    # a build without chrome keeps the fingerprint it had before the option existed (no key in params)
    _, plain = _build(tmp_path, "plain", kind="radial_line", n=2, size_px=192)
    params = json.loads((plain / MANIFEST_NAME).read_text())["params"]
    assert "phantom_chrome" not in params and "phantom_reflectors" not in params


def test_same_command_same_bytes_for_any_worker_count(tmp_path):
    _, one = _build(tmp_path, "w1", workers=1)
    _, two = _build(tmp_path, "w2", workers=2)
    assert _hashes(one) == _hashes(two) and len(_hashes(one)) == 3
    _, other_seed = _build(tmp_path, "s1", seed=1)
    assert _hashes(other_seed) != _hashes(one)


def test_parts_together_equal_one_build(tmp_path):
    _, full = _build(tmp_path, "full")
    out = tmp_path / "parts"
    out.mkdir()
    busy = out / "shard-00001.h5.tmp"  # as if part 2/2 were writing shard 1 right now on a shared folder
    busy.write_bytes(b"being written")
    s, _ = _build(tmp_path, "parts", part="1/2")
    assert s["status"] == "partial" and busy.exists(), "a part must not touch another part's temp files"
    s, _ = _build(tmp_path, "parts", part="2/2")
    assert s["status"] == "complete" and not busy.exists()
    assert _hashes(out) == _hashes(full)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert [e["index"] for e in manifest["shards"]] == [0, 1, 2]


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_builds_with_its_class_ids(tmp_path, kind):
    _, out = _build(tmp_path, kind, kind=kind, n=4, shard_size=4, fmt="zarr")
    with Shard(out / "shard-00000.zarr") as s:
        masks = np.concatenate([s.read("mask", 0, 4), s.read("mask_b", 0, 4)])
    ids = set(np.unique(masks)) - {0}
    if kind == "mixed":
        assert ids <= set(CLASS_IDS.values()) and len(ids) >= 2
    else:
        assert ids == {CLASS_IDS[kind]}


def test_rerun_skips_complete_shards(tmp_path):
    _, out = _build(tmp_path, "a")
    before = {p.name: p.stat().st_mtime_ns for p in list_shards(out)}
    s, _ = _build(tmp_path, "a")
    assert s["shards_built"] == 0 and s["shards_skipped"] == 3
    assert {p.name: p.stat().st_mtime_ns for p in list_shards(out)} == before


def test_corrupt_shard_is_rebuilt_on_rerun(tmp_path):
    _, out = _build(tmp_path, "a")
    good = _hashes(out)
    path = out / "shard-00001.h5"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    s, _ = _build(tmp_path, "a")
    assert s["shards_built"] == 1 and _hashes(out) == good


def test_different_build_in_out_is_refused_unless_overwrite(tmp_path, monkeypatch):
    _, out = _build(tmp_path, "a")
    with pytest.raises(BuildError, match=r"holds a different build \(other parameters and clean scans\).*--overwrite"):
        _build(tmp_path, "a", seed=5)
    # the same phantoms drawn by other phantom code (as after an upgrade): the message says so
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    (out / MANIFEST_NAME).write_text(json.dumps({**manifest, "clean_sha256": "0" * 64, "fingerprint": "0" * 64}))
    with pytest.raises(BuildError, match=r"same phantom scans, drawn by changed code \(synth/phantom.py"):
        _build(tmp_path, "a")
    (out / MANIFEST_NAME).write_text(json.dumps(manifest))
    # the same inputs drawn by an edited renderer: refused too, so a continued build never mixes two renderers
    assert manifest["drawing_code_sha256"] == build.drawing_code_sha256()
    monkeypatch.setattr(build, "drawing_code_sha256", lambda: "1" * 64)
    changed = r"same inputs, drawn by changed code \(synth/render/\*\.py, synth/raster.py, synth/images.py"
    with pytest.raises(BuildError, match=changed):
        _build(tmp_path, "a")
    monkeypatch.undo()
    cfg = BuildConfig(kind="body_marker", n=7, seed=5, **SMALL)
    s = run_build(make_plan(cfg), out, overwrite=True)
    assert s["status"] == "complete" and s["shards_built"] == 3
    (tmp_path / "junk").mkdir()
    (tmp_path / "junk" / "notes.txt").write_text("mine")
    with pytest.raises(BuildError, match="not empty"):
        _build(tmp_path, "junk")


def test_drawing_code_hash_covers_every_renderer_module(monkeypatch):
    """Every synth module the renderer loads (all of synth/render/, synth/raster.py, ...) is in the build's
    identity hash, and editing any one of them changes it."""
    root = Path(build.__file__).parent
    covered = {p.relative_to(root).as_posix() for p in build.drawing_code_files()}
    code = ("import sys, synth.render, synth.images; print(' '.join(sorted(m.__file__ for n, m in sys.modules.items()"
            " if n.startswith('synth.'))))")
    loaded = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    loaded = {Path(f).relative_to(root).as_posix() for f in loaded}
    on_disk = {f"render/{p.name}" for p in (root / "render").glob("*.py")} | {"raster.py"}
    assert on_disk <= loaded <= covered, (sorted(on_disk - loaded), sorted(loaded - covered))
    base = build.drawing_code_sha256()
    real = Path.read_bytes
    for rel in sorted(covered):
        edited = root / rel
        monkeypatch.setattr(Path, "read_bytes", lambda self, e=edited: real(self) + (b"#" if self == e else b""))
        assert build.drawing_code_sha256() != base, rel
    monkeypatch.undo()
    assert build.drawing_code_sha256() == base


def test_build_records_its_library_versions_and_refuses_to_mix_them(tmp_path, monkeypatch):
    import cv2

    import synth.build

    _, out = _build(tmp_path, "a", n=4)
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["libraries"] == {"numpy": np.__version__, "opencv": cv2.__version__,
                                     "albumentations": manifest["libraries"]["albumentations"]}
    with Shard(next(iter(list_shards(out)))) as s:
        assert s.attrs["libraries"] == manifest["libraries"]
    (out / "shard-00001.h5").unlink()  # an unfinished build, to be finished after an upgrade
    real = synth.build.rendering_libraries
    monkeypatch.setattr(synth.build, "rendering_libraries", lambda: {**real(), "numpy": "9.9.9"})
    with pytest.raises(BuildError, match=f"numpy {np.__version__} \\(now 9.9.9\\).*--overwrite") as err:
        _build(tmp_path, "a", n=4)
    assert "opencv" not in str(err.value)  # only what changed is named
    assert not (out / "shard-00001.h5").exists() and (out / "shard-00000.h5").exists()  # nothing touched


def test_full_disk_keeps_complete_shards_and_rerun_finishes(tmp_path, monkeypatch):
    from synth import shards

    _, ref = _build(tmp_path, "ref")
    calls = {"n": 0}
    real_write = shards.ShardWriter.write

    def write_until_full(self, j, sample):
        if self.final.parent.name != "a":  # the size estimate's probe shard, written to a temporary folder
            return real_write(self, j, sample)
        calls["n"] += 1
        if calls["n"] == 5:  # the 5th sample: shard 1 is half written
            raise OSError(28, "No space left on device")
        return real_write(self, j, sample)

    monkeypatch.setattr(shards.ShardWriter, "write", write_until_full)
    with pytest.raises(BuildError, match="disk is full.*1 complete shards are kept.*rerun"):
        _build(tmp_path, "a")
    out = tmp_path / "a"
    assert [p.name for p in list_shards(out)] == ["shard-00000.h5"]
    assert not list(out.glob("*.tmp"))
    monkeypatch.setattr(shards.ShardWriter, "write", real_write)
    s, _ = _build(tmp_path, "a")
    assert s["shards_built"] == 2 and _hashes(out) == _hashes(ref)


def test_rerun_removes_manifest_temps_of_killed_runs_only(tmp_path):
    import socket

    _, out = _build(tmp_path, "a", n=4)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    host = socket.gethostname()
    orphan = out / f"{MANIFEST_NAME}.{host}.{dead.pid}.tmp"  # a run killed while it rewrote the manifest
    live = out / f"{MANIFEST_NAME}.{host}.{os.getppid()}.tmp"  # a live process of this host may be writing
    elsewhere = out / f"{MANIFEST_NAME}.other-host.example.{dead.pid}.tmp"  # cannot be checked from here
    for p in (orphan, live, elsewhere):
        p.write_text("{")
    _build(tmp_path, "a", n=4)
    assert not orphan.exists() and live.exists() and elsewhere.exists()


def test_kill_mid_build_then_rerun_resumes(tmp_path):
    _, ref = _build(tmp_path, "ref", n=40, shard_size=2)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "synth.cli", "build", "--type", "body_marker", "--n", "40", "--size", "96",
           "--phantoms", "4", "--shard-size", "2", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and len(list_shards(out)) < 2:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = list_shards(out)
    assert 2 <= len(done) < 20, "kill should land mid-build"
    for p in done:  # whatever is visible under a final name is complete
        with Shard(p) as s:
            assert len(s) == 2
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert f"{20 - len(done)} / {len(done)}" in r.stdout  # built / already complete
    assert _hashes(out) == _hashes(ref)
    assert not list(out.glob("*.tmp"))


@pytest.mark.parametrize("bad,match", [
    (dict(n=0), "--n must be at least 1"),
    (dict(kind="arrows"), "unknown --type 'arrows'"),
    (dict(compression="gzip-12"), "--compression"),
])
def test_bad_config_is_refused(bad, match):
    with pytest.raises(BuildError, match=match):
        make_plan(BuildConfig(**{"kind": "body_marker", "n": 4, **SMALL, **bad}))


@pytest.mark.slow
@pytest.mark.parametrize("fmt", ["hdf5", "zarr"])
def test_full_size_mixed_build_is_identical_across_workers_and_parts(tmp_path, fmt):
    """The default 512x512 size, every kind at once: 1 worker, 2 workers and two parts agree byte for byte."""
    kw = dict(kind="mixed", n=24, size_px=512, shard_size=6, n_phantoms=8, fmt=fmt)
    _, one = _build(tmp_path, "one", **kw)
    _, two = _build(tmp_path, "two", workers=2, **kw)
    for part in ("1/2", "2/2"):
        _build(tmp_path, "parts", part=part, **kw)
    assert _hashes(one) == _hashes(two) == _hashes(tmp_path / "parts")
    assert len(_hashes(one)) == 4


def test_augmenter_never_calls_the_network():
    """albumentations asks PyPI for its version on import unless told not to; offline hospital machines
    would pay a DNS timeout (and a warning) in every build worker."""
    code = (
        "import os, threading, urllib.request as u\n"
        "os.environ.pop('NO_ALBUMENTATIONS_UPDATE', None)\n"
        "calls = []\n"
        "def refuse(self, *a, **k):\n"
        "    calls.append(a)\n"
        "    raise OSError('offline')\n"
        "u.OpenerDirector.open = refuse\n"
        "from synth.images import Augmenter\n"
        "Augmenter()\n"
        "[t.join() for t in threading.enumerate() if t is not threading.current_thread()]\n"
        "print('network calls:', len(calls))\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=Path(__file__).parent.parent)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "network calls: 0" in r.stdout
    assert "version info" not in r.stderr


def test_parallel_build_never_calls_the_network(tmp_path):
    """The build's worker server imports albumentations itself; with every proxy pointing at a closed
    port, a version check anywhere in the build would print albumentations' 'Error fetching version info'."""
    env = {k: v for k, v in os.environ.items() if k != "NO_ALBUMENTATIONS_UPDATE"}
    env.update({k: "http://127.0.0.1:9" for k in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY")})
    r = subprocess.run(
        [sys.executable, "-m", "synth.cli", "build", "--type", "body_marker", "--n", "4", "--size", "64",
         "--shard-size", "2", "--workers", "2", "--out", str(tmp_path / "s")],
        capture_output=True, text=True, env=env, cwd=Path(__file__).parent.parent,
    )
    assert r.returncode == 0, r.stderr[-2000:]
    assert "version info" not in r.stderr


def test_size_estimate_is_measured_and_a_full_disk_is_refused_before_work(tmp_path, monkeypatch):
    cfg = BuildConfig(kind="radial_line", n=12, size_px=128, n_phantoms=4, shard_size=6)
    plan = make_plan(cfg)
    per_sample = build.measure_bytes_per_sample(plan)
    summary = run_build(plan, tmp_path / "ok")
    assert abs(summary["estimated_bytes"] - summary["bytes"]) <= 0.25 * summary["bytes"]
    assert summary["estimated_bytes"] == int(per_sample * 12)
    # the filesystem's free space is the environment, not the code under test: pretend it is nearly full
    monkeypatch.setattr(build, "free_bytes", lambda out: 1000)
    with pytest.raises(BuildError, match=r"has 0\.0 GB free but these 12 samples need about .*--ignore-disk-space"):
        run_build(plan, tmp_path / "full")
    assert not list((tmp_path / "full").glob("*.h5"))
    assert run_build(plan, tmp_path / "forced", check_space=False)["status"] == "complete"
