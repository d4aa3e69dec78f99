"""How much Dice can a detector lose to the mask rule alone? Writes studies/mask_edge/results/mask_ceiling.md.

The truth mask marks a pixel when capture softening left it at least MASK_MIN_DIFF (8) grey levels away
from the clean scan (synth/render/composite.py, MASK RULE). Strokes are thin and their JPEG-softened edges fade
out gradually, so many masked pixels sit a level or two from that cut. This renders the `quality`
recipe's held-out test samples (seed 2, 128 samples, 256 px, built-in phantoms: the same arrays as
`out/quality/KIND/shards/test`) and measures, per kind, against the shard's own mask:

- the share of mask pixels within 1 px of the mask's boundary;
- the Dice of the same rule with the cut moved to 4, 6, 10 or 12 grey levels;
- the Dice of an oracle that knows the footprint and the clean scan and misjudges each pixel's change
  by Gaussian noise of sigma 1, 2 or 4 grey levels (a detector can do no better than its estimate of
  how far a pixel moved).

    python studies/mask_edge/mask_ceiling.py            # ~1 min on 2 cores
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np
from analyze_errors import boundary_band

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # bench/common.py
from common import machine, table  # noqa: E402

from synth.build import BuildConfig, SampleMaker, make_plan
from synth.render import MASK_MIN_DIFF, mask_rule
from train.metrics import dice

CUTS = (4, 6, 10, 12)
SIGMAS = (1, 2, 4)


def measure(kind: str, n: int, size: int, seed: int) -> dict[str, float]:
    cfg = BuildConfig(kind=kind, n=n, size_px=size, shard_size=n, seed=seed).resolved()
    maker = SampleMaker(make_plan(cfg))
    noise_rng = np.random.default_rng(0)
    scores: dict[str, list[float]] = {}
    for i in range(n):  # the shard's sample i, with the footprint the shard does not store
        r, _ = maker.rendered(i)
        truth = r.mask > 0
        scores.setdefault("band", []).append(float(boundary_band(truth)[truth].mean()))
        for cut in CUTS:
            moved = mask_rule(r.noisy_a, r.clean, r.footprint_a, cut) > 0
            scores.setdefault(f"cut {cut}", []).append(dice(moved, truth))
        diff = cv2.absdiff(r.noisy_a, r.clean).max(axis=2).astype(np.float32)
        for s in SIGMAS:
            guess = (diff + noise_rng.normal(0, s, diff.shape) >= MASK_MIN_DIFF) & (r.footprint_a > 0)
            scores.setdefault(f"sigma {s}", []).append(dice(guess, truth))
    return {k: float(np.mean(v)) for k, v in scores.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=128)
    ap.add_argument("--size", type=int, default=256)
    ap.add_argument("--seed", type=int, default=2)
    ap.add_argument("--out", default=str(Path(__file__).resolve().parent / "results" / "mask_ceiling.md"))
    args = ap.parse_args()
    rows = []
    for kind in ("body_marker", "radial_line", "vascular_flow"):
        m = measure(kind, args.n, args.size, args.seed)
        rows.append([kind, f"{m['band']:.0%}", *(f"{m[f'cut {c}']:.3f}" for c in CUTS),
                     *(f"{m[f'sigma {s}']:.3f}" for s in SIGMAS)])
        print(rows[-1], flush=True)
    text = "\n".join([
        "# What the mask rule alone costs in Dice", "",
        f"Machine: {machine()}", "",
        f"{args.n} samples per kind at {args.size} px, seed {args.seed} (the `quality` test shards), built-in "
        f"phantoms. Dice is against the shard's mask (cut at {MASK_MIN_DIFF} grey levels). `cut N`: the same rule "
        "cut at N grey levels. `sigma S`: an oracle that knows the footprint and the clean scan but misjudges "
        "each pixel's change by Gaussian noise of S grey levels.", "",
        table(["kind", "mask pixels within 1 px of its boundary", *(f"cut {c}" for c in CUTS),
               *(f"sigma {s}" for s in SIGMAS)], rows), "",
    ])
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
