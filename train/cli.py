"""The `train` command line: thin wrappers that validate options and call the library."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from train.config import AMP, MODES, NORMS, PRESETS, SEG_DICE
from train.metrics import DEFAULT_MIN_AREA

MODEL_NAMES = ("deeplabv3", "fcn", "linknet", "manet", "multiresunet", "n2n_unet", "unet", "unetplusplus")
LOSS_NAMES = ("l1", "l2", "huber", "smooth_l1", "l1+l2", "huber+l2", "smooth_l1+l2", "all")


def _detector_or_shipped(checkpoint: tuple, fill: Path | None = None, with_fill: bool = False) -> tuple:
    """(checkpoints, fill): the ones given, or the shipped detector (and, with_fill, the shipped filler unless
    --fill was given), said on stderr. A ClickException when this install has no shipped model."""
    if checkpoint:
        return tuple(checkpoint), fill
    from train.checkpoint import TrainError
    from train.shipped import default_checkpoint, default_fill

    try:
        checkpoint = (default_checkpoint(),)
    except TrainError as e:
        raise click.ClickException(str(e)) from None
    if with_fill:
        fill = fill or default_fill()
    click.echo(f"checkpoint: the shipped detector ({checkpoint[0]})"
               + (f", filler: {fill or 'inpainting'}" if with_fill else ""), err=True)
    return checkpoint, fill


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="us-annotation-n2n")
def main() -> None:
    """Train, evaluate and apply annotation-removal models on synth shards."""


@main.command()
@click.option(
    "--shards", type=click.Path(path_type=Path), required=True, help="Training shard set (synth build --out)."
)
@click.option(
    "--val-shards",
    type=click.Path(path_type=Path),
    default=None,
    help="Held-out shard set for validation (build it with another --seed for unseen clean scans).",
)
@click.option("--val-fraction", type=float, default=0.0, help="Hold out this fraction of --shards' shards instead.")
@click.option("--model", type=click.Choice(MODEL_NAMES), default="n2n_unet", help="Model from the registry.")
@click.option("--width", type=int, default=None, help="Base width (n2n_unet 48; the cpu preset uses 16).")
@click.option("--encoder", default=None, help="smp encoder (default resnet34) or fcn backbone (resnet101|resnet50).")
@click.option("--full-skip", is_flag=True,
              help="n2n_unet: give the full-resolution decoder stage the first encoder stage's features too "
                   "(beyond the paper; sharper edges on thin strokes, about 7 % slower).")
@click.option(
    "--mode", type=click.Choice(MODES), default="n2n", help="n2n: noisy_a->noisy_b; n2c: ->clean; seg: ->mask."
)
@click.option("--loss", type=click.Choice(LOSS_NAMES), default=None, help="Restoration loss (default: the preset's).")
@click.option("--preset", type=click.Choice(["auto", *PRESETS]), default="auto",
              help="Recipe filling unset options; auto: paper on CUDA, cpu otherwise (printed at the start).")
@click.option("--label", default="", help="Shown in the progress bar, e.g. '2/3' for the second run of a recipe.")
@click.option("--epochs", type=click.IntRange(1), default=None, help="Passes over --shards (default 1).")
@click.option("--samples", type=click.IntRange(1), default=None, help="Train on this many samples in total instead.")
@click.option("--batch-size", type=click.IntRange(1), default=None, help="Per-rank batch size (default: the preset's).")
@click.option("--lr", type=float, default=None, help="Learning rate (default: the preset's).")
@click.option("--norm", type=click.Choice(NORMS), default="linear", help="linear: /255; smn: dataset mean/std.")
@click.option("--residual/--no-residual", default=None,
              help="Global residual: output = input + net(input), starting as the identity (default: the preset's).")
@click.option("--pair-boost", type=click.FloatRange(0), default=None,
              help="n2n: extra loss weight where the two noisy copies differ (default: the preset's; 0 turns it off).")
@click.option("--clip-grad", type=click.FloatRange(0), default=None, metavar="NORM",
              help="Clip the gradient's global L2 norm to NORM before each step (default: the preset's; 0: never). "
                   "stats.jsonl logs the largest norm of each logging window as grad_norm.")
@click.option("--gated", is_flag=True,
              help="Gated output: output = input + sigmoid(gate) * (image - input), the gate learnt from the loss.")
@click.option("--seg-dice", type=click.Choice(SEG_DICE), default="batch", show_default=True,
              help="seg: pool the loss's soft Dice over the batch, or per image (as the evaluation averages Dice).")
@click.option("--hard-negatives", type=click.FloatRange(0, 0.5), default=0.0, show_default=True,
              help="seg with --crop: share of windows centred on a bright mark on a dark surround off the mask "
                   "(depth ticks, probe arc, scanner text), taken from the uniform ones.")
@click.option("--seg-soft", type=click.FloatRange(0, 64), default=0.0, show_default=True, metavar="LEVELS",
              help="seg: soft targets along the mask's edge. A pixel's target ramps from 0 to 1 as its change "
                   "goes from LEVELS grey levels under the shard's mask cut to LEVELS over it (0: the hard mask).")
@click.option("--crop", type=click.IntRange(1), default=None,
              help="Train on CROP x CROP windows (half of them centred on annotation), evaluate on whole images.")
@click.option("--amp", type=click.Choice(AMP), default="off", help="Mixed precision (fp16 needs CUDA).")
@click.option("--compile", "compile_", is_flag=True, help="torch.compile the model.")
@click.option("--workers", type=click.IntRange(0), default=0, help="DataLoader worker processes.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Run directory (rerun to resume).")
@click.option("--seed", type=int, default=0, help="Seed of initialisation and data order.")
@click.option("--val-samples", type=click.IntRange(1), default=64, help="Validation samples per epoch.")
@click.option(
    "--best-metric",
    type=click.Choice(["dice", "iou", "ssim", "psnr_hvsm"]),
    default="dice",
    help="Metric that picks best.pt.",
)
@click.option("--ckpt-every", type=click.IntRange(0), default=0, help="Also checkpoint every N steps (0: epoch ends).")
@click.option("--log-every", type=click.IntRange(1), default=10, help="Steps between stats.jsonl lines.")
@click.option("--time-limit", type=click.FloatRange(0, min_open=True), default=None, metavar="SECONDS",
              help="Stop after this many seconds of training (checked after each step; under DDP every --log-every "
                   "steps): validate, "
                   "checkpoint, and continue on a rerun of the same command.")
def run(
    shards,
    val_shards,
    val_fraction,
    model,
    width,
    encoder,
    full_skip,
    mode,
    loss,
    preset,
    epochs,
    samples,
    batch_size,
    lr,
    norm,
    residual,
    pair_boost,
    clip_grad,
    gated,
    seg_dice,
    hard_negatives,
    seg_soft,
    crop,
    amp,
    compile_,
    workers,
    out,
    seed,
    val_samples,
    best_metric,
    ckpt_every,
    log_every,
    time_limit,
    label,
) -> None:
    """Train a model on shards; rerun the same command to resume."""
    import torch
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from train.config import TrainConfig
    from train.evaluate import default_threshold
    from train.loop import TrainError, train_run

    console = Console(stderr=True)
    if preset == "auto":
        preset = "paper" if torch.cuda.is_available() else "cpu"
        console.print(f"preset: {preset} (auto: {'a CUDA device is present' if preset == 'paper' else 'no CUDA device'}"
                      f"; --preset paper|fast|cpu picks one)")
    if not val_shards and not val_fraction:
        t = default_threshold(mode)
        console.print(f"no validation shards (--val-shards or --val-fraction): no threshold is swept; the checkpoint "
                      f"carries the default mask threshold {t:g} ({'probability' if mode == 'seg' else 'grey levels'})")
    cfg = TrainConfig(
        shards=str(shards),
        out=str(out),
        val_shards=str(val_shards) if val_shards else None,
        val_fraction=val_fraction,
        model=model,
        width=width,
        encoder=encoder,
        full_skip=full_skip,
        mode=mode,
        loss=loss,
        preset=preset,
        epochs=epochs,
        samples=samples,
        batch_size=batch_size,
        lr=lr,
        norm=norm,
        residual=residual,
        pair_boost=pair_boost,
        clip_grad=clip_grad,
        gated=gated,
        seg_dice=seg_dice,
        hard_negatives=hard_negatives,
        seg_soft=seg_soft,
        crop=crop,
        amp=amp,
        compile=compile_,
        workers=workers,
        seed=seed,
        val_samples=val_samples,
        best_metric=best_metric,
        ckpt_every=ckpt_every,
        log_every=log_every,
        time_limit=time_limit,
    )
    unit = f"{crop} px windows/s" if crop else "images/s"
    what = " ".join(x for x in (label, f"{model}{f' w{width}' if width else ''}", mode) if x)
    columns = [
        TextColumn(f"training {what}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}"),
        TextColumn("{task.fields[img_s]:.1f} " + unit),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    ]
    with Progress(*columns, console=console) as bar:
        # hidden until the first step, so a run with nothing left to train shows no empty bar
        task = bar.add_task("train", total=None, loss=float("nan"), img_s=0.0, visible=False)
        try:
            result = train_run(
                cfg,
                log=console.print,
                progress=lambda done, total, loss, img_s: bar.update(
                    task, completed=done, total=total, loss=loss, img_s=img_s, visible=True
                ),
            )
        except (TrainError, ValueError) as e:
            raise click.ClickException(str(e)) from None
    if result.get("already_complete"):
        click.echo(
            f"{result['out']} is already trained ({result['steps']} steps, {result['samples']} samples); nothing to "
            "do. To train again, give another --out or delete that folder."
        )
    elif result.get("stopped"):
        click.echo(
            f"stopped at the time limit ({time_limit:g} s) after {result['samples']} of {result['total']} samples; "
            f"checkpoints in {result['out']}. Rerun the same command to continue."
        )
    else:
        click.echo(
            f"trained {result['steps']} steps ({result['samples']} samples) in {result['seconds']:.0f} s; "
            f"checkpoints in {result['out']}"
        )
    if result["val"]:
        click.echo("validation: " + ", ".join(f"{k} {m:.4f}" for k, (m, _) in result["val"].items()))


@main.command("eval")
@click.option("--checkpoint", type=click.Path(path_type=Path), default=None,
              help="RUNDIR/best.pt or last.pt (default: the shipped multi-kind detector).")
@click.option("--shards", type=click.Path(path_type=Path), required=True, help="Shard set to evaluate on.")
@click.option(
    "--out", type=click.Path(path_type=Path), default=None, help="Report folder (default: next to the checkpoint)."
)
@click.option("--threshold", type=float, default=None,
              help="Mask threshold: grey levels for n2n/n2c, probability for seg (default: the one the run picked on "
              "its validation data, else 8 / 0.5).")
@click.option("--save-examples", type=click.IntRange(0), default=4, help="Example panels to write.")
@click.option("--max-samples", type=click.IntRange(1), default=None, help="Evaluate only the first N samples.")
@click.option("--batch-size", type=click.IntRange(1), default=4, help="Batch size.")
def eval_(checkpoint, shards, out, threshold, save_examples, max_samples, batch_size) -> None:
    """Dice, IoU, PA, SSIM, PSNR-HVS-M, PSNR on shards; per-image CSV, markdown table, example panels."""
    from torch.utils.data import DataLoader

    from train.checkpoint import TrainError
    from train.data import EVAL_FIELDS, DataError, ShardStream
    from train.evaluate import evaluate_batches, write_reports
    from train.infer import predictor_from_checkpoint

    checkpoint = _detector_or_shipped((checkpoint,) if checkpoint else ())[0][0]
    try:
        predictor, meta = predictor_from_checkpoint(checkpoint)
        stream = ShardStream(shards, (*EVAL_FIELDS, "sample_id"), shuffle=False)
    except (TrainError, DataError) as e:
        raise click.ClickException(str(e)) from None
    if list(stream.manifest["image_size"]) != list(meta["image_size"]):
        click.echo(
            f"note: shards are {stream.manifest['image_size']} px, the model was trained at {meta['image_size']} px",
            err=True,
        )
    predictor.model.eval()
    rows, examples = evaluate_batches(
        predictor,
        DataLoader(stream, batch_size=batch_size),
        threshold=meta.get("threshold") if threshold is None else threshold,
        max_samples=max_samples,
        keep_examples=save_examples,
    )
    out = Path(out) if out else Path(checkpoint).parent / f"eval_{Path(shards).name}"
    s = write_reports(out, rows, examples, f"{meta['mode']} on {shards}")
    for k, (m, v) in s.items():
        click.echo(f"{k:>16}: {m:.4f} ± {v:.2g}")
    click.echo(f"report in {out}")


@main.command()
@click.option("--checkpoint", type=click.Path(path_type=Path), multiple=True,
              help="RUNDIR/best.pt. Repeat it to average several seg detectors' probabilities (an ensemble). "
              "Default: the shipped multi-kind detector, with the shipped filler unless --fill is given.")
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder.")
@click.option("--threshold", type=float, default=None,
              help="Mask threshold: grey levels for n2n/n2c, probability for seg (default: the one the run picked on "
              "its validation data, else 8 / 0.5).")
@click.option("--fill", type=click.Path(path_type=Path), default=None,
              help="For a seg checkpoint: an n2n/n2c checkpoint whose output fills the masks (default: inpainting).")
@click.option("--min-area", type=click.IntRange(1), default=DEFAULT_MIN_AREA,
              help="Drop mask components smaller than this many pixels at the training scale "
              "(`train check-real --sweep` picks one on real scans).")
@click.option("--grow/--no-grow", default=True,
              help="Grow each mask into the rest of the marks it lies on (train.grow: weaker connected model scores, "
              "then connected pixels that stand out from their local background, bounded), so a mark found in part "
              "is removed whole (docs/operating_point.md).")
def apply(checkpoint, inputs, out, threshold, fill, min_area, grow) -> None:
    """Clean scans (files or folders of PNG/JPEG/DICOM, any size): writes NAME.clean.png (DICOM: NAME.clean.dcm, a
    new derived instance), NAME.mask.png (multi-frame: NAME.f0001.mask.png ...) and apply.csv."""
    from rich.progress import Progress

    from train.checkpoint import TrainError
    from train.grow import DEFAULT_GROW
    from train.infer import apply as run_apply

    missing = [str(p) for p in inputs if not Path(p).exists()]
    if missing:
        raise click.ClickException(f"no such file or folder: {', '.join(missing)}.")
    checkpoint, fill = _detector_or_shipped(checkpoint, fill, with_fill=True)
    with Progress(transient=True) as bar:
        task = bar.add_task("cleaning", total=None)
        try:
            r = run_apply(
                list(checkpoint), list(inputs), out, threshold, fill=fill, min_area=min_area,
                grow=DEFAULT_GROW if grow else None,
                progress=lambda k, n: bar.update(task, completed=k, total=n),
            )
        except TrainError as e:
            raise click.ClickException(str(e)) from None
    click.echo(f"cleaned {r['done']} scans into {out} (table: {r['csv']})")
    if r["bad"]:
        click.echo(f"{len(r['bad'])} file(s) could not be read and were skipped:", err=True)
        for f, why in r["bad"]:
            click.echo(f"  {why}", err=True)
        sys.exit(1)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True,
              help="Audit folder: audit.csv, audit.json, index.html, media/ (rerun the same command to resume).")
@click.option("--checkpoint", type=click.Path(path_type=Path), multiple=True,
              help="Seg detector RUNDIR/best.pt (repeat to average several); default: the shipped multi-kind model.")
@click.option("--fill", type=click.Path(path_type=Path), default=None,
              help="n2n/n2c checkpoint that fills the masks of the 'after' previews (default: the shipped filler "
                   "with the shipped detector, else inpainting).")
@click.option("--rules", type=click.Path(path_type=Path, dir_okay=False), default=None,
              help="TOML rules: kinds required, forbidden or allowed per study, series or folder "
                   "(docs/audit.md, docs/examples/rules.toml).")
@click.option("--threshold", type=click.FloatRange(0, 1), default=None,
              help="Annotation probability (default: the one the run picked on its validation data, else 0.5).")
@click.option("--min-area", type=click.IntRange(1), default=DEFAULT_MIN_AREA,
              help="Drop detections smaller than this many pixels at the model's scale.")
@click.option("--thumb-px", type=click.IntRange(32, 512), default=160, help="Long side of the grid's thumbnails.")
@click.option("--preview-px", type=click.IntRange(64, 2048), default=512,
              help="Long side of the before / mask / after previews.")
def audit(inputs, out, checkpoint, fill, rules, threshold, min_area, thumb_px, preview_px) -> None:
    """Inventory annotations in scans and DICOM files (kinds, boxes, areas, confidence per image or frame),
    check them against --rules, and write audit.csv, audit.json and a review page (index.html)."""
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    from train.audit import AuditConfig, run_audit
    from train.checkpoint import TrainError
    from train.rules import RulesError, load_rules

    missing = [str(p) for p in inputs if not Path(p).exists()]
    if missing:
        raise click.ClickException(f"no such file or folder: {', '.join(missing)}.")
    if rules is not None and not rules.is_file():
        raise click.ClickException(f"--rules {rules}: no such file; see docs/examples/rules.toml for one to copy.")
    try:
        rule_list = load_rules(rules) if rules else None
        checkpoint, fill = _detector_or_shipped(checkpoint, fill, with_fill=True)
        cfg = AuditConfig(out=str(out), checkpoints=tuple(str(c) for c in checkpoint),
                          fill=str(fill) if fill else None, threshold=threshold, min_area=min_area,
                          thumb_px=thumb_px, preview_px=preview_px)
        columns = [TextColumn("auditing"), BarColumn(), MofNCompleteColumn(), TextColumn("files"),
                   TimeElapsedColumn(), TimeRemainingColumn()]
        with Progress(*columns, transient=True) as bar:
            task = bar.add_task("audit", total=None)
            r = run_audit(cfg, list(inputs), rule_list, rules_path=str(rules) if rules else None,
                          progress=lambda k, n: bar.update(task, completed=k, total=n))
    except (TrainError, RulesError) as e:
        raise click.ClickException(str(e)) from None
    if r["skipped"]:
        click.echo(f"{r['skipped']} file(s) were audited before (journal in {out}); {r['new']} audited now.")
    v = r["verdicts"]
    click.echo(f"{r['images']} images from {r['files']} files: {r['annotated']} with annotation; "
               f"{v['fail']} fail, {v['pass']} pass, {v['unmatched']} matched no rule.")
    for rule in r["rules"]:
        click.echo(f"  {rule['rule']}: applied to {rule['matched']}, failed {rule['failed']}")
    click.echo(f"review page: {Path(out) / 'index.html'} (tables: audit.csv, audit.json)")
    if r["unreadable"]:
        import json

        bad = json.loads((Path(out) / "audit.json").read_text())["unreadable"]
        click.echo(f"{len(bad)} file(s) could not be read and were skipped:", err=True)
        for b in bad:
            click.echo(f"  {b['error']}", err=True)
        sys.exit(1)


@main.command()
@click.option("--shards", type=click.Path(path_type=Path), required=True, help="Held-out shard set to compare on.")
@click.option("--run", "runs", multiple=True, required=True, metavar="LABEL=CHECKPOINT[,CHECKPOINT...][+FILL]",
              help="A model to compare, e.g. N2N=out/runs/n2n/best.pt (repeat). A seg checkpoint may name an "
                   "n2n/n2c checkpoint after '+' to fill its masks: SEG=seg/best.pt+n2n/best.pt. Several seg "
                   "checkpoints joined by ',' are one detector, their probabilities averaged.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Report folder.")
@click.option("--title", default="Comparison on held-out shards", help="Report title.")
@click.option("--max-samples", type=click.IntRange(1), default=None, help="Evaluate only the first N samples.")
@click.option("--figure-rows", type=click.IntRange(1), default=None,
              help="Examples in figure.png (default: 4 up to 256 px images, 2 above).")
@click.option("--reference", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="A committed table.json: say whether this table matches it within train.reference's tolerances.")
def compare(shards, runs, out, title, max_samples, figure_rows, reference) -> None:
    """The paper's table (mean ± variance) and a Fig. 4-like figure for several models on one shard set."""
    from rich.progress import Progress

    from train.checkpoint import TrainError
    from train.data import DataError, list_shard_files
    from train.report import evaluate_checkpoint, figure_rows_for, write_comparison

    pairs = []
    for r in runs:
        label, sep, ckpt = r.partition("=")
        if not sep or not label or not ckpt:
            raise click.ClickException(f"--run {r!r}: write it as LABEL=CHECKPOINT, e.g. N2N=out/runs/n2n/best.pt.")
        ckpt, _, fill = ckpt.partition("+")
        members = ckpt.split(",")  # several seg checkpoints: one detector, probabilities averaged
        for c in (*members, fill) if fill else members:
            if not Path(c).is_file():
                raise click.ClickException(f"--run {label}: no checkpoint at {c}; train it with `train run` first.")
        pairs.append((label, members, fill or None))
    if figure_rows is None:
        try:
            figure_rows = figure_rows_for(max(list_shard_files(shards)[1].get("image_size") or [0]))
        except DataError as e:
            raise click.ClickException(str(e)) from None
    results = []
    with Progress(transient=True) as bar:
        task = bar.add_task("evaluating", total=len(pairs))
        for label, ckpt, fill in pairs:
            try:
                results.append(evaluate_checkpoint(label, ckpt, shards, max_samples, keep_examples=figure_rows,
                                                   fill=fill))
            except (TrainError, DataError) as e:
                raise click.ClickException(str(e)) from None
            bar.advance(task)
    click.echo(write_comparison(results, out, title, str(shards)))
    click.echo(f"report in {out}")
    if reference:
        from train.reference import verdict

        click.echo(verdict(Path(out) / "table.json", reference)[1])


@main.command("check-real")
@click.option("--checkpoint", type=click.Path(path_type=Path), multiple=True,
              help="RUNDIR/best.pt. Repeat it to average several seg detectors' probabilities (an ensemble). "
              "Default: the shipped multi-kind detector.")
@click.option("--annotated", type=click.Path(path_type=Path), default=None, help="Folder of real annotated scans.")
@click.option("--clean", type=click.Path(path_type=Path), default=None,
              help="Folder of real scans without annotations.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Report folder.")
@click.option("--panel-rows", type=click.IntRange(1), default=6, help="Scans shown in panel.png.")
@click.option("--limit", type=click.IntRange(1), default=None, help="Use only the first N scans of each folder.")
@click.option("--threshold", type=float, default=None,
              help="Mask threshold (default: the one the run picked on its validation shards).")
@click.option("--min-area", type=click.IntRange(1), default=DEFAULT_MIN_AREA,
              help="Drop mask components smaller than this many pixels at the training scale.")
@click.option("--sweep", is_flag=True,
              help="Instead: pick a threshold and min area on half the scans, report them on the other half "
              "(operating_point.md, roc.csv, roc.png).")
@click.option("--reference", type=click.Path(path_type=Path, exists=True, dir_okay=False), default=None,
              help="With --sweep: a scan-level reference CSV (columns file, annotated yes/no, optional kinds and "
              "colour; paths relative to the CSV) listing the scans to use, instead of the --annotated/--clean "
              "folders. At least 20 annotated and 20 clean scans.")
@click.option("--max-false-flag-rate", type=click.FloatRange(0, 1), default=0.02,
              help="With --sweep: the picked point flags at most this share of the clean scans.")
@click.option("--grow/--no-grow", default=True,
              help="Grow each mask into the rest of the marks it lies on (train.grow: weaker connected model scores, "
              "then connected pixels that stand out from their local background, bounded), so a mark found in part "
              "is removed whole (docs/operating_point.md).")
def check_real(checkpoint, annotated, clean, out, panel_rows, limit, threshold, min_area, sweep, reference,
               max_false_flag_rate, grow) -> None:
    """Real scans: how many colour-keyed annotations the model finds, how many clean scans it flags."""
    from rich.progress import Progress

    from train.checkpoint import TrainError
    from train.grow import DEFAULT_GROW
    from train.realcheck import check_real as run_check
    from train.realcheck import sweep_real

    if reference is not None and not sweep:
        raise click.ClickException("--reference goes with --sweep (it picks the operating point against it).")
    if reference is not None and (annotated is not None or clean is not None):
        raise click.ClickException("--reference lists the scans to use; leave out --annotated and --clean.")
    if annotated is None and clean is None and reference is None:
        raise click.ClickException("give --annotated and/or --clean folders of real scans.")
    if sweep and reference is None and (annotated is None or clean is None):
        raise click.ClickException("--sweep needs both --annotated and --clean (each folder's scans are its "
                                   "scan-level reference), or a --reference CSV: it trades annotated scans found "
                                   "against clean scans flagged.")
    checkpoint, _ = _detector_or_shipped(checkpoint)
    grow = DEFAULT_GROW if grow else None
    with Progress(transient=True) as bar:
        task = bar.add_task("real scans", total=None)
        tick = lambda k, n: bar.update(task, completed=k, total=n)
        try:
            if sweep:
                res = sweep_real(list(checkpoint), annotated, clean, out, limit, progress=tick, reference=reference,
                                 max_false_flag_rate=max_false_flag_rate, grow=grow)
            else:
                res = run_check(list(checkpoint), annotated, clean, out, panel_rows, limit, progress=tick,
                                threshold=threshold, min_area=min_area, grow=grow)
        except TrainError as e:
            raise click.ClickException(str(e)) from None
    click.echo((Path(out) / ("operating_point.md" if sweep else "real_check.md")).read_text())
    for line in (res["unreadable"] if sweep else res.unreadable):
        click.echo(f"skipped: {line}", err=True)


@main.command()
@click.option("--quick", is_flag=True, help="The CPU variant (96 px, narrow models; under 30 min on 2 cores).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Work folder: shards and runs (default out/study or out/study-quick).")
@click.option("--report", type=click.Path(path_type=Path), default=None,
              help="Where tables.md, results.json and the figures go (default reports/study or reports/study-quick).")
@click.option("--only", type=click.Choice(["I-II", "III-IV", "V-VI", "VII-VIII"]), default=None,
              help="Run only the runs of these tables.")
@click.option("--minutes", type=click.FloatRange(0, min_open=True), default=None,
              help="Time box for shards and training (e.g. a lent GPU): the run in progress is checkpointed and "
                   "stopped, later ones wait; the tables hold the finished runs. Rerun to continue.")
def study(quick, out, report, only, minutes) -> None:
    """The paper's comparison: Tables I-VIII and Figs. 3-6, resumable (rerun to continue)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from synth.build import BuildError
    from train.checkpoint import TrainError
    from train.data import DataError
    from train.study import run_study

    variant = "quick" if quick else "full"
    out = out or Path("out") / ("study-quick" if quick else "study")
    report = report or Path("reports") / ("study-quick" if quick else "study")
    columns = [TextColumn("study"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[now]}"),
               TimeElapsedColumn()]
    with Progress(*columns) as bar:
        task = bar.add_task("study", total=None, now="shards")
        try:
            path = run_study(variant, out, only, log=bar.console.print, report=report, minutes=minutes,
                             progress=lambda k, n, now: bar.update(task, completed=k, total=n, now=now))
        except (BuildError, TrainError, DataError, ValueError) as e:
            raise click.ClickException(str(e)) from None
    click.echo(f"tables and figures in {path.parent} ({path})")


if __name__ == "__main__":
    sys.exit(main())


@main.command("score-apply")
@click.argument("applied", type=click.Path(exists=True, file_okay=False, path_type=Path))
@click.option("--truth", type=click.Path(path_type=Path), required=True,
              help="Truth masks: TRUTH/STEM.png for each APPLIED/STEM.mask.png; scans without one count as clean.")
@click.option("--out", type=click.Path(path_type=Path), default=None, help="Report folder (default APPLIED/score).")
def score_apply(applied, truth, out) -> None:
    """Score `train apply`'s output against truth masks: marks found / missed, how much of each found mark
    was removed, false marks, clean scans flagged; before | mask | after panels."""
    from train.checkpoint import TrainError
    from train.score import score_applied

    try:
        s = score_applied(applied, truth, out)
    except TrainError as e:
        raise click.ClickException(str(e)) from None
    mean = s["mean_removed_fraction_of_found"]
    click.echo(f"annotated scans {s['annotated_scans']}: {s['found']}/{s['marks']} marks found, {s['missed']} "
               f"missed, {'-' if mean is None else f'{mean:.0%}'} of each found mark removed on average, "
               f"{s['false_marks']} false marks; clean scans flagged: {s['clean_flagged']}/{s['clean_scans']}")
    click.echo(f"report and panels in {out or Path(applied) / 'score'}")


@main.command("export")
@click.argument("checkpoint", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
def export_(checkpoint, out) -> None:
    """Write CHECKPOINT cut down to what `apply`/`eval` need (no optimiser or resume state) to OUT."""
    from train.checkpoint import TrainError
    from train.export import export

    try:
        r = export(checkpoint, out)
    except TrainError as e:
        raise click.ClickException(str(e)) from None
    click.echo(f"wrote {out}: {r['bytes'] / 1e6:.1f} MB, {r['params'] / 1e6:.2f} M parameters")
