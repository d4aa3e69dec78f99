"""Training losses: restoration losses of the paper (and their sums), pair-difference weights, seg loss."""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F

from train.config import SEG_DICE

__all__ = ["HUBER_DELTA", "LOSSES", "make_loss", "pair_weight", "seg_loss", "soft_seg_target"]

HUBER_DELTA = 1.0
"""Huber delta and SmoothL1 beta: PyTorch's default, as in the paper's code. Note that with inputs
normalised by /255 every error is below 1, so Huber and SmoothL1 both equal L2/2 there; they differ
from it only under mean/std ("SMN") normalisation, where errors can exceed 1."""

LossFn = Callable[..., torch.Tensor]


def _reduce(per_element: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean of a (B, C, H, W) loss map, or its weighted mean sum(w*loss)/sum(w) with w (B, 1, H, W)
    broadcast over channels (so all-ones weights give the plain mean)."""
    if weight is None:
        return per_element.mean()
    if (
        weight.ndim != 4
        or weight.shape[1] != 1
        or weight.shape[0] != per_element.shape[0]
        or (weight.shape[-2:] != per_element.shape[-2:])
    ):
        raise ValueError(
            f"weight must be (B, 1, H, W) matching the loss map {tuple(per_element.shape)}; got {tuple(weight.shape)}"
        )
    w = weight.to(per_element.dtype).expand_as(per_element)
    return (w * per_element).sum() / w.sum().clamp_min(torch.finfo(per_element.dtype).tiny)


def _pair(pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    if pred.shape != target.shape:
        raise ValueError(f"pred and target shapes differ: {tuple(pred.shape)} vs {tuple(target.shape)}")
    # Losses in float32 even under autocast: bf16 sums over a 512x512 batch lose the small errors.
    return pred.float(), target.float()


def l1(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean absolute error (the paper's default; Noise2Noise with L1 learns the median target)."""
    p, t = _pair(pred, target)
    return _reduce((p - t).abs(), weight)


def l2(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Mean squared error (learns the mean target: annotations leave a faint ghost)."""
    p, t = _pair(pred, target)
    return _reduce((p - t).square(), weight)


def huber(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Huber loss with delta HUBER_DELTA."""
    p, t = _pair(pred, target)
    return _reduce(F.huber_loss(p, t, reduction="none", delta=HUBER_DELTA), weight)


def smooth_l1(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """Smooth L1 loss with beta HUBER_DELTA (= Huber / beta)."""
    p, t = _pair(pred, target)
    return _reduce(F.smooth_l1_loss(p, t, reduction="none", beta=HUBER_DELTA), weight)


def _sum_of(*fns: LossFn) -> LossFn:
    def loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        return sum((f(pred, target, weight) for f in fns[1:]), fns[0](pred, target, weight))

    loss.__doc__ = "Sum of " + ", ".join(f.__name__ for f in fns) + " (each a mean, or a weighted mean)."
    loss.__name__ = "+".join(f.__name__ for f in fns)
    return loss


LOSSES: dict[str, LossFn] = {
    "l1": l1,
    "l2": l2,
    "huber": huber,
    "smooth_l1": smooth_l1,
    "l1+l2": _sum_of(l1, l2),
    "huber+l2": _sum_of(huber, l2),
    "smooth_l1+l2": _sum_of(smooth_l1, l2),
    "all": _sum_of(l1, l2, huber, smooth_l1),
}
"""Restoration loss name -> fn(pred, target, weight=None) -> scalar; pred, target (B, C, H, W),
weight (B, 1, H, W) or None. The sums are the paper's table III/IV combinations."""


def make_loss(name: str) -> LossFn:
    """The restoration loss called `name` (a key of LOSSES)."""
    try:
        return LOSSES[name]
    except KeyError:
        raise ValueError(f"unknown loss {name!r}; valid names: {', '.join(LOSSES)}") from None


@torch.no_grad()
def pair_weight(
    noisy_a: torch.Tensor, noisy_b: torch.Tensor, boost: float = 20.0, thresh: float = 8 / 255
) -> torch.Tensor:
    """Per-pixel loss weights 1 + boost * [max_c |a - b| > thresh] for "pair-difference weighting".

    The two noisy copies differ only where draw A or draw B sits, so this marks annotation pixels from
    the pair alone (no clean image), and the loss is no longer drowned by the background.

    Args:
        noisy_a, noisy_b: (B, C, H, W), either uint8 (0..255, as the shards store them) or float in
            the linear /255 scale. Not mean/std-normalised tensors: thresh would mean something else.
        boost: extra weight on differing pixels.
        thresh: difference above which a pixel counts as differing, in the /255 scale (8/255 = 8 grey
            levels) for both input kinds.

    Returns:
        (B, 1, H, W) float32 weights, no gradient.
    """
    if noisy_a.shape != noisy_b.shape or noisy_a.ndim != 4:
        raise ValueError(
            f"noisy_a and noisy_b must be equal (B, C, H, W); got {tuple(noisy_a.shape)}, {tuple(noisy_b.shape)}"
        )
    diff = (noisy_a.float() - noisy_b.float()).abs().amax(dim=1, keepdim=True)
    if noisy_a.dtype == torch.uint8:
        diff = diff / 255.0
    return 1.0 + boost * (diff > thresh).float()


def _soft_dice_loss(prob: torch.Tensor, target: torch.Tensor, smooth: float = 1.0, per_image: bool = False
                    ) -> torch.Tensor:
    """1 - soft Dice per channel over the whole batch (B, H, W summed), averaged over channels; with
    per_image, per image and channel (H, W summed), averaged over both.

    Summing over the batch keeps crops without annotation from dominating; per image, every image
    weighs the same whatever its annotation's size, and any probability on an image without annotation
    costs. `smooth` (one pixel) makes an empty prediction of an empty target a perfect score.
    """
    dims = (2, 3) if per_image else (0, 2, 3)
    inter = (prob * target).sum(dims)
    denom = prob.sum(dims) + target.sum(dims)
    return (1.0 - (2.0 * inter + smooth) / (denom + smooth)).mean()


def soft_seg_target(noisy_a: torch.Tensor, clean: torch.Tensor, mask: torch.Tensor, min_diff: int,
                    width: float, *, near_px: int) -> torch.Tensor:
    """A probability target for `seg` that tells how far each pixel's change is from the mask rule's cut.

    The shard's mask marks a pixel when max_c |noisy_a - clean| >= min_diff (synth.render's MASK RULE);
    along a softened stroke edge, pixels that moved min_diff - 1 and min_diff levels look alike in the
    input, yet the hard target calls them 0 and 1. Here the target ramps linearly from 0 to 1 over
    `width` grey levels either side of the cut (at min_diff - 0.5), near the hard mask only
    (`near_px`), and stays on the hard mask's side of 0.5 everywhere, so thresholding it at 0.5
    gives back the hard mask exactly.

    noisy_a, clean: (B, 3, H, W) uint8; mask: (B, H, W) class ids (any non-zero is annotation).
    min_diff, near_px: the shards' mask cut and footprint growth, as their manifest records them
    (train.loop.shard_mask_rule); JPEG ringing farther than near_px from the hard mask is never annotation.
    Returns (B, 1, H, W) float32 in [0, 1].
    """
    if width <= 0:
        raise ValueError(f"width must be positive grey levels; got {width}")
    hard = (mask != 0).float().unsqueeze(1)
    diff = (noisy_a.float() - clean.float()).abs().amax(dim=1, keepdim=True)
    ramp = ((diff - (min_diff - 0.5)) / (2.0 * width) + 0.5).clamp(0.0, 1.0)
    near = F.max_pool2d(hard, 2 * near_px + 1, stride=1, padding=near_px)
    below = 0.5 - 0.25 / width  # the ramp one level under the cut: where the mask says 0, stay below 0.5
    return torch.where(hard > 0, ramp.clamp(min=0.5 + 0.25 / width), ramp.clamp(max=below) * near)


def seg_loss(logits: torch.Tensor, target_mask: torch.Tensor, dice: str = "batch",
             soft_target: torch.Tensor | None = None) -> torch.Tensor:
    """Detection loss for `seg` mode: cross-entropy + soft Dice, pooled as `dice` says (SEG_DICE).

    Binary (logits (B, 1, H, W)): BCE-with-logits + soft Dice; target (B, 1, H, W) or (B, H, W), any
    non-zero value counts as annotation (so a class-id mask can be passed as is).
    Multi-class (logits (B, C, H, W), C > 1): CE + soft Dice averaged over the foreground classes
    1..C-1; target (B, H, W) or (B, 1, H, W) holding class ids in 0..C-1 (0 background).
    soft_target (binary only): (B, 1, H, W) probabilities used in place of the hard mask by both terms
    (soft_seg_target; `train run --seg-soft`).

    Returns a float32 scalar.
    """
    if logits.ndim != 4:
        raise ValueError(f"logits must be (B, C, H, W); got {tuple(logits.shape)}")
    if dice not in SEG_DICE:
        raise ValueError(f"unknown seg Dice pooling {dice!r}; use one of {', '.join(SEG_DICE)}")
    per_image = dice == "image"
    if target_mask.ndim == 4:
        if target_mask.shape[1] != 1:
            raise ValueError(f"target_mask must be (B, H, W) or (B, 1, H, W); got {tuple(target_mask.shape)}")
        target_mask = target_mask[:, 0]
    b, c, h, w = logits.shape
    if target_mask.shape != (b, h, w):
        raise ValueError(
            f"target_mask {tuple(target_mask.shape)} does not match logits {tuple(logits.shape)}"
        )
    logits = logits.float()
    if soft_target is not None and (c != 1 or soft_target.shape != (b, 1, h, w)):
        raise ValueError(f"soft_target must be (B, 1, H, W) for binary logits; got {tuple(soft_target.shape)} "
                         f"for logits {tuple(logits.shape)}")
    if c == 1:
        target = (target_mask != 0).float().unsqueeze(1) if soft_target is None else soft_target.float()
        bce = F.binary_cross_entropy_with_logits(logits, target)
        return bce + _soft_dice_loss(torch.sigmoid(logits), target, per_image=per_image)
    ids = target_mask.long()
    ce = F.cross_entropy(logits, ids)
    onehot = F.one_hot(ids, c).permute(0, 3, 1, 2).to(logits.dtype)
    prob = torch.softmax(logits, dim=1)
    return ce + _soft_dice_loss(prob[:, 1:], onehot[:, 1:], per_image=per_image)
