"""The training loop: one function, progress counted in samples, resumable by rerunning the same command.

`train_run` reads as its steps: open the shards, resume or start the run folder, normalisation, model and
optimiser, then epochs of `_train_epoch` (each step `_Stepper.step`) with `_validate_and_save` at every
epoch's end. Checkpoint I/O and TrainError live in train.checkpoint (imported here for older callers).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from synth.kinds import CLASS_IDS
from synth.render import FOOTPRINT_DILATE_PX, RenderOptions
from train.checkpoint import TrainError, load_checkpoint, model_from_checkpoint, restore, save_checkpoint  # noqa: F401
from train.config import AMP, MODES, NORMS, SEG_DICE, TrainConfig
from train.data import EVAL_FIELDS, MODE_FIELDS, DataError, ShardStream, dataset_mean_std, epoch_order, list_shard_files
from train.evaluate import Predictor, normalize, summary, validate
from train.losses import make_loss, pair_weight, seg_loss, soft_seg_target
from train.models import create_model

VAL_CACHE_BYTES = 1 << 30
"""Validation batches and the model's outputs on them are kept in memory up to this size (64 samples at
512 px take about 320 MB), so that the threshold sweep and the scoring run the model once."""


def setup_distributed() -> tuple[int, int, int, torch.device]:
    """(rank, world, local_rank, device). Under torchrun (WORLD_SIZE set) joins the process group."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank, local = int(os.environ.get("RANK", "0")), int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available():
        torch.cuda.set_device(local)
        device = torch.device("cuda", local)
    else:
        device = torch.device("cpu")
    if "WORLD_SIZE" in os.environ and not torch.distributed.is_initialized():
        torch.distributed.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return rank, world, local, device


def model_kw(cfg: TrainConfig) -> dict:
    """--encoder and --full-skip as the registry spells them: `backbone` for fcn, `encoder` for the smp
    models, `full_skip` for n2n_unet."""
    if cfg.full_skip and cfg.model != "n2n_unet":
        raise TrainError(f"--full-skip applies to n2n_unet, not {cfg.model}.")
    kw = {"full_skip": True} if cfg.full_skip else {}
    if cfg.encoder is None:
        return kw
    if cfg.model == "fcn":
        return {"backbone": cfg.encoder}
    if cfg.model in ("n2n_unet", "multiresunet"):
        raise TrainError(f"--encoder applies to the smp models and fcn, not {cfg.model}.")
    return {"encoder": cfg.encoder}


def amp_dtype(amp: str, device: torch.device) -> torch.dtype | None:
    if amp == "off":
        return None
    if amp == "fp16" and device.type != "cuda":
        raise TrainError("--amp fp16 needs a CUDA GPU; on the CPU use --amp bf16 or --amp off.")
    return torch.float16 if amp == "fp16" else torch.bfloat16


def validate_config(cfg: TrainConfig) -> None:
    if cfg.mode not in MODES:
        raise TrainError(f"unknown --mode {cfg.mode!r}; use one of {', '.join(MODES)}.")
    if cfg.seg_dice not in SEG_DICE:
        raise TrainError(f"unknown --seg-dice {cfg.seg_dice!r}; use one of {', '.join(SEG_DICE)}.")
    if cfg.hard_negatives and (cfg.mode != "seg" or not cfg.crop):
        raise TrainError(f"--hard-negatives picks seg training windows; use it with --mode seg and --crop, "
                         f"not --mode {cfg.mode}{'' if cfg.crop else ' without --crop'}.")
    if not 0.0 <= cfg.hard_negatives <= 0.5:
        raise TrainError(f"--hard-negatives {cfg.hard_negatives}: give a share of windows in [0, 0.5].")
    if cfg.seg_soft and cfg.mode != "seg":
        raise TrainError(f"--seg-soft sets the seg targets; it does not apply to --mode {cfg.mode}.")
    if not 0.0 <= cfg.seg_soft <= 64:
        raise TrainError(f"--seg-soft {cfg.seg_soft}: give a ramp half-width in grey levels, from 0 (off) to 64.")
    if cfg.seg_dice != "batch" and cfg.mode != "seg":
        raise TrainError(f"--seg-dice {cfg.seg_dice} sets the seg loss; it does not apply to --mode {cfg.mode}.")
    if cfg.amp not in AMP:
        raise TrainError(f"unknown --amp {cfg.amp!r}; use one of {', '.join(AMP)}.")
    if cfg.norm not in NORMS:
        raise TrainError(f"unknown --norm {cfg.norm!r}; use one of {', '.join(NORMS)}.")
    if cfg.samples is not None and cfg.samples < 1 or cfg.epochs is not None and cfg.epochs < 1:
        raise TrainError("--samples and --epochs must be at least 1.")
    if not 0 <= cfg.val_fraction < 1:
        raise TrainError("--val-fraction must be in [0, 1).")
    if cfg.crop is not None:
        from train.models import MODELS

        multiple = getattr(MODELS.get(cfg.model), "size_multiple", 32)
        if cfg.crop < multiple or cfg.crop % multiple:
            raise TrainError(f"--crop {cfg.crop}: {cfg.model} needs a multiple of {multiple} pixels (e.g. "
                             f"{max(multiple, cfg.crop // multiple * multiple)}).")


@dataclasses.dataclass(frozen=True)
class ShardMaskRule:
    """How the shards' truth masks were cut (synth.render's MASK RULE), as their manifest records it."""

    soften: bool        # capture softening on: the mask is pixels moved >= min_diff; off: every changed pixel
    min_diff: int       # grey levels (max over channels) that make a pixel annotation
    footprint_px: int   # the footprint (drawn alpha) is grown by this many pixels before the cut


def shard_mask_rule(manifest: dict) -> ShardMaskRule:
    """The mask rule of a shard set from its manifest (params.render). synth.render's defaults stand in only
    for what a manifest does not record (the footprint growth, and every value in manifests without a render
    section)."""
    render, defaults = manifest.get("params", {}).get("render", {}), RenderOptions()
    return ShardMaskRule(soften=bool(render.get("soften", defaults.soften)),
                         min_diff=int(render.get("mask_min_diff", defaults.mask_min_diff)),
                         footprint_px=int(render.get("footprint_dilate_px", FOOTPRINT_DILATE_PX)))


def soft_target_rule(cfg: TrainConfig, manifest: dict) -> ShardMaskRule:
    """The --shards set's mask rule, for --seg-soft (a TrainError where soft targets cannot be formed:
    several kinds, or masks without capture softening, which mark every changed pixel)."""
    if len(manifest["kinds"]) != 1:
        raise TrainError(f"--seg-soft needs one kind's shards; {cfg.shards} holds {', '.join(manifest['kinds'])}. "
                         "Train without --seg-soft, or on a single-kind build.")
    rule = shard_mask_rule(manifest)
    if not rule.soften:
        raise TrainError(f"--seg-soft needs shards built with capture softening; {cfg.shards} was built with "
                         "--no-soften, so its mask is every changed pixel and has no cut to soften. Drop --seg-soft.")
    return rule


def lr_at(cfg: TrainConfig, step: int, total_steps: int) -> float:
    """The learning rate at `step`: constant, or cosine-annealed to 0 over the run's total_steps."""
    if cfg.schedule == "cosine":
        return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
    return cfg.lr


def _open_shards(cfg: TrainConfig) -> tuple[list, dict, int]:
    """(training shard files, manifest, how many of them --val-fraction holds out)."""
    try:
        train_shards, manifest = list_shard_files(cfg.shards)
    except DataError as e:
        raise TrainError(f"--shards: {e}") from e
    n_val = 0
    if cfg.val_shards is None and cfg.val_fraction > 0:
        n_val = max(1, round(cfg.val_fraction * len(train_shards)))
        if n_val >= len(train_shards):
            raise TrainError(f"--val-fraction {cfg.val_fraction} leaves no training shards of {len(train_shards)}.")
    return train_shards, manifest, n_val


def _resume_checkpoint(out: Path, run_id: dict) -> dict | None:
    """OUT/last.pt when a rerun of the same command finds one; a TrainError when OUT holds another run."""
    if not (out / "last.pt").exists():
        return None
    ckpt = load_checkpoint(out / "last.pt")
    if ckpt.get("run_identity") != json.loads(json.dumps(run_id)):
        raise TrainError(
            f"--out {out} holds a different run (other settings); choose another folder or delete it to start over."
        )
    return ckpt


def _norm_stats(cfg: TrainConfig, out: Path, ckpt: dict | None, rank: int) -> tuple[list, list]:
    """(mean, std) per channel: SMN's dataset statistics, computed once and kept in the run dir; else 0/1."""
    if cfg.norm != "smn":
        return [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]
    stats_path = out / "norm_stats.json"
    if ckpt is not None:
        return ckpt["norm"]["mean"], ckpt["norm"]["std"]
    if stats_path.exists():
        d = json.loads(stats_path.read_text())
        return d["mean"], d["std"]
    mean, std = dataset_mean_std(cfg.shards)
    if rank == 0:
        stats_path.write_text(json.dumps({"mean": mean, "std": std}))
    return mean, std


def _build_model(cfg: TrainConfig, kinds: list[str], size: list[int], device: torch.device) -> torch.nn.Module:
    """The run's model on `device`; a TrainError where it cannot take the shards' image size."""
    # seg: one logit for a single kind; else one per project-wide class id (masks hold ids 0..4)
    out_ch = 3 if cfg.mode != "seg" else (1 if len(kinds) == 1 else max(CLASS_IDS.values()) + 1)
    try:
        model = create_model(
            cfg.model,
            in_channels=3,
            out_channels=out_ch,
            width=cfg.width,
            residual=bool(cfg.residual) and cfg.mode != "seg",
            gated=bool(cfg.gated) and cfg.mode != "seg",
            **model_kw(cfg),
        )
        model.check_input_size(*size)
    except ValueError as e:
        raise TrainError(f"--model {cfg.model}: {e}") from e
    model.to(device)
    if cfg.channels_last:
        model.to(memory_format=torch.channels_last)
    return model


def _optimizer(cfg: TrainConfig, params: list) -> torch.optim.Optimizer:
    if cfg.optimizer == "rmsprop":
        return torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise TrainError(f"unknown optimizer {cfg.optimizer!r}; use rmsprop or adam.")


def _wrap(model: torch.nn.Module, cfg: TrainConfig, device: torch.device) -> torch.nn.Module:
    """The module the steps call: DDP-wrapped under torchrun, compiled with --compile."""
    wrapped = model
    if torch.distributed.is_initialized():
        wrapped = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        wrapped = torch.compile(wrapped)
    return wrapped


@dataclasses.dataclass
class _Stepper:
    """What one optimisation step needs, built once per run."""

    cfg: TrainConfig
    forward: torch.nn.Module        # the (DDP-wrapped, compiled) model
    opt: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    params: list
    loss_fn: object                 # restoration loss (None for seg)
    fields: tuple                   # the batch fields MODE_FIELDS names (+ "clean" for --seg-soft)
    mean: list
    std: list
    soft: ShardMaskRule | None      # the mask rule, with --seg-soft
    device: torch.device
    adt: torch.dtype | None         # autocast dtype; None without --amp

    def loss(self, y: torch.Tensor, x8: torch.Tensor, batch: dict) -> torch.Tensor:
        cfg, device = self.cfg, self.device
        if cfg.mode == "seg":
            m8 = batch["mask"].to(device, non_blocking=True)
            soft = None
            if self.soft is not None:
                soft = soft_seg_target(x8, batch["clean"].to(device, non_blocking=True), m8,
                                       self.soft.min_diff, cfg.seg_soft, near_px=self.soft.footprint_px)
            return seg_loss(y.float(), m8.long(), dice=cfg.seg_dice, soft_target=soft)
        t8 = batch[self.fields[1]].to(device, non_blocking=True)
        w = pair_weight(x8, t8, boost=cfg.pair_boost) if cfg.mode == "n2n" and cfg.pair_boost else None
        return self.loss_fn(y.float(), normalize(t8, self.mean, self.std), weight=w)

    def step(self, batch: dict, lr: float) -> tuple[torch.Tensor, torch.Tensor | None, int]:
        """One optimiser step on `batch`; (loss on the device, gradient norm with --clip-grad, batch size)."""
        cfg, device = self.cfg, self.device
        x8 = batch["noisy_a"].to(device, non_blocking=True)
        x = normalize(x8, self.mean, self.std)
        if cfg.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        for g in self.opt.param_groups:
            g["lr"] = lr
        with torch.autocast(device.type, dtype=self.adt, enabled=self.adt is not None):
            loss = self.loss(self.forward(x), x8, batch)
        self.opt.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        norm = None
        if cfg.clip_grad:
            self.scaler.unscale_(self.opt)  # the norm of the true gradient, not of the fp16 loss-scaled one
            norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.clip_grad).detach().float()
        self.scaler.step(self.opt)
        self.scaler.update()
        return loss, norm, x.shape[0]


def train_run(cfg: TrainConfig, progress=None, log=print) -> dict:
    """Train (or resume) the run in cfg.out. Returns the final summary dict.

    progress: optional callable(samples_done, samples_total, loss, img_s) for a progress bar.
    """
    cfg = cfg.resolved()
    validate_config(cfg)
    rank, world, _, device = setup_distributed()
    adt = amp_dtype(cfg.amp, device)
    out = Path(cfg.out)
    _, manifest, n_val = _open_shards(cfg)
    size, kinds = manifest["image_size"], manifest["kinds"]
    soft = soft_target_rule(cfg, manifest) if cfg.seg_soft else None
    run_id = {"config": cfg.identity()}

    ckpt = _resume_checkpoint(out, run_id)  # a rerun of the same command resumes
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))
    mean, std = _norm_stats(cfg, out, ckpt, rank)

    torch.manual_seed(cfg.seed)
    model = _build_model(cfg, kinds, size, device)
    params = [p for p in model.parameters() if p.requires_grad]
    opt = _optimizer(cfg, params)
    scaler = torch.amp.GradScaler(device.type, enabled=adt == torch.float16)
    loss_fn = make_loss(cfg.loss) if cfg.mode != "seg" else None

    fields = MODE_FIELDS[cfg.mode] + (("clean",) if soft is not None else ())
    stream = ShardStream(
        cfg.shards, fields, seed=cfg.seed, rank=rank, world=world, n2n_swap=cfg.mode == "n2n",
        batch_size=cfg.batch_size, crop=cfg.crop, negatives=cfg.hard_negatives,
    )
    val_shards = None
    if n_val:  # hold out the last shards of the set
        stream.shards, val_shards = stream.shards[:-n_val], stream.shards[-n_val:]
    per_epoch = sum(s.n for s in stream.shards)
    total = cfg.samples if cfg.samples is not None else cfg.epochs * per_epoch
    total_steps = max(1, math.ceil(total / (cfg.batch_size * world)))

    if ckpt is not None and ckpt["state"]["samples_seen"] >= total and (out / "result.json").exists():
        # a rerun of a finished run: nothing to train, and its result (with its validation) stays as it was
        return {**json.loads((out / "result.json").read_text()), "already_complete": True}

    state = {"step": 0, "epoch": 0, "samples_seen": 0, "samples_in_epoch": 0, "best": None,
             "best_metric": cfg.best_metric}
    if ckpt is not None:
        restore(ckpt, model, opt, scaler, state, device)
        if rank == 0 and state["samples_seen"] < total:
            log(
                f"resuming {out} at step {state['step']} ({state['samples_seen']} samples seen, epoch {state['epoch']})"
            )
    stepper = _Stepper(cfg, _wrap(model, cfg, device), opt, scaler, params, loss_fn, fields, mean, std, soft,
                       device, adt)
    meta = {
        "mode": cfg.mode,
        "kinds": kinds,
        "class_ids": manifest.get("class_ids", {}),
        "image_size": size,
        "resize": manifest.get("resize", "letterbox"),
        "norm": cfg.norm,
    }
    save = functools.partial(save_checkpoint, model=model, opt=opt, scaler=scaler, state=state, meta=meta,
                             norm=(mean, std), cfg=cfg, run_id=run_id, device=device) if rank == 0 else None
    loader_kw = dict(
        batch_size=cfg.batch_size, num_workers=cfg.workers, pin_memory=device.type == "cuda", persistent_workers=False
    )
    stats_file = open(out / "stats.jsonl", "a") if rank == 0 else None
    predictor = Predictor(model, cfg.mode, tuple(mean), tuple(std), device, adt)
    t_start = time.perf_counter()
    last_val = None
    stopped = False  # by cfg.time_limit: the run is checkpointed mid-way and resumes on a rerun
    try:
        while state["samples_seen"] < total and not stopped:
            model.train()
            stopped, epoch_done = _train_epoch(stepper, stream, loader_kw, state, total, total_steps, world, out,
                                               save, stats_file, progress if rank == 0 else None, t_start)
            if epoch_done:
                state["epoch"] += 1
                state["samples_in_epoch"] = 0
            if epoch_done or stopped or state["samples_seen"] >= total:
                last_val = _validate_and_save(cfg, predictor, cfg.val_shards, val_shards, state, rank, stats_file,
                                              log, out, save)
            if torch.distributed.is_initialized():
                torch.distributed.barrier()
    finally:
        if stats_file:
            stats_file.close()
    result = {
        "out": str(out),
        "steps": state["step"],
        "samples": state["samples_seen"],
        "seconds": time.perf_counter() - t_start,
        "best": state["best"],
        "best_metric": cfg.best_metric,
        "val": {k: v for k, v in (last_val or {}).items()},
        "total": total,
    }
    if stopped:  # unfinished: no result.json, so a rerun (or `train study`) continues it
        return {**result, "stopped": True}
    if rank == 0:
        (out / "result.json").write_text(json.dumps(result, indent=1))
    return result


def _train_epoch(stepper: _Stepper, stream: ShardStream, loader_kw: dict, state: dict, total: int,
                 total_steps: int, world: int, out: Path, save, stats_file, progress, t_start: float
                 ) -> tuple[bool, bool]:
    """Train through one epoch (or what a resume left of it): log every cfg.log_every steps, checkpoint every
    cfg.ckpt_every, stop at cfg.time_limit. Returns (stopped by the time limit, epoch finished)."""
    cfg, device = stepper.cfg, stepper.device
    epoch = state["epoch"]
    # every rank takes the same number of steps this epoch (DDP needs it): the smallest share
    shares = [
        len(epoch_order(stream.shards, cfg.seed, epoch, r, world, 0, 1, stream.block, 1, True))
        for r in range(world)
    ]
    steps_in_epoch = max(1, min(shares) // cfg.batch_size)
    stream.set_epoch(epoch, skip=state["samples_in_epoch"])
    done_steps = state["samples_in_epoch"] // cfg.batch_size
    stopped = False
    t_wait, t_window, n_window, k_window = 0.0, time.perf_counter(), 0, 0
    loss_acc = torch.zeros((), device=device)
    grad_norm = torch.zeros((), device=device)  # the largest of the logging window (with clip_grad)
    t_data = time.perf_counter()
    for batch in DataLoader(stream, **loader_kw):
        if done_steps >= steps_in_epoch or state["samples_seen"] >= total:
            break
        t_wait += time.perf_counter() - t_data
        loss, norm, n = stepper.step(batch, lr_at(cfg, state["step"], total_steps))
        if norm is not None:
            # the window's largest finite norm (fp16 overflow steps are skipped by the scaler); no GPU sync
            grad_norm = torch.where(torch.isfinite(norm), torch.maximum(grad_norm, norm), grad_norm)
        state["step"] += 1
        done_steps += 1
        state["samples_seen"] += n * world
        state["samples_in_epoch"] += n
        loss_acc += loss.detach()  # summed on the device: no GPU sync until the log step
        n_window += n
        k_window += 1
        if state["step"] % cfg.log_every == 0 or state["samples_seen"] >= total:
            dt = time.perf_counter() - t_window
            row = {
                "step": state["step"],
                "epoch": epoch,
                "samples": state["samples_seen"],
                "loss": float(loss_acc) / k_window,
                "lr": lr_at(cfg, state["step"], total_steps),
                "img_s": n_window * world / dt,
                "data_wait": t_wait / dt,
            }
            if cfg.clip_grad:
                row["grad_norm"] = float(grad_norm)
                grad_norm = torch.zeros((), device=device)
            if stats_file:
                stats_file.write(json.dumps(row) + "\n")
                stats_file.flush()
            if progress:
                progress(state["samples_seen"], total, row["loss"], row["img_s"])
            t_wait, t_window, n_window, k_window = 0.0, time.perf_counter(), 0, 0
            loss_acc = torch.zeros((), device=device)
        if cfg.ckpt_every and state["step"] % cfg.ckpt_every == 0 and save:
            save(out / "last.pt")
        # the limit is checked after every step; under DDP, where the ranks must agree, every log_every steps
        if cfg.time_limit is not None and state["samples_seen"] < total and (
                world == 1 or state["step"] % cfg.log_every == 0):
            stopped = _out_of_time(time.perf_counter() - t_start >= cfg.time_limit, device)
            if stopped:
                break
        t_data = time.perf_counter()
    # an epoch also ends when its data runs out early (a guard: the step count above is a lower bound)
    epoch_done = not stopped and (done_steps >= steps_in_epoch or state["samples_seen"] < total)
    return stopped, epoch_done


def _validate_and_save(cfg, predictor, val_folder, val_shards, state, rank, stats_file, log, out, save):
    """Validate (rank 0), keep the best score, write last.pt, and best.pt when it improved (or without
    validation data). Returns the validation summary (None without validation data)."""
    rng = torch.get_rng_state()  # validating mid-epoch must not change what training draws next
    last_val = _validate(cfg, predictor, val_folder, val_shards, state, rank, stats_file, log)
    torch.set_rng_state(rng)
    better = False
    if last_val is not None:
        score = last_val[cfg.best_metric][0]
        better = state["best"] is None or score > state["best"]
        if better:
            state["best"] = score
    if save:
        save(out / "last.pt")
        if last_val is None or better:
            save(out / "best.pt")
    return last_val


def _out_of_time(mine: bool, device: torch.device) -> bool:
    """Whether to stop at cfg.time_limit: under DDP every rank stops at the same step if any rank is out of time."""
    if not torch.distributed.is_initialized():
        return mine
    flag = torch.tensor([float(mine)], device=device)
    torch.distributed.all_reduce(flag, op=torch.distributed.ReduceOp.MAX)
    return bool(flag.item())


def _validate(cfg, predictor, val_folder, val_shards, state, rank, stats_file, log):
    """Metrics on up to cfg.val_samples held-out samples (rank 0); None without validation data."""
    if rank != 0 or (val_folder is None and not val_shards):
        return None
    try:
        val = ShardStream(val_folder or cfg.shards, (*EVAL_FIELDS, "sample_id"), shuffle=False)
    except DataError as e:
        raise TrainError(f"--val-shards: {e}") from e
    if val_shards:
        val.shards = val_shards
    predictor.model.eval()
    # without --threshold, the one with the best validation Dice is picked; it goes into the checkpoint
    threshold, sweep, rows = validate(predictor, DataLoader(val, batch_size=cfg.batch_size), cfg.val_samples,
                                      cfg.threshold, VAL_CACHE_BYTES)
    if sweep is not None:
        state["threshold"] = threshold
        log("threshold sweep (Dice): " + ", ".join(f"{t:g}: {d:.3f}" for t, d in sweep.items()))
    predictor.model.train()
    s = summary(rows)
    row = {
        "step": state["step"],
        "epoch": state["epoch"],
        "samples": state["samples_seen"],
        "threshold": threshold,
        **{f"val_{k}": m for k, (m, _) in s.items()},
    }
    if stats_file:
        stats_file.write(json.dumps(row) + "\n")
        stats_file.flush()
    log("validation: " + ", ".join(f"{k} {m:.4f}" for k, (m, _) in s.items() if not k.endswith("_raw")))
    return s
