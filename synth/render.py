"""Draw synthetic burned-in annotations onto a clean scan: sample parameters, rasterise, composite, soften, mask.

Pipeline for one sample (`render_pair`), all randomness from the caller's `rng`:

1. `sample_<kind>(rng, h, w, icons, opts)` draws a small frozen dataclass of plain numbers and strings
   (positions and sizes in image px, already scaled from the measured screen px). Nothing is drawn yet.
2. `draw_<kind>(params, layer, icons)` is pure: it rasterises the annotation into a `Layer`, a list of
   small alpha pieces, each over its own bounding box (or a sparse pixel list for dotted lines), never a
   full-frame buffer. Strokes are drawn crisp on the screen pixel grid at `SS`x supersampling and
   box-averaged down (dots: exact area coverage), which is what happens when a scanner's overlay (drawn
   without anti-aliasing) is resized to the image size.
3. The pieces are composited over the clean scan in float (premultiplied "over" in drawing order) on
   the changed pixels only, and rounded once.
4. Capture softening (`opts.soften`, ANNOTATION_STATS.md section 6): the chroma of the overlay (colour
   minus luma) is blurred with sigma ~1.6 screen px while its luma stays sharp, then the image goes
   through a JPEG round trip (quality 90-95, 4:2:0, cv2/libjpeg). The clean scan gets the same round trip
   and is returned as "clean", so outside the JPEG blocks an annotation touches, clean and noisy are
   byte-identical. Only the blocks near the annotation are re-encoded (`_jpeg_rects`: touched 16 px
   blocks grown by one block, inside a crop one block larger); this gives the same bytes as a round trip
   of the whole noisy image (tested) at a fraction of the cost.
5. The mask follows the MASK RULE below (`mask_rule`).
6. Draw B is sampled away from draw A (samplers get an `avoid` map, then an exact overlap check and a
   few redraws), then A and B are swapped with probability 1/2 so both slots have the same distribution.

MASK RULE: a pixel gets the class id of its footprint when the largest per-channel absolute difference
between noisy and clean is at least `min_diff`, and 0 otherwise. The footprint is where the annotation
layer has alpha > 0, dilated by `FOOTPRINT_DILATE_PX`, labelled with the topmost kind (`_footprint`).
`min_diff` is `opts.mask_min_diff` (default `MASK_MIN_DIFF` = 8) with softening and 1 without, so with
`soften=False` the mask is exactly the set of changed pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from synth import exactmath as em
from synth.icons import Icon, IconSet
from synth.kinds import CLASS_IDS, KINDS

__all__ = [
    "DRAWERS",
    "FOOTPRINT_DILATE_PX",
    "MASK_MIN_DIFF",
    "MIN_MASK_PX",
    "SAMPLERS",
    "SS",
    "BodyMarkerParams",
    "CaliperPair",
    "ColourBar",
    "Layer",
    "MixedParams",
    "RadialLineParams",
    "Readout",
    "RenderOptions",
    "RenderedPair",
    "SoftenParams",
    "TextLabel",
    "TextParams",
    "VascularFlowParams",
    "Vessel",
    "draw_body_marker",
    "draw_mixed",
    "draw_params",
    "draw_radial_line",
    "draw_text",
    "draw_vascular_flow",
    "jpeg_roundtrip",
    "mask_rule",
    "render_pair",
    "render_pair_detailed",
    "sample_body_marker",
    "sample_mixed",
    "sample_params",
    "sample_radial_line",
    "sample_text",
    "sample_vascular_flow",
]

MASK_MIN_DIFF = 8
"""Grey levels (max over RGB of |noisy - clean|) a pixel must change by to be masked when softening is on.
Why 8 (measured on dev scans at 512 px, 240 draws): re-encoding a clean scan at q90/95 moves pixels by
p99 5 / p99.9 9 levels, so 8 keeps compression noise out of the mask; 91 % of drawn (alpha > 0) pixels
change by >= 8 (94 % by >= 4, 88 % by >= 12), the rest being faint anti-aliased fringes or overlays on
tissue of their own colour. JPEG ringing and chroma spill outside the footprint reach >= 8 for 3 % of the
changed pixels (up to ~30 levels), which is why the rule also requires the footprint. Without softening
the rule uses 1 (every changed pixel)."""

FOOTPRINT_DILATE_PX = 2
"""The mask may extend this far beyond the drawn alpha > 0 footprint (chroma smear and JPEG ringing
right at the stroke), never farther, so ringing elsewhere in the block is never masked."""

MIN_MASK_PX = 10
"""A draw whose mask has fewer pixels (e.g. white on white) is redrawn with the rng."""

SS = 4
"""Supersampling factor of the stroke rasteriser (box-averaged down by two exact 2x halvings)."""

JPEG_BLOCK_PX = 16
"""MCU size of a 4:2:0 JPEG; partial re-encoding works on whole MCUs aligned to the image origin."""

REF_WIDTH_PX = 512
"""Image width at which `RenderOptions.scale_range` is given (screen px -> image px)."""

MIN_SCALE = 0.4
"""Floor of the screen->image scale so that glyphs stay recognisable on small test images."""

EDGE_BAND = 0.15
"""placement="edges": the body marker lies within this fraction of the image size from one border."""

_Y_WEIGHTS = np.array([0.299, 0.587, 0.114], np.float32)  # JPEG (BT.601 full-range) luma


def _luma(colour: np.ndarray) -> np.ndarray:
    """BT.601 luma of (..., 3) float32 colours as an explicit weighted sum: `@` may go to a BLAS kernel
    that rounds differently on other processors (synth/exactmath.py)."""
    w = _Y_WEIGHTS
    return colour[..., 0] * w[0] + colour[..., 1] * w[1] + colour[..., 2] * w[2]


# --------------------------------------------------------------------------------------------------
# options


PALETTES = ("measured", "any")


@dataclass(frozen=True)
class RenderOptions:
    """Rendering settings; JSON-serialisable (dataclasses.asdict goes into the shard attributes).

    placement: body_marker position, "anywhere" or "edges" (within EDGE_BAND of a border).
    soften: capture softening (chroma smear + JPEG round trip of noisy and clean).
    scale_range: image px per screen px at REF_WIDTH_PX wide (scaled with the image width); real
        overlays are drawn at screen scale, and 512 px images come from ~480-1100 px wide captures.
    jpeg_quality_range: inclusive range of the JPEG quality (one value per pair).
    chroma_sigma_range: Gaussian sigma (screen px; x the mean screen->image scale) of the overlay
        chroma smear (measured ~1.6 px on GE captures).
    mask_min_diff: MASK_MIN_DIFF used when soften is on (1 is used when it is off).
    jpeg_scope: "image": the JPEG round trip covers the whole noisy and clean images (as a capture);
        "blocks": only the 16 px blocks near the annotations of either draw are JPEG'd (in all three
        images alike, so backgrounds still match byte for byte; saves one full-image round trip,
        ~2.5 ms at 512 px, and leaves far-away background as given).
    avoid_tries: redraws of draw B while it overlaps draw A before an overlap is accepted.
    max_redraws: redraws of a draw whose mask is smaller than MIN_MASK_PX before giving up.
    palette: "measured": the colours and caliper styles measured on the GE/Mindray development scans
        (mostly yellow calipers); "any": shape, not colour: calipers, labels and body markers in white, light
        grey, yellow, green or cyan alike (ANY_COLOURS), Philips-style small outlined crosses without a
        line, and solid as well as dotted measurement lines (docs/annotations.md).
    """

    placement: str = "anywhere"
    soften: bool = True
    scale_range: tuple[float, float] = (0.5, 1.1)
    jpeg_quality_range: tuple[int, int] = (90, 95)
    chroma_sigma_range: tuple[float, float] = (1.2, 2.0)
    mask_min_diff: int = MASK_MIN_DIFF
    jpeg_scope: str = "image"
    avoid_tries: int = 6
    max_redraws: int = 20
    palette: str = "measured"

    def __post_init__(self) -> None:
        if self.placement not in ("anywhere", "edges"):
            raise ValueError(f"placement must be 'anywhere' or 'edges', not {self.placement!r}")
        if self.palette not in PALETTES:
            raise ValueError(f"palette must be one of {', '.join(PALETTES)}, not {self.palette!r}")
        lo, hi = self.scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"scale_range must satisfy 0 < lo <= hi, got {self.scale_range}")
        q0, q1 = self.jpeg_quality_range
        if not 1 <= q0 <= q1 <= 100:
            raise ValueError(f"jpeg_quality_range must lie in 1..100, got {self.jpeg_quality_range}")
        s0, s1 = self.chroma_sigma_range
        if not 0 <= s0 <= s1:
            raise ValueError(f"chroma_sigma_range must satisfy 0 <= lo <= hi, got {self.chroma_sigma_range}")
        if self.jpeg_scope not in ("image", "blocks"):
            raise ValueError(f"jpeg_scope must be 'image' or 'blocks', not {self.jpeg_scope!r}")
        if not 1 <= self.mask_min_diff <= 255:
            raise ValueError(f"mask_min_diff must lie in 1..255, got {self.mask_min_diff}")


@dataclass(frozen=True)
class SoftenParams:
    """Capture softening of one pair (shared by clean, noisy_a and noisy_b)."""

    quality: int
    chroma_sigma_px: float


# --------------------------------------------------------------------------------------------------
# rasterising: supersampled coverage canvases and the layer of alpha pieces


def _down(a: np.ndarray) -> np.ndarray:
    """(h*SS, w*SS) uint8 coverage -> (h, w) float32 alpha in [0, 1] (box average, exact 2x halvings)."""
    h, w = a.shape[0] // SS, a.shape[1] // SS
    k = SS
    while k > 1:
        k //= 2
        a = cv2.resize(a, (w * k, h * k), interpolation=cv2.INTER_AREA)
    return a.astype(np.float32) * np.float32(1 / 255)


class _Raster:
    """A crisp coverage canvas at SS x the image resolution over the image box [x0, x1) x [y0, y1).

    Image coordinates are continuous: pixel i covers [i, i + 1)."""

    def __init__(self, x0: float, y0: float, x1: float, y1: float):
        self.x0, self.y0 = math.floor(x0), math.floor(y0)
        self.w = max(1, math.ceil(x1) - self.x0)
        self.h = max(1, math.ceil(y1) - self.y0)
        self.a = np.zeros((self.h * SS, self.w * SS), np.uint8)

    @classmethod
    def around(cls, xs, ys, margin: float, h: int, w: int) -> _Raster:
        """Canvas over the bounding box of the points plus `margin`, clipped to the image."""
        xs, ys = np.asarray(xs, np.float64), np.asarray(ys, np.float64)
        return cls(
            max(0.0, xs.min() - margin),
            max(0.0, ys.min() - margin),
            min(float(w), xs.max() + margin),
            min(float(h), ys.max() + margin),
        )

    def _pts(self, pts) -> np.ndarray:
        """Image px -> int32 canvas pixel-centre coordinates with 2 fractional bits (cv2 `shift=2`)."""
        p = (np.asarray(pts, np.float64).reshape(-1, 2) - (self.x0, self.y0)) * SS - 0.5
        return np.rint(p * 4).astype(np.int32)

    def polyline(self, pts, closed: bool, width_px: float) -> None:
        cv2.polylines(self.a, [self._pts(pts)], closed, 255, max(1, round(width_px * SS)), cv2.LINE_8, 2)

    def polylines(self, runs, width_px: float) -> None:
        if runs:
            cv2.polylines(self.a, [self._pts(r) for r in runs], False, 255, max(1, round(width_px * SS)), cv2.LINE_8, 2)

    def fill_poly(self, pts) -> None:
        cv2.fillPoly(self.a, [self._pts(pts)], 255, cv2.LINE_8, 2)

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> None:
        c0 = max(0, round((x0 - self.x0) * SS)), max(0, round((y0 - self.y0) * SS))
        c1 = round((x1 - self.x0) * SS), round((y1 - self.y0) * SS)
        self.a[c0[1] : max(c0[1], c1[1]), c0[0] : max(c0[0], c1[0])] = 255

    def text(self, label: TextLabel) -> None:
        fs, th = _font_args(label.font, label.cap_px, label.bold)
        org = self._pts([(label.x, label.y)])[0] // 4
        cv2.putText(self.a, label.text, (int(org[0]), int(org[1])), label.font, fs, 255, th, cv2.LINE_8)

    def alpha(self) -> np.ndarray:
        return _down(self.a)

    def shifted_alpha(self, d_px: float) -> np.ndarray:
        """Alpha of the canvas moved by (+d, +d) image px (the GE drop shadow)."""
        k = max(1, round(d_px * SS))
        b = np.zeros_like(self.a)
        b[k:, k:] = self.a[:-k, :-k]
        return _down(b)

    def dilated_alpha(self, r_px: float) -> np.ndarray:
        """Alpha of the canvas dilated by a disc of radius r image px (text outlines)."""
        k = max(1, round(r_px * SS))
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1))
        return _down(cv2.dilate(self.a, kernel))


@dataclass
class _Piece:
    """Dense: `alpha` (h, w) over the box at (x0, y0). Sparse (`ys`, `xs` set): `alpha` (n,) > 0 at the
    image pixels (ys, xs); x0, y0 are then the box's corner and x1, y1 its far end."""

    x0: int
    y0: int
    alpha: np.ndarray  # float32 in [0, 1]
    colour: np.ndarray  # (3,) float32 straight colour, or (h, w, 3) float32 premultiplied colour
    class_id: int
    ys: np.ndarray | None = None
    xs: np.ndarray | None = None

    @property
    def x1(self) -> int:
        return int(self.xs.max()) + 1 if self.xs is not None else self.x0 + self.alpha.shape[1]

    @property
    def y1(self) -> int:
        return int(self.ys.max()) + 1 if self.ys is not None else self.y0 + self.alpha.shape[0]


class Layer:
    """The annotation layer of one draw: small premultiplied-alpha pieces, composited in drawing order."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.pieces: list[_Piece] = []

    def add(self, x0: int, y0: int, alpha: np.ndarray, colour, class_id: int, premultiplied=None) -> None:
        """Add a piece: `alpha` (h, w) over the image box at (x0, y0) with a constant straight `colour`
        (3,), or with a per-pixel `premultiplied` colour (h, w, 3). Parts outside the image are cut."""
        h, w = alpha.shape
        cx0, cy0 = max(0, -x0), max(0, -y0)
        cx1, cy1 = min(w, self.w - x0), min(h, self.h - y0)
        if cx1 <= cx0 or cy1 <= cy0:
            return
        alpha = alpha[cy0:cy1, cx0:cx1]
        if not alpha.any():
            return
        if premultiplied is not None:
            col = np.ascontiguousarray(premultiplied[cy0:cy1, cx0:cx1], np.float32)
        else:
            col = np.asarray(colour, np.float32).reshape(3)
        self.pieces.append(_Piece(x0 + cx0, y0 + cy0, np.ascontiguousarray(alpha, np.float32), col, class_id))

    def add_sparse(self, ys: np.ndarray, xs: np.ndarray, alpha: np.ndarray, colour, class_id: int) -> None:
        """Add a constant-colour piece given as coverage `alpha` at pixels (ys, xs) (unique pixels)."""
        keep = (alpha > 0) & (ys >= 0) & (xs >= 0) & (ys < self.h) & (xs < self.w)
        if not keep.any():
            return
        ys, xs = ys[keep].astype(np.intp), xs[keep].astype(np.intp)
        self.pieces.append(
            _Piece(
                int(xs.min()),
                int(ys.min()),
                np.minimum(alpha[keep], 1).astype(np.float32),
                np.asarray(colour, np.float32).reshape(3),
                class_id,
                ys,
                xs,
            )
        )

    def add_raster(
        self,
        r: _Raster,
        colour,
        class_id: int,
        shadow_px: float = 0.0,
        shadow_opacity: float = 1.0,
        opacity: float = 1.0,
    ) -> None:
        """Add a raster's coverage in `colour`, under it an optional black drop shadow at (+d, +d)."""
        if shadow_px > 0 and shadow_opacity > 0:
            self.add(r.x0, r.y0, r.shifted_alpha(shadow_px) * np.float32(shadow_opacity), (0, 0, 0), class_id)
        a = r.alpha()
        if opacity != 1.0:
            a *= np.float32(opacity)
        self.add(r.x0, r.y0, a, colour, class_id)

    def core(self) -> np.ndarray:
        """(h, w) uint8: class id of the topmost piece with alpha > 0, 0 elsewhere."""
        lab = np.zeros((self.h, self.w), np.uint8)
        for p in self.pieces:
            if p.ys is not None:
                lab[p.ys, p.xs] = p.class_id
            else:
                sub = lab[p.y0 : p.y1, p.x0 : p.x1]
                sub[p.alpha > 0] = p.class_id
        return lab

    def overlap_px(self, avoid: np.ndarray) -> int:
        """Number of drawn (alpha > 0) pixels that fall on `avoid` (bool (h, w))."""
        n = 0
        for p in self.pieces:
            if p.ys is not None:
                n += int(np.count_nonzero(avoid[p.ys, p.xs]))
            else:
                n += int(np.count_nonzero(avoid[p.y0 : p.y1, p.x0 : p.x1] & (p.alpha > 0)))
        return n


def _box_coverage(
    cx: np.ndarray, cy: np.ndarray, w_px: float, h_px: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Exact area coverage of axis-aligned w x h rectangles centred at (cx, cy) (image px): unique
    pixels (ys, xs) and coverage (n,) (overlapping rectangles add, capped at 1 by the layer)."""
    cx, cy = np.asarray(cx, np.float64), np.asarray(cy, np.float64)
    if not len(cx):
        e = np.zeros(0, np.intp)
        return e, e, np.zeros(0, np.float32)

    def overlaps(c, size):
        lo, hi = c - size / 2, c + size / 2
        i = np.floor(lo).astype(np.intp)[:, None] + np.arange(math.ceil(size) + 1)
        return i, np.clip(np.minimum(i + 1, hi[:, None]) - np.maximum(i, lo[:, None]), 0, 1)

    ix, ox = overlaps(cx, w_px)
    iy, oy = overlaps(cy, h_px)
    cov = (oy[:, :, None] * ox[:, None, :]).reshape(-1)
    ys = np.broadcast_to(iy[:, :, None], (len(cx), iy.shape[1], ix.shape[1])).reshape(-1)
    xs = np.broadcast_to(ix[:, None, :], (len(cx), iy.shape[1], ix.shape[1])).reshape(-1)
    keep = cov > 0
    ys, xs, cov = ys[keep], xs[keep], cov[keep]
    y0, x0 = ys.min(), xs.min()
    bw = xs.max() - x0 + 1
    local = (ys - y0) * bw + (xs - x0)
    uniq, inv = np.unique(local, return_inverse=True)
    acc = np.bincount(inv, cov).astype(np.float32)
    return uniq // bw + y0, uniq % bw + x0, acc


def _free_rect(avoid: np.ndarray | None, x0: float, y0: float, x1: float, y1: float) -> bool:
    if avoid is None:
        return True
    h, w = avoid.shape
    a0, b0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    a1, b1 = min(w, math.ceil(x1)), min(h, math.ceil(y1))
    return a1 <= a0 or b1 <= b0 or not avoid[b0:b1, a0:a1].any()


def _free_points(avoid: np.ndarray | None, pts: np.ndarray) -> bool:
    if avoid is None or len(pts) == 0:
        return True
    h, w = avoid.shape
    xi = np.clip(pts[:, 0].astype(np.intp), 0, w - 1)
    yi = np.clip(pts[:, 1].astype(np.intp), 0, h - 1)
    return not avoid[yi, xi].any()


def _densify(pts: np.ndarray, step_px: float = 0.75, closed: bool = False) -> np.ndarray:
    """Resample a polyline so that consecutive points are at most `step_px` apart."""
    pts = np.asarray(pts, np.float64).reshape(-1, 2)
    if closed:
        pts = np.vstack([pts, pts[:1]])
    seg = np.diff(pts, axis=0)
    n = np.maximum(1, np.ceil(em.hypot(seg[:, 0], seg[:, 1]) / step_px).astype(int))
    idx = np.repeat(np.arange(len(seg)), n)
    starts = np.cumsum(n) - n
    t = (np.arange(idx.size) - starts[idx]) / n[idx]
    out = pts[idx] + seg[idx] * t[:, None]
    return np.vstack([out, pts[-1:]])


# --------------------------------------------------------------------------------------------------
# text


_TTF_FONTS = int(cv2.__version__.split(".")[0]) >= 5
"""OpenCV >= 5 renders the FONT_HERSHEY_* ids with a built-in sans TrueType face where `thickness`
selects the weight; older versions draw Hershey strokes whose width is `thickness`."""
_CAP_CACHE: dict[tuple[int, int], float] = {}
TEXT_FONTS = (cv2.FONT_HERSHEY_SIMPLEX, cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_PLAIN)


def _cap_height_at_scale1(font: int, thickness: int) -> float:
    """Measured height of 'H' in px at fontScale 1 (works for Hershey and TrueType rendering)."""
    key = (font, thickness)
    if key not in _CAP_CACHE:
        a = np.zeros((200, 200), np.uint8)
        cv2.putText(a, "H", (20, 150), font, 4.0, 255, thickness, cv2.LINE_8)
        ys = np.nonzero(a.any(axis=1))[0]
        _CAP_CACHE[key] = max(1.0, (ys.max() - ys.min() + 1) / 4.0) if len(ys) else 20.0
    return _CAP_CACHE[key]


def _font_args(font: int, cap_px: float, bold: bool) -> tuple[float, int]:
    """cv2 fontScale and thickness that draw capitals `cap_px` image px tall on an SS canvas."""
    if _TTF_FONTS:
        th = 2 if bold else 1
    else:
        th = max(1, round(cap_px * SS * (0.2 if bold else 0.13)))
    return cap_px * SS / _cap_height_at_scale1(font, th), th


def text_ink(text: str, font: int, cap_px: float, bold: bool) -> tuple[float, float, float, float]:
    """Exact ink box (left, top, right, bottom) in image px relative to the baseline origin."""
    fs, th = _font_args(font, cap_px, bold)
    (tw, tht), base = cv2.getTextSize(text, font, fs, th)
    pad = 2 * th + int(cap_px * SS)
    a = np.zeros((tht + base + 2 * pad, tw + 2 * pad), np.uint8)
    cv2.putText(a, text, (pad, pad + tht), font, fs, 255, th, cv2.LINE_8)
    ys = np.nonzero(a.any(axis=1))[0]
    xs = np.nonzero(a.any(axis=0))[0]
    if not len(ys):
        return 0.0, -cap_px, cap_px, 0.0
    # canvas pixel centre j sits at (j + 0.5) / SS image px from the canvas origin
    ox, oy = pad + 0.5, pad + tht + 0.5
    return ((xs[0] - ox) / SS, (ys[0] - oy) / SS, (xs[-1] + 1 - ox) / SS, (ys[-1] + 1 - oy) / SS)


@dataclass(frozen=True)
class TextLabel:
    """One line of burned-in text. (x, y) is the baseline origin in image px."""

    text: str
    x: float
    y: float
    cap_px: float
    bold: bool
    font: int
    colour: tuple[int, int, int]
    outline_px: float = 0.0  # dark outline around the glyphs (0: none)
    outline_colour: tuple[int, int, int] = (16, 16, 16)
    shadow_px: float = 0.0  # black drop shadow at (+d, +d) (0: none)


def _label_margin(label_outline: float, shadow: float) -> float:
    return label_outline + shadow + 1.0


def _label_box(text: str, font: int, cap_px: float, bold: bool, outline_px: float, shadow_px: float):
    """Ink box incl. outline and shadow relative to the baseline origin: (l, t, r, b) image px."""
    l, t, r, b = text_ink(text, font, cap_px, bold)
    m = outline_px + 0.5
    return l - m, t - m, r + m + shadow_px, b + m + shadow_px


def _place_label(label_kw: dict, x_ink: float, y_ink: float, box) -> dict:
    """Return kwargs with the baseline origin so that the box's top-left lands at (x_ink, y_ink)."""
    l, t, _, _ = box
    return dict(label_kw, x=x_ink - l, y=y_ink - t)


def draw_label(label: TextLabel, layer: Layer, class_id: int) -> None:
    """Rasterise a text label into `layer` as `class_id` (also synth.chrome's text, drawn into the scan)."""
    l, t, r, b = text_ink(label.text, label.font, label.cap_px, label.bold)
    m = _label_margin(label.outline_px, label.shadow_px) + 1
    ras = _Raster(
        max(0.0, label.x + l - m),
        max(0.0, label.y + t - m),
        min(float(layer.w), label.x + r + m),
        min(float(layer.h), label.y + b + m),
    )
    ras.text(label)
    if label.shadow_px > 0:
        layer.add(ras.x0, ras.y0, ras.shifted_alpha(label.shadow_px), (0, 0, 0), class_id)
    if label.outline_px > 0:
        layer.add(ras.x0, ras.y0, ras.dilated_alpha(label.outline_px), label.outline_colour, class_id)
    layer.add(ras.x0, ras.y0, ras.alpha(), label.colour, class_id)


# --------------------------------------------------------------------------------------------------
# shared sampling helpers


def _scale(rng: np.random.Generator, w: int, opts: RenderOptions) -> float:
    """Image px per screen px for one draw."""
    return max(MIN_SCALE, float(rng.uniform(*opts.scale_range)) * w / REF_WIDTH_PX)


def _jitter(rng: np.random.Generator, colour, amount: float = 0.05) -> tuple[int, int, int]:
    """Colour with each channel scaled by ~U(1 - amount, 1 + amount/2), luma-preserving-ish."""
    c = np.asarray(colour, np.float64) * (1 + rng.uniform(-amount, amount / 2, 3))
    return tuple(int(v) for v in np.clip(np.rint(c), 0, 255))


def _snap(v: float, s: float, size_screen: float) -> float:
    """Snap a centre to the screen pixel grid (pitch `s` image px) like the scanner's overlay: features
    an even number of screen px wide are centred on grid lines, odd ones on pixel centres."""
    if round(size_screen) % 2 == 0:
        return round(v / s) * s
    return (math.floor(v / s) + 0.5) * s


def _snap_pts(pts: np.ndarray, s: float, size_screen: float, dedupe: bool = True) -> np.ndarray:
    """`_snap` for an (N, k) array; consecutive duplicate rows are dropped unless `dedupe` is False."""
    if round(size_screen) % 2 == 0:
        q = np.rint(pts / s) * s
    else:
        q = (np.floor(pts / s) + 0.5) * s
    if not dedupe:
        return q
    keep = np.ones(len(q), bool)
    keep[1:] = np.any(q[1:] != q[:-1], axis=1)
    return q[keep]


def _pick(rng: np.random.Generator, options, p):
    """One of `options` with probabilities `p` (one uniform draw; faster than rng.choice(p=...))."""
    c = np.cumsum(p, dtype=np.float64)
    return options[min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), len(options) - 1)]


YELLOW = (255, 255, 0)
GE_NEAR_WHITE = (240, 245, 215)
CURSOR_GREEN = (110, 255, 90)
CURSOR_CYAN = (70, 225, 255)


def _yellow(rng) -> tuple[int, int, int]:
    return (255, int(rng.integers(246, 256)), int(rng.integers(0, 60)))


ANY_COLOURS = ("white", "grey", "yellow", "green", "cyan")
ANY_WEIGHTS = (0.3, 0.25, 0.25, 0.1, 0.1)
"""palette="any": overlay colours and their shares. White (245-255) and light grey (185-235) are what the
Philips and GE LOGIQ scans of the second development set draw (its README: 250-255 and 224-225); yellow,
green and cyan are the GE Voluson, cursor and Toshiba colours."""


def _any_colour(rng) -> tuple[int, int, int]:
    name = _pick(rng, ANY_COLOURS, ANY_WEIGHTS)
    if name == "white":
        v = int(rng.integers(245, 256))
        return (v, v, v)
    if name == "grey":
        v = int(rng.integers(185, 236))
        return (v, v, v)
    if name == "yellow":
        return _yellow(rng)
    return CURSOR_GREEN if name == "green" else CURSOR_CYAN


# --------------------------------------------------------------------------------------------------
# body_marker


@dataclass(frozen=True)
class BodyMarkerParams:
    """A body-marker pictogram from the icon set, recoloured, scaled and rotated about its centre."""

    icon: str
    cx: float  # centre of the placed icon, image px
    cy: float
    scale: float  # icon px -> image px
    angle_deg: float  # counter-clockwise
    colour: tuple[int, int, int]
    opacity: float


def _icon_by_name(icons: IconSet, kind: str, name: str) -> Icon:
    for ic in icons.icons(kind):
        if ic.name == name:
            return ic
    raise KeyError(f"icon {name!r} of kind {kind!r} is not in the icon set {icons.root}")


def _rotated_size(w: float, h: float, angle_deg: float) -> tuple[float, float]:
    c, s = abs(em.cos(math.radians(angle_deg))), abs(em.sin(math.radians(angle_deg)))
    return w * c + h * s, w * s + h * c


def _body_marker_icons(icons: IconSet | None) -> tuple[Icon, ...]:
    ics = icons.icons("body_marker") if icons is not None else ()
    if not ics:
        raise ValueError(
            "body_marker needs an icon set with body_marker icons (pass icons=load_icon_set(), "
            "e.g. the shipped assets/annotation_icons, or make one with `synth extract-icons`)."
        )
    return ics


def sample_body_marker(
    rng: np.random.Generator,
    h: int,
    w: int,
    icons: IconSet | None,
    opts: RenderOptions = RenderOptions(),
    avoid: np.ndarray | None = None,
) -> BodyMarkerParams:
    """Pick an icon, scale 0.6-1.4 of native (at REF_WIDTH_PX), rotation +-15 deg, white/grey/yellow,
    fully inside the image; placement "edges" keeps it within EDGE_BAND of a border."""
    ics = _body_marker_icons(icons)
    ic = ics[int(rng.integers(len(ics)))]
    ih, iw = ic.rgba.shape[:2]
    scale = float(rng.uniform(0.6, 1.4)) * w / REF_WIDTH_PX
    limit = (0.2 if opts.placement == "edges" else 0.3) * min(h, w)
    scale = min(scale, limit / max(ih, iw))
    scale = max(scale, min(8.0, limit) / max(ih, iw))
    angle = float(rng.uniform(-15, 15))
    u = rng.random()
    if opts.palette == "any":
        colour = _any_colour(rng)
    elif u < 0.55:
        v = int(rng.integers(225, 256))
        colour = (v, v, v)
    elif u < 0.85:
        v = int(rng.integers(170, 225))
        colour = (v, v, v)
    else:
        colour = (255, int(rng.integers(235, 256)), int(rng.integers(0, 110)))
    opacity = float(rng.uniform(0.85, 1.0))
    for attempt in range(80):
        s = scale * em.power(0.985, attempt)
        bw, bh = _rotated_size(iw * s, ih * s, angle)
        bw, bh = bw + 2, bh + 2  # linear-interpolation fringe
        if bw >= w - 2 or bh >= h - 2:
            continue
        if opts.placement == "edges":
            side = int(rng.integers(4))  # 0 left, 1 right, 2 top, 3 bottom
            along = h if side < 2 else w
            across = w if side < 2 else h
            size_along, size_across = (bh, bw) if side < 2 else (bw, bh)
            gap = float(rng.uniform(1, max(1.0, EDGE_BAND * across - size_across) + 1e-9))
            pos_along = float(rng.uniform(size_along / 2 + 1, along - size_along / 2 - 1))
            pos_across = gap + size_across / 2 if side in (0, 2) else across - gap - size_across / 2
            cx, cy = (pos_across, pos_along) if side < 2 else (pos_along, pos_across)
        else:
            cx = float(rng.uniform(bw / 2 + 1, w - bw / 2 - 1))
            cy = float(rng.uniform(bh / 2 + 1, h - bh / 2 - 1))
        if _free_rect(avoid, cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2):
            scale = s
            break
    else:
        bw, bh = _rotated_size(iw * scale, ih * scale, angle)
        cx = float(np.clip(cx, bw / 2 + 1, w - bw / 2 - 1))
        cy = float(np.clip(cy, bh / 2 + 1, h - bh / 2 - 1))
    return BodyMarkerParams(icon=ic.name, cx=cx, cy=cy, scale=scale, angle_deg=angle, colour=colour, opacity=opacity)


def _icon_piece(
    layer: Layer,
    icon: Icon,
    cx: float,
    cy: float,
    scale: float,
    angle_deg: float,
    colour,
    opacity: float,
    class_id: int,
    anchor=None,
) -> None:
    """Recolour an RGBA icon (luminance x colour), scale, rotate and place its anchor at (cx, cy).

    anchor: (x, y) in the icon's pixel-index coordinates (pixel i's centre is at i); default the centre."""
    rgba = icon.rgba.astype(np.float32) * np.float32(1 / 255)
    a = rgba[..., 3] * np.float32(opacity)
    lum = rgba[..., :3].max(axis=2)
    prem = np.dstack([lum * a * np.float32(c) for c in colour] + [a])  # premultiplied (h, w, 4)
    ih, iw = a.shape
    ax, ay = anchor if anchor is not None else ((iw - 1) / 2, (ih - 1) / 2)  # pixel-centre coordinates
    pre = 1.0
    if scale < 0.7:  # box-filter first so that thin strokes do not alias away
        nw, nh = max(1, round(iw * scale)), max(1, round(ih * scale))
        prem = cv2.resize(prem, (nw, nh), interpolation=cv2.INTER_AREA)
        pre_x, pre_y = nw / iw, nh / ih
        ax, ay = (ax + 0.5) * pre_x - 0.5, (ay + 0.5) * pre_y - 0.5
        pre = (pre_x + pre_y) / 2
    s = scale / pre
    ph, pw = prem.shape[:2]
    bw, bh = _rotated_size(pw * s, ph * s, angle_deg)
    x0, y0 = math.floor(cx - bw / 2 - 2), math.floor(cy - bh / 2 - 2)
    x1, y1 = math.ceil(cx + bw / 2 + 2), math.ceil(cy + bh / 2 + 2)
    # anchor (pixel-centre coords) -> (cx, cy) continuous -> output pixel-centre coords
    m = cv2.getRotationMatrix2D((float(ax), float(ay)), angle_deg, s)
    m[0, 2] += (cx - 0.5 - x0) - ax
    m[1, 2] += (cy - 0.5 - y0) - ay
    out = cv2.warpAffine(
        prem, m, (x1 - x0, y1 - y0), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=(0, 0, 0, 0)
    )
    alpha = np.clip(out[..., 3], 0, 1)
    alpha[alpha < 1e-4] = 0
    layer.add(x0, y0, alpha, None, class_id, premultiplied=out[..., :3])


def draw_body_marker(params: BodyMarkerParams, layer: Layer, icons: IconSet | None = None) -> None:
    """Pure: rasterise `params` into `layer` (class body_marker)."""
    _body_marker_icons(icons)
    icon = _icon_by_name(icons, "body_marker", params.icon)
    _icon_piece(
        layer,
        icon,
        params.cx,
        params.cy,
        params.scale,
        params.angle_deg,
        params.colour,
        params.opacity,
        CLASS_IDS["body_marker"],
    )


# --------------------------------------------------------------------------------------------------
# radial_line (calipers)


@dataclass(frozen=True)
class CaliperPair:
    """Two caliper crosses (centres in image px) joined by a dotted line."""

    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True)
class Readout:
    """The measurement readout panel in a corner: opaque box, rules/bars, text lines."""

    x0: float
    y0: float
    x1: float
    y1: float
    fill: tuple[int, int, int]
    bars: tuple[tuple[float, float, float, float, tuple[int, int, int]], ...]
    lines: tuple[TextLabel, ...]


@dataclass(frozen=True)
class RadialLineParams:
    """1-3 caliper pairs in one scanner style, optional numbers and readout (sizes in image px)."""

    scale: float  # image px per screen px
    style: str  # "ge" | "ge_large" | "mindray"
    glyph: str  # "+" | "x"
    pairs: tuple[CaliperPair, ...]
    colour: tuple[int, int, int]
    arm_r0_px: float  # arms run from r0 to r1 from the centre (r0 > 0: gap in the middle)
    arm_r1_px: float
    arm_width_px: float
    centre_dim: float  # darkening of the centre (Mindray), 0 = none
    shadow_px: float  # black drop shadow offset (0 = none)
    shadow_opacity: float
    dot_period_px: float
    dot_px: float  # dot size (GE: doubled along x on near-horizontal lines)
    dot_colour: tuple[int, int, int]
    icon: str | None  # a radial_line glyph icon drawn instead of the procedural cross
    labels: tuple[TextLabel, ...]
    readout: Readout | None


_CALIPER_STYLES = {
    # r0, r1, width (screen px), shadow, dot period, dot size, label cap, label offsets (screen px)
    "ge": {
        "r0": 2.0,
        "r1": 6.0,
        "width": 2.0,
        "shadow": 1.0,
        "period": 8.0,
        "dot": 1.0,
        "cap": 11.0,
        "offsets": ((8.0, -15.0), (8.0, 14.0)),
    },
    "ge_large": {
        "r0": 2.7,
        "r1": 8.3,
        "width": 3.0,
        "shadow": 1.0,
        "period": 8.0,
        "dot": 2.0,
        "cap": 13.0,
        "offsets": ((10.0, -18.0), (10.0, 17.0)),
    },
    "philips": {  # small '+'/'x' with a gap at the centre, a 1 px dark outline and no line between the points
        "r0": 1.5,
        "r1": 4.5,
        "width": 1.0,
        "shadow": 0.0,
        "period": 0.0,
        "dot": 1.0,
        "cap": 12.0,
        "offsets": ((8.0, -12.0), (8.0, 12.0)),
    },
    "mindray": {
        "r0": 0.0,
        "r1": 6.7,
        "width": 2.0,
        "shadow": 0.0,
        "period": 11.0,
        "dot": 2.0,
        "cap": 16.0,
        "offsets": ((-16.0, 8.0), (16.0, 8.0)),
    },
}
_ICON_STYLE = {"ge": "ge_standard", "ge_large": "ge_large", "mindray": "mindray"}


def _line_angle(rng: np.random.Generator) -> float:
    """Measured: 42 % within 15 deg of horizontal, 12 % within 15 deg of vertical, the rest oblique."""
    u = rng.random()
    if u < 0.42:
        return float(rng.uniform(-15, 15))
    if u < 0.54:
        return float(90 + rng.uniform(-15, 15))
    return float(rng.uniform(15, 75) + (90 if rng.random() < 0.5 else 0))


def _caliper_icon(rng, icons: IconSet | None, style: str, glyph: str) -> str | None:
    if icons is None:
        return None
    cands = [
        ic.name
        for ic in icons.icons("radial_line")
        if ic.meta.get("glyph") == glyph
        and ic.meta.get("style") == _ICON_STYLE[style]
        and ic.meta.get("number") is None
    ]
    if cands and rng.random() < 0.3:
        return cands[int(rng.integers(len(cands)))]
    return None


def _readout(rng, h: int, w: int, style: str, s: float, colour, n_lines: int, lengths_px, avoid) -> Readout | None:
    """Sample a readout panel flush with an image corner, or None when none fits."""
    if style == "mindray":
        cap, line_h, pad, font, bold = 14.0 * s, 26.0 * s, 8.0 * s, cv2.FONT_HERSHEY_SIMPLEX, False
        fill, text_col = (0, 0, 0), (250, 250, 250)
        corners = [(0, 1), (1, 1), (0, 0), (1, 0)]
        cp = [0.7, 0.1, 0.1, 0.1]
        fmt = "{k} D {v:.2f} cm"
        top_bar = 7.0 * s
    else:
        big = style == "ge_large"
        cap = (20.0 if big else (12.0 if n_lines >= 4 else 17.0)) * s * float(rng.uniform(0.93, 1.05))
        line_h, pad, font, bold = cap * 1.8, 6.0 * s, cv2.FONT_HERSHEY_SIMPLEX, big
        fill, text_col = (42, 42, 42), colour
        corners = [(1, 1), (0, 1), (1, 0), (0, 0)]
        cp = [0.7, 0.1, 0.1, 0.1]
        fmt = "{k} D {v:.2f}cm"
        top_bar = 0.0
    cm_per_px = float(rng.uniform(0.015, 0.05)) / max(s, 1e-6)
    texts = [fmt.format(k=k + 1, v=lengths_px[k % len(lengths_px)] * cm_per_px) for k in range(n_lines)]
    inks = [text_ink(t, font, cap, bold) for t in texts]
    text_w = max(r - l for l, _, r, _ in inks)
    pw = text_w + 2 * pad
    ph = top_bar + n_lines * line_h + pad * 0.5
    if pw > 0.6 * w or ph > 0.5 * h:
        return None
    order = list(rng.permutation(4)) if rng.random() < 0.3 else [int(rng.choice(4, p=cp))]
    for ci in order:
        cx, cy = corners[ci]
        x0 = w - pw if cx else 0.0
        y0 = h - ph if cy else 0.0
        if not _free_rect(avoid, x0, y0, x0 + pw, y0 + ph):
            continue
        bars = []
        lines = []
        if top_bar:
            bars.append((x0, y0, x0 + pw, y0 + top_bar, (57, 91, 132)))
        for k, (t, (l, top, r, b)) in enumerate(zip(texts, inks)):
            base_y = y0 + top_bar + k * line_h + pad * 0.5 + (line_h - cap) / 2 + cap
            lines.append(TextLabel(text=t, x=x0 + pad - l, y=base_y, cap_px=cap, bold=bold, font=font, colour=text_col))
            if style != "mindray":
                ry = y0 + (k + 1) * line_h - 2.0 * s
                bars.append((x0 + pad * 0.5, ry, x0 + pw - pad * 0.5, ry + 2.0 * s, colour))
        return Readout(x0=x0, y0=y0, x1=x0 + pw, y1=y0 + ph, fill=fill, bars=tuple(bars), lines=tuple(lines))
    return None


def sample_radial_line(
    rng: np.random.Generator,
    h: int,
    w: int,
    icons: IconSet | None = None,
    opts: RenderOptions = RenderOptions(),
    avoid: np.ndarray | None = None,
) -> RadialLineParams:
    """Caliper pairs as measured on GE Voluson / Mindray scans (ANNOTATION_STATS section 1)."""
    s = _scale(rng, w, opts)
    if opts.palette == "any":
        style = _pick(rng, ["ge", "ge_large", "mindray", "philips"], [0.3, 0.1, 0.2, 0.4])
    else:
        style = _pick(rng, ["ge", "ge_large", "mindray"], [0.62, 0.15, 0.23])
    st = _CALIPER_STYLES[style]
    if opts.palette == "any":
        colour = _any_colour(rng)
    elif style == "mindray":
        v = int(rng.integers(200, 236))
        colour = _pick(rng, [(v, v, v), CURSOR_GREEN, CURSOR_CYAN], [0.8, 0.1, 0.1])
    else:
        colour = _pick(
            rng,
            [_yellow(rng), GE_NEAR_WHITE, CURSOR_GREEN, CURSOR_CYAN],
            [0.8, 0.08, 0.06, 0.06] if style == "ge" else [0.9, 0.0, 0.05, 0.05],
        )
    colour = _jitter(rng, colour, 0.04)
    size = s if rng.random() < 0.6 else s * float(rng.uniform(0.85, 1.15))
    r0, r1, width = st["r0"] * size, st["r1"] * size, max(0.5, st["width"] * size)
    shadow = st["shadow"] * s
    glyph = "x" if rng.random() < (0.4 if style == "philips" else 0.15) else "+"
    if style == "mindray":
        v = int(rng.integers(155, 185))
        dot_colour = (v, v, v + 1)
    elif style == "ge_large":
        dot_colour = tuple(int(c * 0.72) for c in colour)
    else:
        dot_colour = colour
    period = st["period"] * s * float(rng.uniform(0.96, 1.04))
    if opts.palette == "any" and period > 0 and rng.random() < 0.2:
        period = st["dot"] * s  # dots one dot apart: a solid line
    icon = _caliper_icon(rng, icons, style, glyph) if style != "philips" else None
    n_pairs = int(_pick(rng, [1, 2, 3], [0.5, 0.42, 0.08]))
    margin = r1 + width + shadow + 2
    pairs: list[CaliperPair] = []
    for i in range(n_pairs):
        for attempt in range(60):
            shrink = em.power(0.97, attempt)
            if i == 1 and pairs and rng.random() < 0.6:  # two orthogonal diameters
                p = pairs[0]
                theta = math.degrees(em.atan2(p.y1 - p.y0, p.x1 - p.x0)) + 90 + float(rng.normal(0, 8))
                d = math.hypot(p.x1 - p.x0, p.y1 - p.y0) * float(rng.uniform(0.4, 1.1)) * shrink
                mx = (p.x0 + p.x1) / 2 + float(rng.normal(0, 0.08)) * d
                my = (p.y0 + p.y1) / 2 + float(rng.normal(0, 0.08)) * d
            else:
                theta = _line_angle(rng)
                d = w * (0.07 + 0.65 * float(rng.beta(2.0, 2.6))) * shrink
                mx = my = None
            d = max(d, 4 * r1 + 2)
            sn, c = em.sincos(math.radians(theta))
            fit = min((w - 2 * margin) / max(abs(c), 1e-6), (h - 2 * margin) / max(abs(sn), 1e-6))
            d = min(d, fit)
            if d < 3 * r1:
                continue
            dx, dy = d * c / 2, d * sn / 2
            lo_x, hi_x = margin + abs(dx), w - margin - abs(dx)
            lo_y, hi_y = margin + abs(dy), h - margin - abs(dy)
            if mx is None:
                mx, my = float(rng.uniform(lo_x, hi_x)), float(rng.uniform(lo_y, hi_y))
            mx, my = float(np.clip(mx, lo_x, hi_x)), float(np.clip(my, lo_y, hi_y))
            sw = st["width"]
            pair = CaliperPair(
                _snap(mx - dx, s, sw), _snap(my - dy, s, sw), _snap(mx + dx, s, sw), _snap(my + dy, s, sw)
            )
            if avoid is not None:
                pts = _densify([(pair.x0, pair.y0), (pair.x1, pair.y1)], 1.0)
                if not (
                    _free_points(avoid, pts)
                    and _free_rect(avoid, pair.x0 - margin, pair.y0 - margin, pair.x0 + margin, pair.y0 + margin)
                    and _free_rect(avoid, pair.x1 - margin, pair.y1 - margin, pair.x1 + margin, pair.y1 + margin)
                ):
                    continue
            pairs.append(pair)
            break
    if not pairs:  # cannot avoid: fall back to a short horizontal pair in the middle
        d = min(w, h) * 0.25
        pairs.append(CaliperPair(w / 2 - d / 2, h / 2, w / 2 + d / 2, h / 2))
    labels: list[TextLabel] = []
    if rng.random() < 0.55:
        cap = st["cap"] * s
        bold = style == "mindray"
        font = cv2.FONT_HERSHEY_SIMPLEX
        sh = shadow if style != "mindray" else 0.0
        both = rng.random() < 0.15
        end = rng.random() < 0.7
        below = rng.random() < 0.5
        for k, p in enumerate(pairs):
            text = str(k + 1)
            box = _label_box(text, font, cap, bold, 0.0, sh)
            bw, bh = box[2] - box[0], box[3] - box[1]
            ends = [(p.x0, p.y0), (p.x1, p.y1)] if both else [(p.x1, p.y1) if end else (p.x0, p.y0)]
            for ex, ey in ends:
                offs = list(st["offsets"]) if not below else list(st["offsets"])[::-1]
                offs += [(-ox, oy) for ox, oy in offs]
                for ox, oy in offs:
                    cx, cy = ex + ox * s, ey + oy * s
                    x0, y0 = cx - bw / 2, cy - bh / 2
                    if x0 < 1 or y0 < 1 or x0 + bw > w - 1 or y0 + bh > h - 1:
                        continue
                    if not _free_rect(avoid, x0, y0, x0 + bw, y0 + bh):
                        continue
                    kw = _place_label(
                        {"text": text, "cap_px": cap, "bold": bold, "font": font, "colour": colour, "shadow_px": sh},
                        x0,
                        y0,
                        box,
                    )
                    labels.append(TextLabel(**kw))
                    break
    readout = None
    if rng.random() < 0.3:
        n_lines = len(pairs) if rng.random() < 0.8 else int(rng.integers(1, 5))
        lengths = [math.hypot(p.x1 - p.x0, p.y1 - p.y0) for p in pairs]
        readout = _readout(rng, h, w, style, s, colour, n_lines, lengths, avoid)
    return RadialLineParams(
        scale=s,
        style=style,
        glyph=glyph,
        pairs=tuple(pairs),
        colour=colour,
        arm_r0_px=r0,
        arm_r1_px=r1,
        arm_width_px=width,
        centre_dim=0.3 if style == "mindray" else 0.0,
        shadow_px=shadow,
        shadow_opacity=float(rng.uniform(0.55, 0.85)) if shadow else 0.0,
        dot_period_px=period,
        dot_px=st["dot"] * s,
        dot_colour=dot_colour,
        icon=icon,
        labels=tuple(labels),
        readout=readout,
    )


def _draw_cross(p: RadialLineParams, layer: Layer, cx: float, cy: float, cid: int) -> None:
    r0, r1, hw = p.arm_r0_px, p.arm_r1_px, p.arm_width_px / 2
    m = r1 + hw + p.shadow_px + 2
    ras = _Raster(max(0.0, cx - m), max(0.0, cy - m), min(float(layer.w), cx + m), min(float(layer.h), cy + m))
    if p.glyph == "+":
        if r0 <= 0:
            ras.rect(cx - r1, cy - hw, cx + r1, cy + hw)
            ras.rect(cx - hw, cy - r1, cx + hw, cy + r1)
        else:
            ras.rect(cx + r0, cy - hw, cx + r1, cy + hw)
            ras.rect(cx - r1, cy - hw, cx - r0, cy + hw)
            ras.rect(cx - hw, cy + r0, cx + hw, cy + r1)
            ras.rect(cx - hw, cy - r1, cx + hw, cy - r0)
    else:
        d0, d1 = r0 / math.sqrt(2), (r1 - hw) / math.sqrt(2)
        for sx, sy in ((1, 1), (1, -1), (-1, 1), (-1, -1)):
            if r0 <= 0:
                ras.polyline([(cx - sx * d1, cy - sy * d1), (cx + sx * d1, cy + sy * d1)], False, 2 * hw)
            else:
                ras.polyline([(cx + sx * d0, cy + sy * d0), (cx + sx * d1, cy + sy * d1)], False, 2 * hw)
    if p.style == "philips":  # the 1 px dark outline that keeps a white cross readable on bright tissue
        layer.add(ras.x0, ras.y0, ras.dilated_alpha(max(1.0, p.scale)), (16, 16, 16), cid)
    layer.add_raster(ras, p.colour, cid, p.shadow_px, p.shadow_opacity)
    if p.centre_dim > 0:
        dim = _Raster(ras.x0, ras.y0, ras.x0 + ras.w, ras.y0 + ras.h)
        dim.rect(cx - hw, cy - hw, cx + hw, cy + hw)
        layer.add_raster(dim, tuple(c * (1 - p.centre_dim) for c in p.colour), cid)


def _dots_on_segment(x0, y0, x1, y1, period: float) -> np.ndarray:
    n = int(math.hypot(x1 - x0, y1 - y0) // period)
    t = np.arange(n + 1) * period / max(math.hypot(x1 - x0, y1 - y0), 1e-9)
    return np.stack([x0 + (x1 - x0) * t, y0 + (y1 - y0) * t], axis=1)


def _draw_readout(r: Readout, layer: Layer, cid: int) -> None:
    ras = _Raster(r.x0, r.y0, r.x1, r.y1)
    ras.rect(r.x0, r.y0, r.x1, r.y1)
    layer.add_raster(ras, r.fill, cid)
    for bx0, by0, bx1, by1, col in r.bars:
        b = _Raster(bx0, by0, bx1, by1)
        b.rect(bx0, by0, bx1, by1)
        layer.add_raster(b, col, cid)
    for t in r.lines:
        draw_label(t, layer, cid)


def draw_radial_line(params: RadialLineParams, layer: Layer, icons: IconSet | None = None) -> None:
    """Pure: dotted lines (centre to centre), then crosses on top, numbers, readout (class radial_line)."""
    p, cid = params, CLASS_IDS["radial_line"]
    for pair in p.pairs if p.dot_period_px > 0 else ():
        dots = _dots_on_segment(pair.x0, pair.y0, pair.x1, pair.y1, p.dot_period_px)
        angle = abs(math.degrees(em.atan2(pair.y1 - pair.y0, pair.x1 - pair.x0))) % 180
        near_h = angle < 30 or angle > 150
        dw = p.dot_px * (2 if (p.style == "ge" and near_h) else 1)
        dots = np.stack(
            [
                _snap_pts(dots[:, :1], p.scale, dw / p.scale, dedupe=False)[:, 0],
                _snap_pts(dots[:, 1:], p.scale, p.dot_px / p.scale, dedupe=False)[:, 0],
            ],
            axis=1,
        )
        if p.shadow_px > 0:
            ys, xs, a = _box_coverage(dots[:, 0] + p.shadow_px, dots[:, 1] + p.shadow_px, dw, p.dot_px)
            layer.add_sparse(ys, xs, a * np.float32(p.shadow_opacity), (0, 0, 0), cid)
        ys, xs, a = _box_coverage(dots[:, 0], dots[:, 1], dw, p.dot_px)
        layer.add_sparse(ys, xs, a, p.dot_colour, cid)
    icon = None
    if p.icon is not None and icons is not None:
        icon = _icon_by_name(icons, "radial_line", p.icon)
    for pair in p.pairs:
        for cx, cy in ((pair.x0, pair.y0), (pair.x1, pair.y1)):
            if icon is not None:
                anchor = icon.meta.get("anchor")  # [row, col] of the cross centre, pixel-centre indices
                _icon_piece(
                    layer,
                    icon,
                    cx,
                    cy,
                    p.scale,
                    0.0,
                    p.colour,
                    1.0,
                    cid,
                    anchor=(float(anchor[1]), float(anchor[0])) if anchor is not None else None,
                )
            else:
                _draw_cross(p, layer, cx, cy, cid)
    for t in p.labels:
        draw_label(t, layer, cid)
    if p.readout is not None:
        _draw_readout(p.readout, layer, cid)


# --------------------------------------------------------------------------------------------------
# vascular_flow (colour-Doppler sample box)


@dataclass(frozen=True)
class Vessel:
    """One blob of colour flow along a short curve. Consecutive vessels with equal width, family, peak
    and seed form a cluster drawn together; the texture comes from `seed` (so the draw is pure)."""

    points: tuple[tuple[float, float], ...]
    width_px: float
    family: str  # "red" (towards the probe) | "blue" (away)
    peak: float  # 0..1: brightest colour reached (orange/yellow or cyan cores)
    seed: int


@dataclass(frozen=True)
class ColourBar:
    """The Doppler colour bar (red/orange on top, blue/cyan below) at a side edge."""

    x0: float
    y0: float
    x1: float
    y1: float


@dataclass(frozen=True)
class VascularFlowParams:
    """Doppler box outline (annular sector, rectangle or parallelogram), flow inside, colour bar."""

    scale: float
    shape: str  # "sector" | "rectangle" | "parallelogram"
    apex_x: float  # sector: apex (probe's virtual centre), radii, angles
    apex_y: float
    r_in: float
    r_out: float
    theta0_deg: float  # image coordinates (y down): 90 = straight down
    theta1_deg: float
    aspect: float  # sector y stretch
    corners: tuple[tuple[float, float], ...]  # rectangle/parallelogram, clockwise from top-left
    line: str  # "solid" | "dotted" | "dashed"
    width_px: float
    period_px: float  # dotted/dashed pattern period along the outline
    on_px: float  # dot/dash length
    colour: tuple[int, int, int]
    vessels: tuple[Vessel, ...]
    colour_bar: ColourBar | None


def _box_outline(p: VascularFlowParams, step_px: float = 0.75) -> np.ndarray:
    """Closed outline polygon, densely sampled (N, 2) image px (last point = first point)."""
    if p.shape == "sector":

        def arc(r, a0, a1):
            n = max(2, int(abs(math.radians(a1 - a0)) * r / step_px) + 1)
            t = np.radians(np.linspace(a0, a1, n))
            sn, cs = em.sincos(t)
            return np.stack([p.apex_x + r * cs, p.apex_y + r * p.aspect * sn], axis=1)

        inner = arc(p.r_in, p.theta0_deg, p.theta1_deg)
        outer = arc(p.r_out, p.theta1_deg, p.theta0_deg)
        poly = np.vstack([inner, outer])
    else:
        poly = np.asarray(p.corners, np.float64)
    return _densify(poly, step_px, closed=True)


def _outline_probe(p: VascularFlowParams, step_px: float) -> np.ndarray:
    """Points along the outline about `step_px` apart (cheap; for avoidance tests only)."""
    if p.shape != "sector":
        return _densify(np.asarray(p.corners, np.float64), step_px, closed=True)
    t0, t1 = math.radians(p.theta0_deg), math.radians(p.theta1_deg)
    parts = []
    for r in (p.r_in, p.r_out):
        sn, cs = em.sincos(np.linspace(t0, t1, max(2, int(r * (t1 - t0) / step_px) + 1)))
        parts.append(np.stack([p.apex_x + r * cs, p.apex_y + r * p.aspect * sn], axis=1))
    for t in (t0, t1):
        r = np.linspace(p.r_in, p.r_out, max(2, int((p.r_out - p.r_in) / step_px) + 1))
        sn, cs = em.sincos(t)
        parts.append(np.stack([p.apex_x + r * cs, p.apex_y + r * p.aspect * sn], axis=1))
    return np.vstack(parts)


def _inside_box(p: VascularFlowParams, x: np.ndarray, y: np.ndarray, margin: float) -> np.ndarray:
    if p.shape == "sector":
        dx, dy = x - p.apex_x, (y - p.apex_y) / p.aspect
        r = em.hypot(dx, dy)
        t = np.degrees(em.atan2(dy, dx))
        dt = np.degrees(margin / np.maximum(r, 1.0))
        return (r > p.r_in + margin) & (r < p.r_out - margin) & (t > p.theta0_deg + dt) & (t < p.theta1_deg - dt)
    c = np.asarray(p.corners, np.float64)
    ok = np.ones(np.shape(x), bool)
    for i in range(4):  # clockwise convex polygon in y-down coordinates: interior is to the right
        ax, ay = c[i]
        bx, by = c[(i + 1) % 4]
        ex, ey = bx - ax, by - ay
        cross = (ex * (y - ay) - ey * (x - ax)) / max(math.hypot(ex, ey), 1e-9)
        ok &= cross > margin
    return ok


def _sample_box_geometry(rng, h: int, w: int, shrink: float) -> dict:
    shape = _pick(rng, ["sector", "rectangle", "parallelogram"], [0.7, 0.15, 0.15])
    g = {
        "shape": shape,
        "apex_x": 0.0,
        "apex_y": 0.0,
        "r_in": 0.0,
        "r_out": 0.0,
        "theta0_deg": 0.0,
        "theta1_deg": 0.0,
        "aspect": 1.0,
        "corners": (),
    }
    if shape == "sector":
        tv = rng.random() < 0.75
        span = float(np.clip(rng.normal(96, 25), 45, 145)) if tv else float(rng.uniform(30, 60))
        span *= math.sqrt(shrink)
        tc = 90 + float(rng.normal(0, 6))
        t0, t1 = max(5.0, tc - span / 2), min(175.0, tc + span / 2)
        aspect = float(rng.uniform(0.9, 1.1))
        min_sin = min(em.sin(math.radians(t0)), em.sin(math.radians(t1)))
        face = tv and rng.random() < 0.5
        if tv:
            r_in = float(rng.uniform(0.10, 0.16) if face else rng.uniform(0.16, 0.45)) * h
            apex_y = -float(rng.uniform(0.0, 0.12)) * h
        else:
            r_in = float(rng.uniform(0.3, 0.8)) * h
            apex_y = -float(rng.uniform(0.25, 0.6)) * h
        y_top = float(rng.uniform(0.005, 0.06)) * h
        if face:
            apex_y = y_top - r_in * aspect * min_sin
        else:
            r_in = max(r_in, (y_top - apex_y) / (aspect * min_sin))
        depth = float(rng.uniform(0.3, 0.75)) * h * shrink
        apex_x = w / 2 + float(rng.normal(0, 0.03)) * w
        for _ in range(40):  # shrink until the whole outline lies inside the image
            r_out = r_in + depth
            g.update(apex_x=apex_x, apex_y=apex_y, r_in=r_in, r_out=r_out, theta0_deg=t0, theta1_deg=t1, aspect=aspect)
            # extremes of an annular sector lie at its end angles or straight down (0 < t0 < t1 < 180)
            ts = np.radians([t0, t1, 90.0] if t0 < 90 < t1 else [t0, t1])
            sn, cs = em.sincos(ts)
            xs = apex_x + np.outer([r_in, r_out], cs)
            ys = apex_y + aspect * np.outer([r_in, r_out], sn)
            if xs.min() >= 2 and xs.max() <= w - 3 and ys.min() >= 2 and ys.max() <= h - 3:
                if depth >= 0.06 * h and span >= 15:
                    return g
                break
            if ys.max() > h - 3 or depth > 0.5 * h:
                depth *= 0.9
            if xs.min() < 2 or xs.max() > w - 3:
                t0, t1 = tc - (t1 - t0) * 0.45, tc + (t1 - t0) * 0.45
            if ys.min() < 2:
                r_in *= 1.05
        return {}
    bw = float(rng.uniform(0.25, 0.7)) * w * shrink
    bh = float(rng.uniform(0.25, 0.7)) * h * shrink
    sh = 0.0
    if shape == "parallelogram":
        sh = bh * em.tan(math.radians(float(rng.uniform(10, 25)))) * (1 if rng.random() < 0.5 else -1)
    span_x = bw + abs(sh)
    if span_x > w - 6 or bh > h - 6:
        return {}
    x_left = float(rng.uniform(3, w - 3 - span_x))
    y0 = float(rng.uniform(3, h - 3 - bh))
    xb = x_left + max(0.0, sh)  # bottom-left x; the top edge is shifted by -sh
    top_l = xb - sh
    g["corners"] = ((top_l, y0), (top_l + bw, y0), (xb + bw, y0 + bh), (xb, y0 + bh))
    return g


_RED_STOPS = (
    (0.0, (110, 0, 0)),
    (0.35, (190, 20, 10)),
    (0.65, (240, 90, 20)),
    (0.85, (255, 170, 40)),
    (1.0, (255, 235, 120)),
)
_BLUE_STOPS = (
    (0.0, (0, 10, 110)),
    (0.35, (10, 50, 200)),
    (0.65, (30, 120, 250)),
    (0.85, (60, 200, 255)),
    (1.0, (150, 250, 255)),
)


def _colour_map(stops, v: np.ndarray) -> np.ndarray:
    """Colour (..., 3) float32 for values v in [0, 1] from (position, rgb) stops (256-entry table)."""
    key = id(stops)
    lut = _LUTS.get(key)
    if lut is None:
        xs = [s for s, _ in stops]
        t = np.linspace(0, 1, 256)
        lut = _LUTS[key] = np.stack([np.interp(t, xs, [c[i] for _, c in stops]) for i in range(3)], axis=-1).astype(
            np.float32
        )
    return lut[np.rint(np.clip(v, 0, 1) * 255).astype(np.intp)]


_LUTS: dict[int, np.ndarray] = {}


def _sample_vessels(rng, p_geom: VascularFlowParams, w: int, avoid) -> tuple[Vessel, ...]:
    """Flow patches inside the box: 1-4 clusters of short blobby strokes covering ~0.3-12 % of the box
    (measured median 1.9 %); blue (away) slightly more often than red, one direction per cluster."""
    if rng.random() < 0.13:  # 6/48 measured boxes are empty
        return ()
    outline = _box_outline(p_geom, 4.0)
    area = float(cv2.contourArea(outline.astype(np.float32)))
    target_px = em.exp(float(rng.uniform(em.log(0.003), em.log(0.12)))) * area
    x_lo, y_lo = outline.min(axis=0)
    x_hi, y_hi = outline.max(axis=0)
    n_clusters = int(rng.integers(1, 5))
    out: list[Vessel] = []
    covered = 0.0
    for c in range(n_clusters):
        width = max(1.5, float(rng.uniform(3.0, 10.0)) * w / REF_WIDTH_PX)
        margin = width + p_geom.width_px + 2
        cand_x, cand_y = rng.uniform(x_lo, x_hi, 24), rng.uniform(y_lo, y_hi, 24)
        ok = np.flatnonzero(_inside_box(p_geom, cand_x, cand_y, margin))
        if not len(ok):
            continue
        cx, cy = cand_x[ok[0]], cand_y[ok[0]]
        family = "blue" if rng.random() < 0.55 else "red"
        peak = float(rng.uniform(0.45, 1.0))
        seed = int(rng.integers(2**31))
        heading0 = float(rng.uniform(0, 2 * math.pi))
        budget = (target_px - covered) / (n_clusters - c)
        for _ in range(12):  # blobs of this cluster until its share of the coverage is reached
            if budget <= 0:
                break
            length = width * float(rng.uniform(0.3, 3.0))
            n_steps = max(1, math.ceil(length / max(1.0, width / 2)))
            step = length / n_steps
            heading = heading0 + float(rng.normal(0, 0.6)) + np.cumsum(rng.normal(0, 0.4, n_steps))
            x0 = cx + float(rng.normal(0, 1.5 * width))
            y0 = cy + float(rng.normal(0, 1.5 * width))
            sn, cs = em.sincos(heading)
            xs = x0 + np.concatenate([[0.0], np.cumsum(step * cs)])
            ys = y0 + np.concatenate([[0.0], np.cumsum(step * sn)])
            if not _inside_box(p_geom, xs, ys, margin).all():
                continue
            arr = np.stack([xs, ys], axis=1)
            if avoid is not None and not _free_points(avoid, _densify(arr, 1.0)):
                continue
            out.append(
                Vessel(
                    points=tuple((float(a), float(b)) for a, b in arr),
                    width_px=width,
                    family=family,
                    peak=peak,
                    seed=seed,
                )
            )
            blob = 0.6 * width * (length + width)
            budget -= blob
            covered += blob
    return tuple(out)


def sample_vascular_flow(
    rng: np.random.Generator,
    h: int,
    w: int,
    icons: IconSet | None = None,
    opts: RenderOptions = RenderOptions(),
    avoid: np.ndarray | None = None,
) -> VascularFlowParams:
    """Doppler box as measured (ANNOTATION_STATS section 2), with wide variation."""
    s = _scale(rng, w, opts)
    u = rng.random()
    if u < 0.6:
        line, width_s, period_s, on_s = "solid", (1.0 if rng.random() < 0.85 else 2.0), 0.0, 0.0
    elif u < 0.9:
        line, width_s, period_s, on_s = "dotted", 1.0, 8.0, float(rng.choice([1.0, 2.0]))
    else:
        line, width_s, period_s, on_s = "dashed", 2.0, 8.0, 5.0
    if width_s < 2:
        colour = _pick(rng, [(130, 255, 70), (170, 190, 60), (235, 235, 235), (190, 190, 190)], [0.7, 0.1, 0.1, 0.1])
    else:
        colour = _pick(rng, [(130, 200, 100), (215, 215, 215), (170, 190, 60)], [0.6, 0.25, 0.15])
    colour = _jitter(rng, colour, 0.05)
    width = width_s * s
    geom: dict = {}
    for attempt in range(60):  # with `avoid`, later tries are smaller so that they fit beside/inside A
        geom = _sample_box_geometry(rng, h, w, em.power(0.95, attempt))
        if not geom:
            continue
        tmp = VascularFlowParams(
            scale=s,
            line=line,
            width_px=width,
            period_px=period_s * s,
            on_px=on_s * s,
            colour=colour,
            vessels=(),
            colour_bar=None,
            **geom,
        )
        if avoid is None or (
            _free_points(avoid, _outline_probe(tmp, 24.0)) and _free_points(avoid, _outline_probe(tmp, 4.0))
        ):
            break
    else:
        if not geom:  # tiny images: a small centred rectangle
            bw, bh = 0.4 * w, 0.4 * h
            geom = {
                "shape": "rectangle",
                "apex_x": 0.0,
                "apex_y": 0.0,
                "r_in": 0.0,
                "r_out": 0.0,
                "theta0_deg": 0.0,
                "theta1_deg": 0.0,
                "aspect": 1.0,
                "corners": (
                    (w / 2 - bw / 2, h / 2 - bh / 2),
                    (w / 2 + bw / 2, h / 2 - bh / 2),
                    (w / 2 + bw / 2, h / 2 + bh / 2),
                    (w / 2 - bw / 2, h / 2 + bh / 2),
                ),
            }
    params = VascularFlowParams(
        scale=s,
        line=line,
        width_px=width,
        period_px=period_s * s,
        on_px=on_s * s,
        colour=colour,
        vessels=(),
        colour_bar=None,
        **geom,
    )
    vessels = _sample_vessels(rng, params, w, avoid)
    bar = None
    if rng.random() < 0.35:
        bw = float(rng.uniform(6, 10)) * s
        x0 = float(rng.uniform(4, 20)) * s
        if rng.random() < 0.2:
            x0 = w - x0 - bw
        y0 = float(rng.uniform(0.01, 0.05)) * h
        y1 = y0 + float(rng.uniform(0.2, 0.33)) * h
        if 0 <= x0 and x0 + bw <= w and _free_rect(avoid, x0, y0, x0 + bw, y1):
            bar = ColourBar(x0, y0, x0 + bw, y1)
    return VascularFlowParams(
        scale=s,
        line=line,
        width_px=width,
        period_px=period_s * s,
        on_px=on_s * s,
        colour=colour,
        vessels=vessels,
        colour_bar=bar,
        **geom,
    )


def _draw_vessels(vs: list[Vessel], inside: np.ndarray, layer: Layer, cid: int) -> None:
    """One cluster of flow blobs; `inside` (h, w) uint8 is the box interior (flow never touches the
    outline)."""
    v = vs[0]
    pts_all = np.vstack([np.asarray(u.points, np.float64) for u in vs])
    m = v.width_px * 1.5 + 3
    x0, y0 = max(0, int(pts_all[:, 0].min() - m)), max(0, int(pts_all[:, 1].min() - m))
    x1 = min(layer.w, int(pts_all[:, 0].max() + m) + 1)
    y1 = min(layer.h, int(pts_all[:, 1].max() + m) + 1)
    bw, bh = x1 - x0, y1 - y0
    if bw <= 0 or bh <= 0:
        return
    cov = np.zeros((bh, bw), np.float32)
    cv2.polylines(
        cov,
        [np.rint((np.asarray(u.points) - (x0 + 0.5, y0 + 0.5)) * 4).astype(np.int32) for u in vs],
        False,
        1.0,
        max(1, round(v.width_px)),
        cv2.LINE_AA,
        2,
    )
    f = em.gaussian_blur(cov, max(0.6, v.width_px * 0.3))
    # break the strokes into blobs and speckles (colour flow is patchy): multiply by smooth noise whose
    # cells are ~half the stroke width
    tr = np.random.default_rng(v.seed)
    cell = max(1.5, v.width_px / 2)
    tex = tr.random((int(bh / cell) + 2, int(bw / cell) + 2)).astype(np.float32)
    tex = cv2.resize(tex, (bw, bh), interpolation=cv2.INTER_CUBIC)
    g = f * (0.3 + 0.7 * tex) - 0.25
    alpha = np.clip(g * 8, 0, 1) * inside[y0:y1, x0:x1]
    if not alpha.any():
        return
    rgb = _colour_map(_RED_STOPS if v.family == "red" else _BLUE_STOPS, g * (v.peak / 0.6))
    layer.add(x0, y0, alpha, None, cid, premultiplied=rgb * alpha[..., None])


def _draw_colour_bar(b: ColourBar, layer: Layer, cid: int) -> None:
    ras = _Raster(b.x0, b.y0, b.x1, b.y1)
    ras.rect(b.x0, b.y0, b.x1, b.y1)
    a = ras.alpha()
    ys = ras.y0 + np.arange(ras.h) + 0.5
    t = np.clip((ys - b.y0) / max(b.y1 - b.y0, 1e-6), 0, 1)
    top = _colour_map(_RED_STOPS, np.clip(1 - 2 * t, 0, 1))
    bottom = _colour_map(_BLUE_STOPS, np.clip(2 * t - 1, 0, 1))
    rows = np.where((t < 0.5)[:, None], top, bottom) * (np.abs(t - 0.5) > 0.015)[:, None]
    rgb = np.broadcast_to(rows[:, None, :], (ras.h, ras.w, 3))
    layer.add(ras.x0, ras.y0, a, None, cid, premultiplied=rgb * a[..., None])


def draw_vascular_flow(params: VascularFlowParams, layer: Layer, icons: IconSet | None = None) -> None:
    """Pure: colour bar, flow patches, then the box outline on top (class vascular_flow)."""
    p, cid = params, CLASS_IDS["vascular_flow"]
    if p.colour_bar is not None:
        _draw_colour_bar(p.colour_bar, layer, cid)
    outline = _box_outline(p)
    if p.vessels:
        inside = np.zeros((layer.h, layer.w), np.uint8)
        cv2.fillPoly(inside, [np.rint((outline - 0.5) * 4).astype(np.int32)], 1, cv2.LINE_8, 2)
        k = max(1, math.ceil(p.width_px + 1))
        inside = cv2.erode(inside, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
        groups: list[list[Vessel]] = []
        for v in p.vessels:
            key = (v.width_px, v.family, v.peak, v.seed)
            if groups and (groups[-1][0].width_px, groups[-1][0].family, groups[-1][0].peak, groups[-1][0].seed) == key:
                groups[-1].append(v)
            else:
                groups.append([v])
        for g in groups:
            _draw_vessels(g, inside, layer, cid)
    width_screen = p.width_px / p.scale
    if p.line == "dotted":  # exact-coverage dots, no raster over the whole box
        seg = np.diff(outline, axis=0)
        arclen = np.concatenate([[0.0], np.cumsum(em.hypot(seg[:, 0], seg[:, 1]))])
        t = np.arange(0.0, arclen[-1] - p.period_px / 2, p.period_px)
        dots = np.stack([np.interp(t, arclen, outline[:, 0]), np.interp(t, arclen, outline[:, 1])], axis=1)
        dots = _snap_pts(dots, p.scale, p.on_px / p.scale)
        layer.add_sparse(*_box_coverage(dots[:, 0], dots[:, 1], p.on_px, p.on_px), p.colour, cid)
        return
    ras = _Raster.around(outline[:, 0], outline[:, 1], p.width_px + 2, layer.h, layer.w)
    if p.line == "solid":  # a staircase on the screen pixel grid, like the scanner's line drawing
        ras.polyline(_snap_pts(outline, p.scale, width_screen), True, p.width_px)
    else:  # dashed
        seg = np.diff(outline, axis=0)
        arclen = np.concatenate([[0.0], np.cumsum(em.hypot(seg[:, 0], seg[:, 1]))])
        on = (arclen % p.period_px) < p.on_px
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
        ras.polylines(
            [_snap_pts(outline[a:b], p.scale, width_screen) for a, b in zip(edges[::2], edges[1::2]) if b - a >= 2],
            p.width_px,
        )
    layer.add_raster(ras, p.colour, cid)


# --------------------------------------------------------------------------------------------------
# text


@dataclass(frozen=True)
class TextParams:
    """1-3 burned-in labels in one style."""

    scale: float
    style: str
    labels: tuple[TextLabel, ...]


TEXT_STRINGS = (
    "RT THYROID",
    "LT THYROID",
    "ISTHMUS",
    "RT KIDNEY",
    "LT KIDNEY",
    "LIVER",
    "GB",
    "CBD",
    "PANCREAS",
    "SPLEEN",
    "AORTA",
    "IVC",
    "BLADDER",
    "PROSTATE",
    "RT TESTIS",
    "LT TESTIS",
    "RT BREAST",
    "LT BREAST",
    "RT BREAST 10:00",
    "LT BREAST 2:00 3CM FN",
    "AXILLA",
    "CY",
    "ROV",
    "LOV",
    "UT",
    "M1",
    "M2",
    "R",
    "L",
    "R-CY",
    "L-CY",
    "Left Ovary",
    "Right Ovary",
    "Rt Ovary",
    "Lt Ovary",
    "ENDO",
    "CX",
    "FF",
    "POD",
    "SAG",
    "TRANS",
    "LONG",
    "TRV",
    "MID",
    "UPPER POLE",
    "LOWER POLE",
    "ADNEXA RT",
    "ADNEXA LT",
    "CUL-DE-SAC",
    "FIBROID",
    "NODULE 1",
    "LN",
    "CCA",
    "ICA",
    "ECA",
    "JV",
    "RT",
    "LT",
    "Uterus",
    "Cyst",
    "TV",
    "TA",
)


def _random_token(rng) -> str:
    letters = "ABCDEFGHIKLMNOPRSTUVY"
    n = int(rng.integers(1, 5))
    tok = "".join(letters[int(i)] for i in rng.integers(0, len(letters), n))
    if rng.random() < 0.4:
        tok += str(int(rng.integers(1, 10)))
    return tok


def sample_text(
    rng: np.random.Generator,
    h: int,
    w: int,
    icons: IconSet | None = None,
    opts: RenderOptions = RenderOptions(),
    avoid: np.ndarray | None = None,
) -> TextParams:
    """Burned-in labels as measured (ANNOTATION_STATS section 3): GE yellow with a thin dark outline,
    GE large, Mindray white bold, or generic white/grey."""
    s = _scale(rng, w, opts)
    style = _pick(rng, ["ge", "ge_large", "mindray", "generic"], [0.5, 0.15, 0.2, 0.15])
    font = cv2.FONT_HERSHEY_SIMPLEX
    if style == "ge":
        cap, bold, colour = 15.0 * s * float(rng.uniform(0.93, 1.07)), False, (255, 255, int(rng.integers(20, 90)))
        outline = (1.0 * s) if rng.random() < 0.8 else 0.0
    elif style == "ge_large":
        cap, bold, colour = float(rng.uniform(18, 22)) * s, True, (255, 255, int(rng.integers(0, 60)))
        outline = (1.0 * s) if rng.random() < 0.6 else 0.0
    elif style == "mindray":
        cap, bold, colour, outline = float(rng.uniform(18, 21)) * s, True, (252, 252, 252), 0.0
    else:
        v = int(rng.integers(190, 256))
        cap, bold, colour = float(rng.uniform(12, 24)) * s, bool(rng.random() < 0.5), (v, v, v)
        outline = (1.0 * s) if rng.random() < 0.3 else 0.0
        font = _pick(rng, list(TEXT_FONTS), [0.6, 0.3, 0.1])
    if opts.palette == "any":
        colour = _any_colour(rng)
    colour = _jitter(rng, colour, 0.03)
    cap = float(np.clip(cap, 6.0, 0.12 * h))
    n = int(_pick(rng, [1, 2, 3], [0.7, 0.25, 0.05]))
    labels: list[TextLabel] = []
    for _ in range(n):
        text = TEXT_STRINGS[int(rng.integers(len(TEXT_STRINGS)))] if rng.random() < 0.85 else _random_token(rng)
        c = cap
        for attempt in range(40):
            box = _label_box(text, font, c, bold, outline, 0.0)
            bw, bh = box[2] - box[0], box[3] - box[1]
            if bw > w - 4 or bh > h - 4:
                c *= 0.85
                continue
            if rng.random() < 0.4:  # along an edge, like the GE/Mindray label positions
                x0 = float(rng.uniform(2, w - 2 - bw))
                y0 = (
                    float(rng.uniform(2, max(2.0, 0.12 * h)))
                    if rng.random() < 0.5
                    else float(rng.uniform(min(h - 2 - bh, 0.85 * h), h - 2 - bh))
                )
            else:
                x0, y0 = float(rng.uniform(2, w - 2 - bw)), float(rng.uniform(2, h - 2 - bh))
            if _free_rect(avoid, x0, y0, x0 + bw, y0 + bh) and all(
                not _boxes_touch((x0, y0, x0 + bw, y0 + bh), lb) for lb in _label_rects(labels)
            ):
                kw = _place_label(
                    {"text": text, "cap_px": c, "bold": bold, "font": font, "colour": colour, "outline_px": outline},
                    x0,
                    y0,
                    box,
                )
                labels.append(TextLabel(**kw))
                break
            c *= 0.98
    if not labels:  # could not avoid: a small label where it fits
        text = "CY"
        box = _label_box(text, font, cap, bold, outline, 0.0)
        kw = _place_label(
            {"text": text, "cap_px": cap, "bold": bold, "font": font, "colour": colour, "outline_px": outline},
            2.0,
            2.0,
            box,
        )
        labels.append(TextLabel(**kw))
    return TextParams(scale=s, style=style, labels=tuple(labels))


def _label_rects(labels) -> list[tuple[float, float, float, float]]:
    out = []
    for t in labels:
        l, tp, r, b = _label_box(t.text, t.font, t.cap_px, t.bold, t.outline_px, t.shadow_px)
        out.append((t.x + l, t.y + tp, t.x + r, t.y + b))
    return out


def _boxes_touch(a, b, gap: float = 2.0) -> bool:
    return not (a[2] + gap < b[0] or b[2] + gap < a[0] or a[3] + gap < b[1] or b[3] + gap < a[1])


def draw_text(params: TextParams, layer: Layer, icons: IconSet | None = None) -> None:
    """Pure: rasterise the labels (class text)."""
    for t in params.labels:
        draw_label(t, layer, CLASS_IDS["text"])


# --------------------------------------------------------------------------------------------------
# mixed


@dataclass(frozen=True)
class MixedParams:
    """Several kinds in one draw, in drawing order (the last one is on top)."""

    parts: tuple[tuple[str, Any], ...]


def _available_kinds(icons: IconSet | None) -> list[str]:
    kinds = ["radial_line", "vascular_flow", "text"]
    if icons is not None and icons.icons("body_marker"):
        kinds.insert(0, "body_marker")
    return kinds


def sample_mixed(
    rng: np.random.Generator,
    h: int,
    w: int,
    icons: IconSet | None = None,
    opts: RenderOptions = RenderOptions(),
    avoid: np.ndarray | None = None,
) -> MixedParams:
    """2-3 different kinds (body_marker only when the icon set has body markers), random order."""
    kinds = _available_kinds(icons)
    n = min(len(kinds), 2 if rng.random() < 0.6 else 3)
    chosen = [kinds[int(i)] for i in rng.choice(len(kinds), n, replace=False)]
    return MixedParams(parts=tuple((k, SAMPLERS[k](rng, h, w, icons, opts, avoid)) for k in chosen))


def draw_mixed(params: MixedParams, layer: Layer, icons: IconSet | None = None) -> None:
    """Pure: draw each part in order."""
    for kind, p in params.parts:
        DRAWERS[kind](p, layer, icons)


SAMPLERS = {
    "body_marker": sample_body_marker,
    "radial_line": sample_radial_line,
    "vascular_flow": sample_vascular_flow,
    "text": sample_text,
    "mixed": sample_mixed,
}
DRAWERS = {
    "body_marker": draw_body_marker,
    "radial_line": draw_radial_line,
    "vascular_flow": draw_vascular_flow,
    "text": draw_text,
    "mixed": draw_mixed,
}
assert set(SAMPLERS) == set(KINDS) == set(DRAWERS)


def sample_params(
    kind: str,
    rng: np.random.Generator,
    h: int,
    w: int,
    icons: IconSet | None = None,
    opts: RenderOptions = RenderOptions(),
    avoid: np.ndarray | None = None,
):
    """Dispatch to `sample_<kind>`; `avoid` (bool (h, w)) marks pixels the draw should stay clear of."""
    if kind not in SAMPLERS:
        raise ValueError(f"unknown annotation kind {kind!r}; use one of {', '.join(KINDS)}")
    return SAMPLERS[kind](rng, h, w, icons, opts, avoid)


def draw_params(kind: str, params, h: int, w: int, icons: IconSet | None = None) -> Layer:
    """Dispatch to `draw_<kind>` on a new (h, w) layer."""
    layer = Layer(h, w)
    DRAWERS[kind](params, layer, icons)
    return layer


# --------------------------------------------------------------------------------------------------
# compositing, softening, mask


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """(h, w, 3) uint8 RGB through a baseline JPEG at `quality`, 4:2:0 (libjpeg via cv2), back to RGB."""
    ok, buf = cv2.imencode(
        ".jpg",
        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
        [
            cv2.IMWRITE_JPEG_QUALITY,
            int(quality),
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        ],
    )
    if not ok:
        raise RuntimeError("cv2.imencode failed to write a JPEG")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def mask_rule(noisy: np.ndarray, clean: np.ndarray, footprint: np.ndarray, min_diff: int) -> np.ndarray:
    """THE MASK RULE: `footprint` class id where max_c |noisy - clean| >= min_diff, else 0.

    noisy, clean: (h, w, 3) uint8; footprint: (h, w) uint8 class ids of the drawn alpha > 0 region
    dilated by FOOTPRINT_DILATE_PX. Returns (h, w) uint8."""
    diff = cv2.absdiff(noisy, clean).max(axis=2)
    return np.where(diff >= min_diff, footprint, 0).astype(np.uint8)


_DILATE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * FOOTPRINT_DILATE_PX + 1,) * 2)


def _footprint(core: np.ndarray, order: list[int]) -> np.ndarray:
    """Dilate class-id map `core` by FOOTPRINT_DILATE_PX. A ring pixel takes the id of the last kind in
    drawing `order` whose dilation reaches it; drawn pixels keep their (topmost) id."""
    if len(order) == 1:
        return (cv2.dilate((core > 0).view(np.uint8), _DILATE_KERNEL) * np.uint8(order[0])).astype(np.uint8)
    out = np.zeros_like(core)
    for cid in order:
        out[cv2.dilate((core == cid).view(np.uint8), _DILATE_KERNEL) > 0] = cid
    drawn = core > 0
    out[drawn] = core[drawn]
    return out


@dataclass
class _Drawn:
    noisy: np.ndarray
    mask: np.ndarray
    core: np.ndarray
    footprint: np.ndarray
    # jpeg_scope="blocks": (paste rect, noisy patch, clean patch) to assemble the final images from
    patches: list = field(default_factory=list)


_SPILL_EPS = 1e-3
"""Blurred-alpha level below which the chroma spill of a smeared piece is dropped (< 0.3 grey levels)."""


def _nonzero(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) of the nonzero pixels of a 2-D bool/uint8 array (cv2.findNonZero is ~3x np.nonzero)."""
    pts = cv2.findNonZero(m.view(np.uint8) if m.dtype == bool else m)
    if pts is None:
        e = np.zeros(0, np.intp)
        return e, e
    pts = pts.reshape(-1, 2)
    return pts[:, 1].astype(np.intp), pts[:, 0].astype(np.intp)


def _sparse_sparse(p: _Piece, sigma: float | None, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_sparse_piece` for a sparse constant-colour piece; the chroma blur is a scatter of the
    (separable, cv2-equal) Gaussian kernel around each covered pixel."""
    y = float(_luma(p.colour))
    chroma = p.colour - np.float32(y)
    if sigma is None or sigma <= 0 or np.abs(chroma).max() < 0.5:
        return p.ys * w + p.xs, p.alpha, p.alpha[:, None] * p.colour
    m = math.ceil(3 * sigma)
    g1 = em.gaussian_kernel(2 * m + 1, sigma)
    g2 = np.outer(g1, g1).reshape(-1)
    d = np.arange(-m, m + 1)
    dy, dx = np.repeat(d, len(d)), np.tile(d, len(d))
    ty = (p.ys[:, None] + dy).reshape(-1)
    tx = (p.xs[:, None] + dx).reshape(-1)
    wts = (p.alpha[:, None] * g2).reshape(-1)
    ok = (ty >= 0) & (tx >= 0) & (ty < h) & (tx < w)
    ty, tx, wts = ty[ok], tx[ok], wts[ok]
    x0, y0 = int(tx.min()), int(ty.min())
    bw = int(tx.max()) - x0 + 1
    n = (int(ty.max()) - y0 + 1) * bw
    blurred = np.bincount((ty - y0) * bw + (tx - x0), wts, minlength=n)
    a_loc = np.zeros(n, np.float64)
    a_loc[(p.ys - y0) * bw + (p.xs - x0)] = p.alpha
    sel = np.flatnonzero((blurred > _SPILL_EPS) | (a_loc > 0))
    a = a_loc[sel].astype(np.float32)
    prem = a[:, None] * np.float32(y) + blurred[sel].astype(np.float32)[:, None] * chroma
    return (sel // bw + y0) * w + (sel % bw + x0), a, prem.astype(np.float32)


def _sparse_piece(p: _Piece, sigma: float | None, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A piece as (flat pixel indices, alpha (n,), premultiplied colour (n, 3)) over the pixels it changes.

    With `sigma` (capture softening) the piece's luma stays sharp and its chroma (colour minus luma) is
    blurred with `sigma`, spilling a little beyond alpha > 0 (the colour fringe of JPEG captures)."""
    if p.ys is not None:
        return _sparse_sparse(p, sigma, h, w)
    const = p.colour.ndim == 1
    if const:
        y = float(_luma(p.colour))
        chroma = p.colour - np.float32(y)
        grey = np.abs(chroma).max() < 0.5
    else:  # e.g. a white icon tinted grey has no chroma to smear
        c = p.colour
        grey = (np.abs(c[..., 0] - c[..., 1]).max() < 0.5) and (np.abs(c[..., 1] - c[..., 2]).max() < 0.5)
    if sigma is None or sigma <= 0 or grey:
        ys, xs = _nonzero(p.alpha > 0)
        a = p.alpha[ys, xs]
        prem = a[:, None] * p.colour if const else p.colour[ys, xs]
        return (ys + p.y0) * w + (xs + p.x0), a, prem.astype(np.float32)
    m = math.ceil(3 * sigma)
    k = 2 * m + 1
    x0, y0 = max(0, p.x0 - m), max(0, p.y0 - m)
    x1, y1 = min(w, p.x1 + m), min(h, p.y1 + m)
    ox, oy = p.x0 - x0, p.y0 - y0
    ph, pw = p.alpha.shape
    alpha = np.zeros((y1 - y0, x1 - x0), np.float32)
    alpha[oy : oy + ph, ox : ox + pw] = p.alpha
    blurred = em.gaussian_blur(alpha, sigma, ksize=k, border=cv2.BORDER_CONSTANT)
    ys, xs = _nonzero((blurred > _SPILL_EPS) | (alpha > 0))
    a = alpha[ys, xs]
    if const:
        prem = a[:, None] * np.float32(y) + blurred[ys, xs][:, None] * chroma
    else:
        col = np.zeros(alpha.shape + (3,), np.float32)
        col[oy : oy + ph, ox : ox + pw] = p.colour
        lum = _luma(col)
        chr_ = em.gaussian_blur(col - lum[..., None], sigma, ksize=k, border=cv2.BORDER_CONSTANT)
        prem = lum[ys, xs][:, None] + chr_[ys, xs]
    return (ys + y0) * w + (xs + x0), a, prem.astype(np.float32)


_SCRATCH: dict[tuple[int, int], np.ndarray] = {}
_RGB_OFFSETS = np.arange(3, dtype=np.intp)


def _scratch(h: int, w: int) -> np.ndarray:
    """A per-process (h * w, 3) float32 work buffer; only the entries a call initialises are read."""
    buf = _SCRATCH.get((h, w))
    if buf is None:
        _SCRATCH.clear()
        buf = _SCRATCH[(h, w)] = np.empty((h * w, 3), np.float32)
    return buf


def _jpeg_rects(idx: np.ndarray, h: int, w: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """(crop, paste) rectangles (x0, y0, x1, y1) for re-encoding only the JPEG blocks a draw changes.

    `idx`: flat indices of the changed pixels. Their blocks, grown by one block (the decoder's chroma
    upsampling reads one neighbour sample), must be pasted; each pasted rectangle is re-encoded inside a
    crop one block larger (clipped at the image border), so it decodes to the same bytes as a round trip
    of the whole image. Crops are cut from the full composited image, so overlapping crops are harmless."""
    B = JPEG_BLOCK_PX
    nby, nbx = -(-h // B), -(-w // B)
    touched = np.zeros((nby, nbx), np.uint8)
    touched.reshape(-1)[(idx // (w * B)) * nbx + (idx % w) // B] = 1
    paste = cv2.dilate(touched, np.ones((3, 3), np.uint8)) > 0
    band = 4
    out = []
    for by0 in range(0, nby, band):
        by1 = min(nby, by0 + band)
        rows = paste[by0:by1]
        cols = np.flatnonzero(rows.any(axis=0))
        if not len(cols):
            continue
        rr = np.flatnonzero(rows.any(axis=1))
        ry0, ry1 = by0 + rr[0], by0 + rr[-1] + 1
        breaks = np.flatnonzero(np.diff(cols) > 4)
        starts = np.concatenate([[cols[0]], cols[breaks + 1]])
        ends = np.concatenate([cols[breaks], [cols[-1]]]) + 1
        for c0, c1 in zip(starts, ends):
            pr = (int(c0) * B, int(ry0) * B, min(w, int(c1) * B), min(h, int(ry1) * B))
            cr = (max(0, pr[0] - B), max(0, pr[1] - B), min(w, pr[2] + B), min(h, pr[3] + B))
            out.append((cr, pr))
    return out


def _composite(
    layer: Layer, clean: np.ndarray, clean_out: np.ndarray | None, soft: SoftenParams | None, min_diff: int
) -> _Drawn:
    """Composite the layer over `clean` in float (premultiplied "over" in drawing order, rounded once),
    soften, and apply the mask rule against `clean_out` (the clean image after the same softening).
    clean_out=None (jpeg_scope="blocks"): only the blocks near the draw are JPEG'd, in the noisy and in
    the clean image alike; the patches are returned for `render_pair_detailed` to assemble.

    Works on the changed pixels only (sparse), so thin outlines with large bounding boxes stay cheap."""
    h, w = layer.h, layer.w
    blocks = clean_out is None
    if blocks:
        clean_out = clean.copy()
    noisy = clean_out.copy()
    patches = []
    mask = np.zeros((h, w), np.uint8)
    footprint = np.zeros((h, w), np.uint8)
    core = layer.core()
    if not layer.pieces:
        return _Drawn(noisy=noisy, mask=mask, core=core, footprint=footprint)
    order: list[int] = []
    for p in layer.pieces:  # class ids by their last (topmost) appearance
        if p.class_id in order:
            order.remove(p.class_id)
        order.append(p.class_id)
    sigma = soft.chroma_sigma_px if soft is not None else None
    sparse = [_sparse_piece(p, sigma, h, w) for p in layer.pieces]
    # 1-D element indices (pixel * 3 + channel): numpy's fast path for fancy indexing
    sparse = [((idx[:, None] * 3 + _RGB_OFFSETS).ravel(), a, prem) for idx, a, prem in sparse]
    union = np.concatenate([sp[0] for sp in sparse])  # may repeat; repeated entries get equal values
    flat_clean = clean.reshape(-1)
    buf = _scratch(h, w).reshape(-1)
    buf[union] = flat_clean[union]
    for idx3, a, prem in sparse:
        v = buf[idx3].reshape(-1, 3)
        v *= (1 - a)[:, None]
        v += prem
        buf[idx3] = v.reshape(-1)
    raw_vals = np.rint(np.clip(buf[union], 0, 255)).astype(np.uint8)
    if soft is None:
        noisy.reshape(-1)[union] = raw_vals
    else:
        raw = clean.copy()
        raw.reshape(-1)[union] = raw_vals
        union = union[::3] // 3  # pixel indices for the block bookkeeping
        for (cx0, cy0, cx1, cy1), (px0, py0, px1, py1) in _jpeg_rects(union, h, w):
            dec = jpeg_roundtrip(raw[cy0:cy1, cx0:cx1], soft.quality)
            noisy[py0:py1, px0:px1] = dec[py0 - cy0 : py1 - cy0, px0 - cx0 : px1 - cx0]
            if blocks:
                dec_c = jpeg_roundtrip(clean[cy0:cy1, cx0:cx1], soft.quality)
                clean_out[py0:py1, px0:px1] = dec_c[py0 - cy0 : py1 - cy0, px0 - cx0 : px1 - cx0]
                patches.append(
                    ((px0, py0, px1, py1), noisy[py0:py1, px0:px1].copy(), clean_out[py0:py1, px0:px1].copy())
                )
    d = FOOTPRINT_DILATE_PX + 1
    fx0 = max(0, min(p.x0 for p in layer.pieces) - d)
    fy0 = max(0, min(p.y0 for p in layer.pieces) - d)
    fx1 = min(w, max(p.x1 for p in layer.pieces) + d)
    fy1 = min(h, max(p.y1 for p in layer.pieces) + d)
    fp = _footprint(core[fy0:fy1, fx0:fx1], order)
    footprint[fy0:fy1, fx0:fx1] = fp
    ys, xs = _nonzero(fp)  # the mask rule, evaluated where it can be nonzero
    ys += fy0
    xs += fx0
    diff = np.abs(noisy[ys, xs].astype(np.int16) - clean_out[ys, xs]).max(axis=1)
    mask[ys, xs] = np.where(diff >= min_diff, footprint[ys, xs], np.uint8(0))
    return _Drawn(noisy=noisy, mask=mask, core=core, footprint=footprint, patches=patches)


def _avoid_maps(core: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exact, loose) bool maps around draw A's drawn pixels. A draw B that misses `exact` (A grown by
    2 * FOOTPRINT_DILATE_PX + 1) cannot share a masked pixel with A; samplers test points against the
    wider `loose` map so that B's strokes (a few px wide) miss `exact` too."""
    exact = np.zeros(core.shape, bool)
    loose = np.zeros(core.shape, bool)
    bx, by, bw, bh = cv2.boundingRect((core > 0).view(np.uint8))
    if bw == 0:
        return exact, loose
    r_e, r_l = 2 * FOOTPRINT_DILATE_PX + 1, 2 * FOOTPRINT_DILATE_PX + 6
    h, w = core.shape
    y0, y1 = max(0, by - r_l), min(h, by + bh + r_l)
    x0, x1 = max(0, bx - r_l), min(w, bx + bw + r_l)
    sub = (core[y0:y1, x0:x1] > 0).view(np.uint8)
    ke = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r_e + 1,) * 2)
    exact[y0:y1, x0:x1] = cv2.dilate(sub, ke) > 0
    loose[y0:y1, x0:x1] = cv2.dilate(sub, np.ones((2 * r_l + 1, 2 * r_l + 1), np.uint8)) > 0
    return exact, loose


def _render_one(
    kind: str,
    rng: np.random.Generator,
    clean: np.ndarray,
    clean_out: np.ndarray,
    icons: IconSet | None,
    opts: RenderOptions,
    soft: SoftenParams | None,
    min_diff: int,
    avoid: tuple[np.ndarray, np.ndarray] | None,
):
    h, w = clean.shape[:2]
    best = None
    for attempt in range(max(1, opts.max_redraws)):
        params = sample_params(kind, rng, h, w, icons, opts, avoid[1] if avoid is not None else None)
        layer = draw_params(kind, params, h, w, icons)
        if not layer.pieces:
            continue
        overlap = layer.overlap_px(avoid[0]) if avoid is not None else 0
        if overlap and attempt < opts.avoid_tries:
            continue
        drawn = _composite(layer, clean, clean_out, soft, min_diff)
        n = int(np.count_nonzero(drawn.mask))
        if n >= MIN_MASK_PX:
            return drawn, params
        if best is None or n > best[2]:
            best = (drawn, params, n)
    if best is None:  # every draw overlapped: accept the last one
        drawn = _composite(layer, clean, clean_out, soft, min_diff)
        return drawn, params
    return best[0], best[1]


@dataclass
class RenderedPair:
    """Everything `render_pair` computed; `arrays()` is what goes into a shard."""

    clean: np.ndarray
    noisy_a: np.ndarray
    noisy_b: np.ndarray
    mask: np.ndarray
    mask_b: np.ndarray
    footprint_a: np.ndarray  # dilated class-id footprints used by the mask rule
    footprint_b: np.ndarray
    params_a: Any
    params_b: Any
    soften: SoftenParams | None
    min_diff: int

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "clean": self.clean,
            "noisy_a": self.noisy_a,
            "noisy_b": self.noisy_b,
            "mask": self.mask,
            "mask_b": self.mask_b,
        }


@em.cpu_exact
def render_pair_detailed(
    kind: str, rng: np.random.Generator, clean: np.ndarray, icons: IconSet | None, opts: RenderOptions = RenderOptions()
) -> RenderedPair:
    """`render_pair` plus the footprints, the sampled parameters and the softening (for tests and tools)."""
    if kind not in KINDS:
        raise ValueError(f"unknown annotation kind {kind!r}; use one of {', '.join(KINDS)}")
    clean = np.asarray(clean)
    if clean.ndim != 3 or clean.shape[2] != 3 or clean.dtype != np.uint8:
        raise ValueError(f"clean must be an (H, W, 3) uint8 RGB image, got {clean.shape} {clean.dtype}")
    if min(clean.shape[:2]) < 32:
        raise ValueError(f"clean must be at least 32x32 pixels, got {clean.shape[:2]}")
    if kind == "body_marker":
        _body_marker_icons(icons)
    clean = np.ascontiguousarray(clean)
    soft = None
    if opts.soften:
        soft = SoftenParams(
            quality=int(rng.integers(opts.jpeg_quality_range[0], opts.jpeg_quality_range[1] + 1)),
            chroma_sigma_px=float(rng.uniform(*opts.chroma_sigma_range))
            * max(MIN_SCALE, sum(opts.scale_range) / 2 * clean.shape[1] / REF_WIDTH_PX),
        )
        clean_out = jpeg_roundtrip(clean, soft.quality) if opts.jpeg_scope == "image" else None
    else:
        clean_out = clean.copy()
    min_diff = opts.mask_min_diff if opts.soften else 1
    a, pa = _render_one(kind, rng, clean, clean_out, icons, opts, soft, min_diff, None)
    b, pb = _render_one(kind, rng, clean, clean_out, icons, opts, soft, min_diff, _avoid_maps(a.core))
    if rng.random() < 0.5:  # B is drawn conditioned on A: swap so that both slots have the same law
        a, b, pa, pb = b, a, pb, pa
    if clean_out is None:  # jpeg_scope="blocks": JPEG'd blocks of both draws in all three images
        clean_out = clean.copy()
        for (x0, y0, x1, y1), _, cpatch in a.patches + b.patches:
            clean_out[y0:y1, x0:x1] = cpatch
        for d in (a, b):
            d.noisy = clean_out.copy()
            for (x0, y0, x1, y1), npatch, _ in d.patches:
                d.noisy[y0:y1, x0:x1] = npatch
    return RenderedPair(
        clean=clean_out,
        noisy_a=a.noisy,
        noisy_b=b.noisy,
        mask=a.mask,
        mask_b=b.mask,
        footprint_a=a.footprint,
        footprint_b=b.footprint,
        params_a=pa,
        params_b=pb,
        soften=soft,
        min_diff=min_diff,
    )


def render_pair(
    kind: str, rng: np.random.Generator, clean: np.ndarray, icons: IconSet | None, opts: RenderOptions = RenderOptions()
) -> dict[str, np.ndarray]:
    """Draw two independent annotations of `kind` onto one clean scan.

    kind: one of synth.kinds.KINDS. rng: the sample's generator (the only randomness used).
    clean: (H, W, 3) uint8 RGB. icons: the icon set (required for body_marker).
    Returns {"clean", "noisy_a", "noisy_b": (H, W, 3) uint8, "mask", "mask_b": (H, W) uint8 class ids}.
    With opts.soften, "clean" is the input after the same JPEG round trip as the noisy images."""
    return render_pair_detailed(kind, rng, clean, icons, opts).arrays()
