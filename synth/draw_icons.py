"""Draw the shipped annotation icon set (body-marker pictograms, caliper crosses) procedurally."""

from __future__ import annotations

import argparse
import json
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from synth.icons import INDEX_NAME, Icon, write_icon, write_index

SS = 4
"""Supersampling factor: shapes are drawn at 4x and area-averaged down, which anti-aliases them."""

WHITE = (255, 255, 255)
YELLOW = (255, 255, 0)

# Body markers: thin white outline, solid probe bar, and a faint dark rim so they read on bright tissue.
MARKER_STROKE_PX = 1.5
BAR_WIDTH_PX = 3.0
MARKER_RIM_PX = 1.0
MARKER_RIM_OPACITY = 0.5


# ----------------------------------------------------------------------------------------------
# Drawing primitives


class Pen:
    """Draws into one 4x supersampled mask; coordinates are (x, y) in icon pixels, pixel i spans [i, i+1)."""

    def __init__(self, h_px: int, w_px: int):
        self.h_px, self.w_px = h_px, w_px
        self.mask = np.zeros((h_px * SS, w_px * SS), np.uint8)

    @staticmethod
    def _pts(points) -> np.ndarray:
        # cv2 puts integer point j on the centre of 4x pixel j, i.e. at icon coordinate (j + 0.5) / SS;
        # the -0.5 and 4 fractional bits (shift=4) keep shapes where the icon coordinates say.
        p = (np.asarray(points, np.float64) * SS - 0.5) * 16
        return np.round(p).astype(np.int32).reshape(-1, 1, 2)

    @staticmethod
    def _width(width_px: float) -> int:
        return max(1, round(width_px * SS))

    def line(self, points, width_px: float = MARKER_STROKE_PX, closed: bool = False) -> Pen:
        cv2.polylines(self.mask, [self._pts(points)], closed, 255, self._width(width_px), cv2.LINE_AA, 4)
        return self

    def fill(self, points) -> Pen:
        cv2.fillPoly(self.mask, [self._pts(points)], 255, cv2.LINE_AA, 4)
        return self

    def rect(self, x0: float, y0: float, x1: float, y1: float) -> Pen:
        """Fill [x0, x1) x [y0, y1) exactly (no anti-aliasing on edges that sit on the 4x grid)."""
        r = lambda v: round(v * SS)
        self.mask[r(y0):r(y1), r(x0):r(x1)] = 255
        return self

    def circle(self, centre, r_px: float, width_px: float | None = MARKER_STROKE_PX) -> Pen:
        return self.line(_arc(centre, (r_px, r_px)), width_px, closed=True) if width_px else \
            self.fill(_arc(centre, (r_px, r_px)))

    def ellipse(self, centre, axes_px, angle_deg: float = 0.0, width_px: float = MARKER_STROKE_PX) -> Pen:
        return self.line(_arc(centre, axes_px, angle_deg), width_px, closed=True)

    def bar(self, centre, length_px: float, angle_deg: float, width_px: float = BAR_WIDTH_PX) -> Pen:
        """A filled rectangle of `length_px` x `width_px` centred on `centre`, long axis at `angle_deg`."""
        return self.fill(_rotated_rect(centre, length_px, width_px, angle_deg))

    def paste(self, mask_4x: np.ndarray, x_px: float, y_px: float) -> Pen:
        """Paste a 4x mask (max-combined) with its top-left corner at icon coordinate (x_px, y_px)."""
        x, y = round(x_px * SS), round(y_px * SS)
        h, w = mask_4x.shape
        region = self.mask[y:y + h, x:x + w]
        np.maximum(region, mask_4x[:region.shape[0], :region.shape[1]], out=region)
        return self


def _arc(centre, axes_px, angle_deg: float = 0.0, n: int = 96) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    pts = np.stack([axes_px[0] * np.cos(t), axes_px[1] * np.sin(t)], 1)
    return _rotate(pts, angle_deg) + np.asarray(centre, float)


def _rotate(pts, angle_deg: float) -> np.ndarray:
    a = np.deg2rad(angle_deg)
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    return np.asarray(pts, float) @ rot.T


def _rotated_rect(centre, length_px: float, width_px: float, angle_deg: float) -> np.ndarray:
    half = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * [length_px / 2, width_px / 2]
    return _rotate(half, angle_deg) + np.asarray(centre, float)


def _spline(points, closed: bool = True, per_segment: int = 12) -> np.ndarray:
    """A Catmull-Rom curve through `points` (x, y), so organ outlines stay smooth with few control points."""
    p = np.asarray(points, float)
    if closed:
        p = np.concatenate([p[-1:], p, p[:2]])
    else:
        p = np.concatenate([p[:1], p, p[-1:]])
    t = np.linspace(0, 1, per_segment, endpoint=False)[:, None]
    out = []
    for i in range(1, len(p) - 2):
        p0, p1, p2, p3 = p[i - 1], p[i], p[i + 1], p[i + 2]
        out.append(0.5 * (2 * p1 + (-p0 + p2) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                          + (-p0 + 3 * p1 - 3 * p2 + p3) * t ** 3))
    if not closed:
        out.append(p[-2:-1])
    return np.concatenate(out)


def _mirror_x(points, w_px: float) -> np.ndarray:
    p = np.array(points, float)
    p[:, 0] = w_px - p[:, 0]
    return p


def _down(mask_4x: np.ndarray) -> np.ndarray:
    """Area-average a 4x mask to icon resolution, as float coverage in [0, 1]."""
    h, w = mask_4x.shape
    return cv2.resize(mask_4x.astype(np.float32) / 255, (w // SS, h // SS), interpolation=cv2.INTER_AREA)


def _dilate_4x(mask_4x: np.ndarray, r_px: float) -> np.ndarray:
    r = round(r_px * SS)
    return cv2.dilate(mask_4x, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))


def _compose(core: np.ndarray, dark: np.ndarray, colour, dark_opacity: float) -> np.ndarray:
    """Straight-alpha RGBA of `colour` coverage `core` over a black layer of coverage `dark`."""
    alpha = core + dark_opacity * dark * (1 - core)
    safe = np.where(alpha > 0, alpha, 1)
    rgb = np.asarray(colour, np.float32) * (core / safe)[..., None]
    rgba = np.dstack([rgb, alpha * 255])
    rgba = np.clip(np.round(rgba), 0, 255).astype(np.uint8)
    rgba[rgba[..., 3] == 0] = 0  # invisible pixels carry no colour, so files stay canonical
    return rgba


def _crop_box(rgba: np.ndarray) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) of the alpha > 0 box."""
    ys, xs = np.nonzero(rgba[..., 3])
    return int(ys.min()), int(ys.max()) + 1, int(xs.min()), int(xs.max()) + 1


# ----------------------------------------------------------------------------------------------
# Body markers: one function per pictogram, each returns a Pictogram.
# Pictograms are drawn as seen facing the patient: the patient's right is on the viewer's left.


@dataclass(frozen=True)
class Pictogram:
    """A body marker before compositing: its outline strokes, its probe bar, and the bar's long-axis angle."""

    outline: Pen
    bar: Pen
    bar_angle_deg: float


def _pens(w_px: int, h_px: int) -> tuple[Pen, Pen]:
    return Pen(h_px, w_px), Pen(h_px, w_px)


def _clock_breast(tail_dir: int) -> Pictogram:
    """Breast as a clock face (12 ticks, nipple dot); the axillary tail points up and out (`tail_dir` +-1)."""
    w, h = 54, 54
    out, bar = _pens(w, h)
    cx, cy, r = (w / 2 - 4 * tail_dir), 31.0, 20.0
    # The outline leaves the circle to form the tail towards the axilla, then rejoins it.
    mid = -45 if tail_dir > 0 else -135
    a_out, a_in = mid - 22 * tail_dir, mid + 22 * tail_dir
    arc_t = np.deg2rad(np.linspace(a_in, a_out + 360 * tail_dir, 90))
    arc = np.stack([cx + r * np.cos(arc_t), cy + r * np.sin(arc_t)], 1)
    t_mid = np.deg2rad(mid)
    radial = np.array([np.cos(t_mid), np.sin(t_mid)])
    tip = np.array([cx, cy]) + (r + 11) * radial
    side = np.array([radial[1], -radial[0]]) * 4.0 * tail_dir  # towards arc[-1]
    tail = _spline([arc[-1], tip - 4 * radial + side, tip, tip - 4 * radial - side, arc[0]], closed=False)
    out.line(np.concatenate([arc, tail[1:-1]]), closed=True)
    for k in range(12):
        t = np.deg2rad(k * 30)
        inner = r - (4.5 if k % 3 == 0 else 3.0)  # longer ticks at 12, 3, 6, 9 o'clock
        out.line([(cx + inner * np.cos(t), cy + inner * np.sin(t)),
                  (cx + (r - 0.5) * np.cos(t), cy + (r - 0.5) * np.sin(t))], 1.2)
    out.circle((cx, cy), 1.8, None)
    # Probe across the radius in the upper inner quadrant (a radial bar would read as a clock hand).
    t = np.deg2rad(-135 if tail_dir > 0 else -45)
    angle = float(np.rad2deg(t)) + 90
    bar.bar((cx + 10 * np.cos(t), cy + 10 * np.sin(t)), 9.0, angle)
    return Pictogram(out, bar, angle)


def breast_left() -> Pictogram:
    return _clock_breast(+1)


def breast_right() -> Pictogram:
    return _clock_breast(-1)


def thyroid() -> Pictogram:
    """Two lobes with pointed upper poles joined by the isthmus, trachea above; probe on the patient's left lobe."""
    w, h = 56, 50
    out, bar = _pens(w, h)
    left_outer = [(18, 6), (13, 14), (10, 26), (11, 38), (16, 45), (22, 45)]
    left_inner = [(24, 33), (22, 22), (20, 11)]
    mirror = lambda pts: [tuple(p) for p in _mirror_x(pts, w)[::-1]]
    butterfly = left_outer + [(28, 41)] + mirror(left_outer) + mirror(left_inner) + [(28, 34)] + left_inner
    out.line(_spline(butterfly), closed=True)
    out.line([(25.0, 1), (25.0, 30)], 1.2).line([(31.0, 1), (31.0, 30)], 1.2)  # trachea walls
    for y in (6, 12, 18, 24):  # tracheal rings
        out.line([(25.5, y), (30.5, y)], 1.0)
    bar.bar((45.5, 28.0), 11.0, 90)
    return Pictogram(out, bar, 90)


def neck() -> Pictogram:
    """Head, neck and shoulders from the front; probe along the side of the neck."""
    w, h = 54, 58
    out, bar = _pens(w, h)
    out.ellipse((27, 13), (9.5, 11.5))
    side = [(21, 23), (20.5, 32), (18, 38), (8, 42), (3, 48), (2, 57)]
    out.line(_spline(side, closed=False)).line(_spline(_mirror_x(side, 54), closed=False))
    bar.bar((33.8, 31.0), 10.0, 80)
    return Pictogram(out, bar, 80)


def _torso_side() -> list[tuple[float, float]]:
    return [(17, 1), (7, 5), (4, 13), (6, 24), (8, 34), (5, 46), (6, 57)]


def abdomen() -> Pictogram:
    """Trunk from the front with the costal margin and the navel; probe subcostal on the patient's right."""
    w, h = 44, 58
    out, bar = _pens(w, h)
    side = _torso_side()
    out.line(_spline(side, closed=False)).line(_spline(_mirror_x(side, 44), closed=False))
    out.line(_spline([(9, 26), (15, 21), (22, 16), (29, 21), (35, 26)], closed=False), 1.2)
    out.circle((22, 36), 1.3, None)
    bar.bar((13.5, 27.0), 10.0, -38)
    return Pictogram(out, bar, -38)


def liver() -> Pictogram:
    """Liver wedge: large right lobe on the viewer's left tapering to the left lobe; probe subcostal."""
    w, h = 62, 44
    out, bar = _pens(w, h)
    outline = [(4, 17), (12, 7), (28, 4), (44, 5), (57, 9), (59, 13), (50, 20), (38, 27), (24, 35),
               (13, 39), (6, 35), (3, 26)]
    out.line(_spline(outline), closed=True)
    out.line(_spline([(38, 6), (36, 14), (35, 26)], closed=False), 1.2)  # falciform ligament
    bar.bar((31.0, 31.2), 11.0, -30)
    return Pictogram(out, bar, -30)


def _kidney(hilum_dir: int) -> Pictogram:
    """Bean with the hilum notch and ureter facing medially (`hilum_dir` +1: right of the icon)."""
    w, h = 42, 58
    out, bar = _pens(w, h)
    bean = [(21, 4), (12, 7), (7, 17), (6, 28), (8, 40), (14, 49), (22, 51), (29, 47), (30, 39), (26, 33),
            (25, 28), (27, 21), (31, 14), (29, 7)]
    ureter = [(25.5, 29), (30, 29.5), (34, 33), (36, 42), (36, 57)]
    bar_c, angle = (6.6, 28.0), 90.0
    if hilum_dir < 0:
        bean, ureter = _mirror_x(bean, w), _mirror_x(ureter, w)
        bar_c = (w - bar_c[0], bar_c[1])
    out.line(_spline(bean), closed=True).line(_spline(ureter, closed=False))
    bar.bar(bar_c, 11.0, angle)
    return Pictogram(out, bar, angle)


def kidney_right() -> Pictogram:
    return _kidney(+1)  # patient's right kidney: on the viewer's left, hilum towards the midline


def kidney_left() -> Pictogram:
    return _kidney(-1)


def pelvis() -> Pictogram:
    """Lower trunk and thighs from the front, navel at the top; probe suprapubic, transverse."""
    w, h = 46, 56
    out, bar = _pens(w, h)
    side = [(9, 1), (6, 10), (4, 20), (5, 32), (8, 55)]
    out.line(_spline(side, closed=False)).line(_spline(_mirror_x(side, 46), closed=False))
    out.line(_spline([(18, 55), (20, 42), (23, 37), (26, 42), (28, 55)], closed=False))
    out.circle((23, 7), 1.3, None)
    bar.bar((23.0, 26.0), 11.0, 0)
    return Pictogram(out, bar, 0)


def uterus() -> Pictogram:
    """Uterus, tubes, ovaries and vagina from the front; probe at the vaginal vault (transvaginal)."""
    w, h = 50, 58
    out, bar = _pens(w, h)
    body = [(16, 12), (19, 7), (25, 6), (31, 7), (34, 12), (32, 22), (28, 31), (28, 38), (22, 38), (22, 31),
            (18, 22)]
    out.line(_spline(body), closed=True)
    tube = [(17, 10), (11, 7), (5, 9), (3, 14)]
    out.line(_spline(tube, closed=False)).line(_spline(_mirror_x(tube, 50), closed=False))
    out.ellipse((7, 21), (3.6, 5.0), 20).ellipse((43, 21), (3.6, 5.0), -20)
    out.line([(22.5, 38), (21.5, 52)]).line([(27.5, 38), (28.5, 52)])
    bar.bar((25.0, 54.0), 11.0, 0)
    return Pictogram(out, bar, 0)


def heart() -> Pictogram:
    """Heart symbol tilted so the apex points to the patient's left, with the aortic arch; probe at the apex."""
    w, h = 46, 54
    out, bar = _pens(w, h)
    tilt, centre = -18, np.array([22.0, 31.0])
    place = lambda pts: _rotate(pts, tilt) + centre
    t = np.linspace(0, 2 * np.pi, 120, endpoint=False)
    shape = np.stack([16 * np.sin(t) ** 3,
                      -(13 * np.cos(t) - 5 * np.cos(2 * t) - 2 * np.cos(3 * t) - np.cos(4 * t))], 1) * 1.1
    out.line(place(shape), closed=True)
    out.line(place(_spline([(-1, -6), (-1, -17), (4, -23), (10, -22), (13, -13)], closed=False)))  # aorta
    for x0, y0 in ((2.0, -21.5), (6.0, -23.5)):  # arch branches
        out.line(place([(x0, y0), (x0, y0 - 3.5)]), 1.2)
    apex = place([(0, 17 * 1.1 + 3.2)])[0]
    bar.bar(apex, 10.0, tilt)
    return Pictogram(out, bar, tilt)


def bladder() -> Pictogram:
    """Bladder dome with ureters and urethra; probe suprapubic on the dome."""
    w, h = 48, 54
    out, bar = _pens(w, h)
    dome = [(9, 22), (13, 12), (24, 8), (35, 12), (39, 22), (35, 34), (28, 40), (20, 40), (13, 34)]
    out.line(_spline(dome), closed=True)
    out.line([(21, 40), (22, 53)]).line([(27, 40), (26, 53)])
    ureter = [(2, 2), (7, 8), (11, 17)]
    out.line(_spline(ureter, closed=False), 1.2).line(_spline(_mirror_x(ureter, 48), closed=False), 1.2)
    bar.bar((24.0, 8.2), 11.0, 0)
    return Pictogram(out, bar, 0)


def scrotum() -> Pictogram:
    """Scrotal sac with both testes and the raphe; probe along the patient's right testis."""
    w, h = 52, 52
    out, bar = _pens(w, h)
    sac = [(26, 4), (16, 3), (6, 8), (3, 22), (7, 38), (16, 48), (26, 47.5), (36, 48), (45, 38), (49, 22),
           (46, 8), (36, 3)]
    out.line(_spline(sac), closed=True)
    out.line([(26, 8), (26, 44)], 1.0)
    out.ellipse((16, 26), (6.5, 10.0), 10).ellipse((36, 26), (6.5, 10.0), -10)
    bar.bar((9.0, 25.0), 11.0, 95)
    return Pictogram(out, bar, 95)


def shoulder() -> Pictogram:
    """Patient's right shoulder, upper arm and armpit from the front; probe on top of the shoulder."""
    w, h = 40, 58
    out, bar = _pens(w, h)
    outer = [(37, 1), (35, 8), (29, 12), (19, 14), (11, 17), (6, 23), (4, 32), (4, 57)]
    armpit = [(14, 57), (14.5, 42), (16, 36), (18, 42), (22, 57)]
    out.line(_spline(outer, closed=False)).line(_spline(armpit, closed=False))
    bar.bar((13.0, 15.8), 10.0, -20)
    return Pictogram(out, bar, -20)


def obstetric() -> Pictogram:
    """Pregnant trunk in profile (patient facing right); probe on the belly."""
    w, h = 46, 58
    out, bar = _pens(w, h)
    back = [(8, 1), (6, 14), (8, 28), (6, 42), (9, 57)]
    front = [(20, 1), (24, 8), (23, 15), (30, 20), (40, 30), (41, 40), (34, 49), (24, 52), (22, 57)]
    out.line(_spline(back, closed=False)).line(_spline(front, closed=False))
    bar.bar((40.2, 35.0), 11.0, 95)
    return Pictogram(out, bar, 95)


def leg() -> Pictogram:
    """Right leg from the front (vascular studies); probe over the groin, along the femoral vessels."""
    w, h = 36, 62
    out, bar = _pens(w, h)
    outer = [(6, 1), (4, 16), (6, 30), (7, 42), (9, 54), (8, 61)]
    inner = [(28, 1), (26, 14), (22, 28), (20, 40), (19, 54), (22, 61)]
    out.line(_spline(outer, closed=False)).line(_spline(inner, closed=False))
    out.ellipse((14.5, 29.0), (4.0, 3.0))  # kneecap
    bar.bar((21.0, 10.0), 10.0, 80)
    return Pictogram(out, bar, 80)


BODY_MARKERS = {
    "breast_left": breast_left, "breast_right": breast_right, "thyroid": thyroid, "neck": neck,
    "abdomen": abdomen, "liver": liver, "kidney_left": kidney_left, "kidney_right": kidney_right,
    "pelvis": pelvis, "uterus": uterus, "heart": heart, "bladder": bladder, "scrotum": scrotum,
    "shoulder": shoulder, "obstetric": obstetric, "leg": leg,
}
"""Name -> pictogram function; every one becomes `body_marker/<name>.png`."""


def body_marker_icon(name: str) -> Icon:
    """Render pictogram `name` as a white RGBA icon with a dark rim; meta holds anchor and probe bar box."""
    pic = BODY_MARKERS[name]()
    core_4x = np.maximum(pic.outline.mask, pic.bar.mask)
    core, dark = _down(core_4x), _down(_dilate_4x(core_4x, MARKER_RIM_PX))
    rgba = _compose(core, dark, WHITE, MARKER_RIM_OPACITY)
    y0, y1, x0, x1 = _crop_box(rgba)
    rgba = rgba[y0:y1, x0:x1]
    bys, bxs = np.nonzero(_down(pic.bar.mask)[y0:y1, x0:x1] >= 0.5)
    h, w = rgba.shape[:2]
    meta = {"colour": list(WHITE), "anchor": [(h - 1) / 2, (w - 1) / 2],
            "probe_bar": [int(bxs.min()), int(bys.min()), int(bxs.max() - bxs.min() + 1),
                          int(bys.max() - bys.min() + 1)],
            "probe_bar_angle_deg": pic.bar_angle_deg, "rim_opacity": MARKER_RIM_OPACITY}
    return Icon(name=name, kind="body_marker", rgba=rgba, meta=meta)


# ----------------------------------------------------------------------------------------------
# Caliper crosses (kind radial_line), in the styles measured in docs/ANNOTATION_STATS.md section 1.


@dataclass(frozen=True)
class CaliperStyle:
    """One machine's caliper look; lengths in screen pixels."""

    name: str
    colour: tuple[int, int, int]  # drawn colour; the renderer recolours
    rgb_measured: tuple[int, int, int]  # core colour as stored in real JPEG captures
    arm_start_px: float  # radius where an arm begins (0 = continuous cross)
    arm_end_px: float  # radius of the tips: span = 2 * arm_end_px
    line_px: float
    shadow_opacity: float  # 1 px black drop shadow at (+1, +1); 0 = none
    halo_opacity: float  # faint same-colour halo 1 px around the lines (Mindray)
    centre_opacity: float  # Mindray draws the crossing pixels dimmer
    digit_px: float  # digit height
    digit_stroke_px: float
    digit_offsets: tuple[tuple[str, tuple[float, float]], ...]  # (suffix, (dx, dy) of digit centre)


# Shadow opacity 0.6: measured shadow luma 20 on background 52 (GE standard) and 38 on 76 (GE large).
# Odd line widths are centred on a pixel, even widths on a pixel edge, so '+' arms are crisp like real ones.
CALIPER_STYLES = (
    CaliperStyle("ge_standard", YELLOW, (228, 234, 177), 2.0, 6.0, 2.0, 0.6, 0.0, 1.0, 11.0, 2.0,
                 (("", (8.0, -15.0)), ("_below", (8.0, 14.0)))),
    CaliperStyle("ge_large", YELLOW, (232, 241, 123), 2.5, 8.5, 3.0, 0.6, 0.0, 1.0, 13.0, 2.5,
                 (("", (11.0, -20.0)), ("_below", (11.0, 19.0)))),
    CaliperStyle("mindray", WHITE, (208, 209, 211), 0.0, 6.5, 2.0, 0.0, 0.1, 0.65, 16.0, 2.5,
                 (("", (-16.0, 8.0)),)),
)
GLYPHS = {"+": "plus", "x": "x"}
DIGITS = (1, 2, 3)
_FRAME_PX = 64  # scratch canvas; big enough for a cross and its digit, cropped afterwards


def _cross_centre(style: CaliperStyle) -> float:
    """Centre coordinate (x = y) on the scratch canvas: on a pixel edge for even line widths."""
    return _FRAME_PX / 2 + (0.5 if round(style.line_px) % 2 else 0.0)


def _draw_cross(pen: Pen, style: CaliperStyle, glyph: str, c: float) -> None:
    a0, a1, half = style.arm_start_px, style.arm_end_px, style.line_px / 2
    if glyph == "+":  # exact rectangles: real '+' arms are pixel-aligned with sharp edges
        for lo, hi in ((c - a1, c - a0), (c + a0, c + a1)) if a0 else ((c - a1, c + a1),):
            pen.rect(lo, c - half, hi, c + half).rect(c - half, lo, c + half, hi)
        return
    for angle in (45, 135, 225, 315):
        t = np.deg2rad(angle)
        r_mid, length = (a0 + a1) / 2, a1 - a0
        pen.bar((c + r_mid * np.cos(t), c + r_mid * np.sin(t)), length, angle, style.line_px)


def _hershey(digit: int, thickness_4x: int) -> np.ndarray:
    """A digit in Hershey Simplex at a fixed large scale, tightly cropped."""
    big = np.zeros((240, 200), np.uint8)
    cv2.putText(big, str(digit), (50, 180), cv2.FONT_HERSHEY_SIMPLEX, 4.0, 255, thickness_4x, cv2.LINE_AA)
    ys, xs = np.nonzero(big)
    return big[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def _digit_4x(digit: int, height_px: float, stroke_px: float) -> np.ndarray:
    """Tightly cropped 4x mask of a digit `height_px` tall whose stroke is `stroke_px` after scaling."""
    h_4x, stroke_4x = round(height_px * SS), stroke_px * SS
    # Drawn height = skeleton height + thickness; pick the thickness that ends at stroke_4x once shrunk.
    skeleton_h = _hershey(digit, 1).shape[0] - 1
    shrink = (h_4x - stroke_4x) / skeleton_h
    glyph = _hershey(digit, round(stroke_4x / shrink))
    w_4x = max(1, round(glyph.shape[1] * h_4x / glyph.shape[0]))
    return cv2.resize(glyph, (w_4x, h_4x), interpolation=cv2.INTER_AREA)


def caliper_icon(style: CaliperStyle, glyph: str, digit: int | None = None, offset=("", (0.0, 0.0))) -> Icon:
    """Render one caliper cross (optionally numbered) in `style`; meta["anchor"] is the cross centre."""
    pen = Pen(_FRAME_PX, _FRAME_PX)
    c = _cross_centre(style)
    _draw_cross(pen, style, glyph, c)
    core = _down(pen.mask)
    if style.centre_opacity < 1:  # dimmer crossing pixels (Mindray)
        i0, i1 = int(np.floor(c - style.line_px / 2)), int(np.ceil(c + style.line_px / 2))
        core[i0:i1, i0:i1] *= style.centre_opacity
    if digit is not None:
        d = _digit_4x(digit, style.digit_px, style.digit_stroke_px)
        dx, dy = offset[1]
        pen_d = Pen(_FRAME_PX, _FRAME_PX).paste(d, c + dx - d.shape[1] / SS / 2, c + dy - d.shape[0] / SS / 2)
        core = np.maximum(core, _down(pen_d.mask))
    if style.halo_opacity:
        cross_kernel = cv2.getStructuringElement(cv2.MORPH_CROSS, (3, 3))
        core = np.maximum(core, style.halo_opacity * cv2.dilate(core, cross_kernel))
    shadow = np.zeros_like(core)
    if style.shadow_opacity:
        shadow[1:, 1:] = core[:-1, :-1]
    rgba = _compose(core, shadow, style.colour, style.shadow_opacity)
    y0, y1, x0, x1 = _crop_box(rgba)
    anchor = c - 0.5  # pixel-index convention: pixel i's centre is at i
    name = f"{GLYPHS[glyph]}_{style.name}" + (f"_n{digit}{offset[0]}" if digit is not None else "")
    meta = {"colour": list(style.colour), "style": style.name, "glyph": glyph, "number": digit,
            "anchor": [anchor - y0, anchor - x0], "span_px": 2 * style.arm_end_px, "line_px": style.line_px,
            "shadow": {"offset": [1, 1], "opacity": style.shadow_opacity} if style.shadow_opacity else None,
            "halo_opacity": style.halo_opacity,
            "rgb_measured": list(style.rgb_measured)}
    return Icon(name=name, kind="radial_line", rgba=rgba[y0:y1, x0:x1], meta=meta)


def caliper_icons() -> list[Icon]:
    """Every style x glyph, plain and numbered 1-3 at each of the style's digit positions."""
    icons = []
    for style in CALIPER_STYLES:
        for glyph in GLYPHS:
            icons.append(caliper_icon(style, glyph))
            icons += [caliper_icon(style, glyph, d, off) for off in style.digit_offsets for d in DIGITS]
    return icons


# ----------------------------------------------------------------------------------------------
# The whole set, a contact sheet to look at it, and the command line.


def default_icons() -> list[Icon]:
    """All shipped icons: body markers then calipers."""
    return [body_marker_icon(n) for n in BODY_MARKERS] + caliper_icons()


def draw_default_icons(out_dir: str | Path) -> Path:
    """Write the shipped icon set to `out_dir` (PNGs per kind + index.json); return the index path.

    Deterministic: the same code and OpenCV version give byte-identical files. PNGs that an earlier
    index in `out_dir` listed as drawn are removed first, so renamed icons leave no orphans behind.
    """
    out_dir = Path(out_dir)
    _remove_drawn(out_dir)
    entries: list[dict] = []
    for icon in default_icons():
        write_icon(out_dir, icon, entries)
    return write_index(out_dir, entries)


def _remove_drawn(out_dir: Path) -> None:
    """Delete the files an existing index lists with method "drawn" (never extracted or foreign ones)."""
    index_path = out_dir / INDEX_NAME
    if not index_path.is_file():
        return
    try:
        entries = json.loads(index_path.read_text())["icons"]
    except (json.JSONDecodeError, KeyError, TypeError):
        return  # an unreadable index is overwritten below; leave its files alone
    for entry in entries:
        path = out_dir / str(entry.get("file", ""))
        if entry.get("method") == "drawn" and path.suffix == ".png" and path.is_file():
            path.unlink()


def _speckle(h: int, w: int) -> np.ndarray:
    """Dark speckle-like grey background (mean ~70, grains wider than tall), fixed seed."""
    rng = np.random.default_rng(0)
    field = rng.rayleigh(1.0, (h, w)).astype(np.float32)
    field = cv2.GaussianBlur(field, (0, 0), sigmaX=3.0, sigmaY=1.3)
    field = (field - field.mean()) / field.std()
    return np.clip(70 + 45 * field, 0, 255).astype(np.uint8)


def contact_sheet(icons: list[Icon], zoom: int = 4, cols: int = 8) -> np.ndarray:
    """RGB sheet: each icon on mid-grey (left) and on dark speckle (right), zoomed with nearest."""
    cell = max(max(i.rgba.shape[:2]) for i in icons) + 6
    rows = -(-len(icons) // cols)
    sheet = np.full((rows * cell, cols * 2 * cell, 3), 128, np.uint8)
    sheet[:, cols * cell:] = _speckle(rows * cell, cols * cell)[..., None]
    for k, icon in enumerate(icons):
        r, q = divmod(k, cols)
        h, w = icon.rgba.shape[:2]
        for x_base in (0, cols * cell):
            y, x = r * cell + (cell - h) // 2, x_base + q * cell + (cell - w) // 2
            region = sheet[y:y + h, x:x + w].astype(np.float32)
            a = icon.rgba[..., 3:].astype(np.float32) / 255
            sheet[y:y + h, x:x + w] = np.round(region * (1 - a) + icon.rgba[..., :3] * a).astype(np.uint8)
    sheet[:, cols * cell - 1] = 255
    return cv2.resize(sheet, None, fx=zoom, fy=zoom, interpolation=cv2.INTER_NEAREST)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("assets/annotation_icons"),
                        help="icon folder to write (default: assets/annotation_icons)")
    parser.add_argument("--sheet", type=Path, default=None, help="also write a 4x contact sheet PNG here")
    args = parser.parse_args(argv)
    index = draw_default_icons(args.out)
    print(f"wrote {index}")
    if args.sheet:
        cv2.imwrite(str(args.sheet), cv2.cvtColor(contact_sheet(default_icons()), cv2.COLOR_RGB2BGR))
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
