"""Procedural B-mode phantom scans (convex, abdominal convex, linear) for runs without clean scans.

A phantom is built in two steps (sampling separate from rendering):
`sample_phantom(rng, size_px, geometry)` draws a small serialisable `PhantomParams`, and
`render_phantom(params)` turns it into an image without touching any RNG but its own
`params.noise_seed`. The image model, in "beam" coordinates (depth `d_px` along each scan line,
lateral position `u` in [-1, 1] across the fan):

    grey = echo(d, u) * posterior(d, u) * tgc(d) * lateral(u) * speckle(d, s)

- `echo` is the tissue map: wavy layers with bright interfaces, slow log-normal heterogeneity,
  arc-aligned clutter and streaks, soft organ-sized regions, cysts (anechoic, bright far wall,
  brighter stroma around them) and solid lesions (textured; bright and shadowing when calcified).
- `posterior` integrates along each scan line, so fluid brightens everything below it (posterior
  acoustic enhancement) and strong attenuators darken it (shadow).
- `tgc` is flat on average (time-gain compensation), brighter in the first millimetres
  (transducer ring-down) and falling ~20 % over the last ~10 % of the depth, as on the
  dev scans (docs/ANNOTATION_STATS.md section 5).
- `speckle` is fully developed speckle: the intensity of a blurred complex Gaussian field
  (exponential intensity, Rayleigh amplitude; two looks compounded) raised to a small power, the
  way log-compression and speckle reduction shrink its contrast. Its grains are ~2.3x wider
  along the arcs than in depth because the blur is anisotropic in (depth, arc-length) coordinates.
Both maps are drawn on small beam grids and scan-converted to the frame with one `cv2.remap` each;
a soft display shoulder keeps bright tissue from clipping. Everything outside the fan is exactly 0;
depth ticks, a focus marker, the transvaginal probe outline and a GE-style grey-scale bar are drawn
in grey on top. The output is RGB uint8 with R = G = B; with `chrome=True` the scanner's coloured
text, logos and bars (`synth.chrome`) are drawn over it as well.

Their grey levels, patch contrast and grain fall inside the clean dev scans' p10-p90 ranges
(docs/ANNOTATION_STATS.md section 5; tests/test_phantom.py). Phantoms are simpler than real anatomy (no
bowel, no follicle clusters, no Doppler), which is fine for their job: a plausible, varied background to
paste annotations on when a user has no clean scans.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from synth import exactmath as em
from synth.chrome import Chrome, draw_chrome, sample_chrome

GEOMETRIES = ("convex", "abdominal", "linear")
"""`convex`: transvaginal-like sector, apex near the top, 110-150 deg. `abdominal`: convex probe
with the apex above the frame, 55-65 deg, flat-ish wide top. `linear`: a rectangle."""

CHROME_STREAM = 0x6368726F
"""Second SeedSequence word of a phantom's chrome stream (ASCII 'chro'), apart from its scan's."""

REFLECTOR_STREAM = 0x7265666C
"""Second SeedSequence word of a phantom's reflector stream (ASCII 'refl')."""

_GEOMETRY_PROBS = (0.8, 0.1, 0.1)  # dev scans: ~80 % transvaginal, the rest abdominal (no linear seen)

# Speckle grain of the dev scans (docs/ANNOTATION_STATS.md section 5): autocorrelation FWHM
# 8.0 px along the arcs and 3.4 px in depth on frames ~532 px tall. Grain is tied to the depth
# range shown, so it scales with the frame height: `size_px / _REF_HEIGHT_PX`.
_REF_HEIGHT_PX = 532.0
_GRAIN_FWHM_LATERAL_PX = 8.0
_GRAIN_FWHM_AXIAL_PX = 3.4

# Blur sigma of the complex field per target FWHM. Theory for the raw intensity gives FWHM = 2.355
# sigma (sigma = 0.42 FWHM); power compression, compounding and the bilinear scan conversion widen
# grains, so 0.36 is calibrated: it gives phantoms (at 532 px) the dev scans' grain widths.
_SIGMA_PER_FWHM_LATERAL = 0.36
_SIGMA_PER_FWHM_AXIAL = 0.36

_SPECKLE_LOOKS = 2  # independent speckle patterns averaged (compounding)

# Display map: linear up to the knee, then a soft shoulder towards the ceiling, so bright tissue
# and stacked enhancement rarely clip (real scans: p95 grey 176, p90 of that 205).
_DISPLAY_KNEE_GREY = 180.0
_DISPLAY_CEILING_GREY = 250.0

_MIN_SIZE_PX = 32


@dataclass(frozen=True)
class Probe:
    """Fan geometry in frame pixels (x right, y down).

    Convex kinds: scan lines are rays from the apex `(apex_x_px, apex_y_px)` (it may lie above
    the frame), between radii `radius_near_px` (the probe face) and `radius_far_px`, at angles
    within +-`half_angle_rad` of straight down. Linear: vertical scan lines filling the rectangle
    `left_px..right_px` x `top_px..bottom_px` (the radius/angle fields are unused).
    """

    geometry: str
    apex_x_px: float = 0.0
    apex_y_px: float = 0.0
    radius_near_px: float = 0.0
    radius_far_px: float = 0.0
    half_angle_rad: float = 0.0
    left_px: float = 0.0
    right_px: float = 0.0
    top_px: float = 0.0
    bottom_px: float = 0.0

    @property
    def depth_px(self) -> float:
        """Length of one scan line in frame pixels."""
        if self.geometry == "linear":
            return self.bottom_px - self.top_px
        return self.radius_far_px - self.radius_near_px

    @property
    def arc_half_px(self) -> float:
        """Half the extent of the lateral speckle coordinate `s_px` (see `beam_coords`)."""
        if self.geometry == "linear":
            return 0.5 * (self.right_px - self.left_px)
        return _speckle_radius_px(self.radius_far_px, self) * self.half_angle_rad

    def beam_coords(self, x_px: np.ndarray, y_px: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Frame pixels -> beam coordinates, all float32 arrays of the input shape.

        Returns `d_px` (depth along the scan line, 0 at the probe face), `u` (lateral, -1..1 across
        the fan) and `s_px` (lateral arc length used for speckle, in pixels at the reference radius).
        Points outside the fan get values outside [0, depth_px] x [-1, 1].
        """
        if self.geometry == "linear":
            half_w = 0.5 * (self.right_px - self.left_px)
            s_px = x_px - np.float32(self.left_px + half_w)
            return y_px - np.float32(self.top_px), s_px / np.float32(half_w), s_px
        dx = x_px - np.float32(self.apex_x_px)
        dy = y_px - np.float32(self.apex_y_px)
        # cartToPolar(a, b) gives atan2(b, a): passing (dy, dx) measures the angle from straight down.
        r_px, theta = cv2.cartToPolar(dy, dx)
        theta = np.where(theta > np.float32(math.pi), theta - np.float32(2 * math.pi), theta)
        s_px = _speckle_radius_px(r_px, self) * theta
        return r_px - np.float32(self.radius_near_px), theta / np.float32(self.half_angle_rad), s_px

    def arc_px(self, d_px: np.ndarray, u: np.ndarray) -> np.ndarray:
        """Beam coordinates (broadcastable float32 arrays) -> the speckle arc length `s_px`."""
        if self.geometry == "linear":
            return u * np.float32(0.5 * (self.right_px - self.left_px))
        r_px = d_px + np.float32(self.radius_near_px)
        return _speckle_radius_px(r_px, self) * u * np.float32(self.half_angle_rad)

    def frame_coords(self, d_px: np.ndarray, u: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Beam coordinates (broadcastable arrays) -> frame pixels `(x_px, y_px)`."""
        if self.geometry == "linear":
            half_w = 0.5 * (self.right_px - self.left_px)
            return self.left_px + half_w * (1.0 + u), self.top_px + d_px
        r_px = self.radius_near_px + d_px
        theta = u * self.half_angle_rad
        sn, cs = em.sincos(theta)
        return self.apex_x_px + r_px * sn, self.apex_y_px + r_px * cs


def _speckle_radius_px(r_px, probe: Probe):
    """Radius that converts angle to speckle arc length; between r and a fixed mid-depth radius.

    Real convex scans show grain that widens with depth, but far less than the 5-10x that pure
    angular sampling would give from the probe face to the bottom of a transvaginal fan. Using
    r**0.4 * r_mid**0.6 keeps the grain width in pixels within ~2x over the depth.
    """
    r_mid_px = 0.5 * (probe.radius_near_px + probe.radius_far_px)
    if np.ndim(r_px) == 0:
        return em.power(r_mid_px, 0.6) * em.power(max(float(r_px), 1.0), 0.4)
    r_px = np.maximum(r_px, np.float32(1.0))
    return np.float32(em.power(r_mid_px, 0.6)) * cv2.pow(r_px, 0.4)  # cv2.pow on float32: ~5x numpy's **


@dataclass(frozen=True)
class Layer:
    """A tissue layer starting at a wavy boundary; echo is relative to the background (1.0).

    Boundary depth at lateral `u`: `depth_frac + tilt_frac * u + wave_frac * sin(wave_cycles * pi
    * u + wave_phase_rad)`, as fractions of the fan depth. `interface` is the brightness of the
    specular line on the boundary, relative to the background echo.
    """

    depth_frac: float
    tilt_frac: float
    wave_frac: float
    wave_cycles: float
    wave_phase_rad: float
    echo: float
    interface: float


@dataclass(frozen=True)
class Lesion:
    """An elliptical region, cyst or solid lesion in frame pixels, with a lobulated boundary.

    The outline radius at polar angle phi (in the ellipse's own frame) is scaled by
    `1 + sum_k amplitude_k * cos(k * phi + phase_k)`: smooth lobes without corners.

    `echo` is the interior echogenicity relative to the background (cysts ~0.05). The posterior
    gain is the factor applied below the lesion after a beam crosses its full thickness (> 1:
    acoustic enhancement behind fluid, < 1: shadow). `wall` is the brightness of the far wall.
    """

    kind: str  # "region" (soft tissue patch), "cyst" or "solid"
    centre_x_px: float
    centre_y_px: float
    semi_axis_a_px: float
    semi_axis_b_px: float
    angle_rad: float
    harmonics: tuple[tuple[float, float], ...]  # (amplitude, phase_rad) of outline modes k = 2, 3, ...
    roughness: float  # small-scale outline noise, in units of the radius
    edge_frac: float  # width of the boundary blend, as a fraction of the frame size
    echo: float
    texture: float
    posterior_gain: float
    wall: float
    halo: float  # brightening of the tissue just outside (ovarian stroma around a follicle/cyst)


@dataclass(frozen=True)
class Ticks:
    """Depth scale along one side of the frame: a dot every centimetre, a dash every 5 cm."""

    x_px: float
    top_px: float
    spacing_px: float
    grey: int
    focus_y_px: float | None  # the focus marker (a small triangle) beside the ticks, if any


@dataclass(frozen=True)
class PhantomParams:
    """Everything `render_phantom` needs; all randomness is here or behind `noise_seed`."""

    size_px: int
    probe: Probe
    layers: tuple[Layer, ...]
    lesions: tuple[Lesion, ...]
    gain_grey: float  # mean grey of plain background tissue
    heterogeneity: float  # std of the slow log-normal echo variation
    texture: float  # amplitude of the finer tissue clutter (clumps)
    streaks: float  # brightness of sparse specular streaks along the arcs
    near_field_gain: float  # extra brightness at the probe face (ring-down)
    far_drop: float  # relative grey lost at the bottom of the fan
    tgc_wobble: float  # amplitude of the depth-gain wiggle left by imperfect TGC
    tgc_phase_rad: float
    lateral_falloff: float  # relative grey lost at the fan edges
    speckle_power: float  # intensity exponent; lower = less speckle contrast
    ticks: Ticks | None
    grey_bar: bool  # GE-style grey-scale bar at the top of the left edge
    probe_ring_grey: int  # outline of a transvaginal probe face at the apex; 0 = none
    noise_seed: int


@dataclass(frozen=True)
class Reflectors:
    """Crisp bright echoes on top of the speckle, in frame px: specular reflections (thin curved segments
    along the arcs, from tissue interfaces met head-on) and point echoes (small bright spots).

    Real scans are full of both, and both look like annotation strokes and caliper dots: a thin bright
    line, a bright dot with dark around it. The speckle and streaks of the echo map are never that crisp.
    """

    lines: tuple[tuple[tuple[float, float], ...], ...]  # polylines, (x_px, y_px) points
    line_width_px: tuple[float, ...]
    line_gain: tuple[float, ...]  # grey levels added at the line's core
    dots: tuple[tuple[float, float, float], ...]  # (x_px, y_px, gain)
    blur_sigma_px: float


# ----------------------------------------------------------------------------- sampling


def sample_probe(rng: np.random.Generator, size_px: int, geometry: str) -> Probe:
    """Draw a fan for a square frame of `size_px`; proportions follow the dev scans."""
    h = float(size_px)
    if geometry == "convex":
        # Transvaginal: the probe is a small disc at the top centre, the fan opens 110-150 deg and
        # reaches (or nearly reaches) the bottom; in a square frame its sides are cut by the edges.
        apex_y = h * rng.uniform(-0.06, 0.03)
        radius_near = h * rng.uniform(0.06, 0.1)
        radius_far = h * rng.uniform(0.85, 0.99) - apex_y
        return Probe(
            geometry,
            apex_x_px=h * (0.5 + rng.uniform(-0.02, 0.02)),
            apex_y_px=apex_y,
            radius_near_px=radius_near,
            radius_far_px=radius_far,
            half_angle_rad=math.radians(rng.uniform(55.0, 75.0)),
        )
    if geometry == "abdominal":
        # Apex 140-350 px above a ~532 px frame; the top arc sits just below the frame's top edge.
        apex_y = -h * rng.uniform(140.0, 350.0) / _REF_HEIGHT_PX
        radius_near = -apex_y + h * rng.uniform(0.01, 0.04)
        radius_far = h * rng.uniform(0.95, 1.0) - apex_y
        return Probe(
            geometry,
            apex_x_px=h * (0.5 + rng.uniform(-0.02, 0.02)),
            apex_y_px=apex_y,
            radius_near_px=radius_near,
            radius_far_px=radius_far,
            half_angle_rad=math.radians(0.5 * rng.uniform(55.0, 65.0)),
        )
    if geometry == "linear":
        width = h * rng.uniform(0.55, 0.8)
        left = 0.5 * (h - width) + h * rng.uniform(-0.03, 0.03)
        return Probe(
            geometry,
            left_px=left,
            right_px=left + width,
            top_px=h * rng.uniform(0.02, 0.06),
            bottom_px=h * rng.uniform(0.94, 0.99),
        )
    raise ValueError(f"unknown geometry {geometry!r}; use one of {GEOMETRIES}")


def sample_layers(rng: np.random.Generator, geometry: str) -> tuple[Layer, ...]:
    """Draw 1-5 layers: a bright near-field band, then tissue bands of varying echo."""
    layers = [
        # Near-field band (abdominal wall / vaginal fornix): bright, ends with a strong interface.
        Layer(
            depth_frac=rng.uniform(0.0, 0.02),
            tilt_frac=0.0,
            wave_frac=rng.uniform(0.0, 0.01),
            wave_cycles=rng.uniform(1.0, 3.0),
            wave_phase_rad=rng.uniform(0, 2 * math.pi),
            echo=rng.uniform(0.9, 1.3),
            interface=rng.uniform(0.2, 1.0),
        )
    ]
    # Pelvic (transvaginal) views show few deep layers; abdominal and linear views show the body
    # wall (fat, muscle, fascia) as several bands.
    depth = rng.uniform(0.04, 0.12) if geometry == "convex" else rng.uniform(0.08, 0.2)
    n_layers = int(rng.integers(0, 3)) if geometry == "convex" else int(rng.integers(1, 5))
    for _ in range(n_layers):
        layers.append(
            Layer(
                depth_frac=depth,
                tilt_frac=rng.uniform(-0.12, 0.12),
                wave_frac=rng.uniform(0.0, 0.025),
                wave_cycles=rng.uniform(0.5, 2.0),
                wave_phase_rad=rng.uniform(0, 2 * math.pi),
                echo=em.exp(float(rng.normal(0.0, 0.3))),
                interface=rng.uniform(0.0, 1.2) if rng.random() < 0.6 else 0.0,
            )
        )
        depth += rng.uniform(0.08, 0.35)
        if depth > 0.95:
            break
    return tuple(layers)


def _sample_harmonics(rng: np.random.Generator, max_amplitude: float) -> tuple[tuple[float, float], ...]:
    """Outline modes k = 2, 3, 4 with amplitudes up to `max_amplitude / (k - 1)`; lower modes dominate."""
    return tuple(
        (float(rng.uniform(0.0, max_amplitude / (k - 1))), float(rng.uniform(0.0, 2 * math.pi)))
        for k in (2, 3, 4)
    )


def _place_lesion(
    rng: np.random.Generator,
    probe: Probe,
    kind: str,
    size_px: int,
    axes_px: tuple[float, float],
    angle_rad: float,
) -> tuple[float, float]:
    """Draw a lesion centre `(x_px, y_px)` inside the fan.

    Cysts stay below the near field, where real pelvic scans show bright tissue (depth decile 2
    is the brightest on the dev scans).
    """
    depth_px = probe.depth_px
    d_px = rng.uniform(0.25 if kind == "cyst" else 0.15, 0.75) * depth_px
    if kind == "cyst":
        half_height_px = math.hypot(axes_px[0] * em.sin(angle_rad), axes_px[1] * em.cos(angle_rad))
        d_px = min(max(d_px, half_height_px + 0.12 * depth_px), 0.8 * depth_px)
    x_px, y_px = probe.frame_coords(np.float64(d_px), np.float64(rng.uniform(-0.7, 0.7)))
    return float(np.clip(x_px, 0.1 * size_px, 0.9 * size_px)), float(y_px)


def sample_lesion(rng: np.random.Generator, probe: Probe, kind: str, size_px: int) -> Lesion:
    """Draw one region, cyst or solid lesion whose centre lies inside the fan."""
    h = float(size_px)
    if kind == "region":
        # A large organ-sized patch of different echo with a soft boundary and no acoustic effect.
        a_px = h * rng.uniform(0.15, 0.45)
        axes_px, angle_rad = (a_px, a_px * rng.uniform(0.3, 0.8)), rng.uniform(-0.6, 0.6)
        x_px, y_px = _place_lesion(rng, probe, kind, size_px, axes_px, angle_rad)
        return Lesion(
            kind, x_px, y_px, *axes_px, angle_rad,
            harmonics=_sample_harmonics(rng, 0.25),
            roughness=rng.uniform(0.03, 0.1),
            edge_frac=rng.uniform(0.03, 0.1),
            echo=em.exp(float(rng.normal(0.1, 0.55))),
            texture=rng.uniform(0.05, 0.3),
            posterior_gain=1.0,
            wall=0.0,
            halo=0.0,
        )  # fmt: skip
    if kind == "cyst":
        # Linear probes image small parts (thyroid, breast): their cysts are smaller.
        a_px = h * (rng.uniform(0.05, 0.2) if probe.geometry == "linear" else rng.uniform(0.1, 0.36))
        axes_px, angle_rad = (a_px, a_px * rng.uniform(0.5, 1.0)), rng.uniform(-0.5, 0.5)
        x_px, y_px = _place_lesion(rng, probe, kind, size_px, axes_px, angle_rad)
        return Lesion(
            kind, x_px, y_px, *axes_px, angle_rad,
            harmonics=_sample_harmonics(rng, 0.12),
            roughness=rng.uniform(0.0, 0.02),
            edge_frac=rng.uniform(0.003, 0.008),
            echo=em.exp(float(rng.uniform(em.log(0.05), em.log(0.45)))),  # anechoic to "ground glass"
            texture=rng.uniform(0.0, 0.2),
            posterior_gain=rng.uniform(1.3, 2.0),
            wall=rng.uniform(0.3, 1.2),
            halo=rng.uniform(0.0, 1.0),
        )  # fmt: skip
    if kind == "solid":
        a_px = h * rng.uniform(0.04, 0.14)
        axes_px, angle_rad = (a_px, a_px * rng.uniform(0.5, 1.0)), rng.uniform(-math.pi, math.pi)
        x_px, y_px = _place_lesion(rng, probe, kind, size_px, axes_px, angle_rad)
        # Shadowing lesions are the calcified, strongly reflecting ones (dermoid, fibroma): bright.
        # Small ones do not shadow: their shadow would be a thin dark line, like a drawn line.
        shadowing = rng.random() < 0.35 and a_px > 0.07 * h
        return Lesion(
            kind, x_px, y_px, *axes_px, angle_rad,
            harmonics=_sample_harmonics(rng, 0.2),
            roughness=rng.uniform(0.02, 0.08),
            edge_frac=rng.uniform(0.01, 0.03),
            echo=em.exp(float(rng.normal(0.8, 0.3) if shadowing else rng.normal(0.15, 0.35))),
            texture=rng.uniform(0.1, 0.35),
            posterior_gain=rng.uniform(0.25, 0.6) if shadowing else rng.uniform(0.9, 1.15),
            wall=0.0,  # a bright ring around a small solid lesion reads like an annotation circle
            halo=0.0,
        )  # fmt: skip
    raise ValueError(f"unknown lesion kind {kind!r}; use region, cyst or solid")


def sample_ticks(rng: np.random.Generator, probe: Probe, size_px: int) -> Ticks | None:
    """Depth ticks along the left (GE) or right (Mindray) edge, one per centimetre."""
    if rng.random() < 0.15:
        return None
    h = float(size_px)
    left = rng.random() < 0.6
    x = h * rng.uniform(0.04, 0.065)
    return Ticks(
        x_px=x if left else h - x,
        top_px=max(
            probe.top_px if probe.geometry == "linear" else probe.apex_y_px + probe.radius_near_px, 0.0
        )
        + h * rng.uniform(0.0, 0.02),
        spacing_px=h * rng.uniform(0.055, 0.09),  # 1 cm at 10-16 cm depth
        grey=int(rng.integers(150, 230)),
        focus_y_px=h * rng.uniform(0.3, 0.7) if rng.random() < 0.5 else None,
    )


def sample_reflectors(rng: np.random.Generator, probe: Probe, size_px: int) -> Reflectors:
    """Draw 0-12 specular segments (10-120 px long at 532 px, mostly along the arcs) and 0-30 point
    echoes inside the fan."""
    scale = size_px / _REF_HEIGHT_PX
    depth = probe.depth_px

    def frame(d, u):
        x, y = probe.frame_coords(np.asarray(d, np.float64), np.asarray(u, np.float64))
        return np.asarray(x, np.float64), np.asarray(y, np.float64)

    def lateral_px(d):  # frame px per unit of u at depth d
        if probe.geometry == "linear":
            return 0.5 * (probe.right_px - probe.left_px)
        return (d + probe.radius_near_px) * probe.half_angle_rad

    lines, widths, gains = [], [], []
    for _ in range(int(rng.integers(0, 13))):
        d, u = depth * rng.uniform(0.05, 0.92), rng.uniform(-0.85, 0.85)
        length = scale * rng.uniform(10.0, 120.0)
        tilt, bend = rng.normal(0.0, 0.3), rng.normal(0.0, 0.15)
        t = np.linspace(-0.5, 0.5, 7)
        xs, ys = frame(d + length * (t * em.tan(tilt) + bend * (t * t - 1 / 12)), u + length * t / lateral_px(d))
        lines.append(tuple((float(x), float(y)) for x, y in zip(xs, ys)))
        widths.append(float(scale * rng.uniform(0.8, 2.0)))
        gains.append(float(rng.uniform(50.0, 170.0)))
    n_dots = int(rng.integers(0, 31))
    xs, ys = frame(depth * rng.uniform(0.03, 0.95, n_dots), rng.uniform(-0.9, 0.9, n_dots))
    dot_gains = rng.uniform(50.0, 160.0, n_dots)
    return Reflectors(
        lines=tuple(lines),
        line_width_px=tuple(widths),
        line_gain=tuple(gains),
        dots=tuple((float(x), float(y), float(g)) for x, y, g in zip(xs, ys, dot_gains)),
        blur_sigma_px=float(max(0.6, scale * rng.uniform(0.6, 1.1))),
    )


def sample_phantom(
    rng: np.random.Generator, size_px: int = 512, geometry: str | None = None
) -> PhantomParams:
    """Draw all parameters of one phantom. `geometry=None` draws it (80 % convex)."""
    drawn = GEOMETRIES[int(rng.choice(len(GEOMETRIES), p=_GEOMETRY_PROBS))]
    geometry = drawn if geometry is None else geometry  # draw anyway: the stream stays aligned
    if geometry not in GEOMETRIES:
        raise ValueError(f"unknown geometry {geometry!r}; use one of {GEOMETRIES} or None")
    probe = sample_probe(rng, size_px, geometry)
    layers = sample_layers(rng, geometry)
    # Ovarian scans (the dev set) nearly always show a cyst; many also a solid part.
    counts = {
        "region": int(rng.integers(1, 5)),
        "cyst": int(rng.choice(4, p=(0.1, 0.5, 0.25, 0.15))),
        "solid": int(rng.choice(3, p=(0.45, 0.4, 0.15))),
    }
    lesions = [sample_lesion(rng, probe, kind, size_px) for kind, n in counts.items() for _ in range(n)]
    # Overlapping cysts merge into one lumen: give them one fluid, or the edge of each locule shows
    # inside the lumen as a faint ring.
    cysts = [lesion for lesion in lesions if lesion.kind == "cyst"]
    lesions = tuple(
        dataclasses.replace(lesion, echo=cysts[0].echo, texture=cysts[0].texture)
        if lesion.kind == "cyst"
        else lesion
        for lesion in lesions
    )
    return PhantomParams(
        size_px=size_px,
        probe=probe,
        layers=layers,
        lesions=lesions,
        gain_grey=em.exp(float(rng.normal(em.log(65.0), 0.18))),
        heterogeneity=rng.uniform(0.15, 0.4),
        texture=rng.uniform(0.1, 0.4),
        streaks=rng.uniform(0.2, 0.8),
        near_field_gain=rng.uniform(0.2, 0.8),
        far_drop=rng.uniform(0.5, 0.75),
        tgc_wobble=rng.uniform(0.0, 0.12),
        tgc_phase_rad=rng.uniform(0.0, 2 * math.pi),
        lateral_falloff=rng.uniform(0.1, 0.4),
        speckle_power=rng.uniform(0.22, 0.3),
        ticks=sample_ticks(rng, probe, size_px),
        grey_bar=bool(rng.random() < 0.4),
        probe_ring_grey=int(rng.integers(120, 230)) if geometry == "convex" and rng.random() < 0.7 else 0,
        noise_seed=int(rng.integers(2**63)),
    )


# ----------------------------------------------------------------------------- rendering


def _tissue_field(
    rng: np.random.Generator,
    d_px: np.ndarray,
    s_px: np.ndarray,
    probe: Probe,
    spacing_px: tuple[float, float],
) -> np.ndarray:
    """Smooth random field, ~unit std, sampled at beam points (depth `d_px`, arc length `s_px`).

    Knots of white noise every `spacing_px` (axial, lateral) pixels are interpolated bicubically.
    Working in (depth, arc length) keeps texture arc-aligned and of the same size everywhere in
    the fan, rather than squeezed towards the apex as angle-based coordinates would make it.
    """
    step_d, step_s = max(spacing_px[0], 1.0), max(spacing_px[1], 1.0)
    knots = rng.standard_normal(
        (int(probe.depth_px / step_d) + 5, int(2 * probe.arc_half_px / step_s) + 5), dtype=np.float32
    )
    map_d = (d_px * np.float32(1.0 / step_d) + np.float32(2.0)).astype(np.float32)
    map_s = ((s_px + np.float32(probe.arc_half_px)) * np.float32(1.0 / step_s) + np.float32(2.0)).astype(
        np.float32
    )
    map_d, map_s = np.broadcast_arrays(map_d, map_s)
    field = cv2.remap(
        knots,
        np.ascontiguousarray(map_s),
        np.ascontiguousarray(map_d),
        cv2.INTER_CUBIC,
        borderMode=cv2.BORDER_REFLECT,
    )
    return field * np.float32(1.0 / max(float(field.std()), 1e-6))


def _speckle(
    rng: np.random.Generator, rows: int, cols: int, sigma_rc: tuple[float, float], power: float
) -> np.ndarray:
    """(rows, cols) float32 speckle with mean 1: compounded speckle intensity ** `power`.

    Each look is the intensity |z|^2 of complex white noise z blurred by the point-spread
    function (Gaussian, sigma (axial, lateral) in grid rows/columns): exponential intensity,
    Rayleigh amplitude. Scanners compound looks and reduce speckle, which fills the black holes
    of a single look; averaging `_SPECKLE_LOOKS` looks does the same.
    """
    noise = rng.standard_normal((rows, cols, 2 * _SPECKLE_LOOKS), dtype=np.float32)
    sy, sx = sigma_rc
    field = em.gaussian_blur(noise, sx, sy, border=cv2.BORDER_REFLECT)
    intensity = np.einsum("rcl,rcl->rc", field, field)
    speckle = cv2.pow(intensity, power)
    speckle *= np.float32(1.0 / max(float(speckle.mean()), 1e-12))
    return speckle


def _lesion_shape(
    lesion: Lesion, x_px: np.ndarray, y_px: np.ndarray, lobes: np.ndarray, size_px: int, line_px: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Soft interior mask (0..1), wall brightness and halo gain of one lesion at frame points."""
    dx, dy = x_px - np.float32(lesion.centre_x_px), y_px - np.float32(lesion.centre_y_px)
    s, c = (np.float32(v) for v in em.sincos(lesion.angle_rad))
    along = (c * dx + s * dy) / np.float32(lesion.semi_axis_a_px)
    across = (-s * dx + c * dy) / np.float32(lesion.semi_axis_b_px)
    rho = np.sqrt(along * along + across * across)
    # Lobes: powers of the unit complex number exp(i phi) give cos(k phi + phase) without atan2.
    unit = (along + 1j * across).astype(np.complex64) / np.maximum(rho, np.float32(1e-6))
    outline = np.ones_like(rho)
    power = unit
    for amplitude, phase_rad in lesion.harmonics:
        power = power * unit  # exp(i k phi), starting at k = 2
        outline += (
            np.float32(amplitude)
            * (power * np.complex64(complex(em.cos(phase_rad), em.sin(phase_rad)))).real
        )
    rho = rho / np.maximum(outline, np.float32(0.2)) + np.float32(lesion.roughness) * lobes
    scale_px = np.float32(0.5 * (lesion.semi_axis_a_px + lesion.semi_axis_b_px))
    # A blend wider than ~1/4 of the radius would leave a faint smudge instead of a lesion.
    edge_px = np.float32(max(1.0, min(lesion.edge_frac * size_px, 0.25 * float(scale_px))))
    inside = np.clip((1.0 - rho) * scale_px / edge_px, 0.0, 1.0)
    if lesion.wall <= 0 and lesion.halo <= 0:
        return inside, np.zeros_like(inside), np.zeros_like(inside)
    outside_px = (rho - 1.0) * scale_px
    # The far (posterior) wall is brighter: the beam hits it at normal incidence.
    far_side = 0.35 + 0.65 * np.clip(dy / scale_px + 0.3, 0.0, 1.0)
    wall = np.float32(lesion.wall) * em.exp(-((outside_px / np.float32(1.5 * line_px)) ** 2)) * far_side
    halo = np.float32(lesion.halo) * em.exp(
        -((np.maximum(outside_px, 0.0) / np.float32(0.06 * size_px)) ** 2)
    )
    return inside, wall, halo


def _beam_window(
    probe: Probe, lesion: Lesion, size_px: int, rows: int, cols: int
) -> tuple[slice, slice] | None:
    """Rows and columns of the (rows, cols) beam grid that can see `lesion` (its outline, wall and
    halo), or None if it lies outside the fan. Conservative: the lesion's bounding circle."""
    lobes = sum(amplitude for amplitude, _ in lesion.harmonics)
    reach_px = (
        max(lesion.semi_axis_a_px, lesion.semi_axis_b_px) * (1.5 + lobes) + 3 * lesion.edge_frac * size_px
    )
    if lesion.wall > 0 or lesion.halo > 0:
        reach_px += 0.2 * size_px  # the halo's Gaussian (sigma 0.06 size) is < 1e-4 beyond this
    if probe.geometry == "linear":
        d_c = lesion.centre_y_px - probe.top_px
        half_w = 0.5 * (probe.right_px - probe.left_px)
        u_c = (lesion.centre_x_px - probe.left_px) / half_w - 1.0
        u_lo, u_hi = u_c - reach_px / half_w, u_c + reach_px / half_w
    else:
        dx, dy = lesion.centre_x_px - probe.apex_x_px, lesion.centre_y_px - probe.apex_y_px
        r_c = math.hypot(dx, dy)
        d_c = r_c - probe.radius_near_px
        half = em.atan2(reach_px, math.sqrt(r_c * r_c - reach_px * reach_px)) if reach_px < r_c else math.pi
        theta_c = em.atan2(dx, dy)
        u_lo, u_hi = (theta_c - half) / probe.half_angle_rad, (theta_c + half) / probe.half_angle_rad
    row_scale, col_scale = (rows - 1) / probe.depth_px, 0.5 * (cols - 1)
    r0 = max(math.floor((d_c - reach_px) * row_scale), 0)
    r1 = min(math.ceil((d_c + reach_px) * row_scale) + 1, rows)
    c0 = max(math.floor((u_lo + 1.0) * col_scale), 0)
    c1 = min(math.ceil((u_hi + 1.0) * col_scale) + 1, cols)
    if r0 >= r1 or c0 >= c1:
        return None
    return slice(r0, r1), slice(c0, c1)


def _echo_map(params: PhantomParams, rng: np.random.Generator, rows: int, cols: int) -> np.ndarray:
    """(rows, cols) float32 grey on the coarse beam grid: tissue x posterior x TGC x lateral."""
    probe = params.probe
    depth_px = probe.depth_px
    d_px = np.linspace(0.0, depth_px, rows, dtype=np.float32)[:, None]
    u = np.linspace(-1.0, 1.0, cols, dtype=np.float32)[None, :]
    d_frac = d_px / np.float32(depth_px)
    row_px = depth_px / max(rows - 1, 1)

    # Slow log-normal heterogeneity and finer clutter stretched along the arcs (fibrous tissue).
    size_px = params.size_px
    s_px = probe.arc_px(d_px, u)
    slow = _tissue_field(rng, d_px, s_px, probe, (0.25 * size_px, 0.3 * size_px))
    clutter = _tissue_field(rng, d_px, s_px, probe, (0.025 * size_px, 0.07 * size_px))
    lobes = _tissue_field(rng, d_px, s_px, probe, (0.1 * size_px, 0.1 * size_px))
    # Sparse bright streaks along the arcs (fascia, vessel walls, bowel): peaks of a thin field.
    # Kept long and dim: short bright blobs in rows look like the dotted lines of calipers.
    glints = _tissue_field(rng, d_px, s_px, probe, (0.02 * size_px, 0.12 * size_px))
    echo = em.exp(np.float32(params.heterogeneity) * slow) * (
        1.0 + np.float32(params.texture * 0.5) * clutter
    )
    echo += np.float32(params.streaks) * np.maximum(glints - 1.0, 0.0)

    # Layers: soft steps between echo levels, plus a thin bright specular line on each boundary.
    line_px = np.float32(max(1.5, 0.006 * params.size_px))
    level = np.ones_like(echo)
    lines = np.zeros_like(echo)
    prev_echo = 1.0
    roughness_px = np.float32(0.012 * size_px) * lobes  # tissue boundaries are never clean sines
    for layer in params.layers:
        boundary_px = np.float32(depth_px) * (
            layer.depth_frac
            + layer.tilt_frac * u
            + layer.wave_frac
            * em.sin(np.float32(layer.wave_cycles * math.pi) * u + np.float32(layer.wave_phase_rad))
        )
        dist_px = d_px - boundary_px - roughness_px
        level += np.float32(0.5 * (layer.echo - prev_echo)) * (1.0 + em.tanh(dist_px / (2.0 * line_px)))
        if layer.interface > 0:
            lines += np.float32(layer.interface) * em.exp(-((dist_px / line_px) ** 2))
        prev_echo = layer.echo
    echo *= np.maximum(level, 0.05)
    echo += lines * (1.0 + 0.5 * clutter)

    # Lesions, in frame coordinates so that their shape is not distorted by the fan. Overlapping
    # lesions of one kind merge (a multilocular cyst): their union is blended once, and walls are
    # kept only outside it. (Walls drawn across a neighbour's lumen, even dimmed as septa, read as
    # thin rings, which a detector of annotation circles and Doppler boxes must not learn as tissue.)
    x_px, y_px = np.broadcast_arrays(*probe.frame_coords(d_px, u))
    log_posterior = np.zeros_like(echo)
    for kind in ("region", "cyst", "solid"):
        group = [lesion for lesion in params.lesions if lesion.kind == kind]
        if not group:
            continue
        union, weight, weighted, walls, halos = (np.zeros_like(echo) for _ in range(5))
        for lesion in group:
            # Work only in the lesion's window of the grid (most lesions cover a small part of it).
            win = _beam_window(probe, lesion, size_px, rows, cols)
            if win is None:
                continue
            inside, wall, halo = _lesion_shape(lesion, x_px[win], y_px[win], lobes[win], size_px, line_px)
            interior = np.float32(lesion.echo) * (
                1.0 + np.float32(lesion.texture) * np.maximum(clutter[win], -0.9)
            )
            np.maximum(union[win], inside, out=union[win])
            weight[win] += inside
            weighted[win] += inside * interior
            np.maximum(walls[win], wall, out=walls[win])
            np.maximum(halos[win], halo, out=halos[win])
            # Posterior gain accrues per pixel of lesion crossed: the full gain after its thickness.
            thickness_px = 2.0 * float(min(lesion.semi_axis_a_px, lesion.semi_axis_b_px))
            log_posterior[win] += np.float32(em.log(lesion.posterior_gain) / thickness_px * row_px) * inside
        interior = weighted / np.maximum(weight, np.float32(1e-6))
        echo = echo * (1.0 + halos) * (1.0 - union) + interior * union + walls * (1.0 - union)
    # Cap the stacked gain: behind several cysts the scanner's TGC would be turned down.
    echo *= em.exp(np.clip(np.cumsum(log_posterior, axis=0), np.float32(-2.0), np.float32(0.9)))

    # Time-gain compensation leaves depth roughly flat: ring-down at the face, a wiggle, a far drop.
    tgc = (
        1.0
        + np.float32(params.near_field_gain) * em.exp(-d_px / np.float32(0.012 * params.size_px))
        + np.float32(params.tgc_wobble)
        * em.sin(np.float32(2 * math.pi * 1.5) * d_frac + np.float32(params.tgc_phase_rad))
    )
    tgc *= 1.0 - np.float32(params.far_drop) * np.clip((d_frac - 0.8) / 0.2, 0.0, 1.0)
    u2 = u * u
    lateral = 1.0 - np.float32(params.lateral_falloff) * (u2 * u2)
    return np.float32(params.gain_grey) * echo * tgc * lateral


def _reflector_map(reflectors: Reflectors, size_px: int) -> np.ndarray:
    """(size_px, size_px) float32 grey levels to add: the lines and dots drawn anti-aliased, softened by
    the system's point spread (a small Gaussian)."""
    canvas = np.zeros((size_px, size_px), np.float32)
    shift = 4  # cv2 drawing with 4 fractional bits for sub-pixel positions
    for pts, width, gain in zip(reflectors.lines, reflectors.line_width_px, reflectors.line_gain):
        p = np.rint(np.asarray(pts, np.float64) * (1 << shift)).astype(np.int32)
        cv2.polylines(canvas, [p], False, float(gain), max(1, round(width)), cv2.LINE_AA, shift)
    sigma = reflectors.blur_sigma_px
    # dots: the mass that peaks at `gain` once blurred, split bilinearly over the four nearest pixels
    mass = np.float32(2 * math.pi * sigma * sigma)
    for x, y, gain in reflectors.dots:
        x0, y0 = math.floor(x - 0.5), math.floor(y - 0.5)
        fx, fy = np.float32(x - 0.5 - x0), np.float32(y - 0.5 - y0)
        for dy, wy in ((0, 1 - fy), (1, fy)):
            for dx, wx in ((0, 1 - fx), (1, fx)):
                if 0 <= y0 + dy < size_px and 0 <= x0 + dx < size_px:
                    canvas[y0 + dy, x0 + dx] += np.float32(gain) * mass * wy * wx
    return em.gaussian_blur(canvas, sigma, ksize=2 * math.ceil(3 * sigma) + 1)


@functools.lru_cache(maxsize=4)
def _pixel_grid(size_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Read-only float32 (x_px, y_px) coordinate arrays of a square frame, cached per size."""
    ys, xs = np.mgrid[0:size_px, 0:size_px].astype(np.float32)
    xs.flags.writeable = False
    ys.flags.writeable = False
    return xs, ys


@em.cpu_exact
def render_phantom(
    params: PhantomParams, chrome: Chrome | None = None, reflectors: Reflectors | None = None
) -> np.ndarray:
    """Render `params` to a (size_px, size_px, 3) uint8 RGB image: R = G = B, unless `chrome` (the
    scanner's coloured text, logos and bars, `synth.chrome`) is drawn on top. `reflectors` adds crisp
    specular reflections and point echoes inside the fan."""
    size_px = params.size_px
    probe = params.probe
    rng = np.random.default_rng(np.random.SeedSequence(params.noise_seed))
    xs, ys = _pixel_grid(size_px)
    d_px, u, s_px = probe.beam_coords(xs, ys)
    depth_px = probe.depth_px

    # Coarse grid for the smooth echo map: ~2 px per row, ~3 px per column at the far arc.
    echo_rows = max(int(depth_px / 2), 8)
    echo_cols = max(int(2 * probe.arc_half_px / 3), 8)
    echo = _echo_map(params, rng, echo_rows, echo_cols)
    map_r = d_px * np.float32((echo_rows - 1) / depth_px)
    map_c = (u + 1.0) * np.float32(0.5 * (echo_cols - 1))
    grey = cv2.remap(echo, map_c, map_r, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)

    # Speckle grid in (depth, arc length), sampled ~2.6 times per grain FWHM (enough for bilinear
    # scan conversion, and the noise draw is the most expensive step), never finer than a pixel.
    scale = size_px / _REF_HEIGHT_PX
    fwhm_lat_px, fwhm_ax_px = _GRAIN_FWHM_LATERAL_PX * scale, _GRAIN_FWHM_AXIAL_PX * scale
    row_px, col_px = max(fwhm_ax_px / 2.6, 1.0), max(fwhm_lat_px / 2.6, 1.0)
    sp_rows = int(depth_px / row_px) + 2
    sp_cols = int(2 * probe.arc_half_px / col_px) + 2
    sigma_rc = (_SIGMA_PER_FWHM_AXIAL * fwhm_ax_px / row_px, _SIGMA_PER_FWHM_LATERAL * fwhm_lat_px / col_px)
    speckle = _speckle(rng, sp_rows, sp_cols, sigma_rc, params.speckle_power)
    map_c = (s_px + np.float32(probe.arc_half_px)) * np.float32(1.0 / col_px)
    map_r = d_px * np.float32(1.0 / row_px)
    grey *= cv2.remap(speckle, map_c, map_r, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    if reflectors is not None:
        grey += _reflector_map(reflectors, size_px)

    # Fan mask with a one-pixel soft edge; everything outside is exactly black.
    if probe.geometry == "linear":
        lateral_px = (1.0 - np.abs(u)) * np.float32(0.5 * (probe.right_px - probe.left_px))
    else:
        lateral_px = (
            (1.0 - np.abs(u)) * np.float32(probe.half_angle_rad) * (d_px + np.float32(probe.radius_near_px))
        )
    inside = np.minimum(np.minimum(d_px, np.float32(depth_px) - d_px), lateral_px)
    grey *= np.clip(inside + 0.5, 0.0, 1.0)

    knee, span = np.float32(_DISPLAY_KNEE_GREY), np.float32(_DISPLAY_CEILING_GREY - _DISPLAY_KNEE_GREY)
    bright = grey > knee
    grey[bright] = knee + span * em.tanh((grey[bright] - knee) / span)
    _draw_ui(grey, params)
    if chrome is None:
        out = np.clip(grey + 0.5, 0, 255).astype(np.uint8)
        return cv2.cvtColor(out, cv2.COLOR_GRAY2RGB)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    ticks = params.ticks
    if ticks is None:
        draw_chrome(rgb, chrome)
    else:
        dashes = [mark[:4] for mark in tick_marks(ticks, size_px) if mark[4]]
        draw_chrome(rgb, chrome, dashes, focus_marker(ticks, size_px))
    return np.clip(rgb + 0.5, 0, 255).astype(np.uint8)


def tick_marks(ticks: Ticks, size_px: int) -> list[tuple[int, int, int, int, bool]]:
    """The depth scale's marks as (y0, y1, x0, x1, every_5_cm) pixel boxes: a dot every centimetre,
    a dash every 5 cm."""
    unit_px = max(1, round(size_px / _REF_HEIGHT_PX))  # line thickness of the scanner's UI
    marks = []
    y, k = ticks.top_px, 0
    while y < size_px - unit_px:
        x0 = round(ticks.x_px)
        half_len = 2 * unit_px if k % 5 == 0 else unit_px // 2
        yi = round(y)
        marks.append((yi, yi + unit_px, max(x0 - half_len, 0), x0 + half_len + 1, k % 5 == 0))
        y += ticks.spacing_px
        k += 1
    return marks


def focus_marker(ticks: Ticks, size_px: int) -> np.ndarray | None:
    """(3, 2) int32 corners of the focus marker, a small triangle pointing into the image a few
    pixels beside the ticks; None when the frame shows none."""
    if ticks.focus_y_px is None:
        return None
    unit_px = max(1, round(size_px / _REF_HEIGHT_PX))
    side = 1 if ticks.x_px < size_px / 2 else -1
    x0 = ticks.x_px + side * 5 * unit_px
    fy, tri = ticks.focus_y_px, 3 * unit_px
    return np.array([[x0, fy - tri], [x0, fy + tri], [x0 + side * 1.5 * tri, fy]], dtype=np.int32)


def _draw_ui(grey: np.ndarray, params: PhantomParams) -> None:
    """Draw depth ticks, focus marker and grey-scale bar into the float image, in place."""
    size_px = params.size_px
    unit_px = max(1, round(size_px / _REF_HEIGHT_PX))  # line thickness of the scanner's UI
    ticks = params.ticks
    if ticks is not None:
        for y0, y1, x0, x1, _ in tick_marks(ticks, size_px):
            grey[y0:y1, x0:x1] = ticks.grey
        focus = focus_marker(ticks, size_px)
        if focus is not None:
            cv2.fillConvexPoly(grey, focus, float(ticks.grey))
    if params.probe_ring_grey:
        # Transvaginal scanners outline the probe face: a thin bright circle around the apex.
        probe, shift = params.probe, 4  # cv2 drawing with 4 fractional bits for sub-pixel centres
        ring = np.zeros((size_px, size_px), np.uint8)
        centre = (round(probe.apex_x_px * 16), round(probe.apex_y_px * 16))
        cv2.circle(ring, centre, round(probe.radius_near_px * 16), 255, unit_px, cv2.LINE_AA, shift)
        np.maximum(grey, ring * np.float32(params.probe_ring_grey / 255.0), out=grey)
    if params.grey_bar:
        # GE grey-scale bar: x 0-12 px and the top 30 % of a 958 x 532 frame, white at the top.
        bar_w = max(2, round(12 * size_px / _REF_HEIGHT_PX * 0.55))
        bar_h = max(4, int(0.3 * size_px))
        ramp = np.linspace(255.0, 0.0, bar_h, dtype=np.float32)[:, None]
        grey[:bar_h, :bar_w] = ramp


# ----------------------------------------------------------------------------- public API


def make_phantom(
    seed: int, size_px: int = 512, geometry: str | None = None, chrome: bool = False, reflectors: bool = False
) -> np.ndarray:
    """(size_px, size_px, 3) uint8 RGB, R=G=B, deterministic for (seed, size_px, geometry, chrome, reflectors).

    geometry in {"convex", "abdominal", "linear"} or None = drawn from the seed. The layout (fan,
    layers, lesions) scales with `size_px`, so one seed shows the same scene at every size; the
    speckle grain scales too, but its noise pattern differs between sizes. chrome=True adds the
    scanner's coloured text, logos and bars (`synth.chrome`), drawn from a stream of their own
    (SeedSequence([seed, CHROME_STREAM])): the scan under them is the one chrome=False gives.
    reflectors=True adds crisp specular reflections and point echoes (`Reflectors`), from a stream of
    their own too (REFLECTOR_STREAM).
    """
    if seed < 0:
        raise ValueError(f"seed must be >= 0, got {seed}")
    if size_px < _MIN_SIZE_PX:
        raise ValueError(f"size_px must be >= {_MIN_SIZE_PX}, got {size_px}")
    if geometry is not None and geometry not in GEOMETRIES:
        raise ValueError(f"unknown geometry {geometry!r}; use one of {GEOMETRIES} or None")
    rng = np.random.default_rng(np.random.SeedSequence(seed))
    params = sample_phantom(rng, size_px, geometry)
    extras = {}
    if chrome:
        chrome_rng = np.random.default_rng(np.random.SeedSequence([seed, CHROME_STREAM]))
        extras["chrome"] = sample_chrome(chrome_rng, size_px, params.ticks)
    if reflectors:
        reflector_rng = np.random.default_rng(np.random.SeedSequence([seed, REFLECTOR_STREAM]))
        extras["reflectors"] = sample_reflectors(reflector_rng, params.probe, size_px)
    return render_phantom(params, **extras)


def phantom_seed(seed: int, k: int) -> int:
    """The `make_phantom` seed of phantom `k` in a set built with `seed` (a uint32 from SeedSequence).

    The same derivation as the build's phantom clean set, so exported PNGs match its scans.
    """
    return int(np.random.SeedSequence([seed, k]).generate_state(1)[0])


def export_phantoms(
    n: int, out_dir, size_px: int = 512, seed: int = 0, chrome: bool = False, reflectors: bool = False
) -> list[Path]:
    """Write phantom-00000.png ... ; phantom k uses make_phantom(seed-derived via numpy SeedSequence([seed, k])).

    Returns the written paths in order. PNGs are lossless 3-channel images (grey unless `chrome`).
    """
    if n < 0:
        raise ValueError(f"n must be >= 0, got {n}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(n):
        path = out_dir / f"phantom-{k:05d}.png"
        image = make_phantom(phantom_seed(seed, k), size_px, chrome=chrome, reflectors=reflectors)
        if not cv2.imwrite(str(path), np.ascontiguousarray(image[..., ::-1])):  # cv2 writes BGR
            raise OSError(f"could not write {path}")
        paths.append(path)
    return paths
