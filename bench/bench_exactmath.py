"""What bit-identical rendering across processors costs (synth/exactmath.py), measured side by side in one run.

Two settings, interleaved (A B A B ...), each timed on the same work:
- exact: as shipped: exactmath's float64 transcendentals, and OpenCV without run-time SIMD dispatch or IPP;
- dispatch: what the code did before: numpy's and OpenCV's processor-specific kernels (exactmath's functions
  swapped for numpy's float32 ones and cv2.GaussianBlur, `opencv_baseline` for a no-op).
Timed: phantom scans (make_phantom at 512 px), the build's per-sample rendering (SampleMaker, phantoms
cached) for three kinds at 512 px, and whole one-worker builds (`run_build`: phantoms, rendering, gzip-1
HDF5 writing) of body_marker and vascular_flow. Writes bench/results/exactmath.md.
Usage: python bench/bench_exactmath.py [--samples 48] [--phantoms 12] [--build-n 256] [--repeats 3]
"""

from __future__ import annotations

import argparse
import contextlib
import shutil
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
from common import machine, table

import synth.exactmath as em
from synth.build import BuildConfig, SampleMaker, make_plan, run_build
from synth.phantom import make_phantom

KINDS = ("body_marker", "radial_line", "vascular_flow")
BUILD_KINDS = ("body_marker", "vascular_flow")
EXACT = {name: getattr(em, name) for name in ("exp", "log", "sin", "cos", "sincos", "tan", "tanh", "power", "atan2",
                                              "hypot", "gaussian_blur", "opencv_baseline")}


def _gaussian_blur(img, sigma_x, sigma_y=None, ksize=0, border=None):
    return cv2.GaussianBlur(img, (ksize, ksize), sigmaX=sigma_x, sigmaY=sigma_x if sigma_y is None else sigma_y,
                            borderType=cv2.BORDER_REFLECT_101 if border is None else border)


DISPATCH = {"exp": np.exp, "log": np.log, "sin": np.sin, "cos": np.cos, "sincos": lambda x: (np.sin(x), np.cos(x)),
            "tan": np.tan, "tanh": np.tanh, "power": np.power, "atan2": np.arctan2, "hypot": np.hypot,
            "gaussian_blur": _gaussian_blur, "opencv_baseline": contextlib.nullcontext}


def use(setting: dict) -> None:
    for name, fn in setting.items():
        setattr(em, name, fn)


def time_phantoms(n: int) -> float:
    t = time.perf_counter()
    for seed in range(n):
        make_phantom(seed, 512)
    return (time.perf_counter() - t) / n


def time_samples(maker: SampleMaker, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        maker(i)
    return (time.perf_counter() - t) / n


def time_build(kind: str, n: int, tmp: Path) -> float:
    """Seconds per sample of a whole one-worker build (phantoms made afresh, shards written)."""
    out = tmp / "build"
    t = time.perf_counter()
    run_build(make_plan(BuildConfig(kind=kind, n=n, size_px=512)), out)
    seconds = time.perf_counter() - t
    shutil.rmtree(out)
    return seconds / n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=48)
    ap.add_argument("--phantoms", type=int, default=12)
    ap.add_argument("--build-n", type=int, default=256)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_exactmath_"))
    cv2.setNumThreads(1)  # one build worker's view: parallelism comes from processes
    makers = {}
    for kind in KINDS:
        makers[kind] = SampleMaker(make_plan(BuildConfig(kind=kind, n=args.samples, size_px=512, n_phantoms=16)))
        for i in range(args.samples):  # warm the phantom cache of the samples timed
            makers[kind].clean(makers[kind].rendered(i)[1])
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.repeats):
        for label, setting in (("exact", EXACT), ("dispatch", DISPATCH)):
            use(setting)
            times.setdefault(("phantom", label), []).append(time_phantoms(args.phantoms))
            for kind in KINDS:
                times.setdefault((kind, label), []).append(time_samples(makers[kind], args.samples))
            for kind in BUILD_KINDS:
                times.setdefault((f"build {kind}", label), []).append(time_build(kind, args.build_n, tmp))
    use(EXACT)
    shutil.rmtree(tmp)
    rows = []
    names = {"phantom": "phantom scan (make_phantom, 512 px)",
             **{k: f"{k} sample (512 px, rendering only)" for k in KINDS},
             **{f"build {k}": f"{k} build, per sample ({args.build_n} at 512 px, 64 phantoms, 1 worker)"
                for k in BUILD_KINDS}}
    for what, name in names.items():
        exact, dispatch = min(times[(what, "exact")]), min(times[(what, "dispatch")])
        rows.append([name, f"{1000 * dispatch:.1f}", f"{1000 * exact:.1f}", f"{exact / dispatch:.2f}x"])
    lines = [
        "# Bit-identical rendering: what it costs",
        "",
        f"Machine: {machine()}. One process, one OpenCV thread; best of {args.repeats} interleaved repeats; "
        f"{args.phantoms} phantoms, {args.samples} samples per kind (phantom scans cached, so the sample rows "
        "time rendering, augmentation and softening only).",
        "",
        table(["work", "dispatch ms", "exact ms", "exact / dispatch"], rows),
        "",
        "`dispatch` is the earlier code path (numpy's and OpenCV's processor-specific kernels); `exact` is what "
        "ships (synth/exactmath.py). A build renders each phantom once per worker, so the sample rows are what "
        "a long build pays on top of writing; the build rows are what a user waits for.",
    ]
    out = Path(__file__).parent / "results" / "exactmath.md"
    out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
