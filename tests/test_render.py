"""Tests for synth.render: shapes, determinism, the mask rule, backgrounds, A/B overlap, placement, kinds."""

from __future__ import annotations

import dataclasses
import importlib
import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from synth import render as R
from synth.icons import Icon, IconSet
from synth.kinds import CLASS_IDS, KINDS
from synth.raster import JPEG_BLOCK_PX, rotated_size, text_ink
from synth.render.body_marker import sample_body_marker
from synth.render.composite import _jpeg_rects
from synth.render.vascular_flow import _box_outline

H, W = 160, 192
SINGLE = [k for k in KINDS if k != "mixed"]


def _ring_icon(name: str, size: int, thickness: int) -> Icon:
    a = np.zeros((size, size), np.uint8)
    cv2.circle(a, (size // 2, size // 2), size // 2 - 2, 255, thickness, cv2.LINE_AA)
    cv2.line(a, (size // 2, 3), (size // 2, size // 3), 255, thickness, cv2.LINE_AA)  # a "probe bar"
    rgba = np.dstack([np.full_like(a, 255)] * 3 + [a])
    ys, xs = np.nonzero(a)
    rgba = rgba[ys.min():ys.max() + 1, xs.min():xs.max() + 1]
    return Icon(name=name, kind="body_marker", rgba=rgba, meta={"anchor": [size / 2, size / 2]})


def _cross_icon() -> Icon:
    rgba = np.zeros((13, 13, 4), np.uint8)
    rgba[5:7, :, :] = (255, 255, 0, 255)
    rgba[:, 5:7, :] = (255, 255, 0, 255)
    return Icon(name="plus_test", kind="radial_line", rgba=rgba,
                meta={"style": "ge_standard", "glyph": "+", "number": None, "anchor": [5.5, 5.5]})


@pytest.fixture(scope="session")
def icons() -> IconSet:
    return IconSet(root=Path("test-icons"),
                   by_kind={"body_marker": (_ring_icon("ring", 40, 2), _ring_icon("blob", 28, 3)),
                            "radial_line": (_cross_icon(),)},
                   sha256="test")


@pytest.fixture(scope="session")
def clean() -> np.ndarray:
    """Grey speckle with a fan-like dark border, R = G = B like a real B-mode scan."""
    rng = np.random.default_rng(123)
    noise = rng.gamma(2.0, 30.0, (H // 2, W // 4)).astype(np.float32)
    img = cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC)
    img[:, : W // 10] = 5
    return np.repeat(np.clip(img, 0, 255).astype(np.uint8)[..., None], 3, axis=2)


def _render(kind, seed, clean, icons, detailed=False, **opts):
    fn = R.render_pair_detailed if detailed else R.render_pair
    return fn(kind, np.random.default_rng(seed), clean, icons, R.RenderOptions(**opts))


@pytest.mark.parametrize("soften", [True, False])
@pytest.mark.parametrize("kind", KINDS)
def test_shapes_and_dtypes(kind, soften, clean, icons):
    out = _render(kind, 0, clean, icons, soften=soften)
    assert set(out) == {"clean", "noisy_a", "noisy_b", "mask", "mask_b"}
    for k in ("clean", "noisy_a", "noisy_b"):
        assert out[k].shape == (H, W, 3) and out[k].dtype == np.uint8
    for k in ("mask", "mask_b"):
        assert out[k].shape == (H, W) and out[k].dtype == np.uint8
    if soften:  # the clean image gets the same JPEG round trip as the noisy ones
        r = _render(kind, 0, clean, icons, detailed=True, soften=True)
        np.testing.assert_array_equal(out["clean"], R.jpeg_roundtrip(clean, r.soften.quality))
    else:
        np.testing.assert_array_equal(out["clean"], clean)


@pytest.mark.parametrize("kind", KINDS)
def test_deterministic(kind, clean, icons):
    a = _render(kind, 7, clean, icons)
    b = _render(kind, 7, clean, icons)
    c = _render(kind, 8, clean, icons)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
    assert any(not np.array_equal(a[k], c[k]) for k in ("noisy_a", "noisy_b"))


def test_no_global_rng(clean, icons):
    np.random.seed(5)
    state = np.random.get_state()[1].copy()
    _render("mixed", 1, clean, icons)
    assert np.array_equal(np.random.get_state()[1], state)


@pytest.mark.parametrize("soften,scope", [(True, "image"), (True, "blocks"), (False, "image")])
@pytest.mark.parametrize("kind", KINDS)
def test_mask_rule_exact(kind, soften, scope, clean, icons):
    for seed in range(4):
        r = _render(kind, seed, clean, icons, detailed=True, soften=soften, jpeg_scope=scope)
        assert r.min_diff == (R.MASK_MIN_DIFF if soften else 1)
        for noisy, mask, fp in ((r.noisy_a, r.mask, r.footprint_a), (r.noisy_b, r.mask_b, r.footprint_b)):
            diff = np.abs(noisy.astype(int) - r.clean.astype(int)).max(axis=2)
            np.testing.assert_array_equal(mask > 0, (diff >= r.min_diff) & (fp > 0))
            np.testing.assert_array_equal(mask, R.mask_rule(noisy, r.clean, fp, r.min_diff))
            if not soften:  # without softening the mask is exactly the changed pixels
                np.testing.assert_array_equal(mask > 0, (noisy != r.clean).any(axis=2))


@pytest.mark.parametrize("kind", KINDS)
def test_masks_never_empty(kind, clean, icons):
    for seed in range(25):
        out = _render(kind, 100 + seed, clean, icons)
        assert np.count_nonzero(out["mask"]) >= R.MIN_MASK_PX
        assert np.count_nonzero(out["mask_b"]) >= R.MIN_MASK_PX


def test_white_background_still_gets_a_mask(icons):
    white = np.full((H, W, 3), 250, np.uint8)
    for seed in range(5):
        out = R.render_pair("body_marker", np.random.default_rng(seed), white, icons)
        assert np.count_nonzero(out["mask"]) >= R.MIN_MASK_PX and np.count_nonzero(out["mask_b"]) >= R.MIN_MASK_PX


@pytest.mark.parametrize("kind", SINGLE)
def test_class_ids_single(kind, clean, icons):
    for seed in range(5):
        out = _render(kind, seed, clean, icons)
        for m in (out["mask"], out["mask_b"]):
            assert set(np.unique(m)) == {0, CLASS_IDS[kind]}


def test_class_ids_mixed(clean, icons):
    seen = set()
    for seed in range(20):
        r = _render("mixed", seed, clean, icons, detailed=True)
        for m, params in ((r.mask, r.params_a), (r.mask_b, r.params_b)):
            ids = set(np.unique(m)) - {0}
            allowed = {CLASS_IDS[k] for k, _ in params.parts}
            assert 2 <= len(params.parts) <= 3 and ids <= allowed
            seen |= ids
    assert len(seen) > 1 and seen <= set(CLASS_IDS.values())
    # body_marker only when the icon set has body markers
    for seed in range(10):
        r = _render("mixed", seed, clean, None, detailed=True)
        assert all(k != "body_marker" for k, _ in r.params_a.parts + r.params_b.parts)


def _block_dilation(fp: np.ndarray) -> np.ndarray:
    """Pixels in the 16 px JPEG blocks that `fp` touches, grown by one block."""
    B = JPEG_BLOCK_PX
    h, w = fp.shape
    nby, nbx = -(-h // B), -(-w // B)
    pad = np.zeros((nby * B, nbx * B), bool)
    pad[:h, :w] = fp > 0
    blocks = pad.reshape(nby, B, nbx, B).any(axis=(1, 3)).astype(np.uint8)
    blocks = cv2.dilate(blocks, np.ones((3, 3), np.uint8)) > 0
    return np.repeat(np.repeat(blocks, B, 0), B, 1)[:h, :w]


@pytest.mark.parametrize("scope", ["image", "blocks"])
@pytest.mark.parametrize("kind", KINDS)
def test_background_unchanged(kind, scope, clean, icons):
    for seed in range(3):
        r = _render(kind, seed, clean, icons, detailed=True, soften=False)
        for noisy, fp in ((r.noisy_a, r.footprint_a), (r.noisy_b, r.footprint_b)):
            np.testing.assert_array_equal(noisy[fp == 0], r.clean[fp == 0])
        r = _render(kind, seed, clean, icons, detailed=True, soften=True, jpeg_scope=scope)
        for noisy, fp in ((r.noisy_a, r.footprint_a), (r.noisy_b, r.footprint_b)):
            # the chroma smear reaches ~3 sigma beyond the footprint; JPEG blocks cover that
            grown = cv2.dilate((fp > 0).view(np.uint8), np.ones((9, 9), np.uint8))
            outside = ~_block_dilation(grown)
            np.testing.assert_array_equal(noisy[outside], r.clean[outside])


def test_blocks_scope_matches_whole_image_jpeg(clean, icons):
    """jpeg_scope="blocks" JPEGs only blocks near the draws, with the same bytes as the whole-image trip."""
    for kind in KINDS:
        r = _render(kind, 3, clean, icons, detailed=True, jpeg_scope="blocks")
        full = R.jpeg_roundtrip(clean, r.soften.quality)
        touched = (r.clean != clean).any(axis=2)
        assert touched.any()
        np.testing.assert_array_equal(r.clean[touched], full[touched])
        img = _render(kind, 3, clean, icons, detailed=True, jpeg_scope="image")
        np.testing.assert_array_equal(r.mask > 0, img.mask > 0)  # same draws, same masks


def test_partial_jpeg_equals_whole_image_jpeg():
    """Re-encoding only the touched blocks (with a one-block margin) gives the whole-image bytes."""
    rng = np.random.default_rng(0)
    for h, w in ((160, 192), (150, 171), (97, 64)):
        img = np.ascontiguousarray(cv2.resize(rng.integers(0, 255, (h // 4, w // 4, 3), dtype=np.uint8), (w, h)))
        changed = img.copy()
        ys, xs = rng.integers(0, h, 40), rng.integers(0, w, 40)
        changed[ys, xs] = rng.integers(0, 255, (40, 3), dtype=np.uint8)
        idx = np.unique(ys * w + xs)
        for q in (90, 95):
            full_clean, full_changed = R.jpeg_roundtrip(img, q), R.jpeg_roundtrip(changed, q)
            out = full_clean.copy()
            for (cx0, cy0, cx1, cy1), (px0, py0, px1, py1) in _jpeg_rects(idx, h, w):
                dec = R.jpeg_roundtrip(np.ascontiguousarray(changed[cy0:cy1, cx0:cx1]), q)
                out[py0:py1, px0:px1] = dec[py0 - cy0:py1 - cy0, px0 - cx0:px1 - cx0]
            np.testing.assert_array_equal(out, full_changed)


@pytest.mark.parametrize("kind", KINDS)
def test_ab_overlap_rare(kind, clean, icons):
    n, overlapping = 60, 0
    for seed in range(n):
        out = _render(kind, 1000 + seed, clean, icons)
        overlapping += bool(((out["mask"] > 0) & (out["mask_b"] > 0)).any())
    assert overlapping / n < 0.05


def test_body_marker_needs_icons(clean, icons):
    with pytest.raises(ValueError, match="icon"):
        R.render_pair("body_marker", np.random.default_rng(0), clean, None)
    no_markers = IconSet(root=Path("x"), by_kind={"radial_line": icons.icons("radial_line")}, sha256="x")
    with pytest.raises(ValueError, match="body_marker"):
        R.render_pair("body_marker", np.random.default_rng(0), clean, no_markers)
    with pytest.raises(ValueError):
        sample_body_marker(np.random.default_rng(0), H, W, None)


def test_body_marker_edges_placement(clean, icons):
    y0, y1, x0, x1 = int(0.3 * H), int(0.7 * H) + 1, int(0.3 * W), int(0.7 * W) + 1
    for seed in range(40):
        r = _render("body_marker", seed, clean, icons, detailed=True, placement="edges", soften=False)
        for m in (r.mask, r.mask_b, r.footprint_a, r.footprint_b):
            assert not m[y0:y1, x0:x1].any()
        for n in (r.noisy_a, r.noisy_b):
            np.testing.assert_array_equal(n[y0:y1, x0:x1], clean[y0:y1, x0:x1])


@pytest.mark.parametrize("placement", ["anywhere", "edges"])
def test_body_marker_fully_inside(placement, icons):
    for seed in range(50):
        p = sample_body_marker(np.random.default_rng(seed), H, W, icons, R.RenderOptions(placement=placement))
        ic = next(i for i in icons.icons("body_marker") if i.name == p.icon)
        bw, bh = rotated_size(ic.rgba.shape[1] * p.scale, ic.rgba.shape[0] * p.scale, p.angle_deg)
        assert bw / 2 <= p.cx <= W - bw / 2 and bh / 2 <= p.cy <= H - bh / 2
        assert abs(p.angle_deg) <= 15


def test_annotations_stay_on_canvas(clean, icons):
    """Samplers keep geometry inside the image (the layer never has to cut a piece)."""
    for kind in SINGLE:
        for seed in range(20):
            p = R.sample_params(kind, np.random.default_rng(seed), H, W, icons)
            if kind == "radial_line":
                for pr in p.pairs:
                    for x, y in ((pr.x0, pr.y0), (pr.x1, pr.y1)):
                        assert p.arm_r1_px <= x <= W - p.arm_r1_px and p.arm_r1_px <= y <= H - p.arm_r1_px
            elif kind == "vascular_flow":
                o = _box_outline(p)
                assert o[:, 0].min() >= 0 and o[:, 0].max() <= W and o[:, 1].min() >= 0 and o[:, 1].max() <= H
            elif kind == "text":
                for t in p.labels:
                    l, tp, r, b = text_ink(t.text, t.font, t.cap_px, t.bold)
                    assert t.x + l >= 0 and t.x + r <= W and t.y + tp >= 0 and t.y + b <= H


@pytest.mark.parametrize("kind", KINDS)
def test_params_serialisable_and_draw_pure(kind, icons):
    p = R.sample_params(kind, np.random.default_rng(3), H, W, icons)
    json.dumps(dataclasses.asdict(p))
    a, b = R.draw_params(kind, p, H, W, icons), R.draw_params(kind, p, H, W, icons)
    assert len(a.pieces) == len(b.pieces) > 0
    for pa, pb in zip(a.pieces, b.pieces):
        assert (pa.x0, pa.y0, pa.class_id) == (pb.x0, pb.y0, pb.class_id)
        np.testing.assert_array_equal(pa.alpha, pb.alpha)


def test_options():
    json.dumps(dataclasses.asdict(R.RenderOptions()))
    with pytest.raises(ValueError):
        R.RenderOptions(placement="centre")
    with pytest.raises(ValueError):
        R.RenderOptions(jpeg_quality_range=(95, 90))
    with pytest.raises(ValueError, match="kind"):
        R.render_pair("arrow", np.random.default_rng(0), np.zeros((64, 64, 3), np.uint8), None)
    with pytest.raises(ValueError, match="uint8"):
        R.render_pair("text", np.random.default_rng(0), np.zeros((64, 64, 3), np.float32), None)


def test_odd_sizes(icons):
    rng = np.random.default_rng(0)
    for h, w in ((97, 131), (64, 64), (300, 211)):
        img = np.repeat(rng.integers(0, 200, (h, w, 1), dtype=np.uint8), 3, axis=2)
        for kind in KINDS:
            out = R.render_pair(kind, np.random.default_rng(1), img, icons)
            assert out["noisy_a"].shape == (h, w, 3) and np.count_nonzero(out["mask"]) >= R.MIN_MASK_PX


@pytest.mark.parametrize("kind", sorted(CLASS_IDS))
def test_each_kind_is_one_module_and_one_registry_line(kind):
    """synth/render/<kind>.py holds the kind's frozen priors table, sampler and drawer; KIND_SPECS names them."""
    mod = importlib.import_module(f"synth.render.{kind}")
    spec = R.KIND_SPECS[kind]
    assert spec.sample is getattr(mod, f"sample_{kind}") is R.SAMPLERS[kind]
    assert spec.draw is getattr(mod, f"draw_{kind}") is R.DRAWERS[kind]
    assert dataclasses.is_dataclass(mod.PRIORS)
    field = dataclasses.fields(mod.PRIORS)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(mod.PRIORS, field, None)
    assert set(R.KIND_SPECS) == set(CLASS_IDS) and set(R.SAMPLERS) == set(KINDS)


def test_chrome_needs_only_the_rasteriser():
    """synth.chrome (phantom scans) draws with synth.raster and never imports the annotation renderer."""
    code = "import sys, synth.chrome; print(' '.join(sorted(m for m in sys.modules if m.startswith('synth'))))"
    mods = set(subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split())
    assert "synth.raster" in mods and not any(m == "synth.render" or m.startswith("synth.render.") for m in mods)
