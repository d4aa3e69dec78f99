"""Annotation kinds and their project-wide class ids (the values stored in shard masks)."""

CLASS_IDS: dict[str, int] = {
    "body_marker": 1,
    "radial_line": 2,
    "vascular_flow": 3,
    "text": 4,
}
"""Mask value per kind; 0 is background. Fixed for every shard format version 1."""

KINDS: tuple[str, ...] = (*CLASS_IDS, "mixed")
"""Values accepted by `synth build --type`; `mixed` draws several kinds into one image."""
