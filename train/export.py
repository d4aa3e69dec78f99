"""`train export`: a checkpoint cut down to what prediction needs (the shipped model's format).

Kept: the model's weights and config, mode/kinds/threshold, normalisation and the run's TrainConfig (to say
how it was trained). Dropped: optimiser, scaler, progress and RNG state, which only resuming needs. The file
loads with torch.load(weights_only=True) like any checkpoint, through train.checkpoint.load_checkpoint."""

from __future__ import annotations

from pathlib import Path

from train.checkpoint import TrainError, load_checkpoint, model_from_checkpoint, save_atomic

KEPT = ("model_config", "model", "meta", "norm", "config")


def export(checkpoint: str | Path, out: str | Path) -> dict:
    """Write the prediction-only copy of `checkpoint` to `out`; returns {"bytes": ..., "params": ...}."""
    ckpt = load_checkpoint(checkpoint)
    missing = [k for k in KEPT if k not in ckpt]
    if missing:
        raise TrainError(f"{checkpoint}: not a `train run` checkpoint (no {', '.join(missing)}).")
    model = model_from_checkpoint(ckpt)  # refuses a checkpoint whose weights do not fit its config
    slim = {k: ckpt[k] for k in KEPT}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_atomic(slim, out)
    return {"bytes": out.stat().st_size, "params": sum(p.numel() for p in model.parameters())}
