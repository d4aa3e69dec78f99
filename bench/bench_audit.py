"""Benchmark `train audit`: scans per second and peak memory (RSS) on this machine's CPU cores, over phantom
512x512 scans with scanner-like marks, half PNG, half DICOM (uncompressed RGB and JPEG baseline YBR_FULL_422).

The detector is a registry model (n2n_unet with a class per kind) saved as `train run` saves a checkpoint; its
weights read marks by colour (tests/test_audit.py colour_detector), so the audit finds, draws and inpaints real
detections; its cost is that of an n2n_unet of the given width at 512 px. Each audit runs as its own process
(`python -m train.cli audit`, torch on --threads threads); peak RSS is that process's (os.wait4). Runs:
the first quarter of the scans and all of them (memory must not grow with the archive), then a rerun of
the full audit (everything skipped: the cost of resuming). Writes bench/results/audit.md.

Usage: python bench/bench_audit.py [--n 200] [--width 8] [--threads 2] [--out /tmp/bench_audit]
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from common import machine, table

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the colour-keyed detector and the phantom marks live with the tests

from test_audit import colour_detector, write_png  # noqa: E402
from test_dicom import write_dicom  # noqa: E402
from test_review import DEMO, draw_marks  # noqa: E402

from synth.phantom import make_phantom  # noqa: E402

SIZE = 512
BASES = 25
"""Distinct phantoms; each carries several mark layouts (making a 512 px phantom is slower than auditing it)."""


def make_archive(root: Path, n: int) -> dict[str, int]:
    """n scans under root/part1 (the first quarter) and root/part2: PNG, DICOM RGB, DICOM JPEG in turn."""
    bases = [make_phantom(i, SIZE) for i in range(BASES)]
    counts = {"png": 0, "dcm_rgb": 0, "dcm_jpeg": 0}
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([11, i]))
        img = draw_marks(bases[i % BASES], DEMO[i % len(DEMO)], rng)
        folder = root / ("part1" if i < n // 4 else "part2")
        kind = ("png", "dcm_rgb", "png", "dcm_jpeg")[i % 4]
        if kind == "png":
            write_png(folder / f"scan_{i:04d}.png", img)
        else:
            write_dicom(folder / f"scan_{i:04d}.dcm", [img], jpeg=kind == "dcm_jpeg", BodyPartExamined="BREAST")
        counts[kind] += 1
    return counts


def audit(inputs: list[Path], out: Path, ckpt: Path, threads: int) -> tuple[float, float, str]:
    """(wall seconds, peak RSS MiB, last line of output) of one `train audit` process."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads), "HF_HUB_OFFLINE": "1"}
    cmd = [sys.executable, "-m", "train.cli", "audit", *map(str, inputs), "--out", str(out), "--checkpoint", str(ckpt)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stdout = proc.stdout.read()
    proc.stderr.read()
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"audit failed:\n{stdout}")
    return wall, usage.ru_maxrss / 1024, stdout.strip().splitlines()[0]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200, help="scans")
    ap.add_argument("--width", type=int, default=8, help="n2n_unet width of the detector (48: the paper's)")
    ap.add_argument("--threads", type=int, default=2, help="torch/OpenCV threads (cores used)")
    ap.add_argument("--out", type=Path, default=Path("/tmp/bench_audit"), help="work folder (deleted first)")
    ap.add_argument("--report", type=Path, default=ROOT / "bench" / "results" / "audit.md")
    args = ap.parse_args()
    shutil.rmtree(args.out, ignore_errors=True)
    load_before = os.getloadavg()[0]
    t0 = time.perf_counter()
    counts = make_archive(args.out / "archive", args.n)
    make_s = time.perf_counter() - t0
    ckpt = colour_detector(args.out / "detector.pt", size_px=SIZE, width=args.width)
    part1 = args.out / "archive" / "part1"
    n1 = len(list(part1.iterdir()))
    rows = []
    for label, inputs, out, n in [
        (f"first {n1} scans", [part1], args.out / "audit_part", n1),
        (f"all {args.n} scans", [args.out / "archive"], args.out / "audit_all", args.n),
        (f"rerun of all {args.n} (all skipped)", [args.out / "archive"], args.out / "audit_all", args.n),
    ]:
        wall, rss, line = audit(inputs, out, ckpt, args.threads)
        rows.append([label, n, f"{wall:.1f}", f"{n / wall:.2f}", f"{rss:.0f}"])
        print(label, f"{wall:.1f} s, {n / wall:.2f} scans/s, peak RSS {rss:.0f} MiB |", line, flush=True)
    shared = ": the cores were shared with other work, so these rates are lower bounds" if load_before > 1.5 else ""
    # the marginal rate: the full audit's extra scans over the extra time, without the process start-up
    (w1, wall_all) = float(rows[0][2]), float(rows[1][2])
    marginal = (args.n - n1) / (wall_all - w1) if wall_all > w1 else float("nan")
    rows[1].append(f"{marginal:.2f}")
    rows[0].append("")
    rows[2].append("")
    text = "\n\n".join([
        "# train audit: scans per second and peak memory",
        __doc__.split("\n\n")[1].replace("\n", " "),
        f"Archive: {args.n} phantom scans of {SIZE}x{SIZE} ({counts['png']} PNG, {counts['dcm_rgb']} DICOM RGB "
        f"uncompressed, {counts['dcm_jpeg']} DICOM JPEG baseline YBR_FULL_422), made in {make_s:.0f} s. Detector: "
        f"n2n_unet width {args.width}, 5 classes, trained size {SIZE} px. Threads: {args.threads}. "
        f"Command: `python bench/bench_audit.py --n {args.n} --width {args.width} --threads {args.threads}`.",
        f"Machine: {machine()}. Load average (1 min) {load_before:.1f} before the runs, {os.getloadavg()[0]:.1f} "
        f"after{shared}.",
        table(["run", "scans", "wall s", "scans/s", "peak RSS MiB", "marginal scans/s"], rows),
        "Wall time includes the process start (Python, torch and pydicom imports, about 3-5 s) and rebuilding "
        "audit.csv, audit.json and the review page from the journal at the end; peak RSS includes torch itself. "
        "The marginal rate is the full audit's extra scans over its extra time against the first-quarter audit: "
        "the rate without the start-up.",
    ]) + "\n"
    args.report.parent.mkdir(parents=True, exist_ok=True)
    args.report.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
