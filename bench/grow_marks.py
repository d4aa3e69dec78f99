"""How much of each found mark `train apply` removes, before and after whole-mark growth (train.grow).

A detector often masks only part of a mark; the rest stays readable. For every mark the detector finds (at
least one of its pixels in the region apply replaces, the mask dilated by CLEAN_DILATE_PX, without growth),
this measures the fraction of the mark's pixels in that region, with each growth variant. Truth:

(a) colour-keyed overlays on real annotated scans (synth.extract.find_annotations: per-overlay pixels; it
    misses white/grey marks, so masked pixels off these overlays are not all tissue);
(b) marks rendered on real clean scans at their own resolution (synth.render.render_pair, whose mask is
    the truth); a mark is a connected piece of the truth mask dilated by MARK_JOIN_PX (a cross with its
    digit, a dotted line's dots); tissue erased = replaced pixels further than TISSUE_MARGIN_PX from it;
(c) the same clean scans without marks: every replaced pixel is tissue.

    .venv/bin/python bench/grow_marks.py --checkpoint out/grow/run/best.pt \
        --annotated ../shared/devdata/mmotu/annotated --clean out/grow/clean_odd --panels out/grow/panels \
        --point 0.5:2 --point 0.2:256

Panels (before | mask without growth, red | mask with growth | cleaned with growth, zoomed on marks) go to
--panels, which must stay out of git (internal scans).
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
from common import machine, table

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from synth.icons import load_icon_set  # noqa: E402
from synth.images import find_images, read_image  # noqa: E402
from synth.render import render_pair  # noqa: E402
from train import metrics as M  # noqa: E402
from train.evaluate import dilate, predicted_mask  # noqa: E402
from train.grow import DEFAULT_GROW, contrast_pixels, grow_image, grow_scores  # noqa: E402
from train.infer import load_predictor, predict_scaled, upscale_mask  # noqa: E402
from train.realcheck import reference_mask  # noqa: E402
from train.score import truth_marks  # noqa: E402

MARK_JOIN_PX = 12
"""Truth pixels this close are one mark: a caliper cross with its digit and its dotted line (rendered dots
lie 3-11 px apart at MMOTU's resolution)."""

TISSUE_MARGIN_PX = 3
"""Replaced pixels further than this from any truth pixel count as tissue erased (renders and clean scans)."""

VISIBLE_DIFF = 32
"""Rendered mark pixels that differ from the clean scan by at least this many grey levels (some channel) are
'visible': the faint rest of the truth (8-31 levels: anti-aliasing, JPEG ringing) is reported apart."""

SHOWN = "both (default)"
"""The variant drawn in the panels."""

WHOLE = 0.9
"""A mark counts as removed whole when at least this fraction of its pixels is replaced (the issue's goal)."""

VARIANTS = {
    "none": None,
    "hysteresis": DEFAULT_GROW.scores_only(),
    "contrast": replace(DEFAULT_GROW, low_fraction=0.0),
    "both (default)": DEFAULT_GROW,
    "both, no colour match": replace(DEFAULT_GROW, match_levels=0.0),
    "both, contrast 24": replace(DEFAULT_GROW, contrast=24.0),
    "both, image gap 3": replace(DEFAULT_GROW, image_gap_px=3),
    "both, image gap 9": replace(DEFAULT_GROW, image_gap_px=9),
    "both, low 0.2, score gap 3": replace(DEFAULT_GROW, low_fraction=0.2, score_gap_px=3),
}


def masks(small, pred, img, threshold, min_area, variants=VARIANTS):
    """variant -> the full-resolution mask apply makes (clean_image's steps, the model run once)."""
    h, w = img.shape[:2]
    seeds = predicted_mask(small, pred, "seg", threshold, min_area)
    cands = {}
    out = {}
    for name, cfg in variants.items():
        if cfg is None:
            out[name] = upscale_mask(seeds, h, w)
            continue
        m = upscale_mask(grow_scores(seeds, pred, threshold, cfg), h, w)
        key = (cfg.contrast, cfg.median_px)
        if cfg.contrast > 0 and key not in cands:
            cands[key] = contrast_pixels(img, cfg)
        m = grow_image(m, img, cfg, cands.get(key))
        out[name] = m
    return out


def mark_pieces(truth: np.ndarray) -> list[np.ndarray]:
    """The truth mask's marks: (N, 2) pixel coordinates of each piece joined within MARK_JOIN_PX."""
    return [np.argwhere(m) for m in truth_marks(truth, MARK_JOIN_PX)]


def fractions(pieces: list[np.ndarray], removed: dict[str, np.ndarray], keep: np.ndarray | None = None
              ) -> list[dict[str, float]]:
    """Per found piece (any pixel replaced without growth): variant -> fraction of its pixels replaced.
    keep: (H, W) bool, count only these pixels of each found piece (pieces with none are skipped)."""
    rows = []
    for p in pieces:
        base = removed["none"][p[:, 0], p[:, 1]]
        if base.any():
            q = p if keep is None else p[keep[p[:, 0], p[:, 1]]]
            if len(q):
                rows.append({k: float(r[q[:, 0], q[:, 1]].mean()) for k, r in removed.items()})
    return rows


def zoom_panel(img, before, after, cleaned, pieces, size=160):
    """Up to 3 crops around marks, each: input | mask without growth (red) | with growth (red) | cleaned."""
    rows = []
    for p in pieces[:3]:
        cy, cx = p.mean(0).astype(int)
        half = max(24, int(np.ptp(p, 0).max()) // 2 + 12)
        y0, x0 = max(0, cy - half), max(0, cx - half)
        sl = (slice(y0, cy + half), slice(x0, cx + half))
        tiles = []
        for t in (img, _red(img, before), _red(img, after), cleaned):
            c = t[sl]
            s = size / max(c.shape[:2])
            tiles.append(cv2.resize(c, (round(c.shape[1] * s), round(c.shape[0] * s)), interpolation=cv2.INTER_NEAREST))
        hh = max(t.shape[0] for t in tiles)
        tiles = [np.pad(t, ((0, hh - t.shape[0]), (0, 4), (0, 0)), constant_values=255) for t in tiles]
        rows.append(np.concatenate(tiles, 1))
    if not rows:
        return None
    w = max(r.shape[1] for r in rows)
    return np.concatenate([np.pad(r, ((0, 4), (0, w - r.shape[1]), (0, 0)), constant_values=255) for r in rows], 0)


def _red(img, mask):
    out = img.copy()
    out[mask] = (255, 0, 0)
    return out


def summarise(rows: list[dict[str, float]]) -> list[list]:
    out = []
    for k in VARIANTS:
        v = np.array([r[k] for r in rows]) if rows else np.zeros(0)
        out.append([k, len(v), f"{v.mean():.1%}" if v.size else "-", f"{np.median(v):.1%}" if v.size else "-",
                    f"{(v >= WHOLE).mean():.1%}" if v.size else "-"])
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--checkpoint", type=Path, required=True,
                    help="seg detector (the lead reruns this with the shipped one)")
    ap.add_argument("--annotated", type=Path, default=Path("../shared/devdata/mmotu/annotated"))
    ap.add_argument("--clean", type=Path, required=True, help="real clean scans the detector did not train on")
    ap.add_argument("--limit", type=int, default=None, help="first N annotated scans only")
    ap.add_argument("--renders", type=int, default=2, help="rendered scans per clean scan")
    ap.add_argument("--point", action="append", default=None, metavar="T:A",
                    help="operating point threshold:min area (repeat; default: the checkpoint's own threshold, 2)")
    ap.add_argument("--panels", type=Path, default=Path("out/grow/panels"), help="git-ignored folder for panels")
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "grow_marks.md")
    a = ap.parse_args()
    import torch

    torch.set_num_threads(1)
    t0 = time.time()
    predictor, meta = load_predictor(a.checkpoint)
    predictor.model.eval()
    own = meta.get("threshold") or M.SEG_THRESHOLD
    points = [(own, M.DEFAULT_MIN_AREA)]
    if a.point:
        points = [(float(t), int(m)) for t, m in (p.split(":") for p in a.point)]
    kinds = [k for k in meta.get("kinds", []) if k != "mixed"] or ["radial_line"]
    icons = load_icon_set() if "body_marker" in kinds else None
    a.panels.mkdir(parents=True, exist_ok=True)
    acc = {p: {"colour": [], "render": [], "visible": [], "render_off": {k: [] for k in VARIANTS},
               "clean": {k: [] for k in VARIANTS}, "annotated_off": {k: [] for k in VARIANTS}} for p in points}

    def removed_of(small, pred, img, point):
        return {k: dilate(m) for k, m in masks(small, pred, img, *point).items()}

    n_panels = 0
    files = find_images(a.annotated)[: a.limit] if a.limit else find_images(a.annotated)
    for path in files:
        img = read_image(path)
        ref, overlays = reference_mask(img)
        if not overlays:
            continue
        small, pred, _ = predict_scaled(predictor, meta, img)
        near = dilate(ref, TISSUE_MARGIN_PX)
        for p in points:
            rem = removed_of(small, pred, img, p)
            acc[p]["colour"] += fractions([np.argwhere(m) for _k, m in overlays], rem)
            for k, r in rem.items():
                acc[p]["annotated_off"][k].append(int((r & ~near).sum()))
            if n_panels < 6 and p == points[0]:
                pieces = [np.argwhere(m) for _k, m in overlays if rem["none"][m].any()]
                pan = zoom_panel(img, rem["none"], rem[SHOWN], _clean(img, rem[SHOWN]), pieces)
                if pan is not None:
                    cv2.imwrite(str(a.panels / f"colour_{path.stem}.png"), cv2.cvtColor(pan, cv2.COLOR_RGB2BGR))
                    n_panels += 1
    n_panels = 0
    cleans = find_images(a.clean)
    for i, path in enumerate(cleans):
        img = read_image(path)
        small, pred, _ = predict_scaled(predictor, meta, img)
        for p in points:
            for k, r in removed_of(small, pred, img, p).items():
                acc[p]["clean"][k].append(int(r.sum()))
        for j in range(a.renders):
            kind = kinds[(i * a.renders + j) % len(kinds)]
            rng = np.random.default_rng(np.random.SeedSequence([29, i, j]))
            pair = render_pair(kind, rng, img, icons)
            noisy, truth = pair["noisy_a"], pair["mask"] > 0
            small, pred, _ = predict_scaled(predictor, meta, noisy)
            pieces = mark_pieces(truth)
            visible = cv2.absdiff(noisy, pair["clean"]).max(-1) >= VISIBLE_DIFF
            near = dilate(truth, TISSUE_MARGIN_PX)
            for p in points:
                rem = removed_of(small, pred, noisy, p)
                acc[p]["render"] += fractions(pieces, rem)
                acc[p]["visible"] += fractions(pieces, rem, visible)
                for k, r in rem.items():
                    acc[p]["render_off"][k].append(int((r & ~near).sum()))
                if n_panels < 8 and p == points[0]:
                    found = [q for q in pieces if rem["none"][q[:, 0], q[:, 1]].any()]
                    pan = zoom_panel(noisy, rem["none"], rem[SHOWN], _clean(noisy, rem[SHOWN]), found)
                    if pan is not None:
                        cv2.imwrite(str(a.panels / f"render_{path.stem}_{j}.png"),
                                    cv2.cvtColor(pan, cv2.COLOR_RGB2BGR))
                        n_panels += 1
    minutes = (time.time() - t0) / 60
    heads = ["growth", "found marks", "mean fraction removed", "median", f"marks removed >= {WHOLE:.0%}"]
    cmd = "python bench/grow_marks.py " + " ".join(sys.argv[1:])
    lines = [
        "# Whole marks: how much of each found mark `train apply` removes, before and after growth", "",
        f"Detector `{a.checkpoint}` (trained on {', '.join(meta.get('kinds', []))}, {meta.get('image_size')} px). "
        f"A mark is found when at least one of its pixels is in the region apply replaces without growth (the "
        f"mask dilated 2 px); the fraction is of its pixels in that region, per growth variant. Growth "
        f"parameters: `{DEFAULT_GROW}` (train.grow.DEFAULT_GROW) and the variants named.", "",
        f"(a) colour-keyed overlays on {len(files)} real annotated scans ({a.annotated}); (b) marks rendered on "
        f"{len(cleans)} real clean scans from {a.clean} x {a.renders} renders ({', '.join(kinds)}), a mark being a "
        f"piece of the truth joined within {MARK_JOIN_PX} px (a cross with its digit and dotted line), counted over "
        f"all its truth pixels and over its visible ones (at least {VISIBLE_DIFF} grey levels from the clean scan). "
        f"Tissue: replaced pixels per scan (full resolution): on renders further than {TISSUE_MARGIN_PX} px from "
        f"the truth; on the clean scans all of them; on annotated scans off the colour-keyed overlays (white marks "
        f"there are not in that reference, so these are not all tissue).", "",
        f"Command: `{cmd}` ({minutes:.1f} min on {machine()}).", ""]
    for p in points:
        r = acc[p]

        def per_scan(k, what, r=r):
            v = r[what][k]
            return f"{np.mean(v):.0f}" if v else "-"

        lines += [f"## Threshold {p[0]:g}, min area {p[1]}", "",
                  "(a) Colour-keyed overlays on real annotated scans:", "", table(heads, summarise(r["colour"])), "",
                  "(b) Marks rendered on real clean scans, all truth pixels:", "", table(heads, summarise(r["render"])),
                  "", "(b) The same marks, visible pixels only:", "", table(heads, summarise(r["visible"])), "",
                  "Tissue erased:", "",
                  table(["growth", "renders: off-truth px/scan", "clean scans: px/scan",
                         "annotated: off-reference px/scan"],
                        [[k, per_scan(k, "render_off"), per_scan(k, "clean"), per_scan(k, "annotated_off")]
                         for k in VARIANTS]), ""]
    lines += [f"Panels at the first point (not committed: internal scans): {a.panels}/.", ""]
    a.out.parent.mkdir(parents=True, exist_ok=True)
    a.out.write_text("\n".join(lines))
    print("\n".join(lines))


def _clean(img, removed):
    return cv2.inpaint(img, removed.astype(np.uint8), 3, cv2.INPAINT_TELEA) if removed.any() else img


if __name__ == "__main__":
    main()
