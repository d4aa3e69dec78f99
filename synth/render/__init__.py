"""Draw synthetic burned-in annotations onto a clean scan: sample parameters, rasterise, composite, soften, mask.

One module per annotation kind, each with its measured priors as a frozen table at the top, a
`sample_<kind>(rng, h, w, icons, opts, avoid) -> params` and a pure `draw_<kind>(params, layer, icons)`:

- `body_marker.py`: body-marker pictograms from the icon set;
- `radial_line.py`: calipers (crosses, dotted line, numbers, readout panel);
- `vascular_flow.py`: the colour-Doppler box, its flow and the colour bar;
- `text.py`: burned-in labels;
- `registry.py`: `KIND_SPECS` (one line per kind), `mixed`, and dispatch by name;
- `colours.py`: the scanner colours and the palette="any" mix;
- `composite.py`: compositing, capture softening, the MASK RULE and `render_pair` (the pipeline is
  described there).

The neutral rasteriser they draw with (`Layer`, text, icons, `RenderOptions`) is `synth.raster`, shared
with the scanner chrome of the phantoms (`synth.chrome`). Adding a kind: docs/design.md, "Adding a kind".
This package re-exports what other modules use; the build's identity hash covers every module here and
`synth/raster.py` (`synth.build.DRAWING_CODE`).
"""

from synth.raster import (
    MASK_MIN_DIFF,
    REF_WIDTH_PX,
    Layer,
    RenderOptions,
    SoftenParams,
    TextLabel,
    draw_label,
    text_ink,
)
from synth.render.composite import (
    FOOTPRINT_DILATE_PX,
    MIN_MASK_PX,
    RenderedPair,
    jpeg_roundtrip,
    mask_rule,
    render_pair,
    render_pair_detailed,
)
from synth.render.registry import DRAWERS, KIND_SPECS, SAMPLERS, draw_params, sample_params

__all__ = [
    "DRAWERS",
    "FOOTPRINT_DILATE_PX",
    "KIND_SPECS",
    "MASK_MIN_DIFF",
    "MIN_MASK_PX",
    "REF_WIDTH_PX",
    "SAMPLERS",
    "Layer",
    "RenderOptions",
    "RenderedPair",
    "SoftenParams",
    "TextLabel",
    "draw_label",
    "draw_params",
    "jpeg_roundtrip",
    "mask_rule",
    "render_pair",
    "render_pair_detailed",
    "sample_params",
    "text_ink",
]
