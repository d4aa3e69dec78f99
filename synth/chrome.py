"""Scanner chrome for phantom scans: the text, logos and bars a scanner burns into every frame.

Real clean scans carry the scanner's own marks outside (and sometimes over) the fan: GE's parameter
block top-right in grey with one blue line ("C5 / M4", "FF3 / E2", "SRI II 3 / CRI 2"), a yellow
"Voluson" logo and yellow 5 cm depth ticks; Mindray's cyan 'm' logo, depth digits ("0", "5", "10")
beside the ticks and a cine counter ("463/463") on a thin blue bar at the bottom left
(docs/ANNOTATION_STATS.md section 4, and the dev scans looked at side by side with phantoms). None of it is
an annotation: it is in the clean scan too, so the mask never covers it. A detector trained on
phantoms without it has never seen such marks as background, and flags them on real clean scans.

Sampling is separate from drawing (`sample_chrome(rng, params)` -> `Chrome`, then `draw_chrome`), and
the rng is the phantom's own chrome stream (`synth.phantom.make_phantom(chrome=True)`), so turning
chrome on leaves the rest of a phantom unchanged. Sizes are in screen px times an image/screen scale
drawn like the annotations' (`synth.raster.RenderOptions.scale_range`): at 256 px the text is 2-5 px
tall, as on real scans brought to that size.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from synth.raster import REF_WIDTH_PX, Layer, RenderOptions, TextLabel, draw_label, text_ink

__all__ = ["Bar", "Chrome", "draw_chrome", "sample_chrome"]

VENDORS = ("ge", "mindray")

# Parameter lines as the dev scans show them (GE top-right block); a block takes 2-4 of them.
_GE_PARAMS = (
    "C5 / M4", "FF3 / E2", "FF2 / E3", "C4 / M6", "Gn -1.4", "Gn 2", "Frq mid", "Frq high", "Qual norm",
    "Qual high", "THI", "D 12.0cm", "D 9.5cm", "FR 27Hz", "FR 15Hz", "AO 100%", "MI 0.9", "TIs 0.3",
    "TIb 0.1", "Pwr 100%", "Harm mid", "RIC5-9-D", "IC5-9-D", "4C-D",
)  # fmt: skip
_GE_BLUE_PARAMS = ("SRI II 3 / CRI 2", "SRI II 0 / CRI 4", "SRI II 2", "CRI 3", "HD+")
_GE_LOGOS = ("Voluson E8", "Voluson E6", "Voluson S10", "Voluson P8", "LOGIQ")
_MINDRAY_PARAMS = ("B", "F 6.0", "G 58", "D 12.0", "FR 30", "DR 120", "iClear 3", "iBeam", "THI", "MI 0.7",
                   "TIS 0.2", "P 100%", "6C2P", "DE10-3WU")  # fmt: skip


@dataclass(frozen=True)
class Bar:
    """A filled rectangle in image px (the cine counter's track and its end stops)."""

    x0: float
    y0: float
    x1: float
    y1: float
    colour: tuple[int, int, int]


@dataclass(frozen=True)
class Chrome:
    """Everything `draw_chrome` needs: text lines (`synth.raster.TextLabel`, baseline origins in image
    px), bars, and the colour of the 5 cm depth ticks and focus marker (None: they stay grey)."""

    vendor: str
    labels: tuple[TextLabel, ...]
    bars: tuple[Bar, ...]
    tick_colour: tuple[int, int, int] | None


def _grey(rng: np.random.Generator, lo: int, hi: int) -> tuple[int, int, int]:
    g = int(rng.integers(lo, hi + 1))
    return (g, g, g)


def _label(rng, text: str, x: float, y: float, cap_px: float, colour, bold: bool = False,
           align: str = "left") -> TextLabel:
    """A label whose ink starts at x ('left') or ends at x ('right'); y is the baseline."""
    font = cv2.FONT_HERSHEY_SIMPLEX if rng.random() < 0.7 else cv2.FONT_HERSHEY_DUPLEX
    if align == "right":
        _, _, r, _ = text_ink(text, font, cap_px, bold)
        x -= r
    return TextLabel(text=text, x=x, y=y, cap_px=cap_px, bold=bold, font=font, colour=colour)


def sample_chrome(rng: np.random.Generator, size_px: int, ticks=None) -> Chrome:
    """Draw the chrome of one phantom frame of `size_px`. `ticks` (a `synth.phantom.Ticks` or None) ties
    the vendor to the side of the depth scale (GE left, Mindray right) and places the depth digits."""
    lo, hi = RenderOptions().scale_range
    s = max(0.35, float(rng.uniform(lo, hi)) * size_px / REF_WIDTH_PX)  # image px per screen px
    if ticks is not None:
        vendor = "ge" if ticks.x_px < size_px / 2 else "mindray"
    else:
        vendor = VENDORS[int(rng.random() < 0.4)]
    if vendor == "ge":
        return _sample_ge(rng, size_px, s)
    return _sample_mindray(rng, size_px, s, ticks)


def _sample_ge(rng: np.random.Generator, size_px: int, s: float) -> Chrome:
    """GE: parameter block top-right (grey, one blue line), sometimes a yellow logo, yellow 5 cm ticks."""
    labels: list[TextLabel] = []
    margin = 4.0 * s
    if rng.random() < 0.85:  # parameter block, flush top-right
        n = int(rng.integers(2, 5))
        lines = list(rng.choice(_GE_PARAMS, size=n - 1, replace=False))
        lines.insert(int(rng.integers(0, n)), str(rng.choice(_GE_BLUE_PARAMS)))
        cap, step = float(rng.uniform(7.5, 9.5)) * s, float(rng.uniform(10.5, 12.5)) * s
        grey = _grey(rng, 150, 205)
        blue = (int(rng.integers(50, 90)), int(rng.integers(60, 100)), int(rng.integers(190, 235)))
        for k, text in enumerate(lines):
            colour, bold = (blue, True) if text in _GE_BLUE_PARAMS else (grey, False)
            labels.append(_label(rng, text, size_px - margin, margin + cap + k * step, cap, colour, bold, "right"))
    if rng.random() < 0.35:  # yellow logo near the top-left quarter
        cap = float(rng.uniform(8.0, 11.0)) * s
        colour = (int(rng.integers(225, 250)), int(rng.integers(230, 250)), int(rng.integers(90, 160)))
        x = size_px * float(rng.uniform(0.12, 0.3))
        labels.append(_label(rng, str(rng.choice(_GE_LOGOS)), x, margin + cap, cap, colour, bold=True))
    tick_colour = None
    if rng.random() < 0.7:
        tick_colour = (int(rng.integers(215, 245)), int(rng.integers(215, 245)), int(rng.integers(60, 130)))
    return Chrome(vendor="ge", labels=tuple(labels), bars=(), tick_colour=tick_colour)


def _sample_mindray(rng: np.random.Generator, size_px: int, s: float, ticks) -> Chrome:
    """Mindray: cyan 'm' logo, depth digits beside the ticks, cine counter, sometimes a parameter column."""
    labels: list[TextLabel] = []
    bars: list[Bar] = []
    margin = 4.0 * s
    if rng.random() < 0.85:  # cyan 'm' logo at the top, about a third of the way across
        cap = float(rng.uniform(7.0, 10.0)) * s
        colour = (int(rng.integers(30, 90)), int(rng.integers(170, 215)), int(rng.integers(200, 240)))
        x = size_px * float(rng.uniform(0.25, 0.42))
        labels.append(_label(rng, "m", x, margin + 1.6 * cap, 1.6 * cap, colour, bold=True))
    if ticks is not None and rng.random() < 0.8:  # depth digits beside every 5 cm tick, outer side
        cap = float(rng.uniform(7.0, 9.5)) * s
        colour = _grey(rng, 180, 235)
        right_side = ticks.x_px > size_px / 2
        x = ticks.x_px + (1 if right_side else -1) * 4.0 * s
        y, depth_cm = ticks.top_px, 0
        while y + cap / 2 < size_px - margin:
            text = str(depth_cm)
            labels.append(_label(rng, text, x, y + cap / 2, cap, colour, align="left" if right_side else "right"))
            y += 5 * ticks.spacing_px
            depth_cm += 5
    if rng.random() < 0.6:  # cine counter: a thin blue track with an end stop, then "k/k" in white
        y = size_px - margin - 6.0 * s
        x1 = size_px * float(rng.uniform(0.15, 0.3))
        track = (int(rng.integers(80, 130)), int(rng.integers(120, 160)), int(rng.integers(150, 190)))
        th = max(1.0 * s, 0.6)
        bars.append(Bar(0.0, y - th / 2, x1, y + th / 2, track))
        bars.append(Bar(x1 - th, y - 4.0 * s, x1 + th, y + th / 2, track))
        frames = int(rng.integers(40, 900))
        cap = float(rng.uniform(7.5, 10.0)) * s
        labels.append(_label(rng, f"{frames}/{frames}", x1 + 4.0 * s, y + cap / 2, cap, _grey(rng, 215, 250),
                             bold=True))
    if rng.random() < 0.4:  # a short parameter column at the top-right
        n = int(rng.integers(2, 5))
        cap, step = float(rng.uniform(7.0, 9.0)) * s, float(rng.uniform(10.5, 12.5)) * s
        grey = _grey(rng, 160, 220)
        for k, text in enumerate(rng.choice(_MINDRAY_PARAMS, size=n, replace=False)):
            labels.append(_label(rng, str(text), size_px - margin, margin + cap + k * step, cap, grey, align="right"))
    return Chrome(vendor="mindray", labels=tuple(labels), bars=tuple(bars), tick_colour=None)


def draw_chrome(image: np.ndarray, chrome: Chrome, dashes=(), focus: np.ndarray | None = None) -> None:
    """Draw `chrome` over `image` ((h, w, 3) float32 RGB, 0-255) in place. `dashes` ((y0, y1, x0, x1)
    pixel boxes) and `focus` (triangle corners) are the phantom's 5 cm depth marks and focus marker,
    repainted in `chrome.tick_colour` when it is set."""
    h, w = image.shape[:2]
    if chrome.tick_colour is not None:
        colour = np.asarray(chrome.tick_colour, np.float32)
        for y0, y1, x0, x1 in dashes:
            image[y0:y1, x0:x1] = colour
        if focus is not None:
            cv2.fillConvexPoly(image, focus, tuple(float(c) for c in colour))
    layer = Layer(h, w)
    for label in chrome.labels:
        draw_label(label, layer, 1)
    for bar in chrome.bars:
        x0, y0 = int(np.floor(bar.x0)), int(np.floor(bar.y0))
        x1, y1 = max(x0 + 1, int(np.ceil(bar.x1))), max(y0 + 1, int(np.ceil(bar.y1)))
        layer.add(x0, y0, np.ones((y1 - y0, x1 - x0), np.float32), bar.colour, 1)
    for p in layer.pieces:  # straight-colour "over", dense pieces only (labels and bars are dense)
        region = image[p.y0 : p.y1, p.x0 : p.x1]
        a = p.alpha[..., None]
        region *= 1 - a
        region += a * p.colour
