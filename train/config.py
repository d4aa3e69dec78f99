"""Training configuration: one frozen dataclass, presets that fill only what the user left unset."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

MODES = ("n2n", "n2c", "seg")
AMP = ("off", "fp16", "bf16")
NORMS = ("linear", "smn")
SEG_DICE = ("batch", "image")
"""How the seg loss pools its soft Dice (train.losses.seg_loss): over the whole batch, or per image and
then averaged (the way the evaluation averages Dice over images)."""

PRESETS: dict[str, dict] = {
    # the paper's settings (section IV.B): RMSprop lr 1e-5, momentum 0.9, weight decay 1e-8, L1, batch 4,
    # the plain network output (no global residual), constant learning rate
    "paper": dict(optimizer="rmsprop", lr=1e-5, momentum=0.9, weight_decay=1e-8, loss="l1", batch_size=4,
                  residual=False, pair_boost=0.0, schedule="constant", clip_grad=0.0),
    # converges in far fewer samples (bench/results/recipes.md): AdamW 1e-3 with cosine decay, and the
    # loss weighted up where the two noisy copies differ, so it is not drowned by the background.
    # A global residual (output = input + net(input)) stayed at the identity in the same budget.
    "fast": dict(optimizer="adam", lr=1e-3, momentum=0.9, weight_decay=0.0, loss="l1", batch_size=8,
                 residual=False, pair_boost=20.0, schedule="cosine", clip_grad=0.0),
    # the fast recipe at a width a 2-core CPU trains in minutes
    "cpu": dict(optimizer="adam", lr=1e-3, momentum=0.9, weight_decay=0.0, loss="l1", batch_size=8,
                residual=False, pair_boost=20.0, schedule="cosine", width=16, clip_grad=0.0),
}


@dataclass(frozen=True)
class TrainConfig:
    """Everything that defines a training run; saved as RUNDIR/config.json and inside checkpoints."""

    shards: str
    out: str
    val_shards: str | None = None
    val_fraction: float = 0.0
    model: str = "n2n_unet"
    width: int | None = None
    encoder: str | None = None   # smp encoder (resnet34 default) or fcn backbone (resnet101 default)
    full_skip: bool = False      # n2n_unet: first encoder features into the full-resolution decoder stage
    mode: str = "n2n"
    loss: str | None = None
    preset: str = "paper"
    epochs: int | None = None
    samples: int | None = None
    batch_size: int | None = None
    lr: float | None = None
    optimizer: str | None = None
    momentum: float | None = None
    weight_decay: float | None = None
    schedule: str | None = None
    residual: bool | None = None
    gated: bool = False          # gated output (train.models.GatedWrapper), restoration modes only
    pair_boost: float | None = None
    clip_grad: float | None = None  # clip the gradient's global L2 norm to this (0: no clipping; None: the preset's)
    seg_dice: str = "batch"      # seg: soft Dice pooled over the batch or per image (train.losses.SEG_DICE)
    hard_negatives: float = 0.0  # seg with crop: share of windows centred on hard negatives (train.data)
    seg_soft: float = 0.0        # seg: soft targets over this many grey levels each side of the mask cut (0: hard)
    norm: str = "linear"
    crop: int | None = None      # train on crop x crop windows (see train.data.ShardStream)
    amp: str = "off"
    workers: int = 0
    seed: int = 0
    channels_last: bool = True
    compile: bool = False
    val_samples: int = 64
    best_metric: str = "dice"
    ckpt_every: int = 0          # steps between checkpoints besides each epoch end (0 = epoch ends only)
    log_every: int = 10          # steps between stats.jsonl lines
    threshold: float | None = None  # residual-mask threshold for validation (None: metrics default)
    time_limit: float | None = None  # seconds of training in this call: then validate, checkpoint and stop (resumable)

    def resolved(self) -> TrainConfig:
        """Fill every None from the preset (an unknown preset is a ValueError)."""
        if self.preset not in PRESETS:
            raise ValueError(f"unknown preset {self.preset!r}; use one of {', '.join(PRESETS)}")
        from train.models import NO_WIDTH

        fill = {k: v for k, v in PRESETS[self.preset].items() if getattr(self, k) is None
                and not (k == "width" and self.model in NO_WIDTH)}
        cfg = dataclasses.replace(self, **fill)
        if cfg.epochs is None and cfg.samples is None:
            cfg = dataclasses.replace(cfg, epochs=1)
        return cfg

    def identity(self) -> dict:
        """The fields that must match for a rerun to resume this run (budget and logging may change)."""
        d = dataclasses.asdict(self)
        for k in ("epochs", "samples", "workers", "ckpt_every", "log_every", "val_samples", "time_limit"):
            d.pop(k)
        for k, default in (("seg_dice", "batch"), ("hard_negatives", 0.0), ("seg_soft", 0.0), ("clip_grad", 0.0),
                           ("full_skip", False)):
            if d[k] == default:  # added later: left out at their defaults, so earlier runs still resume
                d.pop(k)
        return d
