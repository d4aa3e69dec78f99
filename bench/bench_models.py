"""What the full study's runs cost per model, and how long the runs not yet made should take on the study's GPU.

For every model of `train study`'s full plan, built exactly as the study builds it (paper widths, resnet34
encoders, fcn on resnet101), measured side by side in one run on this machine:
1. trainable parameters;
2. FLOPs of one training step per 256 px window (forward + backward, torch.utils.flop_counter);
3. seconds per 256 px window of a CPU training step (batch 2, fp32, L1, AdamW), after a warm-up step.

Then the study runs already made on the GPU (--runs, the study's OUT/runs or REPORT/runs, which are
regenerated and not committed: the median windows/s logged within
steps, and the seconds of training) give, for the models they cover, the TFLOP/s the card reached. Those
differ between models, so a model not yet run is priced as a range: its FLOPs at the best and at the worst
rate seen, plus what a run spends outside its steps; without such runs, only the CPU columns. Writes
bench/results/models.md. Usage: python bench/bench_models.py [--steps 3] [--runs reports/study/runs]
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402
from common import machine, table  # noqa: E402
from torch.utils.flop_counter import FlopCounterMode  # noqa: E402

from train.loop import model_kw  # noqa: E402
from train.models import MODELS, count_parameters, create_model  # noqa: E402
from train.study import PLANS, Run, run_config, study_runs  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
RUNS = ROOT / "reports" / "study" / "runs"  # where `just study` keeps them (git-ignored)
WINDOW = 256  # the full plan's training window (crop)
EVAL_S = 20.0  # evaluation per run on the card, as measured on an H200 (docs/study.md)


def study_model(name: str) -> torch.nn.Module:
    """The model as `train study`'s full plan builds it for a restoration run."""
    cfg = run_config(PLANS["full"], Run("I-II", "body_marker", name, "n2n"), Path("shards"), Path("out")).resolved()
    return create_model(cfg.model, 3, 3, width=cfg.width, residual=bool(cfg.residual), **model_kw(cfg))


def step_flops(model: torch.nn.Module) -> float:
    """FLOPs of one forward + backward pass of one window (counted on a batch of 2: deeplabv3 refuses 1)."""
    x = torch.randn(2, 3, WINDOW, WINDOW)
    model.train()
    with FlopCounterMode(display=False) as counter:
        model(x).abs().mean().backward()
    model.zero_grad(set_to_none=True)
    return counter.get_total_flops() / 2


def cpu_seconds_per_window(model: torch.nn.Module, steps: int, batch: int = 2) -> float:
    torch.manual_seed(0)
    x, y = torch.randn(batch, 3, WINDOW, WINDOW), torch.randn(batch, 3, WINDOW, WINDOW)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    model.train()

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.l1_loss(model(x), y).backward()
        opt.step()

    step()  # warm-up: allocations, oneDNN primitive creation
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    return (time.perf_counter() - t0) / (steps * batch)


def card_runs(every: list[Run], runs_dir: Path = RUNS) -> dict[str, list[tuple[float, float]]]:
    """model -> (median windows/s logged within steps, seconds of training) of each study run on the card."""
    by_name = {r.name: r for r in every}
    runs = collections.defaultdict(list)
    for result in sorted(runs_dir.glob("*/result.json")):
        model = by_name[result.parent.name].model
        rows = [json.loads(line) for line in (result.parent / "stats.jsonl").read_text().splitlines()]
        img_s = [r["img_s"] for r in rows if "img_s" in r][1:]  # the first row holds start-up
        runs[model].append((statistics.median(img_s), json.loads(result.read_text())["seconds"]))
    return runs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=3, help="timed CPU steps per model (after one warm-up)")
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "models.md"))
    ap.add_argument("--runs", type=Path, default=RUNS,
                    help="finished study runs on the card (train study's OUT/runs or REPORT/runs)")
    args = ap.parse_args()
    torch.set_num_threads(os.cpu_count() or 1)

    per_model = {}
    for name in MODELS:
        model = study_model(name)
        per_model[name] = dict(params=count_parameters(model), gflops=step_flops(model) / 1e9,
                               cpu_s=cpu_seconds_per_window(model, args.steps))
        print(f"{name}: {per_model[name]}", flush=True)

    samples = PLANS["full"].samples
    every = study_runs(PLANS["full"])
    card = card_runs(every, args.runs)
    if not card:  # nothing measured on a card: the CPU and FLOP columns only
        rows = [[f"`{m}`", f"{v['params'] / 1e6:.1f} M", f"{v['gflops']:.1f}",
                 f"{v['gflops'] / per_model['n2n_unet']['gflops']:.2f}x", f"{v['cpu_s']:.2f}",
                 f"{v['cpu_s'] / per_model['n2n_unet']['cpu_s']:.2f}x"] for m, v in per_model.items()]
        text = "\n\n".join([
            "# What the full study's models cost (`bench/bench_models.py`)",
            __doc__.split("\n\n", 1)[1].strip(),
            f"Machine: {machine()}; torch {torch.__version__}. No finished study runs in {args.runs}, so no card "
            "prices: run `just study` on a GPU, or pass --runs OUT/runs of one.",
            table(["model", "parameters", "GFLOPs per window (fwd + bwd)", "vs n2n_unet", "CPU s per window",
                   "vs n2n_unet"], rows)]) + "\n"
        Path(args.out).write_text(text)
        print(text)
        return
    rate = {m: statistics.median(r for r, _ in v) for m, v in card.items()}
    # a run's training time = its steps (samples / rate) + what is outside them (validations, loader start-up)
    outside = statistics.median(s - samples / r for v in card.values() for r, s in v)
    tflops = {m: rate[m] * per_model[m]["gflops"] / 1e3 for m in card}  # the card's training TFLOP/s
    best, worst = max(tflops, key=tflops.get), min(tflops, key=tflops.get)
    resnet_run = [m for m in card if m not in ("n2n_unet", "multiresunet")]  # smp and fcn use resnet encoders

    def train_s(m: str) -> tuple[float, float]:
        if m in card:
            s = statistics.median(s for _, s in card[m])
            return s, s
        work = samples * per_model[m]["gflops"] / 1e3  # TFLOP
        return work / tflops[best] + outside, work / tflops[worst] + outside

    rows = []
    for m, v in per_model.items():
        lo, hi = train_s(m)
        rows.append([f"`{m}`", f"{v['params'] / 1e6:.1f} M", f"{v['gflops']:.1f}",
                     f"{v['gflops'] / per_model['n2n_unet']['gflops']:.2f}x", f"{v['cpu_s']:.2f}",
                     f"{v['cpu_s'] / per_model['n2n_unet']['cpu_s']:.2f}x",
                     f"{rate[m]:,.0f} ({len(card[m])} runs)" if m in card else "not run",
                     f"{lo:.0f} measured" if m in card else f"{lo:.0f}-{hi:.0f} est."])

    left = collections.Counter(r.model for r in every if not (args.runs / r.name / "result.json").exists())

    def total(runs) -> tuple[float, float]:
        lo = sum(n * (train_s(m)[0] + EVAL_S) for m, n in runs.items())
        hi = sum(n * (train_s(m)[1] + EVAL_S) for m, n in runs.items())
        return lo / 60, hi / 60

    left_lo, left_hi = total(left)
    all_lo, all_hi = total(collections.Counter(r.model for r in every))
    vs = ", ".join(f"`{m}` {rate[m] / rate['n2n_unet']:.2f}x on the card, "
                   f"{per_model['n2n_unet']['cpu_s'] / per_model[m]['cpu_s']:.2f}x on this CPU, "
                   f"{per_model['n2n_unet']['gflops'] / per_model[m]['gflops']:.2f}x by FLOPs"
                   for m in card if m != "n2n_unet")
    text = "\n\n".join([
        "# What the full study's models cost (`bench/bench_models.py`)",
        __doc__.split("\n\n", 1)[1].strip(),
        f"Machine: {machine()}; torch {torch.__version__}. The card: one NVIDIA H200 (bf16, batch 16, 10 loader "
        f"workers), the study runs of the fourth and fifth lent sessions ({sum(map(len, card.values()))} runs).",
        table(["model", "parameters", "GFLOPs per window (fwd + bwd)", "vs n2n_unet", "CPU s per window",
               "vs n2n_unet", "H200 windows/s (median)", f"H200 s of training, {samples:,} windows"], rows),
        f"Speed against `n2n_unet`: {vs}. Neither this CPU nor the FLOP count ranks the card's speed, so a "
        f"model not yet run is priced at the best and the worst training rate the card reached: "
        f"{tflops[best]:.0f} TFLOP/s (`{best}`) and {tflops[worst]:.0f} TFLOP/s (`{worst}`; resnet-encoder "
        f"models run so far: {', '.join(f'`{m}`' for m in resnet_run) or 'none'}), plus the {outside:.0f} s each "
        "run spends outside its steps (validations, loader start-up; median over the runs made).",
        table(["model", "runs left"], [[f"`{m}`", n] for m, n in left.items()]),
        f"Estimated card time for the {sum(left.values())} runs left: **{left_lo:.0f}-{left_hi:.0f} minutes** of "
        f"training and evaluation ({EVAL_S:.0f} s of evaluation per run); for all {len(every)} runs, with the "
        f"measured times of those made: **{all_lo:.0f}-{all_hi:.0f} minutes**. Each bare machine adds body_marker's "
        "shards (about a minute) and the wheels' install per call.",
    ]) + "\n"
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main()
