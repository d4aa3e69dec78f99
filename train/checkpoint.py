"""Checkpoints: one file per run state (model, optimiser, scaler, progress, RNG, config), written atomically."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import torch

from train.models import create_model


class TrainError(RuntimeError):
    """A run, checkpoint or command that cannot go on; the message says what to do."""


def save_atomic(obj: dict, path: Path) -> None:
    """torch.save to a temporary name, then os.replace: a killed write never leaves a half checkpoint."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def save_checkpoint(path: Path, *, model: torch.nn.Module, opt: torch.optim.Optimizer,
                    scaler: torch.amp.GradScaler, state: dict, meta: dict, norm: tuple[list, list], cfg,
                    run_id: dict, device: torch.device) -> None:
    """Everything a rerun needs to resume, and `apply`/`eval` need to predict: the unwrapped model and its
    config, optimiser, scaler, progress (`state`), mode/kinds/threshold (`meta`), normalisation, the run's
    TrainConfig and identity, and the torch (and CUDA) RNG state."""
    mean, std = norm
    save_atomic(
        {
            "model_config": dict(model.model_config),
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
        path,
    )


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
    """The model of a loaded checkpoint, rebuilt from its model_config, in eval mode."""
    if "model_config" not in ckpt or "model" not in ckpt:
        raise TrainError("not a `train run` checkpoint (no model_config); give RUNDIR/best.pt or last.pt.")
    model = create_model(**ckpt["model_config"])
    model.load_state_dict(ckpt["model"])
    return model.eval()


def restore(ckpt: dict, model: torch.nn.Module, opt: torch.optim.Optimizer, scaler: torch.amp.GradScaler,
            state: dict, device: torch.device) -> None:
    """Load a checkpoint's weights, optimiser, scaler, progress and RNG state into a freshly built run."""
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    scaler.load_state_dict(ckpt["scaler"])
    state.update(ckpt["state"])
    torch.set_rng_state(ckpt["rng"]["torch"])
    if device.type == "cuda" and ckpt["rng"].get("cuda") is not None:
        torch.cuda.set_rng_state(ckpt["rng"]["cuda"])
