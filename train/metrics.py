"""Evaluation metrics as pure numpy functions, and the one definition of luma and of the mask-from-restoration rule."""

from __future__ import annotations

import contextlib
import io
import threading
from collections.abc import Callable, Iterable

import cv2
import numpy as np

__all__ = [
    "DEFAULT_MIN_AREA",
    "DEFAULT_THRESHOLD",
    "IMAGE_METRICS",
    "LUMA",
    "MASK_METRICS",
    "METRICS",
    "PSNR_CAP_DB",
    "SEG_THRESHOLD",
    "SEG_THRESHOLD_GRID",
    "THRESHOLD_GRID",
    "dice",
    "drop_small",
    "evaluate_image",
    "gray",
    "iou",
    "pixel_accuracy",
    "psnr",
    "psnr_hvsm",
    "residual_mask",
    "ssim",
    "summarize",
]

LUMA = (0.299, 0.587, 0.114)
"""RGB -> luma weights, ITU-R BT.601, full range (Y = 0.299 R + 0.587 G + 0.114 B, 0..255 stays 0..255).
Why: it is what JPEG (the capture format of the scans) and OpenCV's RGB2GRAY use, and B-mode pixels
are grey (R = G = B), where any weights summing to 1 give the same value; only coloured annotations
depend on the choice."""

DEFAULT_THRESHOLD = 8.0
"""Residual at or above which a pixel is annotation: the largest per-channel |input - output|, in grey
levels (0..255). Why 8 and why per channel: it is the shard's own mask rule (synth.render.MASK_MIN_DIFF,
a pixel is annotation where some channel differs from `clean` by >= 8), so a perfect restoration gives
back exactly the truth mask (its Dice with out = clean: docs/cli.md, `train eval`). A trained model is not perfect, so
`train run` sweeps THRESHOLD_GRID on its validation set and stores the best value in the checkpoint;
eval and apply use that one unless told otherwise."""

THRESHOLD_GRID = (4.0, 6.0, 8.0, 10.0, 12.0, 16.0, 20.0, 24.0, 32.0, 48.0)
"""Residual thresholds (grey levels) swept on validation data for restoration models."""

SEG_THRESHOLD = 0.5
"""Probability at or above which a seg model's pixel is annotation, before the sweep."""

SEG_THRESHOLD_GRID = (0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8)
"""Probability thresholds swept on validation data for seg models."""

DEFAULT_MIN_AREA = 2
"""Connected components (8-connected) of the residual mask smaller than this many pixels are dropped.
Why 2: it removes isolated single-pixel residuals (network noise on speckle) but keeps the smallest
real annotation element, a 1 px GE caliper dot with its 1 px diagonal drop shadow (2 px, 8-connected)."""

PSNR_CAP_DB = 100.0
"""PSNR values are capped here, so identical images give a finite number that averages (as psnr_hvsm does)."""

Array = np.ndarray


def gray(img: Array) -> Array:
    """Luma (BT.601, LUMA) of an image, as float64 in the image's own scale.

    Args:
        img: (H, W, 3) RGB or (H, W) grey; uint8, or float on the same 0..255 scale (multiply
            network outputs normalised by /255 back by 255 first). (H, W, 1) is treated as grey.

    Returns:
        (H, W) float64; never rounded or clipped.
    """
    a = np.asarray(img)
    if a.ndim == 3 and a.shape[-1] == 1:
        a = a[..., 0]
    if a.ndim == 2:
        return a.astype(np.float64)
    if a.ndim != 3 or a.shape[-1] != 3:
        raise ValueError(f"gray needs an (H, W, 3) RGB or (H, W) grey image; got shape {a.shape}")
    return a.astype(np.float64) @ np.asarray(LUMA, dtype=np.float64)


def _check_same_shape(a: Array, b: Array, what: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{what}: shapes differ, {a.shape} vs {b.shape}")


def residual_mask(
    inp: Array, out: Array, threshold: float = DEFAULT_THRESHOLD, min_area: int = DEFAULT_MIN_AREA
) -> Array:
    """Annotation mask from a restoration: max over channels of |inp - out| >= threshold, small
    components dropped (the shard mask rule applied to the network output).

    Both signs count (an annotation can be brighter or darker than the tissue it hides), and the
    difference is taken in float, so uint8 inputs never wrap around.

    Args:
        inp: the network input (H, W, 3) or (H, W), uint8 or float on the 0..255 scale.
        out: the network output, same shape and scale.
        threshold: in grey levels (0..255).
        min_area: drop 8-connected components with fewer pixels than this (<= 1 keeps all).

    Returns:
        (H, W) bool mask.
    """
    inp, out = np.asarray(inp), np.asarray(out)
    _check_same_shape(inp, out, "residual_mask")
    diff = np.abs(inp.astype(np.float32) - out.astype(np.float32))
    mask = (diff.max(-1) if diff.ndim == 3 else diff) >= threshold
    return drop_small(mask, min_area)


def drop_small(mask: Array, min_area: int = DEFAULT_MIN_AREA) -> Array:
    """`mask` without its 8-connected components of fewer than `min_area` pixels."""
    if min_area > 1 and mask.any():
        _n, labels, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        keep = stats[:, cv2.CC_STAT_AREA] >= min_area
        keep[0] = False  # label 0 is the background
        mask = keep[labels]
    return mask


def _binary_pair(pred_mask: Array, true_mask: Array, what: str) -> tuple[Array, Array]:
    # Any non-zero counts as annotation, so class-id masks (shard `mask`) can be passed as they are.
    p, t = np.asarray(pred_mask) != 0, np.asarray(true_mask) != 0
    _check_same_shape(p, t, what)
    return p, t


def dice(pred_mask: Array, true_mask: Array) -> float:
    """Sørensen-Dice 2|P∩T| / (|P| + |T|) of two masks (non-zero = annotation); 1.0 when both are empty."""
    p, t = _binary_pair(pred_mask, true_mask, "dice")
    denom = int(p.sum()) + int(t.sum())
    return 1.0 if denom == 0 else 2.0 * int((p & t).sum()) / denom


def iou(pred_mask: Array, true_mask: Array) -> float:
    """Intersection over union |P∩T| / |P∪T| (Jaccard); 1.0 when both masks are empty."""
    p, t = _binary_pair(pred_mask, true_mask, "iou")
    union = int((p | t).sum())
    return 1.0 if union == 0 else int((p & t).sum()) / union


def pixel_accuracy(pred_mask: Array, true_mask: Array) -> float:
    """Fraction of pixels where the masks agree (annotation vs background); 1.0 for zero-size masks."""
    p, t = _binary_pair(pred_mask, true_mask, "pixel_accuracy")
    return 1.0 if p.size == 0 else float((p == t).mean())


def ssim(out: Array, clean: Array) -> float:
    """SSIM of the luma of `out` against `clean` (0..255 scale), skimage with data_range=255.

    Settings of Wang et al. 2004 (and MATLAB's ssim): 11x11 Gaussian window, sigma 1.5, population
    covariances. Needs images of at least 11x11.
    """
    from skimage.metrics import structural_similarity

    a, b = gray(out), gray(clean)
    _check_same_shape(a, b, "ssim")
    return float(
        structural_similarity(
            b, a, data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
        )
    )


def psnr(out: Array, clean: Array) -> float:
    """PSNR in dB of the luma of `out` against `clean`, 10 log10(255^2 / MSE), in float (no uint8
    wrap-around); capped at PSNR_CAP_DB, which identical images get."""
    a, b = gray(out), gray(clean)
    _check_same_shape(a, b, "psnr")
    mse = float(np.mean((a - b) ** 2))
    if mse == 0.0:
        return PSNR_CAP_DB
    return float(min(PSNR_CAP_DB, 10.0 * np.log10(255.0**2 / mse)))


_IMPORT_LOCK = threading.Lock()
_PSNR_HVS_HVSM = []


def _psnr_hvs_hvsm():
    """psnr_hvsm's function, imported once under a lock: its import prints a note about an optional backend,
    silenced by swapping sys.stdout, which two threads doing at once could leave swapped for good."""
    with _IMPORT_LOCK:
        if not _PSNR_HVS_HVSM:
            with contextlib.redirect_stdout(io.StringIO()):
                from psnr_hvsm import psnr_hvs_hvsm
            _PSNR_HVS_HVSM.append(psnr_hvs_hvsm)
    return _PSNR_HVS_HVSM[0]


def psnr_hvsm(out: Array, clean: Array) -> float:
    """PSNR-HVS-M in dB (Ponomarenko et al. 2007) of the luma of `out` against `clean`, via `psnr_hvsm`.

    The package takes single-channel float images in [0, 1] whose sides are multiples of its 8x8 DCT
    block; like the reference MATLAB code (which skips incomplete blocks) the bottom and right
    remainders are cropped. Capped at PSNR_CAP_DB (identical images).
    """
    psnr_hvs_hvsm = _psnr_hvs_hvsm()
    a, b = gray(out), gray(clean)
    _check_same_shape(a, b, "psnr_hvsm")
    h, w = (a.shape[0] // 8) * 8, (a.shape[1] // 8) * 8
    if h == 0 or w == 0:
        raise ValueError(f"psnr_hvsm needs images of at least 8x8 pixels; got {a.shape[0]}x{a.shape[1]}")
    with np.errstate(divide="ignore", invalid="ignore"):  # it divides by zero MSE/variance before capping
        _, hvsm = psnr_hvs_hvsm(b[:h, :w] / 255.0, a[:h, :w] / 255.0)
    return float(min(PSNR_CAP_DB, float(hvsm)))


def summarize(values: Iterable[float]) -> tuple[float, float]:
    """(mean, variance) of per-image values, as the paper's tables report them (population variance,
    ddof=0). Infinite or NaN values are kept, so they show up instead of being hidden."""
    v = np.asarray(list(values), dtype=np.float64)
    if v.size == 0:
        raise ValueError("summarize needs at least one value")
    return float(v.mean()), float(v.var())


MetricFn = Callable[[Array, Array], float]

MASK_METRICS: dict[str, MetricFn] = {"dice": dice, "iou": iou, "pixel_accuracy": pixel_accuracy}
"""Mask metrics: fn(pred_mask, true_mask) -> float, higher is better."""

IMAGE_METRICS: dict[str, MetricFn] = {"ssim": ssim, "psnr": psnr, "psnr_hvsm": psnr_hvsm}
"""Image metrics on luma: fn(out, clean) -> float, images (H, W, 3) or (H, W) on the 0..255 scale."""

METRICS: dict[str, MetricFn] = {**MASK_METRICS, **IMAGE_METRICS}
"""Every metric by name; each takes (prediction, reference)."""


def evaluate_image(
    pred_mask: Array, true_mask: Array, out: Array | None = None, clean: Array | None = None
) -> dict[str, float]:
    """All metrics for one image: mask metrics always, image metrics when `out` and `clean` are given
    (seg mode has no restored image). Returns name -> value, in METRICS order."""
    row = {name: fn(pred_mask, true_mask) for name, fn in MASK_METRICS.items()}
    if out is not None and clean is not None:
        row.update({name: fn(out, clean) for name, fn in IMAGE_METRICS.items()})
    return row
