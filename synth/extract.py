"""Extract annotation icons (RGBA PNG + index.json) from real annotated scans (`synth extract-icons`).

Three ways to find the overlay pixels of a scan, chosen per file:
  * colour keying (default): burned-in overlays are yellow/green/cyan or bright neutral lines, while
    B-mode speckle is grey (R=G=B). The capture (JPEG q95, 4:2:0) keeps luma sharp but smears chroma
    over 1-3 px and desaturates thin cores, so an overlay pixel is one that is both clearly coloured
    and bright, or one brighter than its 11 px median that sits in a coloured halo. Neutral overlays
    (white crosses, grey dots) look like bright speckle pixel by pixel, so only their shape admits them.
  * difference (`reference=`): where the reference folder holds a file with the same relative path
    (any image suffix), the overlay is what differs from that clean twin beyond JPEG noise; the icon
    is unmixed against the twin (I = a F + (1 - a) R), so its colour and alpha are the overlay's own.
  * a box (`roi=`): the box is cut from every scan, alpha from the keying (or difference) inside it.
Found pixels are grouped and classified by shape:
  radial_line   a '+' caliper cross (half-span 6-11 px, four thin arms, empty quadrants, isolated),
                found in the coloured pixels, the neutral ones, or (on bright tissue, where keying
                floods) in its black drop shadow; icon = arms + halo + shadow, without labels or dots;
  vascular_flow the Doppler sample box: all green line pieces of a scan joined into one outline,
                extended along the grey dots of a dotted outline (its dots lose their colour);
  text          yellow/green character-sized strokes on one line (labels, readout lines, cross numbers).
Kept as icons: those three kinds, with their anti-aliased halo and black drop shadow (alpha from the
overlay-likeness, RGB from the pixels). Dropped (counted as `unclassified` where grouped): colour-Doppler
flow and colour bars (red/blue pixels and every coloured component touching them or cyan), cyan
except in crosses (Mindray logo), blue/grey UI text, neutral overlays other than crosses (white
labels, pointer hands, Mindray readouts), dotted measurement lines, straight lines, rules under
readouts, solid markers (focus triangles, depth ticks), anything outside the B-mode fan except
readout text in the bottom quarter, the top 5 % of the frame (logos, parameter headers) and text cut
by the top or bottom frame edge.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from synth.icons import Icon, write_icon, write_index
from synth.images import IMAGE_EXTS, ImageError, find_images, read_image
from synth.kinds import CLASS_IDS

IMAGE_SUFFIXES = IMAGE_EXTS
METHODS = ("colour", "difference", "roi")

# Colour keying (hue in degrees, chroma = max(RGB) - min(RGB) in grey levels).
KEY_HUE_DEG = (45.0, 170.0)      # yellow .. green: caliper, label, Doppler-box colours
CYAN_HUE_DEG = (170.0, 200.0)    # cyan cursors; needs more chroma (blue-tinted scans sit at 190-220)
GREEN_HUE_DEG = (85.0, 170.0)    # Doppler box outlines (yellow calipers are at ~60-70)
CHROMA_CORE = 40.0               # a pixel this coloured (in a key hue) is overlay on its own
CHROMA_HALO = 8.0                # smoothed chroma of the halo JPEG leaves around a thin coloured line
CORE_MIN_LUMA = 140.0            # overlay cores are bright (yellow ~226, green line ~199, dim dots ~160)
CONTRAST_CORE = 25.0             # luma above the 11 px local median for a desaturated core
WHITE_CONTRAST = 40.0            # neutral candidates: bright thin structure ...
WHITE_MIN_LUMA = 150.0           # ... and bright in absolute terms
TEXT_MIN_CHROMA = 35.0           # median chroma of a text group (labels are vivid: (237,243,150))
FLOW_CHROMA = 40.0               # red/blue Doppler flow, colour bars, blue UI text
DIFF_SOFT, DIFF_CORE = 12.0, 30.0  # grey levels: JPEG q95 noise stays below DIFF_SOFT
# near-identical icons: mean |premultiplied RGBA| difference over their opaque bodies (grey levels).
# Crosses are one glyph whose copies differ only by capture noise, so they get a looser limit; other kinds
# keep a tighter one so a changed digit in a label stays distinct.
DUP_MAD = {"radial_line": 24.0, "default": 12.0}


class ExtractError(ValueError):
    """A user mistake (missing folder, unreadable image, bad box, unknown kind); the message says what
    to do."""


@dataclass
class Found:
    """One annotation found in one scan: its RGBA icon (straight alpha) and where it came from."""

    kind: str
    box: tuple[int, int, int, int]  # x, y, w, h in the source image, tight around alpha > 0
    rgba: np.ndarray                # (h, w, 4) uint8
    method: str
    source: str = ""
    duplicates: int = 0
    meta: dict = field(default_factory=dict)


# ----------------------------------------------------------------------------------------------- reading
def read_rgb(path: str | Path) -> np.ndarray:
    """Read PNG/JPG/BMP/TIFF (8 or 16 bit; grey, RGB or RGBA) as (H, W, 3) uint8 RGB (synth.images.read_image).

    Raises ExtractError naming the file when it cannot be decoded.
    """
    try:
        return read_image(path)
    except ImageError as e:
        raise ExtractError(f"{e} Remove it, or pass --skip-bad to skip unreadable files.") from e


# ----------------------------------------------------------------------------------------------- keying
def _hue_chroma(rgb_f: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hue in degrees and chroma max(RGB) - min(RGB) in grey levels of a float32 RGB image."""
    hue = cv2.cvtColor(rgb_f * (1.0 / 255.0), cv2.COLOR_RGB2HSV)[..., 0]
    r, g, b = cv2.split(rgb_f)
    return hue, cv2.max(cv2.max(r, g), b) - cv2.min(cv2.min(r, g), b)


def _in(h: np.ndarray, band: tuple[float, float]) -> np.ndarray:
    return (h >= band[0]) & (h < band[1])


def _clip01(x: np.ndarray) -> np.ndarray:
    return np.minimum(np.maximum(x, 0.0), 1.0)


@dataclass
class Maps:
    """Per-pixel keying maps of one scan, all (H, W)."""

    rgb: np.ndarray        # uint8 (H, W, 3)
    luma: np.ndarray       # float32, BT.601
    chroma: np.ndarray     # float32, max(RGB) - min(RGB)
    contrast: np.ndarray   # luma minus its 11x11 median (thin bright lines > 0, their shadows < 0)
    coloured: np.ndarray   # bool: overlay core in a key colour (yellow to green)
    green: np.ndarray      # bool: the part of `coloured` that is green (Doppler box)
    cyan: np.ndarray       # bool: saturated cyan (used for crosses only: cyan is also logos and flow)
    white: np.ndarray      # bool: neutral thin bright structure (overlay or speckle; shape decides)
    flow: np.ndarray       # bool: red/blue pixels (Doppler flow, colour bars, blue UI text)
    colour_alpha: np.ndarray  # float32 0..1 soft overlay-likeness of coloured pixels
    fan: np.ndarray        # bool: the B-mode fan (holes filled), dilated 7 px


def key_maps(rgb: np.ndarray) -> Maps:
    """Colour-key one RGB uint8 scan into overlay candidate maps."""
    f = rgb.astype(np.float32)
    hue, chroma = _hue_chroma(f)
    hue_s, chroma_s = _hue_chroma(cv2.GaussianBlur(f, (0, 0), 1.5))
    luma = f @ np.array([0.299, 0.587, 0.114], np.float32)
    luma8 = np.clip(luma + 0.5, 0, 255).astype(np.uint8)
    contrast = luma - cv2.medianBlur(luma8, 11).astype(np.float32)

    key_pix = _in(hue, KEY_HUE_DEG)
    halo = (chroma_s >= CHROMA_HALO) & _in(hue_s, KEY_HUE_DEG)
    # luma is sharp in the capture, chroma is not: a coloured pixel counts only if it is also bright
    # (the line itself), otherwise it is the olive fringe JPEG smears onto the dark background
    coloured = (chroma >= CHROMA_CORE) & key_pix & (luma >= CORE_MIN_LUMA)
    cyan = (chroma >= CHROMA_CORE + 10) & _in(hue, CYAN_HUE_DEG) & (luma >= CORE_MIN_LUMA)
    # a desaturated bright core (or a 1 px line/dot) inside a coloured halo
    coloured |= (contrast >= CONTRAST_CORE) & halo & (chroma >= 10)
    green = coloured & _in(np.where(chroma >= 12, hue, hue_s), GREEN_HUE_DEG)

    white = (contrast >= WHITE_CONTRAST) & (luma >= WHITE_MIN_LUMA) & (chroma < 20) & (chroma_s < 10)
    # red and blue only: orange pixels also ring around yellow text; orange flow touches red flow anyway
    flow = (chroma >= FLOW_CHROMA) & ((hue < 25.0) | (hue >= 200.0))

    colour_alpha = np.maximum(_clip01((contrast - 10.0) / 40.0) * halo,
                              _clip01((chroma - 15.0) / 30.0) * (key_pix | _in(hue, CYAN_HUE_DEG)))
    return Maps(rgb=rgb, luma=luma, chroma=chroma, contrast=contrast, coloured=coloured, green=green,
                cyan=cyan, white=white, flow=flow, colour_alpha=colour_alpha.astype(np.float32),
                fan=fan_mask(luma8))


def fan_mask(luma8: np.ndarray) -> np.ndarray:
    """The B-mode fan: the largest non-black region with its holes (dark cysts) filled, dilated 7 px.

    Scanner UI (logos, parameter text, colour bars, depth ticks) sits on the black outside it.
    """
    h, w = luma8.shape
    on = (cv2.GaussianBlur(luma8, (0, 0), 2.0) > 12).astype(np.uint8)
    on = cv2.morphologyEx(on, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15)))
    on = cv2.morphologyEx(on, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (9, 9)))
    n, lab, stats, _ = cv2.connectedComponentsWithStats(on, connectivity=8)
    if n <= 1:
        return np.ones((h, w), bool)
    big = (lab == 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))).astype(np.uint8)
    contours, _ = cv2.findContours(big, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    fan = np.zeros((h, w), np.uint8)
    cv2.drawContours(fan, contours, -1, 1, thickness=cv2.FILLED)
    fan = cv2.dilate(fan, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (15, 15)))
    return fan.astype(bool)


# ----------------------------------------------------------------------------------------------- crosses
@dataclass(frozen=True)
class Cross:
    cx: int
    cy: int
    half_span: int
    score: float


def find_crosses(mask: np.ndarray, spans: range = range(6, 12), ring_max: float | None = None) -> list[Cross]:
    """Find '+' caliper crosses in a binary mask: four arms of half-span in `spans` px, empty quadrants.

    An arm is the 3 px band along the axis from r=3 to r=s-1 (so GE crosses with a centre gap pass);
    it must hold at least ~1 px per column and reach its tip; just past the tip the band must be nearly
    empty (a dotted line may pass), and each quadrant between the arms must be nearly empty. With
    `ring_max`, at most that fraction of a 5 px ring around the cross box may be set.
    """
    m = mask.astype(np.uint8)
    pad = max(spans) + 8  # every window below stays inside the padded integral image
    ii = cv2.integral(cv2.copyMakeBorder(m, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0))
    iw = ii.shape[1]
    flat = ii.ravel()
    # candidate centres: some mask both in a 9x3 horizontal and a 3x9 vertical window around the pixel
    mf = m.astype(np.float32)
    hor = cv2.boxFilter(mf, -1, (9, 3), normalize=False, borderType=cv2.BORDER_CONSTANT)
    ver = cv2.boxFilter(mf, -1, (3, 9), normalize=False, borderType=cv2.BORDER_CONSTANT)
    ys, xs = np.nonzero((hor >= 4) & (ver >= 4))
    if len(ys) == 0:
        return []
    base = (ys.astype(np.int64) + pad) * iw + xs.astype(np.int64) + pad

    def rect(y0, y1, x0, x1):  # mask sum over rows cy+y0..cy+y1, cols cx+x0..cx+x1 (inclusive)
        a0, a1, b0, b1 = y0 * iw, (y1 + 1) * iw, x0, x1 + 1
        return (flat[base + (a1 + b1)] - flat[base + (a0 + b1)] - flat[base + (a1 + b0)]
                + flat[base + (a0 + b0)]).astype(np.float32)

    best_s = np.zeros(len(ys), np.int32)
    best_score = np.zeros(len(ys), np.float32)
    for s in spans:
        b = 1 if s < 8 else 2  # half-width of the arm band: 2-3 px arms, 3-4 px for the large style
        arm_len = s - 3
        arms = [rect(-b, b, 3, s - 1), rect(-b, b, -(s - 1), -3),      # right, left
                rect(3, s - 1, -b, b), rect(-(s - 1), -3, -b, b)]       # down, up
        tips = [rect(-b, b, s - 2, s - 1), rect(-b, b, -(s - 1), -(s - 2)),
                rect(s - 2, s - 1, -b, b), rect(-(s - 1), -(s - 2), -b, b)]
        ends = [rect(-b, b, s + 2, s + 4), rect(-b, b, -(s + 4), -(s + 2)),
                rect(s + 2, s + 4, -b, b), rect(-(s + 4), -(s + 2), -b, b)]
        q = b + 2
        quads = [rect(q, s, q, s), rect(q, s, -s, -q), rect(-s, -q, q, s), rect(-s, -q, -s, -q)]
        # arms are thin lines: the bands just beside each arm stay nearly empty
        o0, o1 = b + 1, b + 2
        sides = [rect(o0, o1, 3, s - 1), rect(-o1, -o0, 3, s - 1), rect(o0, o1, -(s - 1), -3),
                 rect(-o1, -o0, -(s - 1), -3), rect(3, s - 1, o0, o1), rect(3, s - 1, -o1, -o0),
                 rect(-(s - 1), -3, o0, o1), rect(-(s - 1), -3, -o1, -o0)]
        fill = np.min(np.stack(arms), axis=0) / arm_len
        ok = (fill >= 0.9) & (np.min(np.stack(tips), axis=0) >= 1.5)
        ok &= np.max(np.stack(ends), axis=0) <= 3.0
        ok &= np.max(np.stack(sides), axis=0) <= 0.5 * arm_len
        quad_area = float((s - q + 1) ** 2)
        ok &= np.max(np.stack(quads), axis=0) <= 0.12 * quad_area + 1
        if ring_max is not None:  # isolated: little else around the cross (rejects strokes inside text)
            outer = rect(-(s + 6), s + 6, -(s + 6), s + 6)
            inner = rect(-(s + 1), s + 1, -(s + 1), s + 1)
            ring_area = float((2 * s + 13) ** 2 - (2 * s + 3) ** 2)
            ok &= (outer - inner) <= ring_max * ring_area
        score = np.where(ok, np.mean(np.stack(arms), axis=0) / arm_len + 0.05 * s, 0.0)
        better = ok & (score >= best_score)
        best_s[better] = s
        best_score[better] = score[better]
    keep = np.nonzero(best_score > 0)[0]
    order = keep[np.argsort(-best_score[keep], kind="stable")]
    crosses: list[Cross] = []
    for i in order:
        cx, cy, s = int(xs[i]), int(ys[i]), int(best_s[i])
        if any(abs(c.cx - cx) <= c.half_span and abs(c.cy - cy) <= c.half_span for c in crosses):
            continue
        crosses.append(Cross(cx, cy, s, float(best_score[i])))
    return crosses


def _overlaps(c: Cross, others: list[Cross]) -> bool:
    return any(abs(c.cx - o.cx) <= o.half_span + 2 and abs(c.cy - o.cy) <= o.half_span + 2 for o in others)


def _cross_pixels(mask: np.ndarray, c: Cross) -> np.ndarray:
    """Mask pixels of one cross: its arms' bands inside the cross box (drops nearby dots and labels)."""
    h, w = mask.shape
    out = np.zeros_like(mask, dtype=bool)
    y0, y1 = max(c.cy - c.half_span - 1, 0), min(c.cy + c.half_span + 2, h)
    x0, x1 = max(c.cx - c.half_span - 1, 0), min(c.cx + c.half_span + 2, w)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    band = (np.abs(yy - c.cy) <= 2) | (np.abs(xx - c.cx) <= 2)
    out[y0:y1, x0:x1] = mask[y0:y1, x0:x1] & band
    return out


def _isolated(mask: np.ndarray, c: Cross, offset: tuple[int, int] = (0, 0), margin: int = 3) -> bool:
    """The mask components that make up the cross end within `margin` px of its box (not a letter's
    stroke, not a crossing of long lines). `offset` shifts the cross (its shadow lies at (+1, +1))."""
    h, w = mask.shape
    cx, cy, s = c.cx + offset[0], c.cy + offset[1], c.half_span
    r = s + margin + 4
    y0, y1, x0, x1 = max(cy - r, 0), min(cy + r + 1, h), max(cx - r, 0), min(cx + r + 1, w)
    sub = mask[y0:y1, x0:x1].astype(np.uint8)
    _, lab = cv2.connectedComponents(sub, connectivity=8)
    yy, xx = np.mgrid[y0:y1, x0:x1]
    dy, dx = np.abs(yy - cy), np.abs(xx - cx)
    arms = ((dy <= 1) & (dx <= s)) | ((dx <= 1) & (dy <= s))
    ids = np.unique(lab[arms & (sub > 0)])
    ids = ids[ids > 0]
    if len(ids) == 0:
        return False
    part = np.isin(lab, ids)
    py, px = np.nonzero(part)
    return bool(np.abs(py + y0 - cy).max() <= s + margin and np.abs(px + x0 - cx).max() <= s + margin)


# ----------------------------------------------------------------------------------------------- grouping
def _components(mask: np.ndarray, min_area: int = 1):
    n, lab, stats, cent = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    keep = [i for i in range(1, n) if stats[i, cv2.CC_STAT_AREA] >= min_area]
    return lab, stats, cent, keep


def _groups(mask: np.ndarray, kernel_wh: tuple[int, int]) -> list[np.ndarray]:
    """Split `mask` into groups of pixels that lie within the kernel's reach of each other."""
    if not mask.any():
        return []
    k = cv2.getStructuringElement(cv2.MORPH_RECT, kernel_wh)
    grown = cv2.dilate(mask.astype(np.uint8), k)
    n, lab, stats, _ = cv2.connectedComponentsWithStats(grown, connectivity=8)
    out = []
    for i in range(1, n):
        x, y, w, h = stats[i, :4]
        sub = (lab[y:y + h, x:x + w] == i) & mask[y:y + h, x:x + w]
        g = np.zeros_like(mask, dtype=bool)
        g[y:y + h, x:x + w] = sub
        out.append(g)
    return out


def _bbox(mask: np.ndarray) -> tuple[int, int, int, int] | None:
    pts = cv2.findNonZero(mask.astype(np.uint8))
    if pts is None:
        return None
    x, y, w, h = cv2.boundingRect(pts)
    return int(x), int(y), int(w), int(h)


def _is_text(group: np.ndarray, near_cross: bool = False) -> bool:
    """A line of character-sized strokes (labels like 'CY', readouts like '1 D 4.71cm', digits).

    A lone stroke counts only as a cross's number label (`near_cross`) or when it is tall and not
    convex (a letter, not a focus triangle or a speckle blob).
    """
    x, y, w, h = _bbox(group)
    if not (7 <= h <= 48 and w >= 3):
        return False
    sub = group[y:y + h, x:x + w]
    _, stats, _, keep = _components(sub, min_area=3)
    chars = [i for i in keep if 7 <= stats[i, cv2.CC_STAT_HEIGHT] <= 40
             and stats[i, cv2.CC_STAT_WIDTH] <= 5 * stats[i, cv2.CC_STAT_HEIGHT]]
    if not chars:
        return False
    char_area = sum(int(stats[i, cv2.CC_STAT_AREA]) for i in chars)
    if char_area < 0.6 * sub.sum():
        return False
    char_box_area = sum(int(stats[i, cv2.CC_STAT_WIDTH] * stats[i, cv2.CC_STAT_HEIGHT]) for i in chars)
    if char_area < 0.2 * char_box_area:  # thin arcs and outlines, not strokes
        return False
    py, px = np.nonzero(sub)
    if len(py) >= 3:  # a straight (dotted) line, e.g. a pulsed-Doppler cursor: no thickness across it
        ev = np.linalg.eigvalsh(np.cov(np.stack([px, py]).astype(np.float64)))
        if np.sqrt(max(ev[0], 0.0)) < 1.5 and np.sqrt(ev[1]) > 6.0:
            return False
    if len(chars) == 1 and not near_cross:
        i = chars[0]
        ch, cw = int(stats[i, cv2.CC_STAT_HEIGHT]), int(stats[i, cv2.CC_STAT_WIDTH])
        if ch < 9 or cw > 2 * ch:
            return False
        pts = cv2.findNonZero(sub.astype(np.uint8))
        hull_area = cv2.contourArea(cv2.convexHull(pts)) + 0.5 * len(cv2.convexHull(pts))
        if int(stats[i, cv2.CC_STAT_AREA]) > 0.8 * hull_area:
            return False
    return True


def _rules(mask: np.ndarray, min_len: int = 21) -> np.ndarray:
    """Straight horizontal/vertical runs (readout rules, box edges): not characters."""
    m = mask.astype(np.uint8)
    hor = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((1, min_len), np.uint8))
    ver = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((min_len, 1), np.uint8))
    return (hor | ver).astype(bool)


def _grow_dots(maps: Maps, seed: np.ndarray, reach_px: int = 11, max_rounds: int = 150) -> np.ndarray:
    """Extend `seed` along chains of small bright dots (dotted lines whose dots lost their colour in
    the JPEG capture): add every dot within `reach_px` of the current set, repeatedly."""
    dots = (maps.contrast >= 50.0) & (maps.chroma < 40.0)
    lab, stats, _, keep = _components(dots)
    small = np.zeros(len(stats), bool)
    small[[i for i in keep if stats[i, cv2.CC_STAT_AREA] <= 8]] = True
    dot_lab = np.where(small[lab], lab, 0)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (reach_px, reach_px))
    cur = seed.copy()
    for _ in range(max_rounds):
        reach = cv2.dilate(cur.astype(np.uint8), kernel).astype(bool)
        ids = np.unique(dot_lab[reach & ~cur])
        ids = ids[ids > 0]
        if len(ids) == 0:
            break
        cur |= np.isin(dot_lab, ids)
    return cur


def _is_outline(group: np.ndarray, shape: tuple[int, int]) -> bool:
    """A large, thin outline (the Doppler sample box): big in both directions, sparse."""
    _, _, w, h = _bbox(group)
    side = 0.15 * min(shape)
    return w >= side and h >= side and group.sum() <= 0.15 * w * h


# ----------------------------------------------------------------------------------------------- alpha
def _shadow(maps: Maps, core: np.ndarray) -> np.ndarray:
    """Dark drop-shadow pixels next to an overlay core (GE draws a black 1 px shadow at (+1, +1))."""
    near = cv2.dilate(core.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~core
    return near & (maps.contrast <= -15.0)


def _icon_colour_mode(maps: Maps, core: np.ndarray, white: bool) -> tuple[np.ndarray, tuple] | None:
    """Soft alpha from overlay-likeness on the core, its halo and its shadow; RGB from the pixels."""
    shadow = _shadow(maps, core)
    halo = cv2.dilate(core.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool) & ~core & ~shadow
    if white:
        like = _clip01((maps.contrast - 15.0) / 40.0)
    else:
        like = np.maximum(maps.colour_alpha, _clip01((maps.contrast - 10.0) / 40.0))
    alpha = np.zeros(core.shape, np.float32)
    alpha[core] = np.maximum(like[core], 0.5)
    alpha[halo] = like[halo] * (0.0 if white else 1.0)
    alpha[shadow] = _clip01((-maps.contrast[shadow] - 8.0) / 30.0)
    return _cut(maps.rgb, alpha)


def _cut(rgb: np.ndarray, alpha: np.ndarray) -> tuple[np.ndarray, tuple] | None:
    a8 = np.clip(alpha * 255.0 + 0.5, 0, 255).astype(np.uint8)
    box = _bbox(a8 > 0)
    if box is None:
        return None
    x, y, w, h = box
    rgba = np.dstack([rgb[y:y + h, x:x + w], a8[y:y + h, x:x + w]])
    return np.ascontiguousarray(rgba), box


def _difference(rgb: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-pixel difference to the clean twin: (max-channel |diff| float32, core mask)."""
    diff = np.abs(rgb.astype(np.int16) - ref.astype(np.int16)).max(axis=2).astype(np.float32)
    core = diff >= DIFF_CORE
    soft = diff >= DIFF_SOFT
    # keep the soft edge of each core component, not isolated JPEG-noise pixels
    n, lab = cv2.connectedComponents(soft.astype(np.uint8), connectivity=8)
    has_core = np.zeros(n, bool)
    has_core[np.unique(lab[core])] = True
    has_core[0] = False
    return diff, has_core[lab]


def _icon_difference(rgb: np.ndarray, ref: np.ndarray, diff: np.ndarray,
                     pixels: np.ndarray) -> tuple[np.ndarray, tuple] | None:
    """Straight-alpha icon by unmixing against the clean twin: I = a F + (1 - a) R."""
    f = rgb.astype(np.float32)
    r = ref.astype(np.float32)
    strong = pixels & (diff >= np.percentile(diff[pixels], 75))
    fg = np.median(f[strong], axis=0) if strong.any() else f[pixels].mean(axis=0)
    d = fg[None, None, :] - r
    num = ((f - r) * d).sum(axis=2)
    den = np.maximum((d * d).sum(axis=2), 1.0)
    alpha = np.where(pixels, _clip01(num / den), 0.0)
    alpha = np.where(pixels & (alpha < 1.0 / 255.0), 1.0 / 255.0, alpha)  # every found pixel stays in
    a = np.maximum(alpha, 1e-3)[..., None]
    colour = np.clip((f - (1.0 - a) * r) / a, 0, 255)
    colour = np.where(alpha[..., None] >= 0.1, colour, fg[None, None, :])
    cut = _cut(colour.astype(np.uint8), alpha)
    return cut


# ----------------------------------------------------------------------------------------------- per scan
@dataclass
class ScanResult:
    found: list[Found]
    unclassified: int


def _ui_zone(box: tuple[int, int, int, int], shape: tuple[int, int]) -> bool:
    """Top 5 % of the frame: scanner logos and parameter headers."""
    _, y, _, h = box
    return y + h / 2.0 < 0.05 * shape[0]


def find_annotations(rgb: np.ndarray, kind: str | None = None, reference: np.ndarray | None = None,
                     source: str = "") -> ScanResult:
    """Find the annotations of one (H, W, 3) uint8 RGB scan.

    With `reference` (a clean twin of the same size) the overlay is the difference to it; else colour
    keying. With `kind`, groups classified as that kind and unclassified coloured/difference groups are
    returned as `kind`; groups classified as another kind are dropped.
    """
    shape = rgb.shape[:2]
    out: list[Found] = []
    unclassified = 0

    def add(k: str, cut, method: str, **meta) -> None:
        if cut is not None and (kind is None or k == kind):
            out.append(Found(kind=k, box=cut[1], rgba=cut[0], method=method, source=source, meta=meta))

    if reference is not None:
        diff, pixels = _difference(rgb, reference)
        rest = pixels.copy()
        for c in find_crosses(pixels & (diff >= DIFF_CORE)):
            cross = _cross_pixels(pixels, c)
            if not cross.any():
                continue
            lab, stats, _, keep = _components(pixels)
            # the whole connected overlay of the cross (its shadow and soft edge included)
            ids = np.unique(lab[cross])
            whole = np.isin(lab, ids[ids > 0])
            box = _bbox(whole)
            if box[2] > 4 * c.half_span + 6 or box[3] > 4 * c.half_span + 6:
                whole = cross  # joined to something larger (a dotted line): keep the cross only
            rest &= ~whole
            add("radial_line", _icon_difference(rgb, reference, diff, whole), "difference")
        for g in _groups(rest, (7, 7)):
            k = "vascular_flow" if _is_outline(g, shape) else "text" if _is_text(g) else None
            if k is None:
                if kind is not None and g.sum() >= 8:
                    k = kind
                else:
                    unclassified += 1
                    continue
            add(k, _icon_difference(rgb, reference, diff, g), "difference")
        return ScanResult(out, unclassified)

    maps = key_maps(rgb)
    coloured = maps.coloured.copy()
    # drop coloured components that touch Doppler flow or colour bars (red/blue, and the cyan, green
    # and yellow of variance maps and bar ends): Doppler colour is not an annotation
    doppler = maps.flow | maps.cyan
    doppler_near = cv2.dilate(doppler.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    lab, stats, _, keep = _components(coloured)
    if keep:
        touch = np.bincount(lab[doppler_near & coloured], minlength=len(stats))
        bad = np.nonzero(touch >= 0.1 * stats[:, cv2.CC_STAT_AREA])[0]
        coloured &= ~np.isin(lab, bad[bad > 0])
    flow_near = cv2.dilate(maps.flow.astype(np.uint8), np.ones((5, 5), np.uint8)).astype(bool)
    cyan = maps.cyan & ~flow_near

    def in_fan(box) -> bool:
        x, y, w, h = box
        return bool(maps.fan[min(y + h // 2, shape[0] - 1), min(x + w // 2, shape[1] - 1)])

    # 1. crosses: coloured, neutral, or (on bright tissue, where the keying floods) their black drop shadow
    crosses: list[Cross] = []
    shadow_mask = (maps.contrast <= -40.0) & (maps.luma <= 100.0)
    passes = ((coloured | cyan, "colour", 0.15), (maps.white, "white", 0.06), (shadow_mask, "shadow", 0.06))
    for mask, how, ring_max in passes:
        for c in find_crosses(mask, ring_max=ring_max):
            if how == "shadow":  # the overlay sits at (-1, -1) from its shadow
                c = Cross(c.cx - 1, c.cy - 1, c.half_span, c.score)
            if _overlaps(c, crosses):
                continue
            px = _cross_pixels(mask if how != "shadow" else coloured | cyan, c)
            if px.sum() < 2 * c.half_span:
                continue
            # isolation is judged on the sharp (luma) core: a number label often touches the chroma halo
            sharp = mask & (maps.contrast >= 30.0) if how == "colour" else mask
            if not _isolated(sharp, c, (1, 1) if how == "shadow" else (0, 0)):
                continue
            crosses.append(c)
            if how != "white":
                coloured &= ~px
            box = (c.cx - c.half_span, c.cy - c.half_span, 2 * c.half_span + 1, 2 * c.half_span + 1)
            if not in_fan(box) or _ui_zone(box, shape):
                continue
            if maps.flow[max(c.cy - c.half_span, 0):c.cy + c.half_span + 1,
                         max(c.cx - c.half_span, 0):c.cx + c.half_span + 1].any():
                continue
            add("radial_line", _icon_colour_mode(maps, px, how == "white"), "colour", detector=how)

    # 2. the Doppler box outline: green line pieces (a solid line, or the dots of a dotted one that kept
    #    some colour) joined into one outline per scan, plus the grey dots that continue them
    green = coloured & maps.green
    pieces = np.zeros_like(green)
    for g in _groups(green, (9, 9)):
        x, y, w, h = _bbox(g)
        if max(w, h) >= 25 and g.sum() <= 4 * (w + h):  # lines (up to ~4 px wide), not digits or blobs
            pieces |= g
    if pieces.any():
        outline = _grow_dots(maps, pieces)
        if _is_outline(outline, shape):
            coloured &= ~outline
            add("vascular_flow", _icon_colour_mode(maps, outline, False), "colour")

    # 3. text: character strokes on one line (rules and stray pixels removed first)
    coloured &= ~_rules(coloured)
    lab, stats, _, keep = _components(coloured)
    coloured &= np.isin(lab, [i for i in keep if stats[i, cv2.CC_STAT_AREA] >= 3])
    for g in _groups(coloured, (11, 3)):
        if g.sum() < 6:
            continue
        box = _bbox(g)
        x, y, w, h = box
        placed = (in_fan(box) or (y + h / 2.0 > 0.75 * shape[0])) and not _ui_zone(box, shape)
        if not placed:
            unclassified += 1
            continue
        # a cross whose number label touches it (in the halo): split off the cross if what is left is small
        for c in find_crosses(g):
            if _overlaps(c, crosses):
                continue
            px = _cross_pixels(g, c)
            rest_box = _bbox(g & ~px)
            if rest_box is not None and (rest_box[2] > 24 or rest_box[3] > 24):
                continue
            crosses.append(c)
            g = g & ~px
            add("radial_line", _icon_colour_mode(maps, px, False), "colour", detector="colour+label")
        if g.sum() < 6:
            continue
        box = _bbox(g)
        x, y, w, h = box
        gx, gy = x + w / 2.0, y + h / 2.0
        near_cross = any(abs(gx - c.cx) <= 3 * c.half_span and abs(gy - c.cy) <= 3 * c.half_span
                         for c in crosses)
        cut_off = y <= 0 or y + h >= shape[0]  # a readout cut by the frame edge: only part of the glyphs
        vivid = float(np.median(maps.chroma[g])) >= TEXT_MIN_CHROMA
        if _is_text(g, near_cross) and vivid and not cut_off:
            add("text", _icon_colour_mode(maps, g, False), "colour")
        elif kind is not None and g.sum() >= 8:
            add(kind, _icon_colour_mode(maps, g, False), "colour")
        else:
            unclassified += 1
    return ScanResult(out, unclassified)


def roi_annotation(rgb: np.ndarray, roi: tuple[int, int, int, int], kind: str | None = None,
                   reference: np.ndarray | None = None, source: str = "") -> Found | None:
    """Cut box `roi` = (x, y, w, h); alpha from the difference to `reference` or from colour keying.

    The kind is `kind`, or the shape classification of what was found inside; None when nothing was
    found or the content cannot be classified and no kind was given.
    """
    x, y, w, h = roi
    inside = np.zeros(rgb.shape[:2], bool)
    inside[y:y + h, x:x + w] = True
    if reference is not None:
        diff, pixels = _difference(rgb, reference)
        pixels &= inside
        if not pixels.any():
            return None
        cut = _icon_difference(rgb, reference, diff, pixels)
        mask = pixels
    else:
        maps = key_maps(rgb)
        mask = (maps.coloured | maps.white) & inside
        if not mask.any():
            return None
        white_only = not (maps.coloured & inside).any()
        cut = _icon_colour_mode(maps, mask, white_only)
        if cut is not None:  # halo and shadow stay inside the box the user drew
            rgba, (bx, by, bw, bh) = cut
            x0, y0 = max(bx, x), max(by, y)
            x1, y1 = min(bx + bw, x + w), min(by + bh, y + h)
            rgba = rgba[y0 - by:y1 - by, x0 - bx:x1 - bx]
            a_box = _bbox(rgba[..., 3] > 0)
            ax, ay, aw, ah = a_box
            cut = (np.ascontiguousarray(rgba[ay:ay + ah, ax:ax + aw]), (x0 + ax, y0 + ay, aw, ah))
    if cut is None:
        return None
    k = kind
    if k is None:
        if find_crosses(mask):
            k = "radial_line"
        elif _is_outline(mask, rgb.shape[:2]):
            k = "vascular_flow"
        elif _is_text(mask):
            k = "text"
        else:
            return None
    return Found(kind=k, box=cut[1], rgba=cut[0], method="roi", source=source,
                 meta={"alpha_from": "difference" if reference is not None else "colour"})


# ----------------------------------------------------------------------------------------------- dedupe
def _premultiplied(rgba: np.ndarray) -> np.ndarray:
    a = rgba[..., 3:4].astype(np.float32) / 255.0
    return np.concatenate([rgba[..., :3].astype(np.float32) * a, rgba[..., 3:4].astype(np.float32)], axis=2)


def icon_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Mean |premultiplied RGBA| difference (grey levels) of two RGBA icons over the pixels where either
    is at least half opaque, at the best alignment (shifts up to the size difference + 1 px);
    inf when their sizes differ by more than 2 px."""
    ha, wa = a.shape[:2]
    hb, wb = b.shape[:2]
    if abs(ha - hb) > 2 or abs(wa - wb) > 2:
        return float("inf")
    pa, pb = _premultiplied(a), _premultiplied(b)
    H, W = max(ha, hb) + 2, max(wa, wb) + 2
    ca = np.zeros((H, W, 4), np.float32)
    ca[1:1 + ha, 1:1 + wa] = pa
    best = float("inf")
    for dy in range(H - hb + 1):
        for dx in range(W - wb + 1):
            cb = np.zeros((H, W, 4), np.float32)
            cb[dy:dy + hb, dx:dx + wb] = pb
            body = (ca[..., 3] >= 128) | (cb[..., 3] >= 128)
            if body.any():
                best = min(best, float(np.abs(ca - cb)[body].mean()))
    return best


def _signature(rgba: np.ndarray) -> np.ndarray:
    """An 8x8 downsampled premultiplied luma + alpha: a cheap first comparison."""
    p = _premultiplied(rgba)
    small = cv2.resize(p, (8, 8), interpolation=cv2.INTER_AREA)
    return np.concatenate([small[..., :3].mean(axis=2).ravel(), small[..., 3].ravel()])


def dedupe(found: list[Found]) -> tuple[list[Found], int]:
    """Keep the first of each group of near-identical icons (same kind and method; `icon_distance`
    below DUP_MAD[kind]), counting the others in its `duplicates` (and listing their sources)."""
    kept: list[Found] = []
    sigs: list[np.ndarray] = []
    n_dup = 0
    for f in found:
        limit = DUP_MAD.get(f.kind, DUP_MAD["default"])
        sig = _signature(f.rgba)
        hit = None
        h, w = f.rgba.shape[:2]
        for j, k in enumerate(kept):
            kh, kw = k.rgba.shape[:2]
            if k.kind != f.kind or k.method != f.method or abs(kh - h) > 2 or abs(kw - w) > 2:
                continue
            if np.abs(sigs[j] - sig).mean() > 4 * limit:
                continue
            if icon_distance(k.rgba, f.rgba) <= limit:
                hit = j
                break
        if hit is None:
            kept.append(f)
            sigs.append(sig)
        else:
            kept[hit].duplicates += 1
            kept[hit].meta.setdefault("duplicate_sources", []).append(f.source)
            n_dup += 1
    return kept, n_dup


# ----------------------------------------------------------------------------------------------- driver
def _twin(reference: Path, rel: Path) -> Path | None:
    """The clean twin of `rel` in the reference folder: same relative path, else same stem, any format."""
    same = reference / rel
    if same.is_file():
        return same
    for suffix in IMAGE_SUFFIXES:
        for cand in (same.with_suffix(suffix), same.with_suffix(suffix.upper())):
            if cand.is_file():
                return cand
    return None


def _check_args(src: Path, out: Path, kind, reference, roi) -> None:
    if kind is not None and kind not in CLASS_IDS:
        raise ExtractError(f"Unknown kind {kind!r}; use one of {', '.join(CLASS_IDS)}.")
    if not src.exists():
        raise ExtractError(f"Folder {src} does not exist; point --from at a folder of annotated scans.")
    if not src.is_dir():
        raise ExtractError(f"{src} is not a folder; point --from at a folder of annotated scans.")
    if reference is not None and not Path(reference).is_dir():
        raise ExtractError(f"Reference folder {reference} does not exist; point --reference at a folder of "
                           f"clean twins with the same file names.")
    if roi is not None and (len(roi) != 4 or any(int(v) != v for v in roi) or min(roi[:2]) < 0
                            or roi[2] <= 0 or roi[3] <= 0):
        raise ExtractError(f"Box {roi} is not valid; give --roi as x,y,w,h with x, y >= 0 and w, h > 0.")
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ExtractError(f"Output {out} already exists and is not an empty folder; choose a new --out "
                           f"folder (or delete it) so earlier icons are not mixed in.")
    if out.resolve().is_relative_to(src.resolve()):
        raise ExtractError(f"Output {out} is inside the --from folder {src}; choose an --out outside it.")


def extract_icons(src: Path, out: Path, kind: str | None = None, reference: Path | None = None,
                  roi: tuple[int, int, int, int] | None = None, skip_bad: bool = False,
                  progress: Callable[[int, int], None] | None = None) -> dict:
    """Find annotations on every scan under `src` and write them as an icon set to `out`.

    Scans: PNG/JPG/BMP/TIFF anywhere under `src` (hidden files skipped), sorted by path. `out` is
    written under a temporary name next to it and renamed when complete, so it is either absent or
    whole. Returns {"files", "found", "written", "duplicates", "unclassified", "by_kind", "bad_files",
    "methods"}: files scanned, annotations found (before de-duplication), icons written, duplicates
    merged, groups that could not be classified, icons per kind, unreadable files skipped (relative
    paths), icons per method. Raises ExtractError for user mistakes and when nothing was found.
    """
    src, out = Path(src), Path(out)
    reference = Path(reference) if reference is not None else None
    _check_args(src, out, kind, reference, roi)
    files = find_images(src)
    if not files:
        raise ExtractError(f"No images (PNG/JPG/BMP/TIFF) found in {src}; point --from at a folder of "
                           f"annotated scans.")
    found: list[Found] = []
    bad: list[str] = []
    unclassified = 0
    for i, path in enumerate(files):
        rel = path.relative_to(src)
        try:
            rgb = read_rgb(path)
        except ExtractError:
            if not skip_bad:
                raise
            bad.append(rel.as_posix())
            if progress is not None:
                progress(i + 1, len(files))
            continue
        ref = None
        twin = _twin(reference, rel) if reference is not None else None
        if twin is not None:
            try:
                ref = read_rgb(twin)
            except ExtractError:
                if not skip_bad:
                    raise
                bad.append(twin.as_posix())
            if ref is not None and ref.shape != rgb.shape:
                ref = None  # not a twin after all: fall back to colour keying
        if roi is not None:
            x, y, w, h = (int(v) for v in roi)
            H, W = rgb.shape[:2]
            if x + w > W or y + h > H:
                raise ExtractError(f"Box --roi {x},{y},{w},{h} lies outside {rel} ({W}x{H} px); give a box "
                                   f"inside every image.")
            f = roi_annotation(rgb, (x, y, w, h), kind, ref, rel.as_posix())
            if f is None:
                unclassified += 1
            else:
                found.append(f)
        else:
            res = find_annotations(rgb, kind, ref, rel.as_posix())
            found.extend(res.found)
            unclassified += res.unclassified
        if progress is not None:
            progress(i + 1, len(files))

    if not found:
        raise ExtractError(f"No annotations found in the {len(files) - len(bad)} readable images under "
                           f"{src}; try --kind to keep unclassified overlays, --reference for clean twins, "
                           f"or --roi.")
    kept, n_dup = dedupe(found)
    _write_atomically(out, kept)
    by_kind: dict[str, int] = {}
    methods: dict[str, int] = {}
    for f in kept:
        by_kind[f.kind] = by_kind.get(f.kind, 0) + 1
        methods[f.method] = methods.get(f.method, 0) + 1
    return {"files": len(files), "found": len(found), "written": len(kept), "duplicates": n_dup,
            "unclassified": unclassified, "by_kind": by_kind, "bad_files": bad, "methods": methods}


def _write_atomically(out: Path, kept: list[Found]) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        entries: list[dict] = []
        counters: dict[tuple[str, str], int] = {}
        for f in kept:
            stem = Path(f.source).stem
            k = counters.get((f.kind, stem), 0)
            counters[(f.kind, stem)] = k + 1
            name = f"{f.kind}_{stem}_{k:03d}"
            meta = {"source": f.source, "box": list(f.box), "method": f.method,
                    "duplicates": f.duplicates, **f.meta}
            write_icon(tmp, Icon(name=name, kind=f.kind, rgba=f.rgba, meta=meta), entries)
        write_index(tmp, entries)
        if out.exists():
            out.rmdir()  # checked empty by _check_args
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
