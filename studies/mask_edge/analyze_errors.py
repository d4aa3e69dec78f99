"""Where a model's Dice goes: the mask boundary or whole annotations?

For one or more checkpoints on one held-out shard set, prints (and writes as markdown) the plain Dice,
the Dice with a band of +-1 px around the truth mask's boundary ignored (the band where JPEG softening
makes the >= 8 grey-level rule a coin toss), the share of truth components (8-connected) that the
prediction touches, and predicted components that touch no truth (false alarms).

    python studies/mask_edge/analyze_errors.py --shards out/quality/body_marker/shards/test \
        --run SEG=out/quality/body_marker/runs/seg/best.pt --out studies/mask_edge/results/errors_body_marker.md
"""

from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from train.metrics import dice
from train.report import evaluate_checkpoint

BIG_PX = 10
"""Truth components smaller than this (JPEG specks around an icon) are not counted as annotations to find."""


def boundary_band(truth: np.ndarray, px: int = 1) -> np.ndarray:
    k = np.ones((2 * px + 1, 2 * px + 1), np.uint8)
    t = truth.astype(np.uint8)
    return (cv2.dilate(t, k) - cv2.erode(t, k)).astype(bool)


def analyze(pred: np.ndarray, truth: np.ndarray) -> dict:
    band = boundary_band(truth)
    keep = ~band
    n_t, lab_t = cv2.connectedComponents(truth.astype(np.uint8), connectivity=8)
    n_p, lab_p = cv2.connectedComponents(pred.astype(np.uint8), connectivity=8)
    sizes = np.bincount(lab_t.ravel(), minlength=n_t)
    touched = [bool(pred[lab_t == i].any()) for i in range(1, n_t) if sizes[i] >= BIG_PX]
    false = [not truth[cv2.dilate((lab_p == i).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0].any()
             for i in range(1, n_p)]
    return {"dice": dice(pred, truth), "dice_no_boundary": dice(pred & keep, truth & keep),
            "truth_components": len(touched), "found_components": sum(touched),
            "pred_components": len(false), "false_components": sum(false)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--shards", required=True)
    ap.add_argument("--run", action="append", required=True, help="LABEL=CHECKPOINT")
    ap.add_argument("--max-samples", type=int, default=None)
    ap.add_argument("--out", default=None)
    ap.add_argument("--note", default="", help="A line under the title: where the checkpoints came from.")
    args = ap.parse_args()
    lines = [f"# Where the Dice goes: `{args.shards}`", "", *([args.note, ""] if args.note else []),
             f"| model | Dice | Dice, +-1 px boundary band ignored | truth components of >= {BIG_PX} px found | "
             "predicted components on no truth |", "|---|---|---|---|---|"]
    for r in args.run:
        label, _, ckpt = r.partition("=")
        ev = evaluate_checkpoint(label, ckpt, args.shards, args.max_samples, keep_examples=10**9)
        rows = [analyze(pm.astype(bool), tm.astype(bool)) for _, _, pm, tm in ev.examples]
        tc, fc = sum(x["truth_components"] for x in rows), sum(x["found_components"] for x in rows)
        pc, fp = sum(x["pred_components"] for x in rows), sum(x["false_components"] for x in rows)
        lines.append(f"| {label} | {np.mean([x['dice'] for x in rows]):.3f} | "
                     f"{np.mean([x['dice_no_boundary'] for x in rows]):.3f} | {fc} / {tc} ({fc / max(tc, 1):.1%}) | "
                     f"{fp} / {pc} |")
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        Path(args.out).write_text(text)


if __name__ == "__main__":
    main()
