"""`train check-real`: how a trained model does on real scans, where no truth mask exists.

Annotated scans: the reference is what `synth extract-icons` finds by colour keying (synth.extract.
find_annotations: caliper crosses, text labels, Doppler boxes; it finds 647 overlays in the 245 dev scans).
An overlay counts as found when at least FOUND_FRACTION of its pixels lie in the model's mask grown by
FOUND_REACH_PX. Clean scans: a scan is flagged when the model masks at least FLAG_FRACTION of it.
The colour-keyed reference misses white/grey marks, so "found" is a lower bound on what a model gets
right, and "off-reference" mask pixels on annotated scans are not all false alarms.
"""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from synth.extract import fan_mask, find_annotations
from synth.images import ImageError, find_images, read_image, split_halves
from train import metrics as M
from train.evaluate import default_threshold, dilate, predicted_mask, threshold_grid, write_figure
from train.infer import checkpoint_label, checkpoint_paths, clean_image, load_predictor, predict_scaled, upscale_mask
from train.loop import TrainError
from train.report import outline

FOUND_FRACTION = 0.3
"""Share of a reference overlay's pixels that must be masked for it to count as found. Not 1: the model
runs at its training scale (512 px or less on the long side), so masks come back up-scaled and thin
1 px lines are not covered pixel for pixel."""

FOUND_REACH_PX = 3
"""The model's mask is grown by this many full-resolution pixels before the overlap test (same reason)."""

FLAG_FRACTION = 0.0005
"""A scan is flagged when at least this fraction of its pixels (0.05 %, ~260 px of a 957x540 scan) is masked."""

FAN_INSET_PX = 10
"""'Inside the fan' is the B-mode fan (synth.extract.fan_mask) shrunk by this much: it leaves out the
scanner UI on the black frame (parameter text, logos, depth ticks, which are burned-in chrome rather than
annotations of the kinds trained here) and the fan's own rim."""


SWEEP_MIN_AREAS = (M.DEFAULT_MIN_AREA, 8, 16, 32, 64, 128)
"""Smallest mask component kept (pixels at the training scale) tried by `check-real --sweep`."""


@dataclass
class RealCheck:
    """Counts over one folder pair; by_kind: reference kind -> [found, total]."""

    annotated: int = 0
    annotated_with_reference: int = 0
    annotated_any_found: int = 0
    annotated_flagged: int = 0
    clean: int = 0
    clean_flagged: int = 0
    clean_flagged_in_fan: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=dict)
    mask_on_reference_px: int = 0
    mask_px_annotated: int = 0
    clean_mask_fractions: list[float] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        fr = self.clean_mask_fractions
        d["clean_median_mask_fraction"] = float(np.median(fr)) if fr else 0.0
        d.pop("clean_mask_fractions")
        return d


def reference_mask(img: np.ndarray) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """(union of colour-keyed overlays, [(kind, that overlay's pixels)]) for one RGB scan."""
    h, w = img.shape[:2]
    union = np.zeros((h, w), bool)
    overlays = []
    for f in find_annotations(img).found:
        x, y, bw, bh = f.box
        m = np.zeros((h, w), bool)
        m[y:y + bh, x:x + bw] = f.rgba[..., 3] > 0
        union |= m
        overlays.append((f.kind, m))
    return union, overlays


def overlay_boxes(overlays: list[tuple[str, np.ndarray]]) -> list[tuple[str, tuple[slice, slice], np.ndarray, float]]:
    """[(kind, bounding box, the overlay's pixels inside it, pixels that must be masked for it to count
    as found)] for reference_mask's overlays, so that each test looks at the box only."""
    boxes = []
    for kind, m in overlays:
        ys, xs = np.nonzero(m)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        boxes.append((kind, box, m[box], FOUND_FRACTION * len(ys)))
    return boxes


def overlays_found(mask: np.ndarray, boxes: list) -> list[bool]:
    """Per overlay of overlay_boxes: found by `mask` (grown by FOUND_REACH_PX)?"""
    grown = dilate(mask, FOUND_REACH_PX)
    return [bool((grown[box] & m).sum() >= need) for _kind, box, m, need in boxes]


def scan_fan(img: np.ndarray) -> np.ndarray:
    """The B-mode fan of an RGB scan shrunk by FAN_INSET_PX: where a mask is not on the scanner's frame."""
    return cv2.erode(fan_mask(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)).astype(np.uint8),
                     np.ones((2 * FAN_INSET_PX + 1,) * 2, np.uint8)).astype(bool)


def scan_files(annotated: str | Path | None, clean: str | Path | None, limit: int | None) -> list[tuple[str, Path]]:
    """[(label, file)] of the annotated then the clean folder (each sorted; the first `limit` of each)."""
    files = []
    for label, folder in (("annotated", annotated), ("clean", clean)):
        if folder is None:
            continue
        if not Path(folder).is_dir():
            raise TrainError(f"{folder}: no such folder of {label} scans.")
        found = find_images(folder)
        files += [(label, p) for p in (found[:limit] if limit else found)]
    if not files:
        raise TrainError("no PNG/JPG/BMP/TIFF scans in the folders given.")
    return files


def check_real(checkpoint: str | Path | list, annotated: str | Path | None, clean: str | Path | None, out: str | Path,
               panel_rows: int = 6, limit: int | None = None, progress=None, threshold: float | None = None,
               min_area: int = M.DEFAULT_MIN_AREA) -> RealCheck:
    """Apply a checkpoint to real annotated and clean scans; write real_check.md/.json, per_scan.csv and
    panel.png (input | cleaned with mask outlined | reference overlays) in `out`.
    threshold: default the one the run picked on its validation shards. checkpoint: one, or a list of seg
    checkpoints whose probabilities are averaged (load_predictor)."""
    predictor, meta = load_predictor(checkpoint)
    predictor.model.eval()
    threshold = meta.get("threshold") if threshold is None else threshold
    files = scan_files(annotated, clean, limit)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res, rows, shown = RealCheck(), [], {"annotated": [], "clean": []}
    for k, (label, path) in enumerate(files):
        try:
            img = read_image(path)
        except (ImageError, OSError) as e:
            res.unreadable.append(f"{path}: {e}")
            continue
        cleaned, mask = clean_image(predictor, meta, img, threshold, min_area=min_area)
        frac = float(mask.mean())
        flagged = frac >= FLAG_FRACTION
        fan = scan_fan(img)
        frac_fan = float((mask & fan).sum() / mask.size)
        row = {"file": str(path), "label": label, "mask_fraction": round(frac, 6), "flagged": int(flagged),
               "mask_fraction_in_fan": round(frac_fan, 6), "flagged_in_fan": int(frac_fan >= FLAG_FRACTION)}
        if label == "annotated":
            ref, overlays = reference_mask(img)
            hits = 0
            for (kind, _m), hit in zip(overlays, overlays_found(mask, overlay_boxes(overlays))):
                res.by_kind.setdefault(kind, [0, 0])
                res.by_kind[kind][0] += int(hit)
                res.by_kind[kind][1] += 1
                hits += int(hit)
            res.annotated += 1
            res.annotated_with_reference += int(bool(overlays))
            res.annotated_any_found += int(hits > 0)
            res.annotated_flagged += int(flagged)
            res.mask_on_reference_px += int((mask & dilate(ref, FOUND_REACH_PX)).sum())
            res.mask_px_annotated += int(mask.sum())
            row.update(reference_overlays=len(overlays), found=hits)
        else:
            ref = None
            res.clean += 1
            res.clean_flagged += int(flagged)
            res.clean_flagged_in_fan += int(frac_fan >= FLAG_FRACTION)
            res.clean_mask_fractions.append(frac)
        rows.append(row)
        want = panel_rows - panel_rows // 3 if label == "annotated" else panel_rows // 3
        if len(shown[label]) < want and (label == "clean" or row.get("reference_overlays")):
            shown[label].append((img, cleaned, mask, ref))
        if progress:
            progress(k + 1, len(files))
    with open(out / "per_scan.csv", "w", newline="") as f:
        fields = ["file", "label", "mask_fraction", "flagged", "mask_fraction_in_fan", "flagged_in_fan",
                  "reference_overlays", "found"]
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    (out / "real_check.json").write_text(json.dumps({"checkpoint": checkpoint_label(checkpoint), "threshold": threshold,
                                                      "min_area": min_area, "kinds": meta.get("kinds"),
                                                      **res.as_dict()}, indent=1))
    (out / "real_check.md").write_text(summary_markdown(res, checkpoint_label(checkpoint), meta.get("kinds", []),
                                                        threshold, min_area))
    examples = shown["annotated"] + shown["clean"]
    if examples:
        write_figure(out / "panel.png", panel(examples))
    return res


def summary_markdown(res: RealCheck, checkpoint: str, kinds: list[str], threshold: float | None = None,
                     min_area: int = M.DEFAULT_MIN_AREA) -> str:
    d = res.as_dict()
    lines = [f"# Real scans: `{checkpoint}` (trained on {', '.join(kinds) or '?'})", "",
             f"Operating point: threshold {threshold if threshold is not None else 'default'}, "
             f"smallest mask component kept {min_area} px (at the training scale).", "",
             f"Found = at least {FOUND_FRACTION:.0%} of a colour-keyed reference overlay's pixels masked (mask grown "
             f"{FOUND_REACH_PX} px); flagged = at least {FLAG_FRACTION:.2%} of the scan masked.", "",
             "| what | count |", "|---|---|",
             f"| annotated scans with a reference overlay in which the model found at least one | "
             f"{res.annotated_any_found} / {res.annotated_with_reference} |",
             f"| annotated scans flagged | {res.annotated_flagged} / {res.annotated} |",
             f"| clean scans flagged | {res.clean_flagged} / {res.clean} |",
             f"| clean scans flagged inside the fan ({FAN_INSET_PX} px in from its rim) | "
             f"{res.clean_flagged_in_fan} / {res.clean} |",
             f"| median masked fraction on clean scans | {d['clean_median_mask_fraction']:.3%} |",
             f"| masked pixels on annotated scans that lie on a reference overlay | "
             f"{res.mask_on_reference_px / max(1, res.mask_px_annotated):.1%} |"]
    for kind, (hit, total) in sorted(res.by_kind.items()):
        lines.append(f"| reference overlays found: {kind} | {hit} / {total} |")
    if res.unreadable:
        lines.append(f"| unreadable files skipped | {len(res.unreadable)} |")
    return "\n".join(lines) + "\n\n![real scans](panel.png)\n"


def panel(examples: list, height: int = 220) -> np.ndarray:
    """Rows of: input | cleaned with the model's mask outlined in red | reference overlays (white; grey
    background for clean scans, which have none)."""
    rows = []
    for img, cleaned, mask, ref in examples:
        s = height / img.shape[0]
        w = max(1, round(img.shape[1] * s))
        if ref is None:
            ref_img = np.full(img.shape, 60, np.uint8)
        else:
            ref_img = np.repeat(ref[..., None] * 255, 3, 2).astype(np.uint8)
        tiles = [img, outline(cleaned, dilate(mask, 1)), ref_img]
        tiles = [cv2.resize(t, (w, height), interpolation=cv2.INTER_AREA) for t in tiles]
        rows.append(np.concatenate([tiles[0], np.full((height, 4, 3), 255, np.uint8), tiles[1],
                                    np.full((height, 4, 3), 255, np.uint8), tiles[2]], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    header = np.full((22, width, 3), 255, np.uint8)
    cv2.putText(header, "input | cleaned, model mask in red | colour-keyed reference (grey: clean scan)", (4, 15),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, *rows], axis=0)


def sweep_real(checkpoint: str | Path | list, annotated: str | Path | None, clean: str | Path | None, out: str | Path,
               limit: int | None = None, progress=None, thresholds: tuple[float, ...] | None = None,
               min_areas: tuple[int, ...] = SWEEP_MIN_AREAS) -> dict:
    """Choose an operating point (mask threshold, smallest mask component kept) on real scans.

    The scans are split in two by their sorted position in each folder: even positions pick the point,
    odd positions are held out and report it. The point picked maximises (share of colour-keyed reference
    overlays found) - (share of clean scans flagged); ties go to fewer flags, then the stricter point.
    The held-out half is reported at that point and at the run's own threshold (picked on phantom
    validation shards). The model runs once per scan; every point reuses its output.
    Writes operating_point.md and .json in `out`; returns the json's dict."""
    predictor, meta = load_predictor(checkpoint)
    predictor.model.eval()
    mode = predictor.mode
    own = meta.get("threshold")
    own = default_threshold(mode) if own is None else own
    thresholds = tuple(sorted(set(thresholds or threshold_grid(mode)) | {own}))
    min_areas = tuple(sorted(set(min_areas) | {M.DEFAULT_MIN_AREA}))
    points = [(t, a) for t in thresholds for a in min_areas]
    files = scan_files(annotated, clean, limit)
    # per half (0: pick, 1: held out), per point: [overlays found, overlays, clean scans flagged, clean scans]
    tallies = [{p: [0, 0, 0, 0] for p in points} for _ in range(2)]
    in_fan = {p: 0 for p in points}  # held-out clean scans flagged by their mask inside the fan
    held_out = {p for label in ("annotated", "clean") for p in split_halves([q for lb, q in files if lb == label])[1]}
    unreadable = []
    for k, (label, path) in enumerate(files):
        half = int(path in held_out)
        try:
            img = read_image(path)
        except (ImageError, OSError) as e:
            unreadable.append(f"{path}: {e}")
            continue
        h, w = img.shape[:2]
        small, pred, _ = predict_scaled(predictor, meta, img)
        boxes = overlay_boxes(reference_mask(img)[1]) if label == "annotated" else []
        fan = scan_fan(img) if label == "clean" and half == 1 else None
        for t, a in points:
            mask = upscale_mask(predicted_mask(small, pred, mode, t, a), h, w)
            tally = tallies[half][(t, a)]
            if label == "annotated":
                tally[0] += sum(overlays_found(mask, boxes))
                tally[1] += len(boxes)
            else:
                tally[2] += int(mask.mean() >= FLAG_FRACTION)
                tally[3] += 1
                if fan is not None:
                    in_fan[(t, a)] += int((mask & fan).sum() / mask.size >= FLAG_FRACTION)
        if progress:
            progress(k + 1, len(files))

    def rates(c: list[int]) -> tuple[float, float]:
        return c[0] / max(1, c[1]), c[2] / max(1, c[3])

    def key(p):
        found, flagged = rates(tallies[0][p])
        return (-(found - flagged), flagged, -p[0], -p[1])

    best = min(points, key=key)
    base = (own, M.DEFAULT_MIN_AREA)
    result = {"checkpoint": checkpoint_label(checkpoint), "mode": mode, "kinds": meta.get("kinds"),
              "threshold": best[0], "min_area": best[1], "own_threshold": own,
              "pick": {f"{t}/{a}": tallies[0][(t, a)] for t, a in points},
              "held_out": {"chosen": tallies[1][best], "own": tallies[1][base]},
              "held_out_clean_flagged_in_fan": {"chosen": in_fan[best], "own": in_fan[base]}, "unreadable": unreadable}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "operating_point.json").write_text(json.dumps(result, indent=1))

    def cell(c: list[int], what: str) -> str:
        found, flagged = rates(c)
        return f"{c[0]} / {c[1]} ({found:.0%})" if what == "found" else f"{c[2]} / {c[3]} ({flagged:.0%})"

    unit = "probability" if mode == "seg" else "grey levels"
    kinds = ", ".join(meta.get("kinds", [])) or "?"
    use = " ".join(f"--checkpoint {p}" for p in checkpoint_paths(checkpoint))
    lines = [f"# Operating point on real scans: `{checkpoint_label(checkpoint)}` (trained on {kinds})",
             "", f"Scans split by sorted position in each folder: even positions pick the point, odd positions are "
             f"held out. Point = mask threshold ({unit}) and smallest mask component kept (pixels at the training "
             f"scale). Picked by (overlays found) - (clean scans flagged) on the pick half. Found = at least "
             f"{FOUND_FRACTION:.0%} of a colour-keyed overlay masked (mask grown {FOUND_REACH_PX} px); flagged = at "
             f"least {FLAG_FRACTION:.2%} of a clean scan masked.", "",
             "## Held-out half", "", "| operating point | reference overlays found | clean scans flagged | "
             f"clean scans flagged inside the fan ({FAN_INSET_PX} px in from its rim) |", "|---|---|---|---|",
             f"| the run's own (threshold {own:g}, min area {M.DEFAULT_MIN_AREA}) | {cell(tallies[1][base], 'found')} "
             f"| {cell(tallies[1][base], 'flag')} | {in_fan[base]} / {tallies[1][base][3]} |",
             f"| picked on real scans (threshold {best[0]:g}, min area {best[1]}) | {cell(tallies[1][best], 'found')} "
             f"| {cell(tallies[1][best], 'flag')} | {in_fan[best]} / {tallies[1][best][3]} |", "",
             f"Use it: `train apply {use} --threshold {best[0]:g} --min-area {best[1]} ...`", "",
             "## Every point on the pick half", "", "| threshold | min area | overlays found | clean scans flagged |",
             "|---|---|---|---|"]
    for t, a in points:
        c, mark = tallies[0][(t, a)], " **(picked)**" if (t, a) == best else ""
        lines.append(f"| {t:g} | {a}{mark} | {cell(c, 'found')} | {cell(c, 'flag')} |")
    if unreadable:
        lines += ["", f"{len(unreadable)} unreadable file(s) skipped."]
    (out / "operating_point.md").write_text("\n".join(lines) + "\n")
    return result
