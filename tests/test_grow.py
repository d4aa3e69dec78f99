"""train.grow: a half-detected mark grown to the whole mark, tissue next to it left alone."""

import cv2
import numpy as np
import pytest

from train.evaluate import masks_and_cleaned
from train.grow import (
    GrowConfig,
    contrast_pixels,
    geodesic_grow,
    grow_image,
    grow_mask,
    grow_scores,
    refuse_blown_up,
)


def tissue(h=120, w=160, seed=0):
    """Speckle-like grey tissue (mean 90, sd 12, smoothed) with a bright echo blob: (H, W, 3) uint8."""
    rng = np.random.default_rng(seed)
    t = cv2.GaussianBlur(rng.normal(90, 20, (h, w)).astype(np.float32), (3, 3), 0)
    cv2.ellipse(t, (120, 40), (14, 8), 0, 0, 360, 170, -1)  # a bright echo near the mark
    return np.repeat(np.clip(t, 0, 255).astype(np.uint8)[..., None], 3, 2)


def draw_mark(img):
    """A white caliper cross, its digit, and a dotted line from it: the mark's (H, W) bool pixels."""
    mark = np.zeros(img.shape[:2], np.uint8)
    cv2.line(mark, (30, 60), (44, 60), 1, 1)
    cv2.line(mark, (37, 53), (37, 67), 1, 1)
    cv2.putText(mark, "1", (47, 72), cv2.FONT_HERSHEY_PLAIN, 0.8, 1, 1)
    for x in range(47, 100, 4):  # dotted line, 2 px dots 2 px apart
        mark[60, x:x + 2] = 1
    img[mark > 0] = 250
    return mark > 0


@pytest.fixture
def scene():
    img = tissue()
    mark = draw_mark(img)
    return img, mark


def test_a_half_detected_mark_grows_to_the_whole_and_tissue_stays(scene):
    img, mark = scene
    half = mark & (np.arange(mark.shape[1])[None] < 44)  # the detector found the cross's left half only
    assert half.sum() < 0.5 * mark.sum()
    grown = grow_mask(half, img, None, None, GrowConfig(image_reach_px=96, max_area_factor=20))
    assert (grown & mark).sum() >= 0.95 * mark.sum()
    near = cv2.dilate(mark.astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    assert not (grown & ~near).any(), "no tissue pixel more than 1 px from the mark is taken"
    blob = np.zeros_like(mark)
    cv2.ellipse(blob.view(np.uint8), (120, 40), (14, 8), 0, 0, 360, 1, -1)
    assert not (grown & blob).any()


def test_without_growth_the_half_stays_a_half(scene):
    img, mark = scene
    half = mark & (np.arange(mark.shape[1])[None] < 44)
    same = grow_mask(half, img, None, None, GrowConfig(contrast=0, low_fraction=0))
    assert np.array_equal(same, half)


def test_hysteresis_grows_into_weaker_connected_scores_only():
    score = np.zeros((40, 60), np.float32)
    score[10, 5:50] = 0.3  # a weak line
    score[10, 5:12] = 0.9  # its confident start
    score[30, 5:50] = 0.3  # another weak line, no seed on it
    seeds = score >= 0.5
    grown = grow_scores(seeds, score, 0.5, GrowConfig(low_fraction=0.4, score_reach_px=64))
    assert grown[10, 5:50].all() and not grown[30].any()
    # reach bounds the growth: 5 steps from the seed's end at x = 11
    short = grow_scores(seeds, score, 0.5, GrowConfig(low_fraction=0.4, score_reach_px=5))
    assert short[10, 5:17].all() and not short[10, 17:].any()
    # below the low threshold nothing joins
    none = grow_scores(seeds, score, 0.5, GrowConfig(low_fraction=0.7, score_reach_px=64))
    assert np.array_equal(none, seeds)


def test_growth_that_blows_up_is_refused_and_left_as_its_seeds():
    allowed = np.zeros((50, 50), bool)
    allowed[5:45, 5:45] = True  # a large bright patch of tissue
    seeds = np.zeros_like(allowed)
    seeds[20, 20:22] = True
    grown = geodesic_grow(seeds, allowed, 40)
    assert grown.sum() == allowed.sum()
    assert np.array_equal(refuse_blown_up(grown, seeds, 8.0), seeds)
    # a small enough growth is kept
    small = geodesic_grow(seeds, allowed, 1)
    assert np.array_equal(refuse_blown_up(small, seeds, 8.0), small) and small.sum() == 12


def test_contrast_pixels_find_a_thin_stroke_not_flat_tissue(scene):
    img, mark = scene
    c = contrast_pixels(img, GrowConfig())
    assert c[mark].mean() > 0.95 and c[~mark].mean() < 0.02


def test_masks_and_cleaned_grows_a_seg_mask_when_asked(scene):
    img, mark = scene
    prob = np.where(mark, 0.3, 0.02).astype(np.float32)
    prob[60, 30:38] = 0.95  # the seed: part of the cross's arm
    plain, _, _ = masks_and_cleaned(img, prob, "seg", 0.5, 2)
    grown, cleaned, _ = masks_and_cleaned(img, prob, "seg", 0.5, 2,
                                          grow=GrowConfig(score_reach_px=64, image_reach_px=96, max_area_factor=40))
    assert plain.sum() == 8 and (grown & mark).sum() >= 0.95 * mark.sum()
    assert np.abs(cleaned.astype(int) - 90)[mark].mean() < 40, "the whole mark was inpainted away"


def test_grow_image_without_a_mask_or_contrast_is_the_identity(scene):
    img, mark = scene
    empty = np.zeros_like(mark)
    assert not grow_image(empty, img).any()
    assert np.array_equal(grow_image(mark, img, GrowConfig(contrast=0)), mark)
    with pytest.raises(ValueError, match="odd"):
        GrowConfig(median_px=4)
