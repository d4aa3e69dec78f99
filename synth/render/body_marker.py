"""body_marker: a body-marker pictogram from the icon set, recoloured, scaled, rotated and placed.

`sample_body_marker(rng, h, w, icons, opts, avoid) -> BodyMarkerParams`, then the pure
`draw_body_marker(params, layer, icons)`; the measured priors are the frozen `PRIORS` table below.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from synth import exactmath as em
from synth.icons import IconSet
from synth.kinds import CLASS_IDS
from synth.raster import (
    EDGE_BAND,
    REF_WIDTH_PX,
    Layer,
    RenderOptions,
    draw_icon,
    free_rect,
    icon_by_name,
    require_icons,
    rotated_size,
)
from synth.render.colours import any_colour

__all__ = ["PRIORS", "BodyMarkerParams", "BodyMarkerPriors", "draw_body_marker", "sample_body_marker"]


@dataclass(frozen=True)
class BodyMarkerPriors:
    """How body markers look on the development scans (docs/ANNOTATION_STATS.md). Integer ranges are
    `rng.integers` ranges (high end excluded)."""

    size_range: tuple[float, float] = (0.6, 1.4)  # x the icon's native size, at REF_WIDTH_PX
    max_size_frac: float = 0.3  # of the image's short side ("edges": max_size_frac_edges)
    max_size_frac_edges: float = 0.2
    angle_range_deg: tuple[float, float] = (-15, 15)
    colour_cum: tuple[float, float] = (0.55, 0.85)  # cumulative: white below 0.55, grey below 0.85, else yellow
    white_levels: tuple[int, int] = (225, 256)
    grey_levels: tuple[int, int] = (170, 225)
    yellow_green: tuple[int, int] = (235, 256)  # yellow: (255, green, blue)
    yellow_blue: tuple[int, int] = (0, 110)
    opacity_range: tuple[float, float] = (0.85, 1.0)


PRIORS = BodyMarkerPriors()


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
    P = PRIORS
    ics = require_icons(icons, "body_marker")
    ic = ics[int(rng.integers(len(ics)))]
    ih, iw = ic.rgba.shape[:2]
    scale = float(rng.uniform(*P.size_range)) * w / REF_WIDTH_PX
    limit = (P.max_size_frac_edges if opts.placement == "edges" else P.max_size_frac) * min(h, w)
    scale = min(scale, limit / max(ih, iw))
    scale = max(scale, min(8.0, limit) / max(ih, iw))
    angle = float(rng.uniform(*P.angle_range_deg))
    u = rng.random()
    if opts.palette == "any":
        colour = any_colour(rng)
    elif u < P.colour_cum[0]:
        v = int(rng.integers(*P.white_levels))
        colour = (v, v, v)
    elif u < P.colour_cum[1]:
        v = int(rng.integers(*P.grey_levels))
        colour = (v, v, v)
    else:
        colour = (255, int(rng.integers(*P.yellow_green)), int(rng.integers(*P.yellow_blue)))
    opacity = float(rng.uniform(*P.opacity_range))
    for attempt in range(80):
        s = scale * em.power(0.985, attempt)
        bw, bh = rotated_size(iw * s, ih * s, angle)
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
        if free_rect(avoid, cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2):
            scale = s
            break
    else:
        bw, bh = rotated_size(iw * scale, ih * scale, angle)
        cx = float(np.clip(cx, bw / 2 + 1, w - bw / 2 - 1))
        cy = float(np.clip(cy, bh / 2 + 1, h - bh / 2 - 1))
    return BodyMarkerParams(icon=ic.name, cx=cx, cy=cy, scale=scale, angle_deg=angle, colour=colour, opacity=opacity)


def draw_body_marker(params: BodyMarkerParams, layer: Layer, icons: IconSet | None = None) -> None:
    """Pure: rasterise `params` into `layer` (class body_marker)."""
    require_icons(icons, "body_marker")
    icon = icon_by_name(icons, "body_marker", params.icon)
    draw_icon(
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

