"""Prediction and evaluation: masks from restorations or logits, the cleaned image, metrics like the paper."""

from __future__ import annotations

import csv
import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from train import metrics as M
from train.grow import GrowConfig, grow_mask

CLEAN_DILATE_PX = 2
"""The cleaned image takes network pixels only inside the predicted mask grown by this many pixels
(annotation edges are anti-aliased and JPEG-softened beyond the thresholded core); every other pixel
is the input, unchanged."""


METRIC_THREADS = min(8, os.cpu_count() or 1)
"""Threads that score the images of a batch side by side (OpenCV, NumPy and psnr_hvsm release the GIL):
validation and `train eval` at 512 px would otherwise spend more time in metrics than on the GPU."""


def per_image(fn, n: int) -> list:
    """[fn(0), ..., fn(n - 1)], computed on METRIC_THREADS threads, in order."""
    if METRIC_THREADS <= 1 or n <= 1:
        return [fn(b) for b in range(n)]
    with ThreadPoolExecutor(min(METRIC_THREADS, n)) as pool:
        return list(pool.map(fn, range(n)))


@dataclass(frozen=True)
class Predictor:
    """A trained model plus what it needs to run: mode, normalisation, device, autocast dtype."""

    model: torch.nn.Module
    mode: str
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    device: torch.device
    amp_dtype: torch.dtype | None = None

    @torch.inference_mode()
    def __call__(self, x_uint8: torch.Tensor) -> np.ndarray:
        """(B, 3, H, W) uint8 -> restoration: (B, H, W, 3) float32 on 0..255;
        seg: (B, H, W) float32 annotation probability."""
        x = normalize(x_uint8.to(self.device, non_blocking=True), self.mean, self.std)
        with torch.autocast(self.device.type, dtype=self.amp_dtype, enabled=self.amp_dtype is not None):
            y = self.model(x)
        y = y.float()
        if self.mode == "seg":
            prob = torch.sigmoid(y[:, 0]) if y.shape[1] == 1 else 1 - torch.softmax(y, 1)[:, 0]
            return prob.cpu().numpy()
        return (denormalize(y, self.mean, self.std).clamp(0, 255)).permute(0, 2, 3, 1).cpu().numpy()


def normalize(x_uint8: torch.Tensor, mean, std) -> torch.Tensor:
    """uint8 (B, C, H, W) -> float: x/255, then (x - mean)/std per channel (linear: mean 0, std 1)."""
    x = x_uint8.float().div_(255.0)
    m = torch.tensor(mean, device=x.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=x.device).view(1, -1, 1, 1)
    return (x - m) / s


def denormalize(y: torch.Tensor, mean, std) -> torch.Tensor:
    """Inverse of normalize, on the 0..255 scale."""
    m = torch.tensor(mean, device=y.device).view(1, -1, 1, 1)
    s = torch.tensor(std, device=y.device).view(1, -1, 1, 1)
    return (y * s + m) * 255.0


def masks_and_cleaned(inp: np.ndarray, pred: np.ndarray, mode: str, threshold: float | None = None,
                      min_area: int = M.DEFAULT_MIN_AREA, fill: np.ndarray | None = None,
                      grow: GrowConfig | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """For one image: (predicted bool mask, cleaned uint8 image, raw network image or None).

    inp: (H, W, 3) uint8. pred: restoration (H, W, 3) float 0..255, or seg probability (H, W).
    Restoration: mask = metrics.residual_mask(inp, out, threshold) (grey levels, default
    metrics.DEFAULT_THRESHOLD); seg: probability >= threshold (default metrics.SEG_THRESHOLD), then the
    same small-component removal. Cleaned: the input, with pixels inside the dilated mask replaced by the
    network output (restoration) or, for seg, by `fill` (the (H, W, 3) output of a restoration model, see
    `train apply --fill`) or else by inpainting (OpenCV Telea). grow: the mask is first grown into the
    rest of the marks it lies on (train.grow.grow_mask; seeds at the threshold, hysteresis on the same score).
    """
    mask = predicted_mask(inp, pred, mode, threshold, min_area)
    if grow is not None:
        t = default_threshold(mode) if threshold is None else threshold
        score = pred if mode == "seg" else np.abs(inp.astype(np.float32) - pred).max(-1)
        mask = grow_mask(mask, inp, score, t, grow)
    grown = dilate(mask)
    if mode == "seg":
        if fill is not None:
            cleaned = np.where(grown[..., None], np.clip(np.rint(fill), 0, 255).astype(np.uint8), inp)
        elif grown.any():
            cleaned = cv2.inpaint(inp, grown.astype(np.uint8), 3, cv2.INPAINT_TELEA)
        else:
            cleaned = inp.copy()
        return mask, cleaned, None
    out = np.clip(np.rint(pred), 0, 255).astype(np.uint8)
    cleaned = np.where(grown[..., None], out, inp)
    return mask, cleaned, out


def default_threshold(mode: str) -> float:
    """The mask threshold used when a run stored none: probability for seg, grey levels for restorations."""
    return M.SEG_THRESHOLD if mode == "seg" else M.DEFAULT_THRESHOLD


def predicted_mask(inp: np.ndarray, pred: np.ndarray, mode: str, threshold: float | None = None,
                   min_area: int = M.DEFAULT_MIN_AREA) -> np.ndarray:
    """The bool mask of one image (the rule masks_and_cleaned documents): seg probability >= threshold,
    or the residual rule for restorations; components under min_area pixels dropped."""
    t = default_threshold(mode) if threshold is None else threshold
    if mode == "seg":
        return M.drop_small(pred >= t, min_area)
    return M.residual_mask(inp, pred, threshold=t, min_area=min_area)


def threshold_grid(mode: str) -> tuple[float, ...]:
    """The thresholds swept for a mode: probabilities for seg, grey levels for restorations."""
    return M.SEG_THRESHOLD_GRID if mode == "seg" else M.THRESHOLD_GRID


def sweep_thresholds(predictor: Predictor, batches, max_samples: int | None = None,
                     grid: tuple[float, ...] | None = None) -> dict[float, float]:
    """Mean Dice at each threshold of `grid` (default: threshold_grid(mode)) over batches of dicts with
    noisy_a and mask. Pick the threshold on validation data, then report on other data."""
    grid = grid or threshold_grid(predictor.mode)
    scores: dict[float, list[float]] = {t: [] for t in grid}
    n = 0
    for batch in batches:
        pred = predictor(batch["noisy_a"])
        inp = batch["noisy_a"].permute(0, 2, 3, 1).numpy()
        truth = batch["mask"].numpy()
        take = inp.shape[0] if not max_samples else min(inp.shape[0], max_samples - n)

        def dices(b: int) -> list[float]:
            score = pred[b] if predictor.mode == "seg" else np.abs(inp[b].astype(np.float32) - pred[b]).max(-1)
            return [M.dice(M.drop_small(score >= t), truth[b]) for t in grid]

        for row in per_image(dices, take):
            for t, d in zip(grid, row):
                scores[t].append(d)
        n += take
        if max_samples and n >= max_samples:
            break
    return {t: float(np.mean(v)) for t, v in scores.items() if v}


class Replay:
    """A predictor's outputs on a list of batches, computed once: a threshold sweep and the scoring at the
    threshold it picks then run the model once per batch instead of twice. Call it with the batches'
    own noisy_a tensors (looked up by identity), in any order, as often as needed."""

    def __init__(self, predictor: Predictor, batches: list[dict]):
        self.mode = predictor.mode
        self._out = {id(b["noisy_a"]): predictor(b["noisy_a"]) for b in batches}
        self._batches = batches  # kept alive, so no other tensor can take one of their ids

    def __call__(self, x_uint8: torch.Tensor) -> np.ndarray:
        return self._out[id(x_uint8)]


def first_batches(batches, max_samples: int, max_bytes: int, mode: str = "n2n") -> list[dict] | None:
    """The batches that hold the first max_samples samples, in a list, or None when they and the model's
    float32 outputs on them (3 per pixel for restoration, 1 for seg: Predictor.__call__) would take more
    than max_bytes (then read them twice)."""
    per_pixel = 1 if mode == "seg" else 3
    kept, n, size = [], 0, 0
    for batch in batches:
        kept.append(batch)
        x = batch["noisy_a"]
        size += sum(v.nbytes for v in batch.values() if isinstance(v, torch.Tensor)) + x.numel() // 3 * per_pixel * 4
        if size > max_bytes:
            return None
        n += x.shape[0]
        if n >= max_samples:
            break
    return kept


def validate(predictor: Predictor, batches, max_samples: int, threshold: float | None = None,
             cache_bytes: int = 0) -> tuple[float, dict[float, float] | None, list[dict]]:
    """Validation as `train run` does it: without a threshold, sweep the grid and take the best one; then
    score every image at it. When the batches of the first max_samples samples and the model's outputs on
    them fit in cache_bytes (first_batches), they are kept and the model runs once per batch (Replay);
    otherwise the batches are read, and the model run, twice. Returns (threshold, sweep or None, rows)."""
    predict, sweep = predictor, None
    if threshold is None:
        kept = first_batches(batches, max_samples, cache_bytes, predictor.mode)
        if kept is not None:
            batches, predict = kept, Replay(predictor, kept)
        sweep = sweep_thresholds(predict, batches, max_samples=max_samples)
        threshold = best_threshold(sweep)
    rows, _ = evaluate_batches(predict, batches, threshold=threshold, max_samples=max_samples)
    return threshold, sweep, rows


def best_threshold(sweep: dict[float, float]) -> float:
    """The threshold with the highest mean Dice (the lowest one on ties)."""
    return max(sorted(sweep), key=lambda t: sweep[t])


def dilate(mask: np.ndarray, px: int = CLEAN_DILATE_PX) -> np.ndarray:
    if px <= 0 or not mask.any():
        return mask.astype(bool)
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * px + 1, 2 * px + 1))
    return cv2.dilate(mask.astype(np.uint8), k).astype(bool)


def evaluate_batches(predictor: Predictor, batches, threshold: float | None = None, max_samples: int | None = None,
                     keep_examples: int = 0, filler: Predictor | None = None):
    """Run over batches of dicts with noisy_a, clean, mask (uint8 tensors). Returns (rows, examples).

    rows: one dict per image: sample_id (if present), dice, iou, pixel_accuracy, and for the cleaned
    image ssim, psnr, psnr_hvsm, plus *_raw for the network's own output (restoration modes, the paper's
    definition). examples: up to keep_examples tuples (input, output-or-cleaned, predicted mask, true mask).
    filler: a restoration predictor whose output fills a seg model's mask (instead of inpainting).
    """
    rows, examples = [], []
    for batch in batches:
        pred = predictor(batch["noisy_a"])
        fills = filler(batch["noisy_a"]) if filler is not None else None
        inp = batch["noisy_a"].permute(0, 2, 3, 1).numpy()
        clean = batch["clean"].permute(0, 2, 3, 1).numpy()
        truth = batch["mask"].numpy()
        take = inp.shape[0] if not max_samples else min(inp.shape[0], max_samples - len(rows))
        first = len(rows)

        def score(b: int):
            mask, cleaned, raw = masks_and_cleaned(inp[b], pred[b], predictor.mode, threshold,
                                                   fill=None if fills is None else fills[b])
            row = {"sample_id": int(batch["sample_id"][b]) if "sample_id" in batch else first + b}
            row.update(M.evaluate_image(mask, truth[b], cleaned, clean[b]))
            if raw is not None:
                row.update({f"{k}_raw": fn(raw, clean[b]) for k, fn in M.IMAGE_METRICS.items()})
            keep = first + b < keep_examples
            return row, ((inp[b], raw if raw is not None else cleaned, mask, truth[b] > 0) if keep else None)

        for row, example in per_image(score, take):
            rows.append(row)
            if example is not None:
                examples.append(example)
        if max_samples and len(rows) >= max_samples:
            break
    return rows, examples


def summary(rows: list[dict]) -> dict[str, tuple[float, float]]:
    """metric -> (mean, variance) over rows, like the paper's tables."""
    keys = [k for k in rows[0] if k != "sample_id"] if rows else []
    return {k: M.summarize([r[k] for r in rows]) for k in keys}


def write_reports(out: Path, rows: list[dict], examples: list, title: str) -> dict:
    """per_image.csv, summary.json, summary.md and example_*.png in `out`."""
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "per_image.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    s = summary(rows)
    (out / "summary.json").write_text(json.dumps({k: {"mean": m, "var": v} for k, (m, v) in s.items()}, indent=1))
    lines = [f"# {title}", "", f"{len(rows)} images; mean ± variance.", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {m:.4f} ± {v:.2g} |" for k, (m, v) in s.items()]
    (out / "summary.md").write_text("\n".join(lines) + "\n")
    for i, ex in enumerate(examples):
        write_figure(out / f"example_{i:02d}.png", panel(*ex))
    return s


def write_figure(path: Path, rgb: np.ndarray) -> None:
    """Write an RGB report figure as PNG at zlib level 3: the same pixels as OpenCV's default, in
    well under half of its bytes."""
    ok, buf = cv2.imencode(".png", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_PNG_COMPRESSION, 3])
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    Path(path).write_bytes(buf.tobytes())


def panel(inp: np.ndarray, out: np.ndarray, pred_mask: np.ndarray, true_mask: np.ndarray) -> np.ndarray:
    """input | output | predicted mask | truth, side by side (RGB uint8), labelled."""
    h = inp.shape[0]
    tiles = [inp, out, np.repeat(pred_mask[..., None] * 255, 3, 2).astype(np.uint8),
             np.repeat(true_mask[..., None] * 255, 3, 2).astype(np.uint8)]
    sep = np.full((h, 3, 3), 90, np.uint8)
    row = np.concatenate([x for t in tiles for x in (t, sep)][:-1], axis=1)
    header = np.full((18, row.shape[1], 3), 20, np.uint8)
    for i, name in enumerate(("input", "output", "predicted mask", "truth")):
        cv2.putText(header, name, (i * (inp.shape[1] + 3) + 4, 13), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (230, 230, 230),
                    1, cv2.LINE_AA)
    return np.concatenate([header, row], axis=0)
