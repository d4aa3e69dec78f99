"""Tests for train.metrics against hand computations and the reference packages (skimage, psnr_hvsm)."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import math

import numpy as np
import pytest

from train.metrics import (
    DEFAULT_MIN_AREA,
    DEFAULT_THRESHOLD,
    IMAGE_METRICS,
    LUMA,
    MASK_METRICS,
    METRICS,
    dice,
    evaluate_image,
    gray,
    iou,
    pixel_accuracy,
    psnr,
    psnr_hvsm,
    residual_mask,
    ssim,
    summarize,
)


@pytest.fixture(scope="module")
def images():
    """A random RGB 'clean' image and a distorted copy, uint8, 64x64."""
    rng = np.random.default_rng(0)
    clean = rng.integers(0, 256, (64, 64, 3), dtype=np.uint8)
    noise = rng.normal(0, 12, clean.shape)
    out = np.clip(clean + noise, 0, 255).astype(np.uint8)
    return clean, out


def _grey_rgb(g):
    return np.repeat(np.asarray(g)[..., None], 3, axis=-1)


def test_gray_is_bt601():
    assert LUMA == (0.299, 0.587, 0.114)
    img = np.array([[[255, 0, 0], [0, 255, 0], [0, 0, 255], [10, 20, 30]]], dtype=np.uint8)
    np.testing.assert_allclose(gray(img), [[76.245, 149.685, 29.07, 0.299 * 10 + 0.587 * 20 + 0.114 * 30]])
    g = np.arange(12, dtype=np.uint8).reshape(3, 4)
    np.testing.assert_allclose(gray(_grey_rgb(g)), g)  # grey pixels keep their value
    assert gray(g).dtype == np.float64 and np.array_equal(gray(g), g)
    assert np.array_equal(gray(g[..., None]), g)
    with pytest.raises(ValueError, match="RGB"):
        gray(np.zeros((4, 4, 2)))


def test_default_cut_drops_lone_pixels_and_keeps_a_caliper_dot_with_its_shadow():
    """The defaults `apply` and `eval` use: a residual of exactly DEFAULT_THRESHOLD grey levels is annotation
    (the cut is >=, as in the shard mask rule) and one level less is not; a lone such pixel (network noise on
    speckle) is dropped by DEFAULT_MIN_AREA, while the smallest real mark, a 1 px caliper dot with its 1 px
    diagonal drop shadow (2 px, 8-connected), is kept."""
    out = np.full((12, 12, 3), 100, np.uint8)
    inp = out.copy()
    inp[2, 2, 1] = 100 + int(DEFAULT_THRESHOLD)  # a lone pixel at the cut, in one channel
    inp[7, 7] = 255  # a caliper dot...
    inp[8, 8] = 0  # ...and its diagonal shadow
    assert residual_mask(inp, out, min_area=1)[2, 2], "at the threshold is annotation"
    mask = residual_mask(inp, out)
    assert not mask[2, 2] and mask[7, 7] and mask[8, 8] and mask.sum() == 2
    inp[2, 2, 1] -= 1
    assert not residual_mask(inp, out, min_area=1)[2, 2], "one level under the threshold is not"
    assert DEFAULT_MIN_AREA == 2


def test_residual_mask_is_two_sided_and_never_wraps():
    out = np.full((10, 10, 3), 100, dtype=np.uint8)
    inp = out.copy()
    inp[1:3, 1:3] = 200  # annotation brighter than the restoration
    inp[6:8, 6:8] = 20  # annotation darker than the restoration
    inp[5, 1] = 99  # 1 level darker: uint8 subtraction would wrap to 255 and flag it
    mask = residual_mask(inp, out)
    expected = np.zeros((10, 10), bool)
    expected[1:3, 1:3] = True
    expected[6:8, 6:8] = True
    assert mask.dtype == bool and np.array_equal(mask, expected)
    assert np.array_equal(residual_mask(out, inp), expected)  # symmetric in its arguments


def test_residual_mask_is_the_shard_rule_per_channel_and_inclusive():
    out = np.full((5, 5, 3), 100.0)
    inp = out.copy()
    inp[1:3, 1:3, 2] = 100 + DEFAULT_THRESHOLD - 0.5  # blue only, just below
    assert not residual_mask(inp, out).any()
    inp[1:3, 1:3, 2] = 100 + DEFAULT_THRESHOLD  # blue only (luma would move by < 1 level): flagged
    assert residual_mask(inp, out).sum() == 4
    assert not residual_mask(inp, out, threshold=DEFAULT_THRESHOLD + 1).any()
    assert residual_mask(inp[..., 0], out[..., 0]).sum() == 0  # grey images work too


def test_perfect_restoration_gives_back_the_truth_mask():
    """The threshold equals synth's mask rule, so out = clean reproduces the shard mask (Dice near 1)."""
    from synth import render as R
    from synth.icons import load_icon_set
    from synth.phantom import make_phantom

    assert DEFAULT_THRESHOLD == R.MASK_MIN_DIFF
    icons, cleans = load_icon_set(), [make_phantom(k, 128) for k in range(4)]
    for kind in ("body_marker", "radial_line", "vascular_flow"):
        scores = []
        for seed in range(6):
            s = R.render_pair(kind, np.random.default_rng(seed), cleans[seed % 4], icons)
            scores.append(dice(residual_mask(s["noisy_a"], s["clean"]), s["mask"]))
        assert np.mean(scores) > 0.9, (kind, scores)


def test_residual_mask_drops_small_components():
    out = np.zeros((12, 12), np.uint8)
    inp = out.copy()
    inp[1, 1] = 255  # isolated pixel
    inp[5, 5] = inp[6, 6] = 255  # diagonal pair: one 8-connected component of 2
    inp[9:11, 8:11] = 255  # 6 pixels
    mask = residual_mask(inp, out, min_area=2)
    assert not mask[1, 1] and mask[5, 5] and mask[6, 6] and mask[9:11, 8:11].all()
    assert mask.sum() == 8
    assert residual_mask(inp, out, min_area=1).sum() == 9
    assert residual_mask(inp, out, min_area=0).sum() == 9
    assert residual_mask(inp, out, min_area=3).sum() == 6
    assert not residual_mask(out, out).any()


# Tiny masks with known overlaps: |P| = 3, |T| = 3, |P∩T| = 2, |P∪T| = 4, 7 of 9 pixels agree.
PRED = np.array([[1, 1, 0], [0, 1, 0], [0, 0, 0]])
TRUE = np.array([[1, 0, 0], [0, 1, 1], [0, 0, 0]])


def test_mask_metrics_by_hand():
    assert dice(PRED, TRUE) == pytest.approx(2 * 2 / (3 + 3))
    assert iou(PRED, TRUE) == pytest.approx(2 / 4)
    assert pixel_accuracy(PRED, TRUE) == pytest.approx(7 / 9)
    # class-id masks and bool masks count as binary
    assert dice(PRED.astype(bool), TRUE * 3) == pytest.approx(2 / 3)


def test_mask_metrics_empty_cases():
    empty = np.zeros((3, 3), np.uint8)
    assert dice(empty, empty) == iou(empty, empty) == pixel_accuracy(empty, empty) == 1.0
    assert dice(empty, TRUE) == iou(empty, TRUE) == 0.0
    assert pixel_accuracy(empty, TRUE) == pytest.approx(6 / 9)
    assert pixel_accuracy(np.zeros((0, 3)), np.zeros((0, 3))) == 1.0
    assert dice(np.ones((2, 2)), np.ones((2, 2))) == iou(np.ones((2, 2)), np.ones((2, 2))) == 1.0


def test_mask_metrics_refuse_shape_mismatch():
    with pytest.raises(ValueError, match="shapes differ"):
        dice(PRED, TRUE[:2])


def test_ssim_matches_skimage(images):
    from skimage.metrics import structural_similarity

    clean, out = images
    g_clean = gray(clean)
    g_out = gray(out)
    ref = structural_similarity(
        g_clean, g_out, data_range=255.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    assert ssim(out, clean) == pytest.approx(ref, abs=1e-12)
    # On grey (R = G = B) images luma is the grey value itself: compare with skimage on that array.
    gc = clean[..., 0]
    go = out[..., 0]
    ref_grey = structural_similarity(
        gc.astype(float),
        go.astype(float),
        data_range=255.0,
        gaussian_weights=True,
        sigma=1.5,
        use_sample_covariance=False,
    )
    assert ssim(_grey_rgb(go), _grey_rgb(gc)) == pytest.approx(ref_grey, abs=1e-12)
    assert ssim(clean, clean) == pytest.approx(1.0)
    assert 0 < ssim(out, clean) < 1


def test_psnr_by_hand_and_without_wraparound(images):
    clean, out = images
    mse = np.mean((gray(out) - gray(clean)) ** 2)
    assert psnr(out, clean) == pytest.approx(10 * math.log10(255**2 / mse))
    # uint8 input whose values sit below the reference: a wrapped difference would give ~0 dB.
    c = np.full((8, 8), 100, np.uint8)
    o = np.full((8, 8), 90, np.uint8)
    assert psnr(o, c) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr(clean, clean) == 100.0  # capped, finite


def test_psnr_hvsm_matches_the_package(images):
    from psnr_hvsm import psnr_hvs_hvsm

    clean, out = images
    gc, go = clean[..., 0], out[..., 0]
    _, ref = psnr_hvs_hvsm(gc.astype(np.float64) / 255, go.astype(np.float64) / 255)
    value = psnr_hvsm(_grey_rgb(go), _grey_rgb(gc))
    assert isinstance(value, float) and value == pytest.approx(float(ref))
    assert 10 < value < 100
    assert psnr_hvsm(clean, clean) == 100.0


def test_psnr_hvsm_crops_incomplete_blocks(images):
    clean, out = images
    rng = np.random.default_rng(1)
    big_c = rng.integers(0, 256, (70, 67, 3), dtype=np.uint8)
    big_o = big_c.copy()
    big_c[:64, :64], big_o[:64, :64] = clean, out
    assert psnr_hvsm(big_o, big_c) == pytest.approx(psnr_hvsm(out, clean))
    with pytest.raises(ValueError, match="at least 8x8"):
        psnr_hvsm(np.zeros((7, 20)), np.zeros((7, 20)))


def test_summarize():
    mean, var = summarize([1.0, 2.0, 3.0, 4.0])
    assert mean == 2.5 and var == pytest.approx(1.25)
    assert summarize(iter([7.0])) == (7.0, 0.0)
    with pytest.raises(ValueError):
        summarize([])


def test_registry_and_evaluate_image(images):
    clean, out = images
    assert set(METRICS) == {"dice", "iou", "pixel_accuracy", "ssim", "psnr", "psnr_hvsm"}
    assert set(METRICS) == set(MASK_METRICS) | set(IMAGE_METRICS)
    row = evaluate_image(PRED, TRUE, out, clean)
    assert list(row) == list(METRICS)
    assert all(isinstance(v, float) for v in row.values())
    assert row["dice"] == pytest.approx(2 / 3) and row["psnr"] == pytest.approx(psnr(out, clean))
    assert list(evaluate_image(PRED, TRUE)) == list(MASK_METRICS)
