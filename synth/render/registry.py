"""The annotation kinds: one `KIND_SPECS` line per kind maps its name to its sampler and drawer; `mixed`
draws several kinds into one image; `sample_params` and `draw_params` dispatch by name.

Adding a kind (docs/design.md, "Adding a kind"): write `synth/render/<kind>.py` (its priors table,
`sample_<kind>` and `draw_<kind>`), add its line to `KIND_SPECS` (and its import above it), and give it
a class id in `synth.kinds.CLASS_IDS` (the value its pixels get in the shard masks).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from synth.icons import IconSet
from synth.kinds import CLASS_IDS, KINDS
from synth.raster import Layer, RenderOptions, require_icons
from synth.render import body_marker, radial_line, text, vascular_flow

__all__ = ["DRAWERS", "KIND_SPECS", "SAMPLERS", "KindSpec", "MixedParams", "check_icons", "draw_mixed",
           "draw_params", "sample_mixed", "sample_params"]


@dataclass(frozen=True)
class KindSpec:
    """One annotation kind.

    sample: `sample(rng, h, w, icons, opts, avoid) -> params`, a small frozen dataclass of plain numbers and
        strings; all randomness from `rng`; `avoid` (bool (h, w) or None) marks pixels to stay clear of.
    draw: `draw(params, layer, icons) -> None`, pure: rasterises `params` into the `synth.raster.Layer`
        with the kind's class id (`synth.kinds.CLASS_IDS`).
    icon_kind: the icons it cannot be drawn without (None: needs none); `mixed` leaves the kind out when
        the icon set has none of them."""

    sample: Callable[..., Any]
    draw: Callable[..., None]
    icon_kind: str | None = None


# The order is the order `mixed` draws its kinds from: reordering it changes every mixed build.
KIND_SPECS: dict[str, KindSpec] = {
    "body_marker": KindSpec(body_marker.sample_body_marker, body_marker.draw_body_marker, icon_kind="body_marker"),
    "radial_line": KindSpec(radial_line.sample_radial_line, radial_line.draw_radial_line),
    "vascular_flow": KindSpec(vascular_flow.sample_vascular_flow, vascular_flow.draw_vascular_flow),
    "text": KindSpec(text.sample_text, text.draw_text),
}


def check_icons(kind: str, icons: IconSet | None) -> None:
    """A ValueError saying what to pass when `kind` cannot be drawn with `icons` (before any sampling)."""
    spec = KIND_SPECS.get(kind)
    if spec is not None and spec.icon_kind is not None:
        require_icons(icons, spec.icon_kind)


@dataclass(frozen=True)
class MixedParams:
    """Several kinds in one draw, in drawing order (the last one is on top)."""

    parts: tuple[tuple[str, Any], ...]


def _available_kinds(icons: IconSet | None) -> list[str]:
    """The kinds `mixed` may draw with `icons`, in KIND_SPECS order."""
    return [
        kind
        for kind, spec in KIND_SPECS.items()
        if spec.icon_kind is None or (icons is not None and icons.icons(spec.icon_kind))
    ]


def sample_mixed(
    rng: np.random.Generator,
    h: int,
    w: int,
    icons: IconSet | None = None,
    opts: RenderOptions = RenderOptions(),
    avoid: np.ndarray | None = None,
) -> MixedParams:
    """2-3 different kinds (body_marker only when the icon set has body markers), random order."""
    kinds = _available_kinds(icons)
    n = min(len(kinds), 2 if rng.random() < 0.6 else 3)
    chosen = [kinds[int(i)] for i in rng.choice(len(kinds), n, replace=False)]
    return MixedParams(parts=tuple((k, SAMPLERS[k](rng, h, w, icons, opts, avoid)) for k in chosen))


def draw_mixed(params: MixedParams, layer: Layer, icons: IconSet | None = None) -> None:
    """Pure: draw each part in order."""
    for kind, p in params.parts:
        DRAWERS[kind](p, layer, icons)


SAMPLERS = {**{kind: spec.sample for kind, spec in KIND_SPECS.items()}, "mixed": sample_mixed}
DRAWERS = {**{kind: spec.draw for kind, spec in KIND_SPECS.items()}, "mixed": draw_mixed}
assert set(KIND_SPECS) == set(CLASS_IDS), "every kind needs a class id in synth.kinds.CLASS_IDS, and a KIND_SPECS line"
assert set(SAMPLERS) == set(KINDS) == set(DRAWERS)


def sample_params(
    kind: str,
    rng: np.random.Generator,
    h: int,
    w: int,
    icons: IconSet | None = None,
    opts: RenderOptions = RenderOptions(),
    avoid: np.ndarray | None = None,
):
    """Dispatch to `sample_<kind>`; `avoid` (bool (h, w)) marks pixels the draw should stay clear of."""
    if kind not in SAMPLERS:
        raise ValueError(f"unknown annotation kind {kind!r}; use one of {', '.join(KINDS)}")
    return SAMPLERS[kind](rng, h, w, icons, opts, avoid)


def draw_params(kind: str, params, h: int, w: int, icons: IconSet | None = None) -> Layer:
    """Dispatch to `draw_<kind>` on a new (h, w) layer."""
    layer = Layer(h, w)
    DRAWERS[kind](params, layer, icons)
    return layer

