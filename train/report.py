"""Side-by-side comparisons of trained models on one held-out shard set: the paper's table (mean ± variance
of Dice, IoU, PA, SSIM, PSNR-HVS-M per model) and a figure like its Fig. 4 (input | each model's output |
truth mask)."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from torch.utils.data import DataLoader

from train.data import EVAL_FIELDS, ShardStream
from train.evaluate import evaluate_batches, summary, write_figure
from train.infer import checkpoint_label, filler_from_checkpoint, load_predictor

TABLE_METRICS = ("dice", "iou", "pixel_accuracy", "ssim", "psnr_hvsm")
"""The paper's columns, in its order. SSIM and PSNR-HVS-M are of the cleaned image (network pixels
inside the predicted mask, input elsewhere), which is what `train apply` writes."""

HEADERS = {"dice": "Dice", "iou": "IoU", "pixel_accuracy": "PA", "ssim": "SSIM", "psnr_hvsm": "PSNR-HVS-M",
           "psnr": "PSNR", "ssim_raw": "SSIM (raw)", "psnr_hvsm_raw": "PSNR-HVS-M (raw)"}


@dataclass
class Evaluated:
    """One model evaluated on one shard set."""

    label: str
    checkpoint: str
    mode: str
    threshold: float | None
    rows: list[dict]
    examples: list  # (input, shown output, predicted mask, truth) per example image

    @property
    def summary(self) -> dict[str, tuple[float, float]]:
        return summary(self.rows)


def evaluate_checkpoint(label: str, checkpoint: str | Path | list, shards: str | Path, max_samples: int | None = None,
                        keep_examples: int = 4, batch_size: int = 4, fill: str | Path | None = None) -> Evaluated:
    """Evaluate a checkpoint on shards with the mask threshold it picked on its validation data; `fill`
    (an n2n/n2c checkpoint) fills a seg model's masks instead of inpainting. A list of seg checkpoints is
    evaluated as one detector, their probabilities averaged (load_predictor)."""
    predictor, meta = load_predictor(checkpoint)
    predictor.model.eval()
    filler = filler_from_checkpoint(fill, meta)
    stream = ShardStream(shards, (*EVAL_FIELDS, "sample_id"), shuffle=False)
    rows, examples = evaluate_batches(predictor, DataLoader(stream, batch_size=batch_size),
                                      threshold=meta.get("threshold"), max_samples=max_samples,
                                      keep_examples=keep_examples, filler=filler)
    mode = meta["mode"] if fill is None else f"{meta['mode']} + fill"
    return Evaluated(label, checkpoint_label(checkpoint), mode, meta.get("threshold"), rows, examples)


def table_markdown(results: list[Evaluated], metrics: tuple[str, ...] = TABLE_METRICS, label_header: str = "model",
                   extra: dict[str, dict[str, str]] | None = None) -> str:
    """A markdown table: one row per result, `mean ± variance` per metric (the paper's form); the best
    mean per column in bold. `extra` adds columns (column -> label -> text) before the metrics."""
    extra = extra or {}
    sums = [r.summary for r in results]
    best = {m: max((s[m][0] for s in sums if m in s), default=None) for m in metrics}
    head = [label_header, *extra, "mode", "threshold", *(HEADERS.get(m, m) for m in metrics)]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r, s in zip(results, sums):
        cells = [r.label, *(extra[c].get(r.label, "") for c in extra), r.mode.upper(),
                 "" if r.threshold is None else f"{r.threshold:g}"]
        for m in metrics:
            if m not in s:
                cells.append("n/a")
                continue
            mean, var = s[m]
            text = f"{mean:.4f} ± {var:.1e}" if m not in ("psnr_hvsm", "psnr") else f"{mean:.2f} ± {var:.2f}"
            cells.append(f"**{text}**" if best[m] is not None and np.isclose(mean, best[m]) else text)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def figure(results: list[Evaluated], rows: int | None = None, zoom: int = 1) -> np.ndarray:
    """Like the paper's Fig. 4: per example, input | each model's output (the raw network output of
    n2n/n2c models, the inpainted image of seg models) with its predicted mask outlined in red | truth
    mask. RGB uint8, labelled columns. `rows` caps the examples; by default every example the evaluations
    kept (`keep_examples`) is drawn."""
    n = min(rows or len(results[0].examples), *(len(r.examples) for r in results)) if results else 0
    if n == 0:
        raise ValueError("no examples to draw; evaluate with keep_examples > 0")
    tiles_rows = []
    for i in range(n):
        inp, _, _, truth = results[0].examples[i]
        tiles = [inp]
        for r in results:
            _, out, pred_mask, _ = r.examples[i]
            tiles.append(outline(out, pred_mask))
        tiles.append(np.repeat((truth > 0)[..., None].astype(np.uint8) * 255, 3, 2))
        tiles_rows.append(tiles)
    h, w = tiles_rows[0][0].shape[:2]
    names = ["input", *(f"{r.label} output" for r in results), "truth mask"]
    gap = 4
    canvas = np.full((22 + n * (h + gap), len(names) * (w + gap) - gap, 3), 255, np.uint8)
    for j, name in enumerate(names):
        cv2.putText(canvas, name, (j * (w + gap) + 4, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for i, tiles in enumerate(tiles_rows):
        y = 22 + i * (h + gap)
        for j, t in enumerate(tiles):
            canvas[y:y + h, j * (w + gap):j * (w + gap) + w] = t
    if zoom > 1:
        canvas = cv2.resize(canvas, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)
    return canvas


def outline(img: np.ndarray, mask: np.ndarray, colour=(255, 40, 40)) -> np.ndarray:
    """`img` with the boundary of `mask` drawn 1 px wide in `colour`."""
    out = img.copy()
    if mask.any():
        m = mask.astype(np.uint8)
        edge = (cv2.dilate(m, np.ones((3, 3), np.uint8)) - m).astype(bool)
        out[edge] = colour
    return out


def figure_rows_for(image_size: int) -> int:
    """Examples in a comparison figure by default: 4 up to 256 px, 2 above (large speckle PNGs grow fast).
    `train compare` and `train study` both draw by it."""
    return 4 if image_size <= 256 else 2


def write_comparison(results: list[Evaluated], out: str | Path, title: str, shards: str, note: str = "") -> str:
    """table.md, table.json, per-model per_image CSVs and figure.png (the examples the evaluations kept) in
    `out`; returns the markdown."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    n = len(results[0].rows) if results else 0
    md = [f"# {title}", "", f"Held-out shards: `{shards}` ({n} images). Mean ± variance over images "
          "(population variance, as in the paper). SSIM and PSNR-HVS-M are of the cleaned image; the mask "
          "threshold is the one each run picked on its own validation shards.", ""]
    if note:
        md += [note, ""]
    md += [table_markdown(results), "", "![input | outputs | truth](figure.png)", ""]
    text = "\n".join(md)
    (out / "table.md").write_text(text)
    (out / "table.json").write_text(json.dumps(
        {r.label: {"checkpoint": r.checkpoint, "mode": r.mode, "threshold": r.threshold,
                   **{k: {"mean": m, "var": v} for k, (m, v) in r.summary.items()}} for r in results}, indent=1))
    for r in results:
        with open(out / f"per_image_{r.label}.csv", "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=list(r.rows[0]))
            w.writeheader()
            w.writerows(r.rows)
    fig = figure(results)
    write_figure(out / "figure.png", fig)
    return text
