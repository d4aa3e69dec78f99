"""GPU benchmark (needs CUDA; prints a note and exits 0 without it), all in one run on one card:

1. img/s of n2n_unet (width 48) training steps at 512x512: fp32 batch 4 (the authors' settings) against
   bf16 and fp16 (autocast; GradScaler for fp16) at batch 16, channels_last;
2. a real `train run` streaming shards (bf16, batch 16, 4 DataLoader workers): img/s and the fraction of
   step time spent waiting for data (goal < 5%), read from stats.jsonl.
Writes bench/results/gpu.md. Usage: python bench/bench_gpu.py [--steps 30] [--n 512]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from common import machine, table  # noqa: E402

from train.losses import make_loss  # noqa: E402
from train.models import create_model  # noqa: E402


def step_rate(dtype: torch.dtype | None, batch: int, steps: int, size: int = 512) -> float:
    torch.manual_seed(0)
    dev = torch.device("cuda")
    model = create_model("n2n_unet").to(dev, memory_format=torch.channels_last)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    scaler = torch.amp.GradScaler("cuda", enabled=dtype == torch.float16)
    loss_fn = make_loss("l1")
    a = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=dev)
    b = torch.randint(0, 256, (batch, 3, size, size), dtype=torch.uint8, device=dev)
    for i in range(steps + 5):  # 5 warm-up steps (cuDNN autotuning, allocator)
        if i == 5:
            torch.cuda.synchronize()
            t0 = time.perf_counter()
        x = (a.float() / 255).contiguous(memory_format=torch.channels_last)
        with torch.autocast("cuda", dtype=dtype, enabled=dtype is not None):
            loss = loss_fn(model(x), b.float() / 255)
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
    torch.cuda.synchronize()
    return steps * batch / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--n", type=int, default=512, help="samples in the streamed shard set")
    ap.add_argument("--keep", type=Path, default=None,
                    help="build the shard set here and keep it (default: a temp dir)")
    args = ap.parse_args()
    if not torch.cuda.is_available():
        print("no CUDA device: nothing to measure (run this on a machine with a GPU)")
        return
    torch.backends.cudnn.benchmark = True
    card = torch.cuda.get_device_name(0)
    rows = []
    base = None
    for name, dtype, batch in (("fp32", None, 4), ("bf16", torch.bfloat16, 16), ("fp16", torch.float16, 16)):
        r = step_rate(dtype, batch, args.steps)
        base = base or r
        rows.append([name, batch, f"{r:.1f}", f"{r / base:.2f}"])
        print(rows[-1], flush=True)
    from synth.build import BuildConfig, make_plan, run_build
    from train.config import TrainConfig
    from train.loop import train_run

    tmp = Path(tempfile.mkdtemp(prefix="bench_gpu_"))
    shards = args.keep or tmp / "shards"
    run_build(make_plan(BuildConfig(kind="body_marker", n=args.n, size_px=512, shard_size=32)), shards,
              workers=max(1, min(8, (os.cpu_count() or 2) - 1)))
    train_run(TrainConfig(shards=str(shards), out=str(tmp / "run"), preset="fast", batch_size=16,
                          amp="bf16", workers=4, epochs=1, log_every=5), log=lambda *a: None)
    stats = [json.loads(x) for x in (tmp / "run" / "stats.jsonl").read_text().splitlines()]
    stats = [s for s in stats if "img_s" in s][1:]  # drop the first window (worker start-up)
    img_s = sum(s["img_s"] for s in stats) / len(stats)
    wait = sum(s["data_wait"] for s in stats) / len(stats)
    text = "\n".join([
        "# GPU benchmark", "", f"Card: {card}. Host: {machine()}; torch {torch.__version__}", "",
        "## n2n_unet (width 48) training step at 512x512, channels_last, synthetic batches", "",
        table(["precision", "batch", "img/s", "vs fp32 batch 4"], rows), "",
        f"## Streaming `train run` (bf16, batch 16, 4 DataLoader workers, {args.n} gzip-1 samples)", "",
        f"{img_s:.1f} img/s; fraction of step time waiting for data: {wait:.1%} (goal < 5%).", ""])
    out = Path(__file__).parent / "results"
    out.mkdir(exist_ok=True)
    (out / "gpu.md").write_text(text)
    print(text)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
