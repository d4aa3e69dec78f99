"""radial_line: caliper pairs (measurement crosses joined by a dotted line), their numbers and a readout panel.

`sample_radial_line(rng, h, w, icons, opts, avoid) -> RadialLineParams`, then the pure
`draw_radial_line(params, layer, icons)`. The measured priors are the frozen tables below: `CALIPER_STYLES`
(the look of each scanner's cross, in screen px) and `PRIORS` (how often each style, colour and layout is seen).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType

import cv2
import numpy as np

from synth import exactmath as em
from synth.icons import IconSet
from synth.kinds import CLASS_IDS
from synth.raster import (
    Layer,
    Raster,
    RenderOptions,
    TextLabel,
    box_coverage,
    densify,
    draw_icon,
    draw_label,
    free_points,
    free_rect,
    icon_by_name,
    label_box,
    pick,
    place_label,
    screen_scale,
    snap,
    snap_pts,
    text_ink,
)
from synth.render.colours import CURSOR_CYAN, CURSOR_GREEN, GE_NEAR_WHITE, any_colour, ge_yellow, jitter

__all__ = ["CALIPER_STYLES", "PRIORS", "CaliperPair", "CaliperStyle", "RadialLinePriors", "RadialLineParams",
           "Readout", "draw_radial_line", "sample_radial_line"]


@dataclass(frozen=True)
class CaliperStyle:
    """One scanner's caliper look, in screen px: arms from r0 to r1 from the centre (r0 > 0: a gap in the
    middle), stroke width, drop shadow, dot period and size of the line (period 0: no line), label cap
    height and the label offsets from the cross."""

    r0: float
    r1: float
    width: float
    shadow: float
    period: float
    dot: float
    cap: float
    offsets: tuple[tuple[float, float], ...]


CALIPER_STYLES = MappingProxyType({
    "ge": CaliperStyle(r0=2.0, r1=6.0, width=2.0, shadow=1.0, period=8.0, dot=1.0, cap=11.0,
                       offsets=((8.0, -15.0), (8.0, 14.0))),
    "ge_large": CaliperStyle(r0=2.7, r1=8.3, width=3.0, shadow=1.0, period=8.0, dot=2.0, cap=13.0,
                             offsets=((10.0, -18.0), (10.0, 17.0))),
    # small '+'/'x' with a gap at the centre, a 1 px dark outline and no line between the points
    "philips": CaliperStyle(r0=1.5, r1=4.5, width=1.0, shadow=0.0, period=0.0, dot=1.0, cap=12.0,
                            offsets=((8.0, -12.0), (8.0, 12.0))),
    "mindray": CaliperStyle(r0=0.0, r1=6.7, width=2.0, shadow=0.0, period=11.0, dot=2.0, cap=16.0,
                            offsets=((-16.0, 8.0), (16.0, 8.0))),
})  # fmt: skip
_ICON_STYLE = {"ge": "ge_standard", "ge_large": "ge_large", "mindray": "mindray"}


@dataclass(frozen=True)
class RadialLinePriors:
    """How calipers look on the GE Voluson / Mindray development scans (docs/ANNOTATION_STATS.md section 1) and in
    the palette="any" mix. `*_p`: probabilities of the options beside them; integer ranges are
    `rng.integers` ranges (high end excluded)."""

    styles: tuple[str, ...] = ("ge", "ge_large", "mindray")
    styles_p: tuple[float, ...] = (0.62, 0.15, 0.23)
    styles_any: tuple[str, ...] = ("ge", "ge_large", "mindray", "philips")
    styles_any_p: tuple[float, ...] = (0.3, 0.1, 0.2, 0.4)
    mindray_grey: tuple[int, int] = (200, 236)
    mindray_colours_p: tuple[float, ...] = (0.8, 0.1, 0.1)  # grey, cursor green, cursor cyan
    ge_colours_p: tuple[float, ...] = (0.8, 0.08, 0.06, 0.06)  # yellow, near-white, cursor green, cursor cyan
    ge_large_colours_p: tuple[float, ...] = (0.9, 0.0, 0.05, 0.05)
    colour_jitter: float = 0.04
    native_size_p: float = 0.6  # crosses at the style's size; else scaled by size_jitter
    size_jitter: tuple[float, float] = (0.85, 1.15)
    x_glyph_p: float = 0.15  # 'x' instead of '+' ("philips": x_glyph_p_philips)
    x_glyph_p_philips: float = 0.4
    mindray_dot_grey: tuple[int, int] = (155, 185)
    ge_large_dot_dim: float = 0.72  # dot colour = cross colour x this
    period_jitter: tuple[float, float] = (0.96, 1.04)
    solid_line_p_any: float = 0.2  # palette="any": dots one dot apart (a solid line)
    icon_p: float = 0.3  # a caliper glyph from the icon set instead of the procedural cross
    n_pairs: tuple[int, ...] = (1, 2, 3)
    n_pairs_p: tuple[float, ...] = (0.5, 0.42, 0.08)
    orthogonal_p: float = 0.6  # a second pair crosses the first at about 90 deg
    angle_cum: tuple[float, float] = (0.42, 0.54)  # cumulative: within 15 deg of horizontal, of vertical; else oblique
    length_beta: tuple[float, float] = (2.0, 2.6)  # length = w * (length_min + length_span * Beta(a, b))
    length_min: float = 0.07
    length_span: float = 0.65
    label_p: float = 0.55  # pairs numbered
    label_both_ends_p: float = 0.15
    label_end_p: float = 0.7  # the number at the second cross (else the first)
    label_below_p: float = 0.5
    readout_p: float = 0.3
    readout_one_line_per_pair_p: float = 0.8  # else 1-4 lines
    readout_corner_p: tuple[float, ...] = (0.7, 0.1, 0.1, 0.1)  # the style's corners, most likely first
    readout_any_corner_p: float = 0.3  # try the corners in random order instead
    shadow_opacity: tuple[float, float] = (0.55, 0.85)


PRIORS = RadialLinePriors()


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




def _line_angle(rng: np.random.Generator) -> float:
    """Caliper line angle in PRIORS.angle_cum's shares: near horizontal, near vertical or oblique
    (docs/ANNOTATION_STATS.md section 1)."""
    u = rng.random()
    if u < PRIORS.angle_cum[0]:
        return float(rng.uniform(-15, 15))
    if u < PRIORS.angle_cum[1]:
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
    if cands and rng.random() < PRIORS.icon_p:
        return cands[int(rng.integers(len(cands)))]
    return None


def _readout(rng, h: int, w: int, style: str, s: float, colour, n_lines: int, lengths_px, avoid) -> Readout | None:
    """Sample a readout panel flush with an image corner, or None when none fits."""
    if style == "mindray":
        cap, line_h, pad, font, bold = 14.0 * s, 26.0 * s, 8.0 * s, cv2.FONT_HERSHEY_SIMPLEX, False
        fill, text_col = (0, 0, 0), (250, 250, 250)
        corners = [(0, 1), (1, 1), (0, 0), (1, 0)]
        fmt = "{k} D {v:.2f} cm"
        top_bar = 7.0 * s
    else:
        big = style == "ge_large"
        cap = (20.0 if big else (12.0 if n_lines >= 4 else 17.0)) * s * float(rng.uniform(0.93, 1.05))
        line_h, pad, font, bold = cap * 1.8, 6.0 * s, cv2.FONT_HERSHEY_SIMPLEX, big
        fill, text_col = (42, 42, 42), colour
        corners = [(1, 1), (0, 1), (1, 0), (0, 0)]
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
    order = (list(rng.permutation(4)) if rng.random() < PRIORS.readout_any_corner_p
             else [int(rng.choice(4, p=PRIORS.readout_corner_p))])
    for ci in order:
        cx, cy = corners[ci]
        x0 = w - pw if cx else 0.0
        y0 = h - ph if cy else 0.0
        if not free_rect(avoid, x0, y0, x0 + pw, y0 + ph):
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
    """Caliper pairs as measured on GE Voluson / Mindray scans (docs/ANNOTATION_STATS.md section 1)."""
    P = PRIORS
    s = screen_scale(rng, w, opts)
    if opts.palette == "any":
        style = pick(rng, P.styles_any, P.styles_any_p)
    else:
        style = pick(rng, P.styles, P.styles_p)
    st = CALIPER_STYLES[style]
    if opts.palette == "any":
        colour = any_colour(rng)
    elif style == "mindray":
        v = int(rng.integers(*P.mindray_grey))
        colour = pick(rng, [(v, v, v), CURSOR_GREEN, CURSOR_CYAN], P.mindray_colours_p)
    else:
        colour = pick(
            rng,
            [ge_yellow(rng), GE_NEAR_WHITE, CURSOR_GREEN, CURSOR_CYAN],
            P.ge_colours_p if style == "ge" else P.ge_large_colours_p,
        )
    colour = jitter(rng, colour, P.colour_jitter)
    size = s if rng.random() < P.native_size_p else s * float(rng.uniform(*P.size_jitter))
    r0, r1, width = st.r0 * size, st.r1 * size, max(0.5, st.width * size)
    shadow = st.shadow * s
    glyph = "x" if rng.random() < (P.x_glyph_p_philips if style == "philips" else P.x_glyph_p) else "+"
    if style == "mindray":
        v = int(rng.integers(*P.mindray_dot_grey))
        dot_colour = (v, v, v + 1)
    elif style == "ge_large":
        dot_colour = tuple(int(c * P.ge_large_dot_dim) for c in colour)
    else:
        dot_colour = colour
    period = st.period * s * float(rng.uniform(*P.period_jitter))
    if opts.palette == "any" and period > 0 and rng.random() < P.solid_line_p_any:
        period = st.dot * s  # dots one dot apart: a solid line
    icon = _caliper_icon(rng, icons, style, glyph) if style != "philips" else None
    n_pairs = int(pick(rng, P.n_pairs, P.n_pairs_p))
    margin = r1 + width + shadow + 2
    pairs: list[CaliperPair] = []
    for i in range(n_pairs):
        for attempt in range(60):
            shrink = em.power(0.97, attempt)
            if i == 1 and pairs and rng.random() < P.orthogonal_p:  # two orthogonal diameters
                p = pairs[0]
                theta = math.degrees(em.atan2(p.y1 - p.y0, p.x1 - p.x0)) + 90 + float(rng.normal(0, 8))
                d = math.hypot(p.x1 - p.x0, p.y1 - p.y0) * float(rng.uniform(0.4, 1.1)) * shrink
                mx = (p.x0 + p.x1) / 2 + float(rng.normal(0, 0.08)) * d
                my = (p.y0 + p.y1) / 2 + float(rng.normal(0, 0.08)) * d
            else:
                theta = _line_angle(rng)
                d = w * (P.length_min + P.length_span * float(rng.beta(*P.length_beta))) * shrink
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
            sw = st.width
            pair = CaliperPair(
                snap(mx - dx, s, sw), snap(my - dy, s, sw), snap(mx + dx, s, sw), snap(my + dy, s, sw)
            )
            if avoid is not None:
                pts = densify([(pair.x0, pair.y0), (pair.x1, pair.y1)], 1.0)
                if not (
                    free_points(avoid, pts)
                    and free_rect(avoid, pair.x0 - margin, pair.y0 - margin, pair.x0 + margin, pair.y0 + margin)
                    and free_rect(avoid, pair.x1 - margin, pair.y1 - margin, pair.x1 + margin, pair.y1 + margin)
                ):
                    continue
            pairs.append(pair)
            break
    if not pairs:  # cannot avoid: fall back to a short horizontal pair in the middle
        d = min(w, h) * 0.25
        pairs.append(CaliperPair(w / 2 - d / 2, h / 2, w / 2 + d / 2, h / 2))
    labels: list[TextLabel] = []
    if rng.random() < P.label_p:
        cap = st.cap * s
        bold = style == "mindray"
        font = cv2.FONT_HERSHEY_SIMPLEX
        sh = shadow if style != "mindray" else 0.0
        both = rng.random() < P.label_both_ends_p
        end = rng.random() < P.label_end_p
        below = rng.random() < P.label_below_p
        for k, p in enumerate(pairs):
            text = str(k + 1)
            box = label_box(text, font, cap, bold, 0.0, sh)
            bw, bh = box[2] - box[0], box[3] - box[1]
            ends = [(p.x0, p.y0), (p.x1, p.y1)] if both else [(p.x1, p.y1) if end else (p.x0, p.y0)]
            for ex, ey in ends:
                offs = list(st.offsets) if not below else list(st.offsets)[::-1]
                offs += [(-ox, oy) for ox, oy in offs]
                for ox, oy in offs:
                    cx, cy = ex + ox * s, ey + oy * s
                    x0, y0 = cx - bw / 2, cy - bh / 2
                    if x0 < 1 or y0 < 1 or x0 + bw > w - 1 or y0 + bh > h - 1:
                        continue
                    if not free_rect(avoid, x0, y0, x0 + bw, y0 + bh):
                        continue
                    kw = place_label(
                        {"text": text, "cap_px": cap, "bold": bold, "font": font, "colour": colour, "shadow_px": sh},
                        x0,
                        y0,
                        box,
                    )
                    labels.append(TextLabel(**kw))
                    break
    readout = None
    if rng.random() < P.readout_p:
        n_lines = len(pairs) if rng.random() < P.readout_one_line_per_pair_p else int(rng.integers(1, 5))
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
        shadow_opacity=float(rng.uniform(*P.shadow_opacity)) if shadow else 0.0,
        dot_period_px=period,
        dot_px=st.dot * s,
        dot_colour=dot_colour,
        icon=icon,
        labels=tuple(labels),
        readout=readout,
    )


def _draw_cross(p: RadialLineParams, layer: Layer, cx: float, cy: float, cid: int) -> None:
    r0, r1, hw = p.arm_r0_px, p.arm_r1_px, p.arm_width_px / 2
    m = r1 + hw + p.shadow_px + 2
    ras = Raster(max(0.0, cx - m), max(0.0, cy - m), min(float(layer.w), cx + m), min(float(layer.h), cy + m))
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
        dim = Raster(ras.x0, ras.y0, ras.x0 + ras.w, ras.y0 + ras.h)
        dim.rect(cx - hw, cy - hw, cx + hw, cy + hw)
        layer.add_raster(dim, tuple(c * (1 - p.centre_dim) for c in p.colour), cid)


def _dots_on_segment(x0, y0, x1, y1, period: float) -> np.ndarray:
    n = int(math.hypot(x1 - x0, y1 - y0) // period)
    t = np.arange(n + 1) * period / max(math.hypot(x1 - x0, y1 - y0), 1e-9)
    return np.stack([x0 + (x1 - x0) * t, y0 + (y1 - y0) * t], axis=1)


def _draw_readout(r: Readout, layer: Layer, cid: int) -> None:
    ras = Raster(r.x0, r.y0, r.x1, r.y1)
    ras.rect(r.x0, r.y0, r.x1, r.y1)
    layer.add_raster(ras, r.fill, cid)
    for bx0, by0, bx1, by1, col in r.bars:
        b = Raster(bx0, by0, bx1, by1)
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
                snap_pts(dots[:, :1], p.scale, dw / p.scale, dedupe=False)[:, 0],
                snap_pts(dots[:, 1:], p.scale, p.dot_px / p.scale, dedupe=False)[:, 0],
            ],
            axis=1,
        )
        if p.shadow_px > 0:
            ys, xs, a = box_coverage(dots[:, 0] + p.shadow_px, dots[:, 1] + p.shadow_px, dw, p.dot_px)
            layer.add_sparse(ys, xs, a * np.float32(p.shadow_opacity), (0, 0, 0), cid)
        ys, xs, a = box_coverage(dots[:, 0], dots[:, 1], dw, p.dot_px)
        layer.add_sparse(ys, xs, a, p.dot_colour, cid)
    icon = None
    if p.icon is not None and icons is not None:
        icon = icon_by_name(icons, "radial_line", p.icon)
    for pair in p.pairs:
        for cx, cy in ((pair.x0, pair.y0), (pair.x1, pair.y1)):
            if icon is not None:
                anchor = icon.meta.get("anchor")  # [row, col] of the cross centre, pixel-centre indices
                draw_icon(
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

