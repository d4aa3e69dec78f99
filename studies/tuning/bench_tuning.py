"""What each tuning step buys, measured side by side in one run (issue 4: "show each change's effect").

All rows: body_marker, 256 px shards (4096 train, 64 validation, 128 test, each from its own phantoms),
n2n_unet width 16, batch 8, AdamW 1e-3 cosine (`--preset cpu`) unless the row says otherwise, the same
training time (4096 windows of 128 px, or 1024 whole images, which cost the same), mask threshold picked
on the validation shards, metrics on the test shards. A first block needs no training: a perfect
restoration (output = clean) under the old and the new mask rule. (The global residual output is not
a row: it stays the identity map, docs/performance.md, "Why the `fast` preset".)

Writes studies/tuning/results/tuning.md. Usage: python studies/tuning/bench_tuning.py [--samples 4096] [--work DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # bench/common.py
from common import machine, table  # noqa: E402

from synth.build import BuildConfig, make_plan, run_build  # noqa: E402
from synth.icons import DEFAULT_ICON_DIR, INDEX_NAME, write_index  # noqa: E402
from synth.shards import Shard  # noqa: E402
from train import metrics as M  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.data import list_shard_files  # noqa: E402
from train.loop import train_run  # noqa: E402
from train.report import evaluate_checkpoint  # noqa: E402

# name -> (TrainConfig overrides, shard set, note); "windows" = 128 px crops
VARIANTS = {
    "n2n, whole images (1/4 the samples)": (dict(mode="n2n", crop=None, samples_div=4), "soft", ""),
    "n2n, 128 px windows": (dict(mode="n2n"), "soft", "the windows baseline"),
    "n2n, windows, no pair weighting": (dict(mode="n2n", pair_boost=0.0), "soft", ""),
    "n2n, windows, gated output": (dict(mode="n2n", gated=True), "soft", ""),
    "n2c, windows": (dict(mode="n2c"), "soft", ""),
    "seg, windows": (dict(mode="seg"), "soft", ""),
    "seg, windows, trained without capture softening": (dict(mode="seg"), "hard", "tested on softened shards"),
    "seg, windows, another seed": (dict(mode="seg", seed=1), "soft", "run-to-run spread"),
    "n2n, windows, another seed": (dict(mode="n2n", seed=1), "soft", "run-to-run spread"),
    "n2c, windows, another seed": (dict(mode="n2c", seed=1), "soft", "run-to-run spread"),
    "seg, whole images (1/4 the samples)": (dict(mode="seg", crop=None, samples_div=4), "soft", ""),
    "seg, windows, width 32": (dict(mode="seg", width=32), "soft", "a wider network, same windows"),
    "seg, windows, twice the windows": (dict(mode="seg", samples_mul=2), "soft", "8192 windows"),
    "seg, windows, trained on 4 of the 16 body-marker icons": (dict(mode="seg"), "few_icons",
                                                                "tested on all 16"),
}
TRAIN_SETS = {"soft": "train", "hard": "train_hard", "few_icons": "train_few_icons"}


def icon_subset(out: Path, every: int = 4) -> Path:
    """An icon folder holding every `every`-th body-marker icon of the shipped set (for the variety row)."""
    src = DEFAULT_ICON_DIR
    index = json.loads((src / INDEX_NAME).read_text())
    keep = [i for i in index["icons"] if i["kind"] == "body_marker"][::every]
    for icon in keep:
        (out / icon["file"]).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src / icon["file"], out / icon["file"])
    write_index(out, keep)
    return out


def oracle_rows(test: Path) -> list[list[str]]:
    """A perfect restoration (out = clean) read through the old rule (luma > 24) and the new one."""
    old, new = [], []
    for info in list_shard_files(test)[0]:
        with Shard(info.path) as s:
            a, c, m = s.read("noisy_a", 0, info.n), s.read("clean", 0, info.n), s.read("mask", 0, info.n)
        for i in range(len(a)):
            luma = np.abs(M.gray(a[i]) - M.gray(c[i])) > 24
            old.append(M.dice(M.drop_small(luma), m[i]))
            new.append(M.dice(M.residual_mask(a[i], c[i]), m[i]))
    blank = ["", "", "", ""]
    return [["perfect restoration, mask = luma > 24 (the first rule)", "", f"{np.mean(old):.3f}", *blank],
            ["perfect restoration, mask = max channel >= 8 (the shard's rule)", "", f"{np.mean(new):.3f}", *blank]]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=4096)
    ap.add_argument("--work", default=str(Path(__file__).resolve().parents[2] / "out" / "bench_tuning"))
    args = ap.parse_args()
    work = Path(args.work)
    few = str(icon_subset(work / "icons_few"))
    for name, n, seed, soften, icons in (("train", 4096, 0, True, None), ("train_hard", 4096, 0, False, None),
                                         ("train_few_icons", 4096, 0, True, few), ("val", 64, 1, True, None),
                                         ("test", 128, 2, True, None)):
        run_build(make_plan(BuildConfig(kind="body_marker", n=n, size_px=256, shard_size=min(256, n), seed=seed,
                                        soften=soften, icons=icons)), work / name, workers=2)
    rows = oracle_rows(work / "test")
    for name, (kw, shards, note) in VARIANTS.items():
        kw = dict(kw)
        div, mul = kw.pop("samples_div", 1), kw.pop("samples_mul", 1)
        crop = kw.pop("crop", 128)
        run = work / "runs" / "".join(c if c.isalnum() else "_" for c in name)
        cfg = TrainConfig(shards=str(work / TRAIN_SETS[shards]),
                          val_shards=str(work / "val"), out=str(run), model="n2n_unet", preset="cpu",
                          samples=args.samples * mul // div, crop=crop,
                          val_samples=64, **kw)
        seconds = train_run(cfg, log=lambda *a: None)["seconds"]  # a finished run is reused, with its time
        ev = evaluate_checkpoint(name, run / "best.pt", work / "test", keep_examples=0)
        s = ev.summary
        rows.append([name, f"{ev.threshold:g}", f"{s['dice'][0]:.3f}", f"{s['iou'][0]:.3f}", f"{s['ssim'][0]:.4f}",
                     f"{s['psnr_hvsm'][0]:.2f}", f"{seconds:.0f}" + (f" ({note})" if note else "")])
        print(rows[-1], flush=True)
    text = "\n".join([
        "# What each tuning step buys (body_marker, 256 px)", "", f"Machine: {machine()}", "",
        f"Budget per trained row: {args.samples} windows of 128 px (or {args.samples // 4} whole 256 px images, "
        "the same compute), n2n_unet width 16, `--preset cpu` unless the row says otherwise. Threshold picked "
        "on 64 validation samples; metrics are means over 128 test samples (unseen phantoms). SSIM and "
        "PSNR-HVS-M are of the cleaned image; seg rows fill their masks by inpainting.", "",
        table(["variant", "threshold", "Dice", "IoU", "SSIM", "PSNR-HVS-M", "train seconds"], rows), ""])
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "tuning.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
