"""Compositing, capture softening and the mask rule: one sample's two draws over one clean scan.

Pipeline for one sample (`render_pair`), all randomness from the caller's `rng`:

1. `sample_<kind>(rng, h, w, icons, opts, avoid)` draws a small frozen dataclass of plain numbers and strings
   (positions and sizes in image px, already scaled from the measured screen px). Nothing is drawn yet.
2. `draw_<kind>(params, layer, icons)` is pure: it rasterises the annotation into a `synth.raster.Layer`
   (the kinds are in `synth/render/<kind>.py`, listed in `synth.render.registry.KIND_SPECS`).
3. The pieces are composited over the clean scan in float (premultiplied "over" in drawing order) on
   the changed pixels only, and rounded once.
4. Capture softening (`opts.soften`, docs/ANNOTATION_STATS.md section 6): the chroma of the overlay (colour
   minus luma) is blurred with sigma ~1.6 screen px while its luma stays sharp, then the image goes
   through a JPEG round trip (quality 90-95, 4:2:0, cv2/libjpeg). The clean scan gets the same round trip
   and is returned as "clean", so outside the JPEG blocks an annotation touches, clean and noisy are
   byte-identical. Only the blocks near the annotation are re-encoded (`_jpeg_rects`: touched 16 px
   blocks grown by one block, inside a crop one block larger); this gives the same bytes as a round trip
   of the whole noisy image (tested) at a fraction of the cost.
5. The mask follows the MASK RULE below (`mask_rule`).
6. Draw B is sampled away from draw A (samplers get an `avoid` map, then an exact overlap check and a
   few redraws), then A and B are swapped with probability 1/2 so both slots have the same distribution.

MASK RULE: a pixel gets the class id of its footprint when the largest per-channel absolute difference
between noisy and clean is at least `min_diff`, and 0 otherwise. The footprint is where the annotation
layer has alpha > 0, dilated by `FOOTPRINT_DILATE_PX`, labelled with the topmost kind (`_footprint`).
`min_diff` is `opts.mask_min_diff` (default `synth.raster.MASK_MIN_DIFF` = 8) with softening and 1
without, so with `soften=False` the mask is exactly the set of changed pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from synth import exactmath as em
from synth.icons import IconSet
from synth.kinds import KINDS
from synth.raster import (
    JPEG_BLOCK_PX,
    MIN_SCALE,
    REF_WIDTH_PX,
    Layer,
    Piece,
    RenderOptions,
    SoftenParams,
    luma,
)
from synth.render.registry import check_icons, draw_params, sample_params

__all__ = ["FOOTPRINT_DILATE_PX", "MIN_MASK_PX", "RenderedPair", "jpeg_roundtrip", "mask_rule", "render_pair",
           "render_pair_detailed"]

FOOTPRINT_DILATE_PX = 2
"""The mask may extend this far beyond the drawn alpha > 0 footprint (chroma smear and JPEG ringing
right at the stroke), never farther, so ringing elsewhere in the block is never masked."""

MIN_MASK_PX = 10
"""A draw whose mask has fewer pixels (e.g. white on white) is redrawn with the rng."""


def jpeg_roundtrip(rgb: np.ndarray, quality: int) -> np.ndarray:
    """(h, w, 3) uint8 RGB through a baseline JPEG at `quality`, 4:2:0 (libjpeg via cv2), back to RGB."""
    ok, buf = cv2.imencode(
        ".jpg",
        cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR),
        [
            cv2.IMWRITE_JPEG_QUALITY,
            int(quality),
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR,
            cv2.IMWRITE_JPEG_SAMPLING_FACTOR_420,
        ],
    )
    if not ok:
        raise RuntimeError("cv2.imencode failed to write a JPEG")
    return cv2.cvtColor(cv2.imdecode(buf, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)


def mask_rule(noisy: np.ndarray, clean: np.ndarray, footprint: np.ndarray, min_diff: int) -> np.ndarray:
    """THE MASK RULE: `footprint` class id where max_c |noisy - clean| >= min_diff, else 0.

    noisy, clean: (h, w, 3) uint8; footprint: (h, w) uint8 class ids of the drawn alpha > 0 region
    dilated by FOOTPRINT_DILATE_PX. Returns (h, w) uint8."""
    diff = cv2.absdiff(noisy, clean).max(axis=2)
    return np.where(diff >= min_diff, footprint, 0).astype(np.uint8)


_DILATE_KERNEL = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * FOOTPRINT_DILATE_PX + 1,) * 2)


def _footprint(core: np.ndarray, order: list[int]) -> np.ndarray:
    """Dilate class-id map `core` by FOOTPRINT_DILATE_PX. A ring pixel takes the id of the last kind in
    drawing `order` whose dilation reaches it; drawn pixels keep their (topmost) id."""
    if len(order) == 1:
        return (cv2.dilate((core > 0).view(np.uint8), _DILATE_KERNEL) * np.uint8(order[0])).astype(np.uint8)
    out = np.zeros_like(core)
    for cid in order:
        out[cv2.dilate((core == cid).view(np.uint8), _DILATE_KERNEL) > 0] = cid
    drawn = core > 0
    out[drawn] = core[drawn]
    return out


@dataclass
class _Drawn:
    noisy: np.ndarray
    mask: np.ndarray
    core: np.ndarray
    footprint: np.ndarray
    # jpeg_scope="blocks": (paste rect, noisy patch, clean patch) to assemble the final images from
    patches: list = field(default_factory=list)


_SPILL_EPS = 1e-3
"""Blurred-alpha level below which the chroma spill of a smeared piece is dropped (< 0.3 grey levels)."""


def _nonzero(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) of the nonzero pixels of a 2-D bool/uint8 array (cv2.findNonZero is ~3x np.nonzero)."""
    pts = cv2.findNonZero(m.view(np.uint8) if m.dtype == bool else m)
    if pts is None:
        e = np.zeros(0, np.intp)
        return e, e
    pts = pts.reshape(-1, 2)
    return pts[:, 1].astype(np.intp), pts[:, 0].astype(np.intp)


def _sparse_sparse(p: Piece, sigma: float | None, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_sparse_piece` for a sparse constant-colour piece; the chroma blur is a scatter of the
    (separable, cv2-equal) Gaussian kernel around each covered pixel."""
    y = float(luma(p.colour))
    chroma = p.colour - np.float32(y)
    if sigma is None or sigma <= 0 or np.abs(chroma).max() < 0.5:
        return p.ys * w + p.xs, p.alpha, p.alpha[:, None] * p.colour
    m = math.ceil(3 * sigma)
    g1 = em.gaussian_kernel(2 * m + 1, sigma)
    g2 = np.outer(g1, g1).reshape(-1)
    d = np.arange(-m, m + 1)
    dy, dx = np.repeat(d, len(d)), np.tile(d, len(d))
    ty = (p.ys[:, None] + dy).reshape(-1)
    tx = (p.xs[:, None] + dx).reshape(-1)
    wts = (p.alpha[:, None] * g2).reshape(-1)
    ok = (ty >= 0) & (tx >= 0) & (ty < h) & (tx < w)
    ty, tx, wts = ty[ok], tx[ok], wts[ok]
    x0, y0 = int(tx.min()), int(ty.min())
    bw = int(tx.max()) - x0 + 1
    n = (int(ty.max()) - y0 + 1) * bw
    blurred = np.bincount((ty - y0) * bw + (tx - x0), wts, minlength=n)
    a_loc = np.zeros(n, np.float64)
    a_loc[(p.ys - y0) * bw + (p.xs - x0)] = p.alpha
    sel = np.flatnonzero((blurred > _SPILL_EPS) | (a_loc > 0))
    a = a_loc[sel].astype(np.float32)
    prem = a[:, None] * np.float32(y) + blurred[sel].astype(np.float32)[:, None] * chroma
    return (sel // bw + y0) * w + (sel % bw + x0), a, prem.astype(np.float32)


def _sparse_piece(p: Piece, sigma: float | None, h: int, w: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A piece as (flat pixel indices, alpha (n,), premultiplied colour (n, 3)) over the pixels it changes.

    With `sigma` (capture softening) the piece's luma stays sharp and its chroma (colour minus luma) is
    blurred with `sigma`, spilling a little beyond alpha > 0 (the colour fringe of JPEG captures)."""
    if p.ys is not None:
        return _sparse_sparse(p, sigma, h, w)
    const = p.colour.ndim == 1
    if const:
        y = float(luma(p.colour))
        chroma = p.colour - np.float32(y)
        grey = np.abs(chroma).max() < 0.5
    else:  # e.g. a white icon tinted grey has no chroma to smear
        c = p.colour
        grey = (np.abs(c[..., 0] - c[..., 1]).max() < 0.5) and (np.abs(c[..., 1] - c[..., 2]).max() < 0.5)
    if sigma is None or sigma <= 0 or grey:
        ys, xs = _nonzero(p.alpha > 0)
        a = p.alpha[ys, xs]
        prem = a[:, None] * p.colour if const else p.colour[ys, xs]
        return (ys + p.y0) * w + (xs + p.x0), a, prem.astype(np.float32)
    m = math.ceil(3 * sigma)
    k = 2 * m + 1
    x0, y0 = max(0, p.x0 - m), max(0, p.y0 - m)
    x1, y1 = min(w, p.x1 + m), min(h, p.y1 + m)
    ox, oy = p.x0 - x0, p.y0 - y0
    ph, pw = p.alpha.shape
    alpha = np.zeros((y1 - y0, x1 - x0), np.float32)
    alpha[oy : oy + ph, ox : ox + pw] = p.alpha
    blurred = em.gaussian_blur(alpha, sigma, ksize=k, border=cv2.BORDER_CONSTANT)
    ys, xs = _nonzero((blurred > _SPILL_EPS) | (alpha > 0))
    a = alpha[ys, xs]
    if const:
        prem = a[:, None] * np.float32(y) + blurred[ys, xs][:, None] * chroma
    else:
        col = np.zeros(alpha.shape + (3,), np.float32)
        col[oy : oy + ph, ox : ox + pw] = p.colour
        lum = luma(col)
        chr_ = em.gaussian_blur(col - lum[..., None], sigma, ksize=k, border=cv2.BORDER_CONSTANT)
        prem = lum[ys, xs][:, None] + chr_[ys, xs]
    return (ys + y0) * w + (xs + x0), a, prem.astype(np.float32)


_SCRATCH: dict[tuple[int, int], np.ndarray] = {}
_RGB_OFFSETS = np.arange(3, dtype=np.intp)


def _scratch(h: int, w: int) -> np.ndarray:
    """A per-process (h * w, 3) float32 work buffer; only the entries a call initialises are read."""
    buf = _SCRATCH.get((h, w))
    if buf is None:
        _SCRATCH.clear()
        buf = _SCRATCH[(h, w)] = np.empty((h * w, 3), np.float32)
    return buf


def _jpeg_rects(idx: np.ndarray, h: int, w: int) -> list[tuple[tuple[int, int, int, int], tuple[int, int, int, int]]]:
    """(crop, paste) rectangles (x0, y0, x1, y1) for re-encoding only the JPEG blocks a draw changes.

    `idx`: flat indices of the changed pixels. Their blocks, grown by one block (the decoder's chroma
    upsampling reads one neighbour sample), must be pasted; each pasted rectangle is re-encoded inside a
    crop one block larger (clipped at the image border), so it decodes to the same bytes as a round trip
    of the whole image. Crops are cut from the full composited image, so overlapping crops are harmless."""
    B = JPEG_BLOCK_PX
    nby, nbx = -(-h // B), -(-w // B)
    touched = np.zeros((nby, nbx), np.uint8)
    touched.reshape(-1)[(idx // (w * B)) * nbx + (idx % w) // B] = 1
    paste = cv2.dilate(touched, np.ones((3, 3), np.uint8)) > 0
    band = 4
    out = []
    for by0 in range(0, nby, band):
        by1 = min(nby, by0 + band)
        rows = paste[by0:by1]
        cols = np.flatnonzero(rows.any(axis=0))
        if not len(cols):
            continue
        rr = np.flatnonzero(rows.any(axis=1))
        ry0, ry1 = by0 + rr[0], by0 + rr[-1] + 1
        breaks = np.flatnonzero(np.diff(cols) > 4)
        starts = np.concatenate([[cols[0]], cols[breaks + 1]])
        ends = np.concatenate([cols[breaks], [cols[-1]]]) + 1
        for c0, c1 in zip(starts, ends):
            pr = (int(c0) * B, int(ry0) * B, min(w, int(c1) * B), min(h, int(ry1) * B))
            cr = (max(0, pr[0] - B), max(0, pr[1] - B), min(w, pr[2] + B), min(h, pr[3] + B))
            out.append((cr, pr))
    return out


def _composite(
    layer: Layer, clean: np.ndarray, clean_out: np.ndarray | None, soft: SoftenParams | None, min_diff: int
) -> _Drawn:
    """Composite the layer over `clean` in float (premultiplied "over" in drawing order, rounded once),
    soften, and apply the mask rule against `clean_out` (the clean image after the same softening).
    clean_out=None (jpeg_scope="blocks"): only the blocks near the draw are JPEG'd, in the noisy and in
    the clean image alike; the patches are returned for `render_pair_detailed` to assemble.

    Works on the changed pixels only (sparse), so thin outlines with large bounding boxes stay cheap."""
    h, w = layer.h, layer.w
    blocks = clean_out is None
    if blocks:
        clean_out = clean.copy()
    noisy = clean_out.copy()
    patches = []
    mask = np.zeros((h, w), np.uint8)
    footprint = np.zeros((h, w), np.uint8)
    core = layer.core()
    if not layer.pieces:
        return _Drawn(noisy=noisy, mask=mask, core=core, footprint=footprint)
    order: list[int] = []
    for p in layer.pieces:  # class ids by their last (topmost) appearance
        if p.class_id in order:
            order.remove(p.class_id)
        order.append(p.class_id)
    sigma = soft.chroma_sigma_px if soft is not None else None
    sparse = [_sparse_piece(p, sigma, h, w) for p in layer.pieces]
    # 1-D element indices (pixel * 3 + channel): numpy's fast path for fancy indexing
    sparse = [((idx[:, None] * 3 + _RGB_OFFSETS).ravel(), a, prem) for idx, a, prem in sparse]
    union = np.concatenate([sp[0] for sp in sparse])  # may repeat; repeated entries get equal values
    flat_clean = clean.reshape(-1)
    buf = _scratch(h, w).reshape(-1)
    buf[union] = flat_clean[union]
    for idx3, a, prem in sparse:
        v = buf[idx3].reshape(-1, 3)
        v *= (1 - a)[:, None]
        v += prem
        buf[idx3] = v.reshape(-1)
    raw_vals = np.rint(np.clip(buf[union], 0, 255)).astype(np.uint8)
    if soft is None:
        noisy.reshape(-1)[union] = raw_vals
    else:
        raw = clean.copy()
        raw.reshape(-1)[union] = raw_vals
        union = union[::3] // 3  # pixel indices for the block bookkeeping
        for (cx0, cy0, cx1, cy1), (px0, py0, px1, py1) in _jpeg_rects(union, h, w):
            dec = jpeg_roundtrip(raw[cy0:cy1, cx0:cx1], soft.quality)
            noisy[py0:py1, px0:px1] = dec[py0 - cy0 : py1 - cy0, px0 - cx0 : px1 - cx0]
            if blocks:
                dec_c = jpeg_roundtrip(clean[cy0:cy1, cx0:cx1], soft.quality)
                clean_out[py0:py1, px0:px1] = dec_c[py0 - cy0 : py1 - cy0, px0 - cx0 : px1 - cx0]
                patches.append(
                    ((px0, py0, px1, py1), noisy[py0:py1, px0:px1].copy(), clean_out[py0:py1, px0:px1].copy())
                )
    d = FOOTPRINT_DILATE_PX + 1
    fx0 = max(0, min(p.x0 for p in layer.pieces) - d)
    fy0 = max(0, min(p.y0 for p in layer.pieces) - d)
    fx1 = min(w, max(p.x1 for p in layer.pieces) + d)
    fy1 = min(h, max(p.y1 for p in layer.pieces) + d)
    fp = _footprint(core[fy0:fy1, fx0:fx1], order)
    footprint[fy0:fy1, fx0:fx1] = fp
    ys, xs = _nonzero(fp)  # the mask rule, evaluated where it can be nonzero
    ys += fy0
    xs += fx0
    diff = np.abs(noisy[ys, xs].astype(np.int16) - clean_out[ys, xs]).max(axis=1)
    mask[ys, xs] = np.where(diff >= min_diff, footprint[ys, xs], np.uint8(0))
    return _Drawn(noisy=noisy, mask=mask, core=core, footprint=footprint, patches=patches)


def _avoid_maps(core: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(exact, loose) bool maps around draw A's drawn pixels. A draw B that misses `exact` (A grown by
    2 * FOOTPRINT_DILATE_PX + 1) cannot share a masked pixel with A; samplers test points against the
    wider `loose` map so that B's strokes (a few px wide) miss `exact` too."""
    exact = np.zeros(core.shape, bool)
    loose = np.zeros(core.shape, bool)
    bx, by, bw, bh = cv2.boundingRect((core > 0).view(np.uint8))
    if bw == 0:
        return exact, loose
    r_e, r_l = 2 * FOOTPRINT_DILATE_PX + 1, 2 * FOOTPRINT_DILATE_PX + 6
    h, w = core.shape
    y0, y1 = max(0, by - r_l), min(h, by + bh + r_l)
    x0, x1 = max(0, bx - r_l), min(w, bx + bw + r_l)
    sub = (core[y0:y1, x0:x1] > 0).view(np.uint8)
    ke = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r_e + 1,) * 2)
    exact[y0:y1, x0:x1] = cv2.dilate(sub, ke) > 0
    loose[y0:y1, x0:x1] = cv2.dilate(sub, np.ones((2 * r_l + 1, 2 * r_l + 1), np.uint8)) > 0
    return exact, loose


def _render_one(
    kind: str,
    rng: np.random.Generator,
    clean: np.ndarray,
    clean_out: np.ndarray,
    icons: IconSet | None,
    opts: RenderOptions,
    soft: SoftenParams | None,
    min_diff: int,
    avoid: tuple[np.ndarray, np.ndarray] | None,
):
    h, w = clean.shape[:2]
    best = None
    for attempt in range(max(1, opts.max_redraws)):
        params = sample_params(kind, rng, h, w, icons, opts, avoid[1] if avoid is not None else None)
        layer = draw_params(kind, params, h, w, icons)
        if not layer.pieces:
            continue
        overlap = layer.overlap_px(avoid[0]) if avoid is not None else 0
        if overlap and attempt < opts.avoid_tries:
            continue
        drawn = _composite(layer, clean, clean_out, soft, min_diff)
        n = int(np.count_nonzero(drawn.mask))
        if n >= MIN_MASK_PX:
            return drawn, params
        if best is None or n > best[2]:
            best = (drawn, params, n)
    if best is None:  # every draw overlapped: accept the last one
        drawn = _composite(layer, clean, clean_out, soft, min_diff)
        return drawn, params
    return best[0], best[1]


@dataclass
class RenderedPair:
    """Everything `render_pair` computed; `arrays()` is what goes into a shard."""

    clean: np.ndarray
    noisy_a: np.ndarray
    noisy_b: np.ndarray
    mask: np.ndarray
    mask_b: np.ndarray
    footprint_a: np.ndarray  # dilated class-id footprints used by the mask rule
    footprint_b: np.ndarray
    params_a: Any
    params_b: Any
    soften: SoftenParams | None
    min_diff: int

    def arrays(self) -> dict[str, np.ndarray]:
        return {
            "clean": self.clean,
            "noisy_a": self.noisy_a,
            "noisy_b": self.noisy_b,
            "mask": self.mask,
            "mask_b": self.mask_b,
        }


@em.cpu_exact
def render_pair_detailed(
    kind: str, rng: np.random.Generator, clean: np.ndarray, icons: IconSet | None, opts: RenderOptions = RenderOptions()
) -> RenderedPair:
    """`render_pair` plus the footprints, the sampled parameters and the softening (for tests and tools)."""
    if kind not in KINDS:
        raise ValueError(f"unknown annotation kind {kind!r}; use one of {', '.join(KINDS)}")
    clean = np.asarray(clean)
    if clean.ndim != 3 or clean.shape[2] != 3 or clean.dtype != np.uint8:
        raise ValueError(f"clean must be an (H, W, 3) uint8 RGB image, got {clean.shape} {clean.dtype}")
    if min(clean.shape[:2]) < 32:
        raise ValueError(f"clean must be at least 32x32 pixels, got {clean.shape[:2]}")
    check_icons(kind, icons)
    clean = np.ascontiguousarray(clean)
    soft = None
    if opts.soften:
        soft = SoftenParams(
            quality=int(rng.integers(opts.jpeg_quality_range[0], opts.jpeg_quality_range[1] + 1)),
            chroma_sigma_px=float(rng.uniform(*opts.chroma_sigma_range))
            * max(MIN_SCALE, sum(opts.scale_range) / 2 * clean.shape[1] / REF_WIDTH_PX),
        )
        clean_out = jpeg_roundtrip(clean, soft.quality) if opts.jpeg_scope == "image" else None
    else:
        clean_out = clean.copy()
    min_diff = opts.mask_min_diff if opts.soften else 1
    a, pa = _render_one(kind, rng, clean, clean_out, icons, opts, soft, min_diff, None)
    b, pb = _render_one(kind, rng, clean, clean_out, icons, opts, soft, min_diff, _avoid_maps(a.core))
    if rng.random() < 0.5:  # B is drawn conditioned on A: swap so that both slots have the same law
        a, b, pa, pb = b, a, pb, pa
    if clean_out is None:  # jpeg_scope="blocks": JPEG'd blocks of both draws in all three images
        clean_out = clean.copy()
        for (x0, y0, x1, y1), _, cpatch in a.patches + b.patches:
            clean_out[y0:y1, x0:x1] = cpatch
        for d in (a, b):
            d.noisy = clean_out.copy()
            for (x0, y0, x1, y1), npatch, _ in d.patches:
                d.noisy[y0:y1, x0:x1] = npatch
    return RenderedPair(
        clean=clean_out,
        noisy_a=a.noisy,
        noisy_b=b.noisy,
        mask=a.mask,
        mask_b=b.mask,
        footprint_a=a.footprint,
        footprint_b=b.footprint,
        params_a=pa,
        params_b=pb,
        soften=soft,
        min_diff=min_diff,
    )


def render_pair(
    kind: str, rng: np.random.Generator, clean: np.ndarray, icons: IconSet | None, opts: RenderOptions = RenderOptions()
) -> dict[str, np.ndarray]:
    """Draw two independent annotations of `kind` onto one clean scan.

    kind: one of synth.kinds.KINDS. rng: the sample's generator (the only randomness used).
    clean: (H, W, 3) uint8 RGB. icons: the icon set (required for body_marker).
    Returns {"clean", "noisy_a", "noisy_b": (H, W, 3) uint8, "mask", "mask_b": (H, W) uint8 class ids}.
    With opts.soften, "clean" is the input after the same JPEG round trip as the noisy images."""
    return render_pair_detailed(kind, rng, clean, icons, opts).arrays()
