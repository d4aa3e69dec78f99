"""How independent the two halves of the real-scan split are.

`train check-real --sweep` and the real-background recipes split a folder of real scans by sorted position:
even positions pick the operating point (and, in `just real-backgrounds` / `just real-512`, are the training
backgrounds), odd positions are held out. Scans of one patient often sit next to each other in a folder, so a
held-out scan can be a near copy of a training one, and a detector that learned that background says nothing
new about it. This lists, for every held-out scan, its most similar scan in the other half (Pearson
correlation of the grey image at 64x64), and counts the near copies.

    python studies/real_backgrounds/split_overlap.py --folder DEVDATA/clean
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # bench/common.py
from common import machine, table  # noqa: E402

from synth.images import find_images, read_image, split_halves

SIDE = 64
"""Images are compared as SIDExSIDE grey thumbnails: enough to tell scenes apart, blind to speckle."""

NEAR_COPY = 0.95
"""Correlation at or above which two thumbnails count as the same scene."""


def thumbnail(path: Path) -> np.ndarray:
    """The scan as a zero-mean, unit-norm grey SIDExSIDE vector (dot product = Pearson correlation)."""
    grey = cv2.cvtColor(read_image(path), cv2.COLOR_RGB2GRAY)
    v = cv2.resize(grey, (SIDE, SIDE), interpolation=cv2.INTER_AREA).astype(np.float64).ravel()
    v -= v.mean()
    return v / (np.linalg.norm(v) + 1e-9)


def nearest(held: np.ndarray, other: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each row of `held`: (index of its most correlated row of `other`, that correlation)."""
    corr = held @ other.T
    return corr.argmax(1), corr.max(1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--folder", type=Path, required=True,
                    help="Folder of real scans, split as check-real --sweep splits it.")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "split_overlap.md")
    args = ap.parse_args()
    paths = find_images(args.folder)
    if len(paths) < 4:
        sys.exit(f"{args.folder}: found {len(paths)} readable scans; the split needs at least 4.")
    even_paths, odd_paths = split_halves(paths)
    even, odd = (np.stack([thumbnail(p) for p in half]) for half in (even_paths, odd_paths))
    idx, corr = nearest(odd, even)
    within = odd @ odd.T
    np.fill_diagonal(within, -np.inf)
    order = np.argsort(-corr)
    near = [i for i in order if corr[i] >= NEAR_COPY]
    rows = [[odd_paths[i].name, even_paths[idx[i]].name, f"{corr[i]:.3f}"] for i in order[:max(len(near), 5)]]
    md = [
        f"# Near copies across the split of `{args.folder.parent.name}/{args.folder.name}`", "",
        f"Machine: {machine()}", "",
        f"{len(paths)} scans: {len(even)} at even sorted positions (pick / train), {len(odd)} at odd positions "
        f"(held out). Similarity = Pearson correlation of the grey scans at {SIDE}x{SIDE}; near copy = at "
        f"least {NEAR_COPY}.", "",
        table(["measure", "value"], [
            ["held-out scans with a near copy in the other half", f"{len(near)} / {len(odd)}"],
            ["median correlation, held-out scan to its nearest in the other half", f"{np.median(corr):.3f}"],
            ["median correlation, held-out scan to its nearest other held-out scan", f"{np.median(within.max(1)):.3f}"],
            ["highest correlation between two held-out scans", f"{within.max():.3f}"],
        ]), "",
        "Most similar pairs (held-out scan, its nearest in the other half):", "",
        table(["held out", "nearest in the other half", "correlation"], rows), "",
    ]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(md))
    print("\n".join(md))


if __name__ == "__main__":
    main()
