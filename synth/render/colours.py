"""Annotation colours: the scanner colours measured on the development scans and the palette="any" mix."""

from __future__ import annotations

import numpy as np

from synth.raster import pick

__all__ = ["ANY_COLOURS", "ANY_WEIGHTS", "CURSOR_CYAN", "CURSOR_GREEN", "GE_NEAR_WHITE", "YELLOW", "any_colour",
           "ge_yellow", "jitter"]

def jitter(rng: np.random.Generator, colour, amount: float = 0.05) -> tuple[int, int, int]:
    """Colour with each channel scaled by ~U(1 - amount, 1 + amount/2), luma-preserving-ish."""
    c = np.asarray(colour, np.float64) * (1 + rng.uniform(-amount, amount / 2, 3))
    return tuple(int(v) for v in np.clip(np.rint(c), 0, 255))


YELLOW = (255, 255, 0)
GE_NEAR_WHITE = (240, 245, 215)
CURSOR_GREEN = (110, 255, 90)
CURSOR_CYAN = (70, 225, 255)


def ge_yellow(rng) -> tuple[int, int, int]:
    return (255, int(rng.integers(246, 256)), int(rng.integers(0, 60)))


ANY_COLOURS = ("white", "grey", "yellow", "green", "cyan")
ANY_WEIGHTS = (0.3, 0.25, 0.25, 0.1, 0.1)
"""palette="any": overlay colours and their shares. White (245-255) and light grey (185-235) are what the
Philips and GE LOGIQ scans of the second development set draw (its README: 250-255 and 224-225); yellow,
green and cyan are the GE Voluson, cursor and Toshiba colours."""


def any_colour(rng) -> tuple[int, int, int]:
    name = pick(rng, ANY_COLOURS, ANY_WEIGHTS)
    if name == "white":
        v = int(rng.integers(245, 256))
        return (v, v, v)
    if name == "grey":
        v = int(rng.integers(185, 236))
        return (v, v, v)
    if name == "yellow":
        return ge_yellow(rng)
    return CURSOR_GREEN if name == "green" else CURSOR_CYAN

