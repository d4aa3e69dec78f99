"""Tests for the procedural B-mode phantom generator (synth.phantom)."""

import dataclasses
import hashlib
import json
import subprocess
import sys

import cv2
import numpy as np
import pytest

from synth.chrome import sample_chrome
from synth.phantom import (
    GEOMETRIES,
    Ticks,
    export_phantoms,
    make_phantom,
    phantom_seed,
    render_phantom,
    sample_phantom,
)

SIZE = 128


def _params(seed: int, size_px: int = SIZE, geometry: str | None = None):
    return sample_phantom(np.random.default_rng(np.random.SeedSequence(seed)), size_px, geometry)


def _fan_inside_px(params) -> np.ndarray:
    """(size, size) signed distance-like margin to the fan edge in pixels (> 0 inside)."""
    size_px, probe = params.size_px, params.probe
    ys, xs = np.mgrid[0:size_px, 0:size_px].astype(np.float32)
    d_px, u, _ = probe.beam_coords(xs, ys)
    if probe.geometry == "linear":
        lateral_px = (1 - np.abs(u)) * 0.5 * (probe.right_px - probe.left_px)
    else:
        lateral_px = (1 - np.abs(u)) * probe.half_angle_rad * (d_px + probe.radius_near_px)
    return np.minimum(np.minimum(d_px, probe.depth_px - d_px), lateral_px)


@pytest.mark.parametrize("geometry", [*GEOMETRIES, None])
@pytest.mark.parametrize("size_px", [SIZE, 97])
def test_shape_dtype_and_grey(geometry, size_px):
    image = make_phantom(3, size_px, geometry)
    assert image.shape == (size_px, size_px, 3)
    assert image.dtype == np.uint8
    assert np.array_equal(image[..., 0], image[..., 1]) and np.array_equal(image[..., 1], image[..., 2])
    assert 10 < image.mean() < 160  # neither blank nor blown out


def test_geometry_argument_is_respected():
    for geometry in GEOMETRIES:
        assert _params(5, geometry=geometry).probe.geometry == geometry


def test_geometry_drawn_from_seed_mostly_convex():
    drawn = [_params(seed).probe.geometry for seed in range(300)]
    assert set(drawn) == set(GEOMETRIES)
    assert 0.7 < drawn.count("convex") / len(drawn) < 0.9


def test_deterministic_and_seed_dependent():
    a = make_phantom(11, SIZE)
    assert np.array_equal(a, make_phantom(11, SIZE))
    assert not np.array_equal(a, make_phantom(12, SIZE))
    assert not np.array_equal(make_phantom(11, SIZE, "convex"), make_phantom(11, SIZE, "linear"))


@pytest.mark.parametrize("extras", [{}, {"chrome": True, "reflectors": True}])
def test_deterministic_across_processes(extras):
    code = (
        "import hashlib; from synth.phantom import make_phantom; "
        f"print(hashlib.sha256(make_phantom(21, {SIZE}, **{extras!r}).tobytes()).hexdigest())"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == hashlib.sha256(make_phantom(21, SIZE, **extras).tobytes()).hexdigest()


def test_reflectors_brighten_the_tissue_only():
    added = []
    for seed in range(6):
        params = _params(seed, 256)
        plain = make_phantom(seed, 256)[..., 0].astype(int)
        bright = make_phantom(seed, 256, reflectors=True)
        assert np.array_equal(bright[..., 0], bright[..., 2]), "reflectors are grey"
        diff = bright[..., 0].astype(int) - plain
        assert diff.min() >= 0, "echoes only add brightness"
        assert not diff[_fan_inside_px(params) < -1.0].any(), "nothing outside the fan"
        added.append((diff >= 20).mean())
    # thin lines and spots: present on most frames, a small share of the pixels
    assert sum(a > 0 for a in added) >= 4 and max(added) < 0.03


def test_chrome_draws_coloured_marks_over_the_same_scan():
    coloured = []
    for seed in range(8):
        plain, chrome = make_phantom(seed, 256), make_phantom(seed, 256, chrome=True)
        changed = (plain != chrome).any(axis=2)
        assert changed.mean() < 0.03, "chrome is small text and bars, not a new scan"
        # the scan under the chrome is chrome=False's: its own stream, so nothing else moved
        ys, xs = np.nonzero(~cv2.dilate(changed.view(np.uint8), np.ones((3, 3), np.uint8)).astype(bool))
        assert np.array_equal(plain[ys, xs], chrome[ys, xs])
        coloured.append(int((chrome[..., 0] != chrome[..., 2]).sum()))
    # logos, the blue parameter line, yellow ticks and the cine track are in colour on most frames
    assert sum(c > 0 for c in coloured) >= 6


def test_chrome_vendor_follows_the_depth_scale():
    size = 256
    left = Ticks(x_px=12.0, top_px=10.0, spacing_px=18.0, grey=200, focus_y_px=None)
    right = dataclasses.replace(left, x_px=size - 12.0)
    vendors = {sample_chrome(np.random.default_rng(k), size, t).vendor for k in range(10) for t in (left,)}
    assert vendors == {"ge"}
    digits = []
    for k in range(20):
        chrome = sample_chrome(np.random.default_rng(k), size, right)
        assert chrome.vendor == "mindray"
        digits.append([lab.text for lab in chrome.labels if lab.text.isdigit()])
    # Mindray writes the depth beside every 5 cm tick: 0, 5, 10, ... (on most frames)
    scales = [d for d in digits if d]
    assert len(scales) >= 10
    assert all(d == [str(5 * k) for k in range(len(d))] and len(d) >= 2 for d in scales)


def test_params_are_serialisable_and_render_is_pure():
    params = _params(4)
    json.dumps(dataclasses.asdict(params))
    assert np.array_equal(render_phantom(params), render_phantom(params))


@pytest.mark.parametrize("seed", range(4))
def test_black_outside_fan(seed):
    # Without the scanner UI (ticks, bar, probe outline) everything outside the fan is exactly 0.
    params = dataclasses.replace(
        _params(seed, geometry="convex"), ticks=None, grey_bar=False, probe_ring_grey=0
    )
    grey = render_phantom(params)[..., 0]
    assert np.all(grey[_fan_inside_px(params) < -1.0] == 0)
    black = (grey == 0).mean()
    assert 0.05 < black < 0.5  # dev scans: median 0.21, range 0.07-0.35
    # With the UI drawn, the bottom corners of a convex frame stay black.
    full = make_phantom(phantom_seed(seed, 0), SIZE, "convex")
    assert full[-3:, :3].max() == 0 and full[-3:, -3:].max() == 0


def test_grey_statistics_plausible():
    # Dev scans (ANNOTATION_STATS.md 5): fan mean 71 (p10-p90 46-96), std 53, median 59, p5 9, p95 176.
    means, stds, p5s, p95s = [], [], [], []
    for seed in range(8):
        params = _params(seed, 256)
        grey = render_phantom(params)[..., 0].astype(np.float64)
        values = grey[_fan_inside_px(params) > 4.0]
        means.append(values.mean())
        stds.append(values.std())
        p5s.append(np.percentile(values, 5))
        p95s.append(np.percentile(values, 95))
    assert 50 < np.median(means) < 95
    assert 30 < np.median(stds) < 70
    assert np.median(p5s) < 30
    assert 120 < np.median(p95s) < 230
    assert all(25 < m < 150 for m in means)


def test_depth_profile_flat_then_far_drop():
    # TGC keeps grey even with depth (dev scans); only the last ~10-20 % darkens. Plain tissue only.
    params = dataclasses.replace(
        _params(2, 256, "linear"), lesions=(), layers=(), heterogeneity=0.0, streaks=0.0, tgc_wobble=0.0
    )
    grey = render_phantom(params)[..., 0].astype(np.float64)
    probe = params.probe
    rows = grey[
        int(probe.top_px) + 4 : int(probe.bottom_px) - 2, int(probe.left_px) + 4 : int(probe.right_px) - 4
    ]
    deciles = np.array([band.mean() for band in np.array_split(rows, 10, axis=0)])
    assert deciles[-1] < 0.9 * np.median(deciles[2:8])
    assert deciles[2:8].max() < 1.2 * deciles[2:8].min()


def test_speckle_grain_wider_laterally():
    # Linear probe: arcs are horizontal, so grains are wider in x than in y (dev scans ~2.3:1).
    params = dataclasses.replace(_params(6, 256, "linear"), lesions=(), layers=(), ticks=None, grey_bar=False)
    probe = params.probe
    grey = render_phantom(params)[..., 0].astype(np.float32)
    patch = grey[
        int(probe.top_px) + 20 : int(probe.bottom_px) - 40, int(probe.left_px) + 8 : int(probe.right_px) - 8
    ]
    detail = patch - cv2.GaussianBlur(patch, (0, 0), 6)

    def corr(dy, dx):
        a = detail[: detail.shape[0] - dy, : detail.shape[1] - dx]
        b = detail[dy:, dx:]
        return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])

    assert corr(0, 3) > corr(3, 0) + 0.1


def test_invalid_arguments():
    with pytest.raises(ValueError, match="geometry"):
        make_phantom(0, SIZE, "sector")
    with pytest.raises(ValueError, match="seed"):
        make_phantom(-1, SIZE)
    with pytest.raises(ValueError, match="size_px"):
        make_phantom(0, 8)


def test_export_phantoms(tmp_path):
    paths = export_phantoms(3, tmp_path / "out", size_px=64, seed=5)
    assert [p.name for p in paths] == ["phantom-00000.png", "phantom-00001.png", "phantom-00002.png"]
    for k, path in enumerate(paths):
        image = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
        assert image.shape == (64, 64, 3) and image.dtype == np.uint8
        # Lossless, and phantom k is make_phantom of the seed derived from SeedSequence([seed, k]).
        assert np.array_equal(image, make_phantom(phantom_seed(5, k), 64))
    assert phantom_seed(5, 1) == int(np.random.SeedSequence([5, 1]).generate_state(1)[0])
    assert export_phantoms(0, tmp_path / "empty") == []
    # in colour, the PNG holds the RGB phantom (cv2 writes BGR: the order is swapped on the way out)
    (path,) = export_phantoms(1, tmp_path / "chrome", size_px=128, seed=0, chrome=True)
    rgb = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)[..., ::-1]
    assert np.array_equal(rgb, make_phantom(phantom_seed(0, 0), 128, chrome=True))
