"""Measured learning curves that justify the `fast` preset: `paper` vs `fast` (and `fast` with a global
residual output), n2n mode, n2n_unet at width 16, on body_marker phantom shards, validation Dice
and SSIM on held-out shards (unseen phantoms) after every pass over the training shards.

Writes bench/results/recipes.md, recipes.csv and recipes.png. Usage: python bench/bench_recipes.py
[--size 128] [--train 256] [--epochs 8]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from common import machine, table  # noqa: E402

from synth.build import BuildConfig, make_plan, run_build  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.loop import train_run  # noqa: E402

RECIPES = {
    "paper": dict(preset="paper"),
    "fast": dict(preset="fast"),
    "fast + global residual": dict(preset="fast", residual=True),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--train", type=int, default=256)
    ap.add_argument("--epochs", type=int, default=8)
    ap.add_argument("--width", type=int, default=16)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_recipes_"))
    run_build(
        make_plan(BuildConfig(kind="body_marker", n=args.train, size_px=args.size, shard_size=32)),
        tmp / "train",
        workers=2,
    )
    run_build(
        make_plan(BuildConfig(kind="body_marker", n=64, size_px=args.size, shard_size=32, seed=1)),
        tmp / "val",
        workers=2,
    )
    curves, rows = {}, []
    for name, kw in RECIPES.items():
        t0 = time.perf_counter()
        cfg = TrainConfig(
            shards=str(tmp / "train"),
            val_shards=str(tmp / "val"),
            out=str(tmp / name),
            model="n2n_unet",
            width=args.width,
            mode="n2n",
            epochs=args.epochs,
            batch_size=8,
            val_samples=64,
            log_every=10,
            **kw,
        )
        train_run(cfg, log=lambda *a: None)
        seconds = time.perf_counter() - t0
        stats = [json.loads(x) for x in (tmp / name / "stats.jsonl").read_text().splitlines()]
        curves[name] = [(s["samples"], s["val_dice"], s["val_ssim"]) for s in stats if "val_dice" in s]
        last = curves[name][-1]
        rows.append(
            [
                name,
                f"{last[0]}",
                f"{last[1]:.3f}",
                f"{max(c[1] for c in curves[name]):.3f}",
                f"{last[2]:.4f}",
                f"{seconds:.0f}",
            ]
        )
        print(rows[-1], flush=True)
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    with open(out / "recipes.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["recipe", "samples", "val_dice", "val_ssim"])
        for name, pts in curves.items():
            w.writerows([[name, *p] for p in pts])
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(1, 2, figsize=(10, 4))
    for name, pts in curves.items():
        ax[0].plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
        ax[1].plot([p[0] for p in pts], [p[2] for p in pts], marker="o", label=name)
    ax[0].set(xlabel="training samples", ylabel="validation Dice", title="mask threshold picked on validation")
    ax[1].set(xlabel="training samples", ylabel="validation SSIM (cleaned)")
    ax[0].legend()
    fig.suptitle(f"n2n, n2n_unet width {args.width}, body_marker {args.size}px, {args.train} train samples/epoch")
    fig.tight_layout()
    fig.savefig(out / "recipes.png", dpi=110)
    text = "\n".join(
        [
            "# Training recipes: paper vs fast",
            "",
            f"Machine: {machine()}",
            "",
            f"n2n mode, n2n_unet width {args.width}, body_marker at {args.size}x{args.size}, {args.train} training "
            f"samples per epoch, {args.epochs} epochs, batch 8; validation on 64 samples built with another seed "
            "(unseen phantoms). Curves: recipes.png, recipes.csv.",
            "",
            table(["recipe", "samples", "final val Dice", "best val Dice", "final val SSIM", "seconds"], rows),
            "",
        ]
    )
    (out / "recipes.md").write_text(text)
    print(text)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
