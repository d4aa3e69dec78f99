"""`train apply`: clean scans of any size with a trained checkpoint; write cleaned images, masks, a CSV."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

import cv2
import numpy as np
import torch

from synth.images import ImageError, read_image
from train import metrics as M
from train.checkpoint import TrainError, load_checkpoint, model_from_checkpoint
from train.dicom import clean_dicom, find_scans, is_dicom
from train.evaluate import Predictor, dilate, masks_and_cleaned
from train.grow import GrowConfig, grow_image


def predictor_from_checkpoint(path: str | Path, device: torch.device | None = None) -> tuple[Predictor, dict]:
    """(Predictor, checkpoint meta) for a checkpoint written by `train run`."""
    ckpt = load_checkpoint(path)
    try:
        model = model_from_checkpoint(ckpt)
    except (TrainError, RuntimeError, TypeError, ValueError) as e:
        raise TrainError(f"{path}: cannot rebuild the model from this checkpoint ({e}).") from e
    if model.model_config.get("in_channels") != 3:
        raise TrainError(f"{path}: the model takes {model.model_config.get('in_channels')} channels; "
                         f"apply works on RGB scans (3 channels).")
    device = device or torch.device("cuda" if torch.cuda.is_available() else "cpu")
    model.to(device)
    meta = ckpt["meta"]
    norm = ckpt["norm"]
    return Predictor(model, meta["mode"], tuple(norm["mean"]), tuple(norm["std"]), device), meta


class Ensemble:
    """Several seg detectors run on the same scan, their probabilities averaged: a Predictor for
    `train apply` and `train check-real` given more than one --checkpoint."""

    mode = "seg"

    def __init__(self, members: list[Predictor]):
        self.members = members
        self.model = torch.nn.ModuleList([m.model for m in members])
        self.model.size_multiple = math.lcm(*(m.model.size_multiple for m in members))

    def __call__(self, x_uint8: torch.Tensor) -> np.ndarray:
        return np.mean([m(x_uint8) for m in self.members], axis=0)


def load_predictor(checkpoints: str | Path | list) -> tuple[Predictor | Ensemble, dict]:
    """(Predictor, meta) for one checkpoint, or an Ensemble of several seg checkpoints trained at the same
    image size and scale. The ensemble's threshold is the mean of the members' own; its meta names them all."""
    paths = checkpoint_paths(checkpoints)
    if len(paths) == 1:
        return predictor_from_checkpoint(paths[0])
    members, metas = zip(*(predictor_from_checkpoint(p) for p in paths))
    for p, meta in zip(paths, metas):
        if meta["mode"] != "seg":
            raise TrainError(f"{p}: a {meta['mode']} checkpoint; only seg detectors can be combined "
                             f"(give one restoration model at a time).")
        for key in ("image_size", "resize"):
            if meta.get(key) != metas[0].get(key):
                raise TrainError(f"{p}: trained with {key} {meta.get(key)}, {paths[0]} with {metas[0].get(key)}; "
                                 f"combine detectors trained on shards of the same {key}.")
    meta = dict(metas[0])
    own = [m["threshold"] for m in metas if m.get("threshold") is not None]
    meta["threshold"] = round(float(np.mean(own)), 3) if own else None
    meta["kinds"] = sorted({k for m in metas for k in m.get("kinds", [])})
    meta["checkpoints"] = [str(p) for p in paths]
    return Ensemble(list(members)), meta


def checkpoint_paths(checkpoints: str | Path | list) -> list:
    """One checkpoint or several, as a list."""
    return [checkpoints] if isinstance(checkpoints, (str, Path)) else list(checkpoints)


def checkpoint_label(checkpoints: str | Path | list) -> str:
    """How reports name one checkpoint or an ensemble of several."""
    return " + ".join(str(p) for p in checkpoint_paths(checkpoints))


def filler_from_checkpoint(path: str | Path | None, for_meta: dict) -> Predictor | None:
    """The restoration model that fills a seg model's masks (`--fill`), or None. It must be an n2n/n2c
    checkpoint trained at the same image size as the seg model."""
    if path is None:
        return None
    if for_meta["mode"] != "seg":
        raise TrainError(f"--fill {path}: only a seg model's masks are filled; this checkpoint is "
                         f"{for_meta['mode']}, which restores its own masks.")
    filler, meta = predictor_from_checkpoint(path)
    if meta["mode"] == "seg":
        raise TrainError(f"--fill {path}: that is a seg model; give an n2n or n2c checkpoint to fill with.")
    if list(meta["image_size"]) != list(for_meta["image_size"]):
        raise TrainError(f"--fill {path}: trained at {meta['image_size']} px, the seg model at "
                         f"{for_meta['image_size']} px; use models trained at the same size.")
    filler.model.eval()
    return filler


def model_scale(h: int, w: int, meta: dict) -> float:
    """The factor that brings an h x w scan to the scale the model was trained at (the build's resize)."""
    size = meta["image_size"][0]
    return size / (max(h, w) if meta.get("resize", "letterbox") == "letterbox" else min(h, w))


def predict_scaled(predictor: Predictor, meta: dict, img: np.ndarray,
                   filler: Predictor | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """(scan at the training scale, the model's output for it, the filler's output or None).

    The scan is resized to the training scale and padded (black, like the frame around the fan) to the
    model's size multiple for the run; the outputs are cropped back to the resized scan."""
    h, w = img.shape[:2]
    s = model_scale(h, w, meta)
    sh, sw = max(1, round(h * s)), max(1, round(w * s))
    small = cv2.resize(img, (sw, sh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    m = predictor.model.size_multiple
    ph, pw = -(-sh // m) * m, -(-sw // m) * m
    padded = np.zeros((ph, pw, 3), np.uint8)
    padded[:sh, :sw] = small
    x = torch.from_numpy(padded).permute(2, 0, 1)[None]
    pred = predictor(x)[0][:sh, :sw]
    fill = filler(x)[0][:sh, :sw] if filler is not None else None
    return small, pred, fill


def upscale_mask(mask_small: np.ndarray, h: int, w: int) -> np.ndarray:
    """A mask at the training scale brought back to the scan's h x w."""
    if mask_small.shape == (h, w):
        return mask_small
    return cv2.resize(mask_small.astype(np.float32), (w, h), interpolation=cv2.INTER_LINEAR) > 0.5


def clean_image(predictor: Predictor, meta: dict, img: np.ndarray, threshold: float | None = None,
                filler: Predictor | None = None, min_area: int = M.DEFAULT_MIN_AREA,
                grow: GrowConfig | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(cleaned (H, W, 3) uint8, mask (H, W) bool) for one RGB scan at its own resolution.

    The model runs at the training scale (predict_scaled) and the mask is mapped back; the cleaned scan
    equals the input outside the (dilated) mask, bit for bit. min_area: mask components smaller than this
    (pixels at the training scale) are dropped. grow: the mask grows into the rest of the marks it lies on
    (train.grow): hysteresis at the training scale, the contrast step at the scan's own.
    """
    h, w = img.shape[:2]
    small, pred, fill = predict_scaled(predictor, meta, img, filler)
    same = small.shape[:2] == (h, w)
    grow_small = grow if same or grow is None else grow.scores_only()
    mask_small, cleaned_small, raw = masks_and_cleaned(small, pred, predictor.mode, threshold, min_area, fill=fill,
                                                       grow=grow_small)
    if fill is not None:
        raw = np.clip(np.rint(fill), 0, 255).astype(np.uint8)
    if same:
        return cleaned_small, mask_small
    mask = upscale_mask(mask_small, h, w)
    if grow is not None:
        mask = grow_image(mask, img, grow)
    grown = dilate(mask)
    if raw is None:  # seg without a filler: inpaint at full resolution
        cleaned = cv2.inpaint(img, grown.astype(np.uint8), 3, cv2.INPAINT_TELEA) if grown.any() else img.copy()
    else:
        up = cv2.resize(raw, (w, h), interpolation=cv2.INTER_CUBIC)
        cleaned = np.where(grown[..., None], up, img)
    return cleaned, mask


def expand_inputs(inputs: list[Path]) -> list[tuple[Path, str]]:
    """(file, output stem relative to its input folder) for files and folders (recursive)."""
    items = []
    for p in inputs:
        p = Path(p)
        if p.is_dir():
            items += [(f, f.relative_to(p).with_suffix("").as_posix()) for f in find_scans(p)]
        else:
            items.append((p, p.stem))
    return items


def apply(checkpoint: str | Path | list, inputs: list[Path], out: str | Path, threshold: float | None = None,
          progress=None, fill: str | Path | None = None, min_area: int = M.DEFAULT_MIN_AREA,
          grow: GrowConfig | None = None) -> dict:
    """Clean every scan in `inputs`; returns {"done": n, "bad": [(file, reason)], "csv": path}.
    checkpoint: one, or a list of seg checkpoints whose probabilities are averaged (load_predictor).
    fill: an n2n/n2c checkpoint whose output fills a seg model's masks (default: inpainting).
    min_area: mask components smaller than this many pixels (at the training scale) are dropped.
    grow: grow each mask into the rest of the marks it lies on (train.grow; None: no growth)."""
    predictor, meta = load_predictor(checkpoint)
    predictor.model.eval()
    filler = filler_from_checkpoint(fill, meta)
    threshold = meta.get("threshold") if threshold is None else threshold
    items = expand_inputs(inputs)
    if not items:
        raise TrainError("no PNG/JPG/BMP/TIFF or DICOM (.dcm) scans found in the inputs given.")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    kinds = meta.get("kinds", [])
    rows, bad = [], []
    for k, (path, stem) in enumerate(items):
        if is_dicom(path):  # every frame cleaned into a new derived DICOM instance (train.dicom)
            try:
                rows.append(clean_dicom(path, out / stem, lambda im: clean_image(
                    predictor, meta, im, threshold, filler, min_area, grow), kinds, checkpoint_label(checkpoint),
                    salt=str(out.resolve())))
            except (ImageError, OSError) as e:
                bad.append((str(path), str(e)))
            if progress:
                progress(k + 1, len(items))
            continue
        try:
            img = read_image(path)
            cleaned, mask = clean_image(predictor, meta, img, threshold, filler, min_area, grow)
        except (ImageError, OSError) as e:
            bad.append((str(path), str(e)))
        else:
            target = out / stem
            target.parent.mkdir(parents=True, exist_ok=True)
            _write_png(target.with_name(target.name + ".clean.png"), cv2.cvtColor(cleaned, cv2.COLOR_RGB2BGR))
            _write_png(target.with_name(target.name + ".mask.png"), mask.astype(np.uint8) * 255)
            n_px = int(mask.sum())
            row = {"file": str(path), "width": img.shape[1], "height": img.shape[0], "annotated_px": n_px,
                   "fraction": round(n_px / mask.size, 6)}
            row.update({f"has_{kind}": int(n_px > 0) for kind in kinds})
            rows.append(row)
        if progress:
            progress(k + 1, len(items))
    csv_path = out / "apply.csv"
    tmp = csv_path.with_name("apply.csv.tmp")
    with open(tmp, "w", newline="") as f:
        fields = ["file", "width", "height", "annotated_px", "fraction", *[f"has_{k}" for k in kinds]]
        wr = csv.DictWriter(f, fieldnames=fields)
        wr.writeheader()
        wr.writerows(rows)
    os.replace(tmp, csv_path)
    return {"done": len(rows), "bad": bad, "csv": str(csv_path)}


def _write_png(path: Path, img: np.ndarray) -> None:
    ok, buf = cv2.imencode(".png", img)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)
