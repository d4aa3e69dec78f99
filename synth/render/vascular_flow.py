"""vascular_flow: a colour-Doppler sample box (annular sector, rectangle or parallelogram outline), the
colour flow inside it and the Doppler colour bar.

`sample_vascular_flow(rng, h, w, icons, opts, avoid) -> VascularFlowParams`, then the pure
`draw_vascular_flow(params, layer, icons)`; the measured priors are the frozen `PRIORS` table and the flow
colour maps below.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from synth import exactmath as em
from synth.icons import IconSet
from synth.kinds import CLASS_IDS
from synth.raster import (
    REF_WIDTH_PX,
    Layer,
    Raster,
    RenderOptions,
    box_coverage,
    densify,
    free_points,
    free_rect,
    pick,
    screen_scale,
    snap_pts,
)
from synth.render.colours import jitter

__all__ = ["PRIORS", "ColourBar", "VascularFlowParams", "VascularFlowPriors", "Vessel", "draw_vascular_flow",
           "sample_vascular_flow"]


@dataclass(frozen=True)
class VascularFlowPriors:
    """How Doppler boxes look on the development scans (docs/ANNOTATION_STATS.md section 2). `*_p`: probabilities
    of the options beside them; integer ranges are `rng.integers` ranges (high end excluded)."""

    shapes: tuple[str, ...] = ("sector", "rectangle", "parallelogram")
    shapes_p: tuple[float, ...] = (0.7, 0.15, 0.15)
    wide_sector_p: float = 0.75  # a sector as wide as the fan (else a narrow 30-60 deg one)
    line_cum: tuple[float, float] = (0.6, 0.9)  # cumulative: solid below 0.6, dotted below 0.9, else dashed
    thin_solid_p: float = 0.85  # a solid outline 1 screen px wide (else 2)
    dot_sizes: tuple[float, ...] = (1.0, 2.0)  # dotted outline: dot size in screen px, equally likely
    thin_colours: tuple[tuple[int, int, int], ...] = ((130, 255, 70), (170, 190, 60), (235, 235, 235), (190, 190, 190))
    thin_colours_p: tuple[float, ...] = (0.7, 0.1, 0.1, 0.1)
    thick_colours: tuple[tuple[int, int, int], ...] = ((130, 200, 100), (215, 215, 215), (170, 190, 60))
    thick_colours_p: tuple[float, ...] = (0.6, 0.25, 0.15)
    colour_jitter: float = 0.05
    empty_p: float = 0.13  # 6/48 measured boxes are empty
    flow_cover: tuple[float, float] = (0.003, 0.12)  # log-uniform share of the box covered by flow
    n_clusters: tuple[int, int] = (1, 5)
    blue_p: float = 0.55  # a cluster flows away from the probe (blue) rather than towards it (red)
    peak: tuple[float, float] = (0.45, 1.0)  # brightest colour reached in a cluster (0..1)
    colour_bar_p: float = 0.35
    colour_bar_right_p: float = 0.2  # the colour bar at the right edge (else the left)


PRIORS = VascularFlowPriors()

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
    return densify(poly, step_px, closed=True)


def _outline_probe(p: VascularFlowParams, step_px: float) -> np.ndarray:
    """Points along the outline about `step_px` apart (cheap; for avoidance tests only)."""
    if p.shape != "sector":
        return densify(np.asarray(p.corners, np.float64), step_px, closed=True)
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
    shape = pick(rng, PRIORS.shapes, PRIORS.shapes_p)
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
        tv = rng.random() < PRIORS.wide_sector_p
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
    P = PRIORS
    if rng.random() < P.empty_p:  # 6/48 measured boxes are empty
        return ()
    outline = _box_outline(p_geom, 4.0)
    area = float(cv2.contourArea(outline.astype(np.float32)))
    target_px = em.exp(float(rng.uniform(em.log(P.flow_cover[0]), em.log(P.flow_cover[1])))) * area
    x_lo, y_lo = outline.min(axis=0)
    x_hi, y_hi = outline.max(axis=0)
    n_clusters = int(rng.integers(*P.n_clusters))
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
        family = "blue" if rng.random() < P.blue_p else "red"
        peak = float(rng.uniform(*P.peak))
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
            if avoid is not None and not free_points(avoid, densify(arr, 1.0)):
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
    """Doppler box as measured (docs/ANNOTATION_STATS.md section 2), with wide variation."""
    P = PRIORS
    s = screen_scale(rng, w, opts)
    u = rng.random()
    if u < P.line_cum[0]:
        line, width_s, period_s, on_s = "solid", (1.0 if rng.random() < P.thin_solid_p else 2.0), 0.0, 0.0
    elif u < P.line_cum[1]:
        line, width_s, period_s, on_s = "dotted", 1.0, 8.0, float(rng.choice(P.dot_sizes))
    else:
        line, width_s, period_s, on_s = "dashed", 2.0, 8.0, 5.0
    if width_s < 2:
        colour = pick(rng, P.thin_colours, P.thin_colours_p)
    else:
        colour = pick(rng, P.thick_colours, P.thick_colours_p)
    colour = jitter(rng, colour, P.colour_jitter)
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
            free_points(avoid, _outline_probe(tmp, 24.0)) and free_points(avoid, _outline_probe(tmp, 4.0))
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
    if rng.random() < P.colour_bar_p:
        bw = float(rng.uniform(6, 10)) * s
        x0 = float(rng.uniform(4, 20)) * s
        if rng.random() < P.colour_bar_right_p:
            x0 = w - x0 - bw
        y0 = float(rng.uniform(0.01, 0.05)) * h
        y1 = y0 + float(rng.uniform(0.2, 0.33)) * h
        if 0 <= x0 and x0 + bw <= w and free_rect(avoid, x0, y0, x0 + bw, y1):
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
    ras = Raster(b.x0, b.y0, b.x1, b.y1)
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
        dots = snap_pts(dots, p.scale, p.on_px / p.scale)
        layer.add_sparse(*box_coverage(dots[:, 0], dots[:, 1], p.on_px, p.on_px), p.colour, cid)
        return
    ras = Raster.around(outline[:, 0], outline[:, 1], p.width_px + 2, layer.h, layer.w)
    if p.line == "solid":  # a staircase on the screen pixel grid, like the scanner's line drawing
        ras.polyline(snap_pts(outline, p.scale, width_screen), True, p.width_px)
    else:  # dashed
        seg = np.diff(outline, axis=0)
        arclen = np.concatenate([[0.0], np.cumsum(em.hypot(seg[:, 0], seg[:, 1]))])
        on = (arclen % p.period_px) < p.on_px
        edges = np.flatnonzero(np.diff(np.concatenate([[0], on.astype(np.int8), [0]])))
        ras.polylines(
            [snap_pts(outline[a:b], p.scale, width_screen) for a, b in zip(edges[::2], edges[1::2]) if b - a >= 2],
            p.width_px,
        )
    layer.add_raster(ras, p.colour, cid)

