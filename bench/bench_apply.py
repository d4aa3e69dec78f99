"""How fast `train apply` cleans 512x512 scans with the shipped model on this machine, one scan at a time (what
apply does) and with the detector batched, side by side in one run. Writes bench/results/apply.md.

    python bench/bench_apply.py [--n 32] [--checkpoint DET --fill FILL]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch
from common import machine, table

from synth.annotate import annotate
from synth.icons import DEFAULT_ICON_DIR, load_icon_set
from synth.phantom import make_phantom
from train.grow import DEFAULT_GROW
from train.infer import clean_image, filler_from_checkpoint, load_predictor
from train.shipped import default_checkpoint, default_fill

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "bench" / "results" / "apply.md"


def _short(p) -> str:
    p = Path(p).resolve() if p else None
    return str(p.relative_to(ROOT)) if p and p.is_relative_to(ROOT) else str(p)
KINDS = ("radial_line", "body_marker", "text", "vascular_flow")


def scans(n: int, size: int = 512) -> list[np.ndarray]:
    """n phantom scans, each with one annotation (kinds in turn)."""
    out, icons = [], load_icon_set(DEFAULT_ICON_DIR)
    for k in range(n):
        img, _ = annotate(make_phantom(100 + k, size), KINDS[k % len(KINDS)], np.random.default_rng(k), icons)
        out.append(img)
    return out


def rate(fn, items) -> float:
    fn(items[0])  # warm-up: oneDNN picks its kernels on the first call
    t0 = time.perf_counter()
    for it in items:
        fn(it)
    return len(items) / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=32)
    ap.add_argument("--checkpoint", type=Path, default=None)
    ap.add_argument("--fill", type=Path, default=None)
    ap.add_argument("--batch", type=int, default=8)
    args = ap.parse_args()
    det = args.checkpoint or default_checkpoint()
    fill = args.fill or (default_fill() if args.checkpoint is None else None)
    predictor, meta = load_predictor(det)
    predictor.model.eval()
    filler = filler_from_checkpoint(fill, meta)
    imgs = scans(args.n)
    rows = []
    for label, fl, grow in (("apply: detector + growth + N2N fill", filler, DEFAULT_GROW),
                            ("apply: detector + growth, inpainting", None, DEFAULT_GROW),
                            ("apply: detector only, inpainting", None, None)):
        r = rate(lambda im, fl=fl, grow=grow: clean_image(predictor, meta, im, None, fl, grow=grow), imgs)
        rows.append([label, f"{r:.2f}"])
    x = torch.from_numpy(np.stack(imgs)).permute(0, 3, 1, 2)
    batches = [x[i:i + args.batch] for i in range(0, len(x), args.batch)]
    one = rate(lambda b: predictor(b[:1]), [b for b in x.split(1)])
    many = rate(lambda b: predictor(b), batches) * args.batch
    rows += [["detector forward alone, batch 1", f"{one:.2f}"],
             [f"detector forward alone, batch {args.batch}", f"{many:.2f} ({many / one:.2f}x batch 1)"]]
    params = sum(p.numel() for p in predictor.model.parameters())
    text = "\n".join([
        "# `train apply` with the shipped model, 512x512 scans", "",
        f"Machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads.", "",
        f"Model: {_short(det)} ({params / 1e6:.2f} M parameters, trained at {meta['image_size']} px); "
        f"filler: {_short(fill)}. "
        f"{args.n} phantom scans with one annotation each; command: `python bench/bench_apply.py --n {args.n}`.", "",
        table(["path", "scans/s"], rows), "",
    ])
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
