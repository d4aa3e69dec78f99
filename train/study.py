"""`train study`: the paper's whole comparison as one resumable recipe.

Tables I-II: every registered model x {N2C, N2N}, with linear and SMN normalisation, on body_marker.
Tables III-IV: the loss functions on n2n_unet (N2N, body_marker). Tables V-VIII: n2n_unet x {N2C, N2N}
on radial_line and vascular_flow. Figures 3-6: loss curves and input | N2C | N2N | truth per kind.

Every run lives in OUT/runs/<name>; rerunning the command skips finished runs and resumes a killed one,
so a long GPU study can be stopped and restarted: keep OUT (or a copy of REPORT, see CARRIED) to continue.
Shards are built once into OUT/shards. docs/study.md says how to run it and what it found.
"""

from __future__ import annotations

import collections
import dataclasses
import json
import math
import platform
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from synth.build import BuildConfig, BuildError, make_plan, run_build
from train.config import TrainConfig
from train.evaluate import write_figure
from train.loop import train_run
from train.models import MODELS, NO_WIDTH
from train.report import Evaluated, evaluate_checkpoint, figure, figure_rows_for, table_markdown

STUDY_LOSSES = ("l1", "l2", "huber", "smooth_l1", "l1+l2", "huber+l2", "smooth_l1+l2", "all")
"""Table III-IV rows, in the paper's order."""


@dataclass(frozen=True)
class StudyPlan:
    """Sizes and budgets of one study variant (see PLANS)."""

    size: int             # image side of the shards (the paper: 512)
    n_train: int          # training samples per kind
    n_val: int            # validation samples per kind (threshold and best checkpoint)
    n_test: int           # held-out test samples per kind (the tables)
    samples: int          # training samples seen per run
    batch_size: int
    preset: str
    widths: dict          # model -> base width (models not named keep their default, the paper's)
    encoder: str | None   # smp encoder (None: resnet34)
    fcn_backbone: str     # resnet101 (the paper) or resnet50
    crop: int | None      # training window (None: whole images)
    amp: str
    workers: int          # DataLoader workers per run
    build_workers: int
    smn_models: tuple[str, ...]  # models that also get an SMN row in Tables I-II
    hours: str            # what it is sized for, said in the report


clock = time.monotonic  # the --minutes time box reads this (a test advances it)

PLANS: dict[str, StudyPlan] = {
    # one large GPU: 8 models x 2 modes x 2 norms + 7 losses + 4 other-kind runs = 43 runs of 16384 samples at
    # 512 px (256 px windows, bf16), 10 loader workers to keep the card fed; costs in docs/study.md and
    # docs/performance.md
    "full": StudyPlan(size=512, n_train=8192, n_val=64, n_test=256, samples=16384, batch_size=16, preset="fast",
                      widths={}, encoder=None, fcn_backbone="resnet101", crop=256, amp="bf16", workers=10,
                      build_workers=12, smn_models=tuple(MODELS),
                      hours="an estimated 47-67 minutes on one H200 (14 runs measured on an H200, the rest priced "
                      "by their FLOPs in bench/results/models.md; not yet run in full)"),
    # a 2-core CPU in under 30 minutes: 96 px, narrow decoders, a lighter encoder, SMN only for n2n_unet.
    # Its numbers show that the recipe runs end to end and rank little else: each run sees 512 samples.
    "quick": StudyPlan(size=96, n_train=768, n_val=32, n_test=64, samples=512, batch_size=8, preset="cpu",
                       widths={"n2n_unet": 16, "multiresunet": 8, "unet": 4, "unetplusplus": 4, "manet": 4,
                               "deeplabv3": 4}, encoder="resnet18", fcn_backbone="resnet50", crop=None, amp="off",
                       workers=0, build_workers=2, smn_models=("n2n_unet",), hours="under 30 minutes on a 2-core CPU"),
}


@dataclass(frozen=True)
class Run:
    table: str   # "I-II", "III-IV", "V-VI", "VII-VIII"
    kind: str
    model: str
    mode: str
    norm: str = "linear"
    loss: str = "l1"

    @property
    def name(self) -> str:
        return f"{self.kind}-{self.model}-{self.mode}-{self.norm}-{self.loss}"

    @property
    def label(self) -> str:
        return {"n2n": "N2N", "n2c": "N2C"}[self.mode] + (" SMN" if self.norm == "smn" else "")


def study_runs(plan: StudyPlan) -> list[Run]:
    """Every run of the study, cheapest tables first so that a stopped study has whole tables."""
    runs = [Run("V-VI", "radial_line", "n2n_unet", m) for m in ("n2c", "n2n")]
    runs += [Run("VII-VIII", "vascular_flow", "n2n_unet", m) for m in ("n2c", "n2n")]
    runs += [Run("I-II", "body_marker", model, mode, norm) for model in MODELS for norm in ("linear", "smn")
             for mode in ("n2c", "n2n") if norm == "linear" or model in plan.smn_models]
    runs += [Run("III-IV", "body_marker", "n2n_unet", "n2n", loss=loss) for loss in STUDY_LOSSES if loss != "l1"]
    return runs


def build_shards(plan: StudyPlan, root: Path, kinds: list[str], log=print) -> None:
    """train/val/test shard sets per kind, each from its own phantoms (seeds 0, 1, 2)."""
    for kind in kinds:
        for split, n, seed in (("train", plan.n_train, 0), ("val", plan.n_val, 1), ("test", plan.n_test, 2)):
            cfg = BuildConfig(kind=kind, n=n, size_px=plan.size, shard_size=min(256, n), seed=seed)
            try:
                r = run_build(make_plan(cfg), root / kind / split, workers=plan.build_workers)  # skips finished shards
            except BuildError as e:  # e.g. shards of an earlier version: the study has no --overwrite
                raise BuildError(f"{e} For `train study`: delete {root / kind / split} and rerun it.") from None
            log(f"shards {kind}/{split}: {n} samples at {plan.size} px ({r['shards_built']} shards built now)")


def run_config(plan: StudyPlan, run: Run, shards: Path, out: Path) -> TrainConfig:
    encoder = plan.fcn_backbone if run.model == "fcn" else (None if run.model in ("n2n_unet", "multiresunet")
                                                              else plan.encoder)
    return TrainConfig(
        shards=str(shards / run.kind / "train"), val_shards=str(shards / run.kind / "val"), out=str(out),
        model=run.model, width=None if run.model in NO_WIDTH else plan.widths.get(run.model), encoder=encoder,
        mode=run.mode,
        loss=run.loss, preset=plan.preset, samples=plan.samples, batch_size=plan.batch_size, norm=run.norm,
        amp=plan.amp if torch.cuda.is_available() else "off", workers=plan.workers, crop=plan.crop,
        val_samples=plan.n_val, log_every=10,
    )


def run_study(variant: str, out: str | Path, only: str | None = None, progress=None, log=print,
              report: str | Path | None = None, minutes: float | None = None) -> Path:
    """Build shards and train into `out`, evaluate, and write tables.md, results.json and figures into
    `report` (default: `out`); returns the tables path.

    only: run just the runs whose table is this one ("I-II", "III-IV", "V-VI", "VII-VIII").
    minutes: time box for shard building and training (e.g. a borrowed GPU's). The run in progress when it
    ends is checkpointed and stopped, later ones are not started, nor is a run when less time is left than
    the longest run of this call took to train and evaluate; the tables hold the finished runs and
    list the rest, and rerunning the command continues with them."""
    plan = PLANS[variant]
    out = Path(out)
    report = Path(report or out)
    deadline = None if minutes is None else clock() + 60 * minutes

    def time_left() -> float:
        return math.inf if deadline is None else deadline - clock()

    runs = [r for r in study_runs(plan) if only is None or r.table == only]
    carried = carry_in(report, out, runs)
    if carried:
        log(f"{carried} finished runs taken from {report / 'runs'} (an earlier machine's); not trained again")
    results: dict[str, Evaluated] = {}
    seconds: dict[str, float] = {}
    machines: dict[str, str] = {}  # run -> the machine that evaluated it (runs of several machines share a table)
    built: set[str] = set()
    longest = 0.0  # wall seconds of the longest run trained and evaluated in this call: a run that would not
    # finish in the time left is not started (a stopped run's checkpoint stays on a lent machine that goes back)
    for k, run in enumerate(runs):
        rdir = out / "runs" / run.name
        if progress:
            progress(k, len(runs), run.name)
        finished = (rdir / "result.json").exists()
        if not finished and time_left() <= longest:
            continue  # not started (nor its kind's shards built): listed in the tables as left for a rerun
        needs_shards = not finished or not (rdir / "test_eval.json").exists()
        if run.kind not in built and needs_shards:  # each kind's shards just before its first run
            if progress:
                progress(k, len(runs), f"shards {run.kind}")
            build_shards(plan, out / "shards", [run.kind], log)
            built.add(run.kind)
        if not finished:
            left = time_left()  # again: the shards may have taken the rest
            if left <= longest:
                continue
            started = clock()
            cfg = dataclasses.replace(run_config(plan, run, out / "shards", rdir),
                                      time_limit=None if deadline is None else left)
            if train_run(cfg, log=lambda *_: None).get("stopped"):
                log(f"{run.name}: stopped at the --minutes limit; a rerun continues it")
                continue
        seconds[run.name] = json.loads((rdir / "result.json").read_text())["seconds"]
        results[run.name], machines[run.name] = cached_eval(run, rdir, out / "shards" / run.kind / "test", plan.n_test)
        if not finished:
            longest = max(longest, clock() - started)
    if progress:
        progress(len(runs), len(runs), "tables")
    if len(results) < len(runs):
        log(f"{len(results)} of {len(runs)} runs finished; rerun the same command to continue with the rest")
    return write_study(plan, variant, out, report, runs, results, seconds, machines)


CARRIED = ("result.json", "test_eval.json", "stats.jsonl")
"""What of a finished run goes into REPORT/runs/NAME (about 100 kB): a study continues from its OUT folder, or,
on a machine that starts bare, from a copy of REPORT alone (the tables, results and Fig. 3 need nothing else).
REPORT/runs is regenerated, not committed (git-ignored under reports/)."""


def copy_carried(src: Path, dst: Path) -> None:
    """The CARRIED files of one run folder into another (none where both are the same folder)."""
    dst.mkdir(parents=True, exist_ok=True)
    for f in CARRIED:
        if (src / f).exists() and (src / f).resolve() != (dst / f).resolve():
            (dst / f).write_bytes((src / f).read_bytes())


def carry_in(report: Path, out: Path, runs: list[Run]) -> int:
    """Copy the finished runs kept in report/runs into out/runs where out lacks them; returns how many."""
    n = 0
    for run in runs:
        src, dst = report / "runs" / run.name, out / "runs" / run.name
        if all((src / f).exists() for f in CARRIED[:2]) and not (dst / "result.json").exists():
            copy_carried(src, dst)
            n += 1
    return n


def machine() -> str:
    """The name the tables give the machine: the GPU's, or the CPU's with its thread count."""
    if torch.cuda.is_available():
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or 'x86'}, {torch.get_num_threads()} threads)"


def cached_eval(run: Run, rdir: Path, test: Path, n: int) -> tuple[Evaluated, str]:
    """Evaluate best.pt on the test shards once; the rows are cached in RUNDIR/test_eval.json (the
    example images are recomputed when the figure needs them). Returns them and the evaluating machine."""
    cache = rdir / "test_eval.json"
    if cache.exists():
        d = json.loads(cache.read_text())
        return (Evaluated(run.label, d["checkpoint"], run.mode, d["threshold"], d["rows"], []),
                d.get("machine") or machine())
    ev = evaluate_checkpoint(run.label, rdir / "best.pt", test, max_samples=n, keep_examples=0)
    cache.write_text(json.dumps({"checkpoint": ev.checkpoint, "threshold": ev.threshold, "rows": ev.rows,
                                 "machine": machine()}))
    return ev, machine()


def write_study(plan: StudyPlan, variant: str, out: Path, report: Path, runs: list[Run],
                results: dict[str, Evaluated], seconds: dict[str, float], machines: dict[str, str]) -> Path:
    report.mkdir(parents=True, exist_ok=True)
    counts = collections.Counter(machines[name] for name in results)
    device = "; ".join(f"{m} ({k} runs)" if len(counts) > 1 else m for m, k in counts.items()) or machine()
    total = sum(seconds.values())
    md = [f"# The paper's study, `{variant}` variant", "",
          f"Machine{'s' if len(counts) > 1 else ''}: {device}. Training time of "
          f"{'all runs' if len(results) == len(runs) else f'the {len(results)} finished runs of {len(runs)}'}: "
          f"{total / 60:.1f} min ({plan.hours} is the design). "
          f"Written {time.strftime('%Y-%m-%d %H:%M')}.", "",
          f"Budget per run: {plan.samples} training samples of {plan.size} px shards"
          f"{f' in {plan.crop} px windows' if plan.crop else ''}, batch {plan.batch_size}, preset `{plan.preset}`"
          f"{f', widths {plan.widths}' if plan.widths else ''}"
          f"{f', smp encoder {plan.encoder}' if plan.encoder else ''}, "
          f"FCN backbone {plan.fcn_backbone}. Shards per kind: {plan.n_train} train, {plan.n_val} validation "
          f"(picks best.pt and the mask threshold), {plan.n_test} test (these tables), each from its own "
          "phantom scans. Mean ± variance over test images; bold: best in the column. SSIM and PSNR-HVS-M are "
          "of the cleaned image (what `train apply` writes).", ""]

    def section(title: str, rows: list[Run], label_fn) -> None:
        rows = [r for r in rows if r.name in results]
        if not rows:
            return
        evs = [dataclasses.replace(results[r.name], label=label_fn(r)) for r in rows]
        md.extend([f"## {title}", "", table_markdown(evs, label_header="run"), ""])

    section("Tables I-II: models on body_marker", [r for r in runs if r.table == "I-II"],
            lambda r: f"{r.model} {r.label}")
    l1 = [r for r in runs if r.table == "I-II" and r.model == "n2n_unet" and r.mode == "n2n" and r.norm == "linear"]
    section("Tables III-IV: losses, n2n_unet N2N on body_marker", l1 + [r for r in runs if r.table == "III-IV"],
            lambda r: r.loss)
    section("Tables V-VI: radial_line", [r for r in runs if r.table == "V-VI"], lambda r: f"n2n_unet {r.label}")
    section("Tables VII-VIII: vascular_flow", [r for r in runs if r.table == "VII-VIII"],
            lambda r: f"n2n_unet {r.label}")

    figs = []
    for num, kind in ((4, "body_marker"), (5, "radial_line"), (6, "vascular_flow")):
        pair = [r for r in runs if r.kind == kind and r.model == "n2n_unet" and r.norm == "linear" and r.loss == "l1"
                and r.name in results]
        if len(pair) != 2:
            continue
        name, test = f"fig{num}_{kind}.png", out / "shards" / kind / "test"
        if test.exists() and all((out / "runs" / r.name / "best.pt").exists() for r in pair):
            rows = figure_rows_for(plan.size)
            evs = [evaluate_checkpoint(r.label, out / "runs" / r.name / "best.pt", test, max_samples=rows,
                                       keep_examples=rows) for r in sorted(pair, key=lambda r: r.mode)]
            write_figure(report / name, figure(evs, rows, zoom=2 if plan.size <= 128 else 1))
        elif not (report / name).exists():  # runs carried in from an earlier machine keep that machine's figure
            continue
        figs.append(f"![Fig. {num}: {kind}, input | N2C | N2N | truth]({name})")
    if loss_curves(out, report, [r for r in runs if r.name in results]):
        figs.insert(0, "![Fig. 3: training loss per loss function](fig3_losses.png)")
    if figs:
        md += ["## Figures", "", *figs, ""]
    left = [r for r in runs if r.name not in results]
    if left:
        md += [f"## Not run yet: {len(left)} of {len(runs)} runs", "",
               "Stopped by `--minutes` or not started. Rerun the same command to train them (a stopped run "
               "continues from its checkpoint); finished runs are skipped.", "",
               *[f"- Tables {r.table}: {r.name}" + (" (stopped part-way)" if (out / "runs" / r.name / "last.pt")
                                                      .exists() else "") for r in left], ""]
    for name in results:  # what the next machine needs to carry these runs in (carry_in)
        copy_carried(out / "runs" / name, report / "runs" / name)
    path = report / "tables.md"
    path.write_text("\n".join(md))
    (report / "results.json").write_text(json.dumps(
        {name: {"seconds": seconds.get(name), "threshold": ev.threshold,
                **{k: {"mean": m, "var": v} for k, (m, v) in ev.summary.items()}} for name, ev in results.items()},
        indent=1))
    return path


def loss_curves(out: Path, report: Path, runs: list[Run]) -> bool:
    """Fig. 3: training loss against samples seen for each loss of Tables III-IV (smoothed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [r for r in runs if r.kind == "body_marker" and r.model == "n2n_unet" and r.mode == "n2n"
              and r.norm == "linear"]
    curves = {}
    for r in chosen:
        stats = out / "runs" / r.name / "stats.jsonl"
        if stats.exists():
            rows = [json.loads(x) for x in stats.read_text().splitlines()]
            rows = [x for x in rows if "loss" in x]
            if rows:
                curves[r.loss] = ([x["samples"] for x in rows], [x["loss"] for x in rows])
    if len(curves) < 2:
        return False
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=110)
    for loss, (x, y) in curves.items():
        k = max(1, len(y) // 20)
        ys = np.convolve(y, np.ones(k) / k, mode="valid")
        ax.plot(x[k - 1:], ys, label=loss)
    ax.set_yscale("log")
    ax.set_xlabel("training samples")
    ax.set_ylabel("training loss (own scale)")
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(report / "fig3_losses.png")
    plt.close(fig)
    return True
