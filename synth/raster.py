"""The neutral rasteriser shared by the annotation kinds (`synth.render`) and the scanner chrome (`synth.chrome`).

What is here knows nothing of annotation kinds or masks: the render options, a crisp coverage canvas
(`Raster`) and the `Layer` of small alpha pieces it feeds, text (`TextLabel`, `draw_label`), icons
(`draw_icon`), and the screen-grid and sampling helpers every kind uses.

Strokes are drawn crisp on the screen pixel grid at `SS`x supersampling and box-averaged down (dots:
exact area coverage, `box_coverage`), which is what happens when a scanner's overlay (drawn without
anti-aliasing) is resized to the image size. A `Layer` is a list of small alpha pieces, each over its
own bounding box (or a sparse pixel list for dotted lines), never a full-frame buffer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from synth import exactmath as em
from synth.icons import Icon, IconSet

__all__ = [
    "EDGE_BAND",
    "JPEG_BLOCK_PX",
    "MASK_MIN_DIFF",
    "MIN_SCALE",
    "PALETTES",
    "REF_WIDTH_PX",
    "SS",
    "TEXT_FONTS",
    "Layer",
    "Piece",
    "Raster",
    "RenderOptions",
    "SoftenParams",
    "TextLabel",
    "box_coverage",
    "densify",
    "draw_icon",
    "draw_label",
    "free_points",
    "free_rect",
    "icon_by_name",
    "label_box",
    "luma",
    "pick",
    "place_label",
    "require_icons",
    "rotated_size",
    "screen_scale",
    "snap",
    "snap_pts",
    "text_ink",
]

MASK_MIN_DIFF = 8
"""Grey levels (max over RGB of |noisy - clean|) a pixel must change by to be masked when softening is on.
Why 8: it sits above what a JPEG q90/95 re-encode moves a clean pixel by, yet below what almost every
drawn (alpha > 0) pixel changes by; JPEG ringing and chroma spill outside the footprint can still pass it,
which is why the rule also requires the footprint. Without softening the rule uses 1 (every changed pixel).
The rule itself: `synth.render.composite.mask_rule`."""

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


def luma(colour: np.ndarray) -> np.ndarray:
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
        grey, yellow, green or cyan alike (`synth.render.colours.ANY_COLOURS`), Philips-style small outlined
        crosses without a line, and solid as well as dotted measurement lines (docs/annotations.md).
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


class Raster:
    """A crisp coverage canvas at SS x the image resolution over the image box [x0, x1) x [y0, y1).

    Image coordinates are continuous: pixel i covers [i, i + 1)."""

    def __init__(self, x0: float, y0: float, x1: float, y1: float):
        self.x0, self.y0 = math.floor(x0), math.floor(y0)
        self.w = max(1, math.ceil(x1) - self.x0)
        self.h = max(1, math.ceil(y1) - self.y0)
        self.a = np.zeros((self.h * SS, self.w * SS), np.uint8)

    @classmethod
    def around(cls, xs, ys, margin: float, h: int, w: int) -> Raster:
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
class Piece:
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
        self.pieces: list[Piece] = []

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
        self.pieces.append(Piece(x0 + cx0, y0 + cy0, np.ascontiguousarray(alpha, np.float32), col, class_id))

    def add_sparse(self, ys: np.ndarray, xs: np.ndarray, alpha: np.ndarray, colour, class_id: int) -> None:
        """Add a constant-colour piece given as coverage `alpha` at pixels (ys, xs) (unique pixels)."""
        keep = (alpha > 0) & (ys >= 0) & (xs >= 0) & (ys < self.h) & (xs < self.w)
        if not keep.any():
            return
        ys, xs = ys[keep].astype(np.intp), xs[keep].astype(np.intp)
        self.pieces.append(
            Piece(
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
        r: Raster,
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


def box_coverage(
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


def free_rect(avoid: np.ndarray | None, x0: float, y0: float, x1: float, y1: float) -> bool:
    if avoid is None:
        return True
    h, w = avoid.shape
    a0, b0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    a1, b1 = min(w, math.ceil(x1)), min(h, math.ceil(y1))
    return a1 <= a0 or b1 <= b0 or not avoid[b0:b1, a0:a1].any()


def free_points(avoid: np.ndarray | None, pts: np.ndarray) -> bool:
    if avoid is None or len(pts) == 0:
        return True
    h, w = avoid.shape
    xi = np.clip(pts[:, 0].astype(np.intp), 0, w - 1)
    yi = np.clip(pts[:, 1].astype(np.intp), 0, h - 1)
    return not avoid[yi, xi].any()


def densify(pts: np.ndarray, step_px: float = 0.75, closed: bool = False) -> np.ndarray:
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


def label_box(text: str, font: int, cap_px: float, bold: bool, outline_px: float, shadow_px: float):
    """Ink box incl. outline and shadow relative to the baseline origin: (l, t, r, b) image px."""
    l, t, r, b = text_ink(text, font, cap_px, bold)
    m = outline_px + 0.5
    return l - m, t - m, r + m + shadow_px, b + m + shadow_px


def place_label(label_kw: dict, x_ink: float, y_ink: float, box) -> dict:
    """Return kwargs with the baseline origin so that the box's top-left lands at (x_ink, y_ink)."""
    l, t, _, _ = box
    return dict(label_kw, x=x_ink - l, y=y_ink - t)


def draw_label(label: TextLabel, layer: Layer, class_id: int) -> None:
    """Rasterise a text label into `layer` as `class_id` (also synth.chrome's text, drawn into the scan)."""
    l, t, r, b = text_ink(label.text, label.font, label.cap_px, label.bold)
    m = _label_margin(label.outline_px, label.shadow_px) + 1
    ras = Raster(
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


def screen_scale(rng: np.random.Generator, w: int, opts: RenderOptions) -> float:
    """Image px per screen px for one draw."""
    return max(MIN_SCALE, float(rng.uniform(*opts.scale_range)) * w / REF_WIDTH_PX)


def snap(v: float, s: float, size_screen: float) -> float:
    """Snap a centre to the screen pixel grid (pitch `s` image px) like the scanner's overlay: features
    an even number of screen px wide are centred on grid lines, odd ones on pixel centres."""
    if round(size_screen) % 2 == 0:
        return round(v / s) * s
    return (math.floor(v / s) + 0.5) * s


def snap_pts(pts: np.ndarray, s: float, size_screen: float, dedupe: bool = True) -> np.ndarray:
    """`snap` for an (N, k) array; consecutive duplicate rows are dropped unless `dedupe` is False."""
    if round(size_screen) % 2 == 0:
        q = np.rint(pts / s) * s
    else:
        q = (np.floor(pts / s) + 0.5) * s
    if not dedupe:
        return q
    keep = np.ones(len(q), bool)
    keep[1:] = np.any(q[1:] != q[:-1], axis=1)
    return q[keep]


def pick(rng: np.random.Generator, options, p):
    """One of `options` with probabilities `p` (one uniform draw; faster than rng.choice(p=...))."""
    c = np.cumsum(p, dtype=np.float64)
    return options[min(int(np.searchsorted(c, rng.random() * c[-1], side="right")), len(options) - 1)]


# --------------------------------------------------------------------------------------------------
# icons


def require_icons(icons: IconSet | None, kind: str) -> tuple[Icon, ...]:
    """The icons of `kind` in `icons`; a ValueError saying what to pass when there are none."""
    ics = icons.icons(kind) if icons is not None else ()
    if not ics:
        raise ValueError(
            f"{kind} needs an icon set with {kind} icons (pass icons=load_icon_set(), "
            "e.g. the shipped assets/annotation_icons, or make one with `synth extract-icons`)."
        )
    return ics


def icon_by_name(icons: IconSet, kind: str, name: str) -> Icon:
    for ic in icons.icons(kind):
        if ic.name == name:
            return ic
    raise KeyError(f"icon {name!r} of kind {kind!r} is not in the icon set {icons.root}")


def rotated_size(w: float, h: float, angle_deg: float) -> tuple[float, float]:
    c, s = abs(em.cos(math.radians(angle_deg))), abs(em.sin(math.radians(angle_deg)))
    return w * c + h * s, w * s + h * c


def draw_icon(
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
    bw, bh = rotated_size(pw * s, ph * s, angle_deg)
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


