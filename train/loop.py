"""The training loop: one function, progress counted in samples, resumable by rerunning the same command."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import time
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from synth.kinds import CLASS_IDS
from synth.render import RenderOptions
from train.config import AMP, MODES, NORMS, SEG_DICE, TrainConfig
from train.data import EVAL_FIELDS, MODE_FIELDS, DataError, ShardStream, dataset_mean_std, epoch_order, list_shard_files
from train.evaluate import Predictor, normalize, summary, validate
from train.losses import make_loss, pair_weight, seg_loss, soft_seg_target
from train.models import create_model

VAL_CACHE_BYTES = 1 << 30
"""Validation batches and the model's outputs on them are kept in memory up to this size (64 samples at
512 px take about 320 MB), so that the threshold sweep and the scoring run the model once."""


class TrainError(RuntimeError):
    """A run that cannot start; the message says what to do."""


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


def _save_atomic(obj: dict, path: Path) -> None:
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint safely: weights_only=True refuses pickled code in a file someone sent."""
    path = Path(path)
    if not path.is_file():
        raise TrainError(f"{path}: no such checkpoint file.")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises several types for foreign or damaged files
        raise TrainError(
            f"{path}: not a checkpoint this tool can read safely ({type(e).__name__}: {str(e).splitlines()[0][:200]})."
        ) from e


def model_from_checkpoint(ckpt: dict) -> torch.nn.Module:
    if "model_config" not in ckpt or "model" not in ckpt:
        raise TrainError("not a `train run` checkpoint (no model_config); give RUNDIR/best.pt or last.pt.")
    model = create_model(**ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    return model.eval()


def soft_target_cut(cfg: TrainConfig, manifest: dict) -> int:
    """The mask rule's min_diff of the --shards set, for --seg-soft (a TrainError where soft targets
    cannot be formed: several kinds, or masks without capture softening, which mark every changed pixel)."""
    if len(manifest["kinds"]) != 1:
        raise TrainError(f"--seg-soft needs one kind's shards; {cfg.shards} holds {', '.join(manifest['kinds'])}. "
                         "Train without --seg-soft, or on a single-kind build.")
    render, defaults = manifest.get("params", {}).get("render", {}), RenderOptions()
    if not render.get("soften", defaults.soften):
        raise TrainError(f"--seg-soft needs shards built with capture softening; {cfg.shards} was built with "
                         "--no-soften, so its mask is every changed pixel and has no cut to soften. Drop --seg-soft.")
    return int(render.get("mask_min_diff", defaults.mask_min_diff))


def train_run(cfg: TrainConfig, progress=None, log=print) -> dict:
    """Train (or resume) the run in cfg.out. Returns the final summary dict.

    progress: optional callable(samples_done, samples_total, loss, img_s) for a progress bar.
    """
    cfg = cfg.resolved()
    validate_config(cfg)
    rank, world, _, device = setup_distributed()
    adt = amp_dtype(cfg.amp, device)
    out = Path(cfg.out)
    try:
        train_shards, manifest = list_shard_files(cfg.shards)
    except DataError as e:
        raise TrainError(f"--shards: {e}") from e
    size = manifest["image_size"]
    kinds = manifest["kinds"]
    soft_cut = soft_target_cut(cfg, manifest) if cfg.seg_soft else None
    val_folder = cfg.val_shards
    if val_folder is None and cfg.val_fraction > 0:
        n_val = max(1, round(cfg.val_fraction * len(train_shards)))
        if n_val >= len(train_shards):
            raise TrainError(f"--val-fraction {cfg.val_fraction} leaves no training shards of {len(train_shards)}.")
    else:
        n_val = 0
    run_id = {"config": cfg.identity()}

    # ---- run directory: a rerun of the same command resumes
    ckpt = None
    if (out / "last.pt").exists():
        ckpt = load_checkpoint(out / "last.pt")
        if ckpt.get("run_identity") != json.loads(json.dumps(run_id)):
            raise TrainError(
                f"--out {out} holds a different run (other settings); choose another folder or delete it to start over."
            )
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "config.json").write_text(json.dumps(dataclasses.asdict(cfg), indent=1))

    # ---- normalisation (SMN: dataset mean/std, computed once and kept in the run dir)
    if cfg.norm == "smn":
        stats_path = out / "norm_stats.json"
        if ckpt is not None:
            mean, std = ckpt["norm"]["mean"], ckpt["norm"]["std"]
        elif stats_path.exists():
            d = json.loads(stats_path.read_text())
            mean, std = d["mean"], d["std"]
        else:
            mean, std = dataset_mean_std(cfg.shards)
            if rank == 0:
                stats_path.write_text(json.dumps({"mean": mean, "std": std}))
    else:
        mean, std = [0.0, 0.0, 0.0], [1.0, 1.0, 1.0]

    # ---- model, optimiser
    torch.manual_seed(cfg.seed)
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
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "rmsprop":
        opt = torch.optim.RMSprop(params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay)
    elif cfg.optimizer == "adam":
        opt = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    else:
        raise TrainError(f"unknown optimizer {cfg.optimizer!r}; use rmsprop or adam.")
    scaler = torch.amp.GradScaler(device.type, enabled=adt == torch.float16)
    loss_fn = make_loss(cfg.loss) if cfg.mode != "seg" else None

    fields = MODE_FIELDS[cfg.mode] + (("clean",) if soft_cut is not None else ())
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

    def lr_at(step: int) -> float:
        if cfg.schedule == "cosine":
            return cfg.lr * 0.5 * (1 + math.cos(math.pi * min(step, total_steps) / total_steps))
        return cfg.lr

    state = {
        "step": 0,
        "epoch": 0,
        "samples_seen": 0,
        "samples_in_epoch": 0,
        "best": None,
        "best_metric": cfg.best_metric,
    }
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        scaler.load_state_dict(ckpt["scaler"])
        state.update(ckpt["state"])
        torch.set_rng_state(ckpt["rng"]["torch"])
        if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
        if rank == 0 and state["samples_seen"] < total:
            log(
                f"resuming {out} at step {state['step']} ({state['samples_seen']} samples seen, epoch {state['epoch']})"
            )
    ddp_model = model
    if torch.distributed.is_initialized():
        ddp_model = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None
        )
    if cfg.compile:
        ddp_model = torch.compile(ddp_model)

    model_config = dict(model.model_config)
    meta = {
        "mode": cfg.mode,
        "kinds": kinds,
        "class_ids": manifest.get("class_ids", {}),
        "image_size": size,
        "resize": manifest.get("resize", "letterbox"),
        "norm": cfg.norm,
    }

    def checkpoint(name: str) -> None:
        if rank != 0:
            return
        _save_atomic(
            {
                "model_config": model_config,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scaler": scaler.state_dict(),
                "state": dict(state),
                "meta": {**meta, "threshold": state.get("threshold", cfg.threshold)},
                "norm": {"mean": list(mean), "std": list(std)},
                "config": dataclasses.asdict(cfg),
                "run_identity": json.loads(json.dumps(run_id)),
                "rng": {
                    "torch": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state() if device.type == "cuda" else None,
                },
            },
            out / name,
        )

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
            epoch = state["epoch"]
            # every rank takes the same number of steps this epoch (DDP needs it): the smallest share
            shares = [
                len(epoch_order(stream.shards, cfg.seed, epoch, r, world, 0, 1, stream.block, 1, True))
                for r in range(world)
            ]
            steps_in_epoch = max(1, min(shares) // cfg.batch_size)
            stream.set_epoch(epoch, skip=state["samples_in_epoch"])
            done_steps = state["samples_in_epoch"] // cfg.batch_size
            model.train()
            t_wait, t_window, n_window, k_window = 0.0, time.perf_counter(), 0, 0
            loss_acc = torch.zeros((), device=device)
            grad_norm = torch.zeros((), device=device)  # the largest of the logging window (with clip_grad)
            t_data = time.perf_counter()
            for batch in DataLoader(stream, **loader_kw):
                if done_steps >= steps_in_epoch or state["samples_seen"] >= total:
                    break
                t_wait += time.perf_counter() - t_data
                x8 = batch["noisy_a"].to(device, non_blocking=True)
                x = normalize(x8, mean, std)
                if cfg.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                for g in opt.param_groups:
                    g["lr"] = lr_at(state["step"])
                with torch.autocast(device.type, dtype=adt, enabled=adt is not None):
                    y = ddp_model(x)
                    if cfg.mode == "seg":
                        m8 = batch["mask"].to(device, non_blocking=True)
                        soft = None
                        if soft_cut is not None:
                            soft = soft_seg_target(x8, batch["clean"].to(device, non_blocking=True), m8,
                                                   soft_cut, cfg.seg_soft)
                        loss = seg_loss(y.float(), m8.long(), dice=cfg.seg_dice, soft_target=soft)
                    else:
                        t8 = batch[fields[1]].to(device, non_blocking=True)
                        w = pair_weight(x8, t8, boost=cfg.pair_boost) if cfg.mode == "n2n" and cfg.pair_boost else None
                        loss = loss_fn(y.float(), normalize(t8, mean, std), weight=w)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if cfg.clip_grad:
                    scaler.unscale_(opt)  # the norm of the true gradient, not of the fp16 loss-scaled one
                    norm = torch.nn.utils.clip_grad_norm_(params, cfg.clip_grad).detach().float()
                    # the window's largest finite norm (fp16 overflow steps are skipped by the scaler); no GPU sync
                    grad_norm = torch.where(torch.isfinite(norm), torch.maximum(grad_norm, norm), grad_norm)
                scaler.step(opt)
                scaler.update()
                n = x.shape[0]
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
                        "lr": lr_at(state["step"]),
                        "img_s": n_window * world / dt,
                        "data_wait": t_wait / dt,
                    }
                    if cfg.clip_grad:
                        row["grad_norm"] = float(grad_norm)
                        grad_norm = torch.zeros((), device=device)
                    if stats_file:
                        stats_file.write(json.dumps(row) + "\n")
                        stats_file.flush()
                    if progress and rank == 0:
                        progress(state["samples_seen"], total, row["loss"], row["img_s"])
                    t_wait, t_window, n_window, k_window = 0.0, time.perf_counter(), 0, 0
                    loss_acc = torch.zeros((), device=device)
                if cfg.ckpt_every and state["step"] % cfg.ckpt_every == 0:
                    checkpoint("last.pt")
                # the limit is checked after every step; under DDP, where the ranks must agree, every log_every steps
                if cfg.time_limit is not None and state["samples_seen"] < total and (
                        world == 1 or state["step"] % cfg.log_every == 0):
                    stopped = _out_of_time(time.perf_counter() - t_start >= cfg.time_limit, device)
                    if stopped:
                        break
                t_data = time.perf_counter()
            # an epoch also ends when its data runs out early (a guard: the step count above is a lower bound)
            epoch_done = not stopped and (done_steps >= steps_in_epoch or state["samples_seen"] < total)
            if epoch_done:
                state["epoch"] += 1
                state["samples_in_epoch"] = 0
            if epoch_done or stopped or state["samples_seen"] >= total:
                rng = torch.get_rng_state()  # validating mid-epoch must not change what training draws next
                last_val = _validate(cfg, predictor, val_folder, val_shards, state, rank, stats_file, log)
                torch.set_rng_state(rng)
                if last_val is not None:
                    score = last_val[cfg.best_metric][0]
                    better = state["best"] is None or score > state["best"]
                    if better:
                        state["best"] = score
                checkpoint("last.pt")
                if last_val is not None and better or last_val is None:
                    checkpoint("best.pt")
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
