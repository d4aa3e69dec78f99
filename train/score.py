"""`train score-apply`: what `train apply` did to scans whose annotations are known pixel for pixel.

Each truth mark (a connected group of truth pixels, joined across gaps of MARK_JOIN_PX) is found when at
least FOUND_FRACTION of its pixels were removed (lie in apply's mask, grown by REACH_PX like apply's fill);
the removed fraction of every found mark says whether the whole mark went or only pieces of it. A mask
component that touches no truth mark is a false mark; a scan without a truth file is a clean scan, flagged
when apply masked anything in it. Writes score.md, score.json and before | mask | after panels.
"""

from __future__ import annotations

import csv
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import cv2
import numpy as np

from train.checkpoint import TrainError
from train.realcheck import FOUND_FRACTION  # one rule for "found": train check-real's, for colour-keyed overlays
from train.report import outline

REACH_PX = 1
"""Apply's mask is grown by this much before the overlap test: apply fills a mask dilated by about this."""

MARK_JOIN_PX = 4
"""Truth pixels closer than this belong to one mark (a caliper's cross, its dots and its digit)."""

PANEL_HEIGHT_PX = 240


@dataclass
class Score:
    """Counts over one applied folder."""

    annotated_scans: int = 0
    marks: int = 0
    found: int = 0
    missed: int = 0
    removed_fractions: list[float] = field(default_factory=list)
    false_marks: int = 0
    clean_scans: int = 0
    clean_flagged: int = 0
    per_scan: list[dict] = field(default_factory=list)

    def summary(self) -> dict:
        d = asdict(self)
        fr = self.removed_fractions
        d["found_rate"] = self.found / self.marks if self.marks else None
        d["mean_removed_fraction_of_found"] = float(np.mean(fr)) if fr else None
        d["found_with_90pct_removed"] = int(sum(f >= 0.9 for f in fr))
        d.pop("removed_fractions")
        return d


def truth_marks(truth: np.ndarray, join_px: int = MARK_JOIN_PX) -> list[np.ndarray]:
    """Boolean masks, one per mark, of a (H, W) class-id truth mask: truth pixels closer than join_px are
    one mark."""
    on = truth > 0
    if not on.any():
        return []
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * join_px + 1,) * 2)
    n, labels = cv2.connectedComponents(cv2.dilate(on.astype(np.uint8), k), connectivity=8)
    return [on & (labels == i) for i in range(1, n)]


def score_scan(mask: np.ndarray, truth: np.ndarray | None) -> dict:
    """One scan's counts: mask (H, W) bool from apply, truth (H, W) class ids or None for a clean scan."""
    if truth is None:
        return {"clean": True, "flagged": bool(mask.any()), "masked_px": int(mask.sum())}
    if truth.shape != mask.shape:
        raise TrainError(f"truth mask is {truth.shape[1]}x{truth.shape[0]} but apply's mask is "
                         f"{mask.shape[1]}x{mask.shape[0]}: the truth must be for the scan as applied.")
    k = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * REACH_PX + 1,) * 2)
    removed = cv2.dilate(mask.astype(np.uint8), k).astype(bool) if REACH_PX else mask
    marks = truth_marks(truth)
    fractions = [float((removed & m).sum() / m.sum()) for m in marks]
    near_truth = cv2.dilate((truth > 0).astype(np.uint8), np.ones((2 * MARK_JOIN_PX + 1,) * 2, np.uint8)) > 0
    n, labels = cv2.connectedComponents(mask.astype(np.uint8), connectivity=8)
    false_marks = sum(1 for i in range(1, n) if not (near_truth & (labels == i)).any())
    return {"clean": False, "marks": len(marks), "removed_fractions": [round(f, 4) for f in fractions],
            "found": sum(f >= FOUND_FRACTION for f in fractions), "false_marks": false_marks,
            "masked_px": int(mask.sum())}


def _read(path: Path, flags: int) -> np.ndarray:
    img = cv2.imread(str(path), flags)
    if img is None:
        raise TrainError(f"cannot read {path}: rerun `train apply` into this folder.")
    return img


def _panel(before: np.ndarray, mask: np.ndarray, after: np.ndarray, truth: np.ndarray | None) -> np.ndarray:
    """before (truth outlined in green) | mask in red over the scan | after, scaled to PANEL_HEIGHT_PX (BGR)."""
    b = outline(before, truth > 0, colour=(40, 220, 40)) if truth is not None else before.copy()
    tinted = before.copy()
    tinted[mask] = (0.4 * tinted[mask] + 0.6 * np.array([40, 40, 255])).astype(np.uint8)
    h, w = before.shape[:2]
    s = PANEL_HEIGHT_PX / h
    size = (max(1, round(w * s)), PANEL_HEIGHT_PX)
    gap = np.full((PANEL_HEIGHT_PX, 4, 3), 255, np.uint8)
    tiles = [cv2.resize(t, size, interpolation=cv2.INTER_AREA) for t in (b, tinted, after)]
    return np.hstack([tiles[0], gap, tiles[1], gap, tiles[2]])


def score_applied(applied: str | Path, truth_dir: str | Path, out: str | Path | None = None) -> dict:
    """Score `train apply`'s output folder against truth masks (TRUTH/STEM.png for APPLIED/STEM.mask.png;
    no truth file: a clean scan). Returns the summary dict; writes score.md/json and panels/ under `out`
    (default APPLIED/score)."""
    applied, truth_dir = Path(applied), Path(truth_dir)
    csv_path = applied / "apply.csv"
    if not csv_path.is_file():
        raise TrainError(f"{csv_path} not found: give the folder `train apply --out` wrote.")
    if not truth_dir.is_dir():
        raise TrainError(f"truth folder {truth_dir} not found (`synth phantom --annotate KIND --truth DIR` "
                         f"writes one).")
    with open(csv_path, newline="") as f:
        inputs = [Path(r["file"]) for r in csv.DictReader(f)]
    out = Path(out) if out else applied / "score"
    (out / "panels").mkdir(parents=True, exist_ok=True)
    res = Score()
    masks = sorted(applied.rglob("*.mask.png"))
    if not masks:
        raise TrainError(f"no *.mask.png in {applied}: run `train apply` into it first.")
    sheet = []
    for mpath in masks:
        stem = mpath.relative_to(applied).as_posix()[: -len(".mask.png")]
        src = [p for p in inputs if p.with_suffix("").as_posix().endswith(stem)]
        if len(src) != 1:
            raise TrainError(f"{csv_path} has {len(src)} input scans for {stem}; score a folder written by one "
                             f"`train apply` run.")
        mask = _read(mpath, cv2.IMREAD_GRAYSCALE) > 0
        tpath = truth_dir / f"{stem}.png"
        truth = _read(tpath, cv2.IMREAD_GRAYSCALE) if tpath.is_file() else None
        row = {"scan": stem, **score_scan(mask, truth)}
        res.per_scan.append(row)
        if truth is None:
            res.clean_scans += 1
            res.clean_flagged += row["flagged"]
        else:
            res.annotated_scans += 1
            res.marks += row["marks"]
            res.found += row["found"]
            res.missed += row["marks"] - row["found"]
            res.false_marks += row["false_marks"]
            res.removed_fractions += [f for f in row["removed_fractions"] if f >= FOUND_FRACTION]
        before = _read(src[0], cv2.IMREAD_COLOR)
        after = _read(applied / f"{stem}.clean.png", cv2.IMREAD_COLOR)
        panel = _panel(before, mask, after, truth)
        target = out / "panels" / f"{stem.replace('/', '__')}.png"
        cv2.imwrite(str(target), panel)
        sheet.append(panel)
    width = max(p.shape[1] for p in sheet)
    sheet = [np.pad(p, ((0, 4), (0, width - p.shape[1]), (0, 0)), constant_values=255) for p in sheet]
    cv2.imwrite(str(out / "panels.png"), np.vstack(sheet))
    summary = res.summary()
    tmp = out / "score.json.tmp"
    tmp.write_text(json.dumps(summary, indent=1))
    os.replace(tmp, out / "score.json")
    (out / "score.md").write_text(score_markdown(summary, applied, truth_dir))
    return summary


def score_markdown(s: dict, applied: Path, truth_dir: Path) -> str:
    mean = s["mean_removed_fraction_of_found"]
    lines = [
        f"# `train apply` against truth: {applied}", "",
        f"Truth: {truth_dir} (a scan without a truth file is clean). A mark is found when at least "
        f"{FOUND_FRACTION:.0%} of its pixels were removed.", "",
        "| annotated scans | marks | found | missed | removed per found mark (mean) | found with >= 90 % removed "
        "| false marks on annotated scans | clean scans flagged |",
        "|---|---|---|---|---|---|---|---|",
        f"| {s['annotated_scans']} | {s['marks']} | {s['found']} | {s['missed']} | "
        f"{'-' if mean is None else f'{mean:.1%}'} | {s['found_with_90pct_removed']} | {s['false_marks']} | "
        f"{s['clean_flagged']}/{s['clean_scans']} |", "",
        "Panels: `panels.png` (all scans), `panels/` (one per scan): before (truth outlined in green) | "
        "the mask in red | after.", "",
    ]
    return "\n".join(lines)
