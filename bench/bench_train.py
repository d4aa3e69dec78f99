"""Benchmark the training input pipeline and a CPU training step, all measured in one run:

1. samples/s delivered by the shard loader (ShardStream + DataLoader, batch 4, n2n fields) at 512x512
   with 0, 1 and 2 workers, next to the raw read+decompress floor (h5py reading the same arrays);
2. the focus map of a 256 px training window (where noisy_a and noisy_b differ), as computed before and now,
   and the loader's rate with such windows (what `train study` and `--crop` runs read);
3. training img/s for n2n_unet at the `cpu` preset (width 16) on 256x256 and 512x512 batches;
4. one validation of `train run` at 512x512 (threshold sweep, then scoring at the picked threshold),
   running the model twice over the validation samples (before) and once (now, `Replay`), same rows.
Writes bench/results/train.md. Usage: python bench/bench_train.py [--n 96]
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2  # noqa: E402
import h5py  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from common import machine, table  # noqa: E402
from torch.utils.data import DataLoader  # noqa: E402

from synth.build import BuildConfig, make_plan, run_build  # noqa: E402
from train.data import EVAL_FIELDS, FOCUS_MIN_DIFF, MODE_FIELDS, ShardStream, channel_max  # noqa: E402
from train.evaluate import Predictor, validate  # noqa: E402
from train.losses import make_loss, pair_weight  # noqa: E402
from train.models import create_model  # noqa: E402


def raw_floor(folder: Path, fields) -> float:
    t0, n = time.perf_counter(), 0
    for p in sorted(folder.glob("shard-*.h5")):
        with h5py.File(p, "r") as f:
            for start in range(0, f["sample_id"].shape[0], 8):
                for name in fields:
                    f[name][start : start + 8]
                n += min(8, f["sample_id"].shape[0] - start)
    return n / (time.perf_counter() - t0)


def loader_rate(folder: Path, workers: int, crop: int | None = None) -> float:
    ds = ShardStream(folder, MODE_FIELDS["n2n"], seed=0, batch_size=4, crop=crop)
    loader = DataLoader(ds, batch_size=4, num_workers=workers)
    t0, n = time.perf_counter(), 0
    for batch in loader:
        n += batch["noisy_a"].shape[0]
    return n / (time.perf_counter() - t0)


def focus_ms(folder: Path, repeats: int = 3) -> tuple[float, float]:
    """ms per sample of the n2n focus map, before (int16 difference, numpy max over channels) and now."""
    with h5py.File(sorted(folder.glob("shard-*.h5"))[0], "r") as f:
        a, b = f["noisy_a"][:16], f["noisy_b"][:16]
    ways = [lambda x, y: np.abs(x.astype(np.int16) - y.astype(np.int16)).max(-1) >= FOCUS_MIN_DIFF,
            lambda x, y: channel_max(cv2.absdiff(x, y)) >= FOCUS_MIN_DIFF]
    assert all(np.array_equal(ways[0](x, y), ways[1](x, y)) for x, y in zip(a, b)), "same map both ways"
    out = []
    for way in ways:
        t0 = time.perf_counter()
        for _ in range(repeats):
            for x, y in zip(a, b):
                way(x, y)
        out.append(1e3 * (time.perf_counter() - t0) / (repeats * len(a)))
    return out[0], out[1]


def train_rate(size: int, steps: int = 6, batch: int = 4) -> float:
    torch.manual_seed(0)
    model = create_model("n2n_unet", width=16).to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    loss_fn = make_loss("l1")
    a8 = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    b8 = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8)
    for i in range(steps + 1):
        if i == 1:
            t0 = time.perf_counter()
        x = (a8.float() / 255).contiguous(memory_format=torch.channels_last)
        loss = loss_fn(model(x), b8.float() / 255, weight=pair_weight(a8, b8))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - t0)


def validation_seconds(folder: Path, n: int = 64, batch: int = 8) -> tuple[float, float, int]:
    """Seconds for one validation over n samples (train.evaluate.validate, what `train run` calls), as it was
    before (no cache: the threshold sweep and the scoring each run the model) and now (1 GiB cache: once);
    n2n mode, n2n_unet width 16, residual so that it starts as the identity (masks stay small, as a trained
    model's do). Asserts both give the same rows."""
    torch.manual_seed(0)
    model = create_model("n2n_unet", width=16, residual=True).eval()
    predictor = Predictor(model, "n2n", (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), torch.device("cpu"))
    stream = ShardStream(folder, (*EVAL_FIELDS, "sample_id"), shuffle=False)

    t0 = time.perf_counter()
    before = validate(predictor, DataLoader(stream, batch_size=batch), n, cache_bytes=0)[2]
    t1 = time.perf_counter()
    now = validate(predictor, DataLoader(stream, batch_size=batch), n, cache_bytes=1 << 30)[2]
    t2 = time.perf_counter()
    assert before == now and len(now) == n, "same validation rows both ways"
    return t1 - t0, t2 - t1, n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=96)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench_train_"))
    folder = tmp / "shards"
    run_build(make_plan(BuildConfig(kind="body_marker", n=args.n, size_px=512, shard_size=16)), folder, workers=2)
    lines = [
        "# train benchmark",
        "",
        f"Machine: {machine()}; torch {torch.__version__}, {torch.get_num_threads()} threads",
        "",
    ]
    floor = raw_floor(folder, MODE_FIELDS["n2n"])
    rows = [["raw h5py read + decompress (floor)", f"{floor:.0f}", "1.00"]]
    for w in (0, 1, 2):
        r = loader_rate(folder, w)
        rows.append([f"ShardStream + DataLoader, {w} workers", f"{r:.0f}", f"{r / floor:.2f}"])
        print(rows[-1], flush=True)
    lines += [
        f"## Input pipeline: 512x512, n2n fields (noisy_a, noisy_b), batch 4, {args.n} samples, default codec (gzip-1)",
        "",
        table(["reader", "samples/s", "vs floor"], rows),
        "",
    ]
    before, now = focus_ms(folder)
    crop = loader_rate(folder, 0, crop=256)
    lines += [
        "## Focus map of a 256 px window (n2n: pixels where noisy_a and noisy_b differ by >= 8), per 512 px sample",
        "",
        table(["computation", "ms", "speed-up"], [
            ["np.abs(int16 difference).max(-1) (before)", f"{before:.2f}", "1.00"],
            ["channel_max(cv2.absdiff) (now, same map)", f"{now:.2f}", f"{before / now:.1f}"]]),
        "",
        f"ShardStream with 256 px windows (focus 0.5), 0 workers: {crop:.0f} samples/s (floor above: {floor:.0f}).",
        "",
    ]
    rows = [[f"{s}x{s}", f"{train_rate(s):.2f}"] for s in (256, 512)]
    lines += [
        "## Training step on this CPU: n2n_unet, cpu preset (width 16, pair weighting), batch 4, AdamW, fp32",
        "",
        table(["input", "img/s"], rows),
        "",
    ]
    before, now, n = validation_seconds(folder)
    lines += [
        f"## One validation at 512x512: {n} samples, batch 8, n2n_unet width 16, threshold sweep then scoring",
        "",
        table(["validation", "s", "speed-up"], [
            ["model run for the sweep and again for the scoring (before)", f"{before:.1f}", "1.00"],
            ["model run once, outputs replayed (now, same rows)", f"{now:.1f}", f"{before / now:.2f}"]]),
        "",
    ]
    text = "\n".join(lines)
    (Path(__file__).parent / "results").mkdir(exist_ok=True)
    (Path(__file__).parent / "results" / "train.md").write_text(text)
    print(text)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
