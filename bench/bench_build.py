"""Benchmark `synth build` at 512x512, body_marker, on this machine, all measured in one run:

1. codecs: write rate (one process, precomputed samples) and bytes per sample, for HDF5 and Zarr;
2. the write-only floor (the default codec writing precomputed arrays) with 1 and 2 processes, next to
   full synthesis (`run_build`) with 1 and 2 workers.
Writes bench/results/build.md. Usage: python bench/bench_build.py [--n-shards 4] [--shard-size 32]
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np
from common import machine, table

from synth.build import BuildConfig, SampleMaker, make_plan, run_build
from synth.shards import DEFAULT_COMPRESSION, ShardWriter, shard_bytes, shard_name

SIZE = 512
CODECS = [
    ("hdf5", "none"),
    ("hdf5", "lzf"),
    ("hdf5", "gzip-1"),
    ("hdf5", "gzip-4"),
    ("hdf5", "gzip-6"),
    ("hdf5", "zstd-1"),
    ("hdf5", "blosc-zstd-1"),
    ("hdf5", "blosc-zstd-5"),
    ("zarr", "none"),
    ("zarr", "zstd-1"),
    ("zarr", "zstd-3"),
    ("zarr", "blosc-zstd-5"),
]


def precompute(n: int) -> tuple[list[dict], float]:
    plan = make_plan(BuildConfig(kind="body_marker", n=n, size_px=SIZE))
    maker = SampleMaker(plan)
    for k in range(len(plan.clean)):  # warm the phantom cache, as it is during a long build
        maker.clean(k)
    t0 = time.perf_counter()
    samples = [maker(i) for i in range(n)]
    return samples, (time.perf_counter() - t0) / n


def write_shard(path: Path, fmt: str, codec: str, samples: list[dict], n: int) -> None:
    with ShardWriter(path, fmt, n, SIZE, SIZE, codec, {"format_version": 1, "compression": codec}) as w:
        for j in range(n):
            w.write(j, samples[j % len(samples)])


def _floor_worker(args):
    path, fmt, codec, n, pre = args
    import cv2

    cv2.setNumThreads(1)
    with np.load(pre) as z:
        samples = [{k[len(f"{j}_") :]: z[k] for k in z.files if k.startswith(f"{j}_")} for j in range(int(z["count"]))]
    t0 = time.time()  # wall clock, comparable across processes
    write_shard(Path(path), fmt, codec, samples, n)
    return t0, time.time()


def floor_rate(
    tmp: Path, fmt: str, codec: str, workers: int, n_shards: int, shard_size: int, samples: list[dict]
) -> float:
    """Samples/s writing precomputed samples, `workers` processes each writing whole shards."""
    pre = tmp / "precomputed.npz"
    if not pre.exists():
        np.savez(pre, count=len(samples), **{f"{j}_{k}": v for j, s in enumerate(samples) for k, v in s.items()})
    tasks = [(str(tmp / shard_name(k, fmt)), fmt, codec, shard_size, str(pre)) for k in range(n_shards)]
    with mp.get_context("spawn").Pool(workers) as pool:
        spans = pool.map(_floor_worker, tasks, chunksize=1)
    for k in range(n_shards):
        (tmp / shard_name(k, fmt)).unlink(missing_ok=True)
    return n_shards * shard_size / (max(e for _, e in spans) - min(s for s, _ in spans))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n-shards", type=int, default=4)
    ap.add_argument("--shard-size", type=int, default=128)
    ap.add_argument("--n-pre", type=int, default=16)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_build_"))
    lines = [
        "# synth build benchmark",
        "",
        f"Machine: {machine()}",
        "",
        f"body_marker, {SIZE}x{SIZE}, phantom clean scans, shipped icons, capture softening on.",
        "",
    ]
    samples, render_s = precompute(args.n_pre)
    lines += [
        f"Rendering alone (augment + two annotation draws + softening, no writing): "
        f"{1 / render_s:.1f} samples/s on one core ({render_s * 1e3:.1f} ms per sample).",
        "",
    ]
    print(lines[-2], flush=True)

    rows = []
    for fmt, codec in CODECS:
        path = tmp / shard_name(0, fmt)
        n = 48
        t0 = time.perf_counter()
        write_shard(path, fmt, codec, samples, n)
        dt = time.perf_counter() - t0
        size = shard_bytes(path)
        shutil.rmtree(path) if fmt == "zarr" else path.unlink()
        raw = sum(a.nbytes for k, a in samples[0].items())
        rows.append(
            [
                fmt,
                codec,
                f"{n / dt:.1f}",
                f"{size / n / 1e3:.0f}",
                f"{raw / (size / n):.2f}",
                "yes" if codec in ("none", "lzf") or codec.startswith("gzip") or fmt == "zarr" else "needs hdf5plugin",
            ]
        )
        print(rows[-1], flush=True)
    lines += [
        "## Codecs (one process writing precomputed samples)",
        "",
        table(["format", "codec", "write samples/s", "kB/sample", "ratio", "plain reader"], rows),
        "",
    ]

    fmt, codec = "hdf5", DEFAULT_COMPRESSION["hdf5"]
    lines += [
        "(48 samples per codec, cycling the precomputed ones; `plain reader` = readable by plain h5py/zarr "
        "with no extra import.)",
        "",
    ]
    rates = {}
    for workers in (1, 2):
        rates[("floor", workers)] = floor_rate(tmp, fmt, codec, workers, args.n_shards, args.shard_size, samples)
        out = tmp / f"build{workers}"
        plan = make_plan(
            BuildConfig(kind="body_marker", n=args.n_shards * args.shard_size, size_px=SIZE, shard_size=args.shard_size)
        )
        s = run_build(plan, out, workers=workers)
        rates[("synth", workers)] = s["samples_per_s"]
        bytes_per_sample = s["bytes_per_sample"]
        shutil.rmtree(out)
        print(workers, rates, flush=True)
    rows = [
        [
            w,
            f"{rates[('floor', w)]:.1f}",
            f"{rates[('synth', w)]:.1f}",
            f"{rates[('synth', w)] / rates[('floor', w)]:.2f}",
        ]
        for w in (1, 2)
    ]
    lines += [
        f"## Full synthesis vs the write-only floor ({fmt}, {codec}, {args.n_shards} shards of {args.shard_size})",
        "",
        table(["workers", "floor samples/s", "synthesis samples/s", "synthesis / floor"], rows),
        "",
        f"2 workers / 1 worker: synthesis {rates[('synth', 2)] / rates[('synth', 1)]:.2f}x, "
        f"floor {rates[('floor', 2)] / rates[('floor', 1)]:.2f}x. "
        f"Bytes per sample (lossless): {bytes_per_sample / 1e3:.0f} kB.",
        "",
    ]
    text = "\n".join(lines)
    Path(__file__).parent.joinpath("results").mkdir(exist_ok=True)
    Path(__file__).parent.joinpath("results", "build.md").write_text(text)
    print(text)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
