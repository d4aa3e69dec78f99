"""text: burned-in labels ("RT THYROID", "LT OV", ...) in one scanner's style.

`sample_text(rng, h, w, icons, opts, avoid) -> TextParams`, then the pure `draw_text(params, layer, icons)`;
the measured priors are the frozen `PRIORS` table and `TEXT_STRINGS` below.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from synth.icons import IconSet
from synth.kinds import CLASS_IDS
from synth.raster import (
    TEXT_FONTS,
    Layer,
    RenderOptions,
    TextLabel,
    draw_label,
    free_rect,
    label_box,
    pick,
    place_label,
    screen_scale,
)
from synth.render.colours import any_colour, jitter

__all__ = ["PRIORS", "TEXT_STRINGS", "TextParams", "TextPriors", "draw_text", "sample_text"]


@dataclass(frozen=True)
class TextPriors:
    """How burned-in labels look on the development scans (docs/ANNOTATION_STATS.md section 3). `*_p`: probabilities
    of the options beside them; cap heights in screen px; integer ranges are `rng.integers` ranges (high
    end excluded)."""

    styles: tuple[str, ...] = ("ge", "ge_large", "mindray", "generic")
    styles_p: tuple[float, ...] = (0.5, 0.15, 0.2, 0.15)
    ge_cap_jitter: tuple[float, float] = (0.93, 1.07)  # x 15 screen px
    ge_blue: tuple[int, int] = (20, 90)  # GE yellow: (255, 255, blue)
    ge_outline_p: float = 0.8
    ge_large_cap: tuple[float, float] = (18, 22)
    ge_large_blue: tuple[int, int] = (0, 60)
    ge_large_outline_p: float = 0.6
    mindray_cap: tuple[float, float] = (18, 21)
    generic_grey: tuple[int, int] = (190, 256)
    generic_cap: tuple[float, float] = (12, 24)
    generic_bold_p: float = 0.5
    generic_outline_p: float = 0.3
    generic_fonts_p: tuple[float, ...] = (0.6, 0.3, 0.1)  # of raster.TEXT_FONTS
    colour_jitter: float = 0.03
    n_labels: tuple[int, ...] = (1, 2, 3)
    n_labels_p: tuple[float, ...] = (0.7, 0.25, 0.05)
    known_string_p: float = 0.85  # a TEXT_STRINGS entry (else a random token)
    token_digit_p: float = 0.4  # a random token ends in a digit
    edge_p: float = 0.4  # along the top or bottom edge, like the GE/Mindray label positions


PRIORS = TextPriors()


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
    if rng.random() < PRIORS.token_digit_p:
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
    """Burned-in labels as measured (docs/ANNOTATION_STATS.md section 3): GE yellow with a thin dark outline,
    GE large, Mindray white bold, or generic white/grey."""
    P = PRIORS
    s = screen_scale(rng, w, opts)
    style = pick(rng, P.styles, P.styles_p)
    font = cv2.FONT_HERSHEY_SIMPLEX
    if style == "ge":
        cap, bold = 15.0 * s * float(rng.uniform(*P.ge_cap_jitter)), False
        colour = (255, 255, int(rng.integers(*P.ge_blue)))
        outline = (1.0 * s) if rng.random() < P.ge_outline_p else 0.0
    elif style == "ge_large":
        cap, bold = float(rng.uniform(*P.ge_large_cap)) * s, True
        colour = (255, 255, int(rng.integers(*P.ge_large_blue)))
        outline = (1.0 * s) if rng.random() < P.ge_large_outline_p else 0.0
    elif style == "mindray":
        cap, bold, colour, outline = float(rng.uniform(*P.mindray_cap)) * s, True, (252, 252, 252), 0.0
    else:
        v = int(rng.integers(*P.generic_grey))
        cap, bold, colour = float(rng.uniform(*P.generic_cap)) * s, bool(rng.random() < P.generic_bold_p), (v, v, v)
        outline = (1.0 * s) if rng.random() < P.generic_outline_p else 0.0
        font = pick(rng, list(TEXT_FONTS), P.generic_fonts_p)
    if opts.palette == "any":
        colour = any_colour(rng)
    colour = jitter(rng, colour, P.colour_jitter)
    cap = float(np.clip(cap, 6.0, 0.12 * h))
    n = int(pick(rng, P.n_labels, P.n_labels_p))
    labels: list[TextLabel] = []
    for _ in range(n):
        known = rng.random() < P.known_string_p
        text = TEXT_STRINGS[int(rng.integers(len(TEXT_STRINGS)))] if known else _random_token(rng)
        c = cap
        for attempt in range(40):
            box = label_box(text, font, c, bold, outline, 0.0)
            bw, bh = box[2] - box[0], box[3] - box[1]
            if bw > w - 4 or bh > h - 4:
                c *= 0.85
                continue
            if rng.random() < P.edge_p:  # along an edge, like the GE/Mindray label positions
                x0 = float(rng.uniform(2, w - 2 - bw))
                y0 = (
                    float(rng.uniform(2, max(2.0, 0.12 * h)))
                    if rng.random() < 0.5
                    else float(rng.uniform(min(h - 2 - bh, 0.85 * h), h - 2 - bh))
                )
            else:
                x0, y0 = float(rng.uniform(2, w - 2 - bw)), float(rng.uniform(2, h - 2 - bh))
            if free_rect(avoid, x0, y0, x0 + bw, y0 + bh) and all(
                not _boxes_touch((x0, y0, x0 + bw, y0 + bh), lb) for lb in _label_rects(labels)
            ):
                kw = place_label(
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
        box = label_box(text, font, cap, bold, outline, 0.0)
        kw = place_label(
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
        l, tp, r, b = label_box(t.text, t.font, t.cap_px, t.bold, t.outline_px, t.shadow_px)
        out.append((t.x + l, t.y + tp, t.x + r, t.y + b))
    return out


def _boxes_touch(a, b, gap: float = 2.0) -> bool:
    return not (a[2] + gap < b[0] or b[2] + gap < a[0] or a[3] + gap < b[1] or b[3] + gap < a[1])


def draw_text(params: TextParams, layer: Layer, icons: IconSet | None = None) -> None:
    """Pure: rasterise the labels (class text)."""
    for t in params.labels:
        draw_label(t, layer, CLASS_IDS["text"])

