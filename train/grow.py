"""Whole-mark growth: a detector's confident pixels (seeds) grown into the rest of the marks they lie on.

A detector often finds only part of a mark (a few dots of a dotted line, the centre of a caliper cross, two
letters of a label): inpainting that part leaves the rest readable. Growth adds the pixels connected to a
seed that still look like the mark, within a bounded distance:

1. hysteresis on the model's own score, at the model's scale: pixels whose score is at least
   `low_fraction` x the mask threshold join when they are connected to a seed (grow_scores);
2. contrast, at the scan's own scale: pixels that differ from their local background (the median over a
   `median_px` window) by at least `contrast` grey levels in some channel join when they are connected to
   the mask grown so far and match the colour of that mask piece's own mark pixels within `match_levels`
   (grow_image): a yellow label does not grow into white tissue, a white cross not into grey speckle.

Guards, so that tissue is not erased: growth never reaches further than `reach_px` (geodesic distance
through joining pixels) from the seeds, and a grown component that ends up more than `max_area_factor`
times the seed pixels it holds is tissue rather than a mark: it is left as its seeds.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import cv2
import numpy as np


@dataclass(frozen=True)
class GrowConfig:
    """How far and into what a mask grows (see the module docstring). Pixel sizes are at the scale each step
    runs at: the model's (training) scale for hysteresis, the scan's own for contrast."""

    low_fraction: float = 0.4
    """Hysteresis: a pixel whose score is at least this fraction of the mask threshold may join (0: no hysteresis)."""
    score_reach_px: int = 4
    """Hysteresis reach, pixels at the model's scale (4 px at 256 px is 16 px on a 1024 px scan)."""
    score_gap_px: int = 1
    """Hysteresis steps over gaps up to this wide minus one (1: 8-connected neighbours only)."""
    contrast: float = 40.0
    """Contrast: grey levels a pixel must differ from its local median by, in some channel (0: no contrast step)."""
    median_px: int = 15
    """Side of the local-median window, pixels at the scan's scale (odd; wider than a mark's strokes)."""
    image_reach_px: int = 24
    """Contrast reach, pixels at the scan's scale."""
    image_gap_px: int = 6
    """The contrast step joins pixels up to this far from the mask grown so far (scan's scale): it crosses
    the gaps between a dotted line's dots and between a cross and its digit (6 px removed more of rendered
    marks than 3 for 6 % more replaced pixels on clean scans: bench/results/grow_marks.md)."""
    match_levels: float = 48.0
    """A contrast pixel joins a mask piece only when every channel is within this many grey levels of the
    median colour of the piece's own contrast pixels (its mark's colour; 0: no colour match)."""
    max_area_factor: float = 8.0
    """A grown component larger than this many times its seed pixels is refused (left as its seeds)."""

    def __post_init__(self):
        if self.median_px < 3 or self.median_px % 2 == 0:
            raise ValueError(f"median_px must be odd and at least 3, got {self.median_px}")
        if self.max_area_factor < 1:
            raise ValueError(f"max_area_factor must be at least 1, got {self.max_area_factor}")

    def as_dict(self) -> dict:
        return asdict(self)

    def scores_only(self) -> GrowConfig:
        """The same growth without the contrast step (for a mask that is grown at the scan's scale later)."""
        return replace(self, contrast=0.0)


DEFAULT_GROW = GrowConfig()
"""The growth `train apply` and `train check-real` use with --grow (bench/results/grow_marks.md measures it)."""


def geodesic_grow(seeds: np.ndarray, allowed: np.ndarray, reach_px: int, gap_px: int = 1) -> np.ndarray:
    """seeds plus the `allowed` pixels connected to them through allowed pixels, at most reach_px away.
    Each step joins the allowed pixels within gap_px (a square) of the mask so far, so gaps narrower than
    gap_px are crossed; ceil(reach_px / gap_px) steps. seeds, allowed: (H, W) bool. Works on the seeds'
    bounding box grown by reach_px, so small masks on large scans stay cheap."""
    seeds = seeds.astype(bool)
    if reach_px <= 0 or not seeds.any():
        return seeds.copy()
    ys, xs = np.nonzero(seeds)
    y0, y1 = max(0, ys.min() - reach_px), min(seeds.shape[0], ys.max() + reach_px + 1)
    x0, x1 = max(0, xs.min() - reach_px), min(seeds.shape[1], xs.max() + reach_px + 1)
    cur = seeds[y0:y1, x0:x1].astype(np.uint8)
    ok = (allowed[y0:y1, x0:x1] | seeds[y0:y1, x0:x1]).astype(np.uint8)
    gap_px = max(1, gap_px)
    k = np.ones((2 * gap_px + 1,) * 2, np.uint8)
    for _ in range(-(-reach_px // gap_px)):
        nxt = cv2.dilate(cur, k) & ok
        if np.array_equal(nxt, cur):
            break
        cur = nxt
    out = seeds.copy()
    out[y0:y1, x0:x1] |= cur.astype(bool)
    return out


def refuse_blown_up(grown: np.ndarray, seeds: np.ndarray, max_area_factor: float) -> np.ndarray:
    """grown, except that a component (8-connected) holding more than max_area_factor x its seed pixels is
    put back to its seeds: growth that large spread into tissue."""
    if not grown.any():
        return grown
    n, lab = cv2.connectedComponents(grown.astype(np.uint8), connectivity=8)
    area = np.bincount(lab.ravel(), minlength=n)
    seeded = np.bincount(lab[seeds & grown], minlength=n)
    bad = area > max_area_factor * np.maximum(seeded, 1)
    bad[0] = False
    return (grown & ~bad[lab]) | seeds


def grow_scores(seeds: np.ndarray, score: np.ndarray, threshold: float, cfg: GrowConfig = DEFAULT_GROW) -> np.ndarray:
    """Hysteresis: seeds (H, W) bool grown into pixels with score >= cfg.low_fraction * threshold.

    score: (H, W) float, the map the seeds were cut from (seg probability, or a restoration's residual in
    grey levels); threshold: the cut that made the seeds."""
    if cfg.low_fraction <= 0 or cfg.score_reach_px <= 0 or not seeds.any():
        return seeds.astype(bool)
    grown = geodesic_grow(seeds, score >= cfg.low_fraction * threshold, cfg.score_reach_px, cfg.score_gap_px)
    return refuse_blown_up(grown, seeds.astype(bool), cfg.max_area_factor)


def contrast_pixels(img: np.ndarray, cfg: GrowConfig = DEFAULT_GROW) -> np.ndarray:
    """(H, W) bool: pixels of an (H, W, 3) uint8 image that differ from their local median (a cfg.median_px
    window) by at least cfg.contrast grey levels in some channel."""
    med = cv2.medianBlur(np.ascontiguousarray(img), cfg.median_px)
    return (cv2.absdiff(img, med).max(axis=-1) >= cfg.contrast)


def grow_image(mask: np.ndarray, img: np.ndarray, cfg: GrowConfig = DEFAULT_GROW,
               candidates: np.ndarray | None = None) -> np.ndarray:
    """The contrast step: mask (H, W) bool grown into connected pixels of img (H, W, 3) uint8 that stand out
    from their local background and (cfg.match_levels) match the colour of their mask piece's mark.
    candidates: contrast_pixels(img, cfg), when the caller has it already."""
    mask = mask.astype(bool)
    if cfg.contrast <= 0 or cfg.image_reach_px <= 0 or not mask.any():
        return mask
    if candidates is None:
        candidates = contrast_pixels(img, cfg)
    if cfg.match_levels <= 0:
        grown = geodesic_grow(mask, candidates, cfg.image_reach_px, cfg.image_gap_px)
        return refuse_blown_up(grown, mask, cfg.max_area_factor)
    grown = mask.copy()
    n, lab, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    r = cfg.image_reach_px
    for k in range(1, n):  # each piece grows into pixels of its own mark's colour, in its box grown by the reach
        x, y, w, h = stats[k, :4]
        box = (slice(max(0, y - r), y + h + r), slice(max(0, x - r), x + w + r))
        piece = lab[box] == k
        own = img[box][piece & candidates[box]]
        if not len(own):
            continue
        colour = np.median(own, axis=0)
        near = (np.abs(img[box].astype(np.float32) - colour).max(-1) <= cfg.match_levels) & candidates[box]
        grown[box] |= geodesic_grow(piece, near, r, cfg.image_gap_px)
    return refuse_blown_up(grown, mask, cfg.max_area_factor)


def grow_mask(seeds: np.ndarray, img: np.ndarray, score: np.ndarray | None, threshold: float | None,
              cfg: GrowConfig = DEFAULT_GROW) -> np.ndarray:
    """Both steps at one scale: hysteresis on `score` (skipped when score or threshold is None), then contrast
    on `img`. seeds, score: (H, W); img: (H, W, 3) uint8."""
    mask = seeds.astype(bool)
    if score is not None and threshold is not None:
        mask = grow_scores(mask, score, threshold, cfg)
    return grow_image(mask, img, cfg)
