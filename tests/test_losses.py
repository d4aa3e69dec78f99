"""Tests for train.losses: restoration losses against torch references, weighting, pair weights, seg loss."""

import os

os.environ["HF_HUB_OFFLINE"] = "1"

import math

import pytest
import torch
import torch.nn.functional as F

from train.losses import HUBER_DELTA, LOSSES, make_loss, pair_weight, seg_loss, soft_seg_target


def _pair(seed=0, shape=(2, 3, 8, 8), scale=1.0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn(shape, generator=g) * scale, torch.randn(shape, generator=g) * scale


REFERENCE = {
    "l1": lambda p, t: F.l1_loss(p, t),
    "l2": lambda p, t: F.mse_loss(p, t),
    "huber": lambda p, t: F.huber_loss(p, t, delta=HUBER_DELTA),
    "smooth_l1": lambda p, t: F.smooth_l1_loss(p, t, beta=HUBER_DELTA),
}
REFERENCE["l1+l2"] = lambda p, t: REFERENCE["l1"](p, t) + REFERENCE["l2"](p, t)
REFERENCE["huber+l2"] = lambda p, t: REFERENCE["huber"](p, t) + REFERENCE["l2"](p, t)
REFERENCE["smooth_l1+l2"] = lambda p, t: REFERENCE["smooth_l1"](p, t) + REFERENCE["l2"](p, t)
REFERENCE["all"] = lambda p, t: sum(REFERENCE[k](p, t) for k in ("l1", "l2", "huber", "smooth_l1"))


def test_reference_covers_every_loss():
    assert set(REFERENCE) == set(LOSSES)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_loss_matches_torch_reference(name):
    pred, target = _pair(scale=2.0)  # errors above and below delta, so Huber differs from L2
    torch.testing.assert_close(make_loss(name)(pred, target), REFERENCE[name](pred, target))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_all_ones_weight_is_the_plain_mean(name):
    pred, target = _pair()
    ones = torch.ones(2, 1, 8, 8)
    torch.testing.assert_close(LOSSES[name](pred, target, ones), LOSSES[name](pred, target))


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_weighted_mean_by_hand(name):
    pred, target = _pair(seed=1)
    w = torch.zeros(2, 1, 8, 8)
    w[0, 0, 2:4, 3:6] = 1.0
    w[1, 0, 5, 5] = 3.0
    loss = LOSSES[name](pred, target, w)
    # sum(w * loss) / sum(w) over all channels = weighted mean of the selected pixels.
    a = REFERENCE[name](pred[0, :, 2:4, 3:6], target[0, :, 2:4, 3:6])  # 6 pixels, weight 1 each
    b = REFERENCE[name](pred[1, :, 5, 5], target[1, :, 5, 5])  # 1 pixel, weight 3
    torch.testing.assert_close(loss, (6 * a + 3 * b) / 9)


def test_weighted_loss_gradient_and_dtype():
    pred, target = _pair()
    pred = pred.bfloat16().requires_grad_()
    loss = LOSSES["l1"](pred, target.bfloat16(), torch.ones(2, 1, 8, 8))
    assert loss.dtype == torch.float32 and loss.ndim == 0
    loss.backward()
    assert torch.isfinite(pred.grad.float()).all()


def test_bad_weight_and_shapes_are_refused():
    pred, target = _pair()
    with pytest.raises(ValueError, match=r"\(B, 1, H, W\)"):
        LOSSES["l1"](pred, target, torch.ones(2, 3, 8, 8))
    with pytest.raises(ValueError, match="shapes differ"):
        LOSSES["l1"](pred, target[:, :1])


def test_unknown_loss_lists_names():
    with pytest.raises(ValueError, match=r"unknown loss 'mse'; valid names: l1, l2, huber"):
        make_loss("mse")


def test_pair_weight_marks_differing_pixels():
    a = torch.full((2, 3, 6, 6), 0.5)
    b = a.clone()
    b[0, 2, 1, 1] += 9 / 255  # one channel differs by more than 8 levels: max over channels sees it
    b[1, 0, 4, 2] -= 30 / 255  # darker counts as well
    b[1, 1, 0, 0] += 7 / 255  # below the threshold
    w = pair_weight(a, b)
    assert w.shape == (2, 1, 6, 6) and w.dtype == torch.float32 and not w.requires_grad
    expected = torch.ones(2, 1, 6, 6)
    expected[0, 0, 1, 1] = 21.0
    expected[1, 0, 4, 2] = 21.0
    torch.testing.assert_close(w, expected)
    assert pair_weight(a, b, boost=4.0, thresh=0.0)[1, 0, 0, 0] == 5.0


def test_pair_weight_reads_uint8_as_grey_levels():
    a = torch.full((1, 3, 4, 4), 100, dtype=torch.uint8)
    b = a.clone()
    b[0, 1, 0, 0] = 109  # 9 levels: counts
    b[0, 1, 3, 3] = 108  # 8 levels: not above 8/255
    b[0, 0, 2, 2] = 91  # 9 levels darker: counts (no uint8 wrap-around)
    w = pair_weight(a, b)
    assert w[0, 0, 0, 0] == 21.0 and w[0, 0, 2, 2] == 21.0 and w.sum() == 16 + 2 * 20
    torch.testing.assert_close(w, pair_weight(a.float() / 255, b.float() / 255))


def _manual_binary(logits, target):
    p = torch.sigmoid(logits)
    bce = -(target * torch.log(p) + (1 - target) * torch.log(1 - p)).mean()
    dice = (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    return bce + 1 - dice


def test_seg_loss_binary_by_hand():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 1, 8, 8, generator=g)
    target = (torch.rand(2, 1, 8, 8, generator=g) > 0.7).float()
    torch.testing.assert_close(seg_loss(logits, target), _manual_binary(logits, target))
    # (B, H, W) targets and class-id values (any non-zero = annotation) give the same loss.
    torch.testing.assert_close(
        seg_loss(logits, (target[:, 0] * 3).to(torch.uint8)), _manual_binary(logits, target)
    )


def test_seg_loss_binary_rewards_the_right_answer():
    target = torch.zeros(2, 1, 8, 8)
    target[:, :, 2:5, 2:5] = 1
    right = (target * 2 - 1) * 20.0
    assert seg_loss(right, target) < 1e-3
    assert seg_loss(-right, target) > 10.0


def test_seg_loss_multiclass_by_hand():
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(2, 3, 8, 8, generator=g, requires_grad=True)
    ids = torch.randint(0, 3, (2, 8, 8), generator=g)
    loss = seg_loss(logits, ids.unsqueeze(1))
    p = torch.softmax(logits, 1)
    dices = []
    for c in (1, 2):  # foreground classes only
        t = (ids == c).float()
        dices.append(1 - (2 * (p[:, c] * t).sum() + 1) / (p[:, c].sum() + t.sum() + 1))
    expected = F.cross_entropy(logits, ids) + sum(dices) / 2
    torch.testing.assert_close(loss, expected)
    loss.backward()
    assert torch.isfinite(logits.grad).all()
    perfect = F.one_hot(ids, 3).permute(0, 3, 1, 2).float() * 40.0
    assert seg_loss(perfect, ids) < 1e-3


def test_seg_loss_empty_target_and_confident_background_is_near_zero():
    loss = seg_loss(torch.full((2, 1, 8, 8), -20.0), torch.zeros(2, 1, 8, 8))
    assert loss < 1e-3 and not math.isnan(loss.item())


def test_seg_loss_shape_mismatch():
    with pytest.raises(ValueError, match="does not match"):
        seg_loss(torch.zeros(2, 1, 8, 8), torch.zeros(2, 1, 4, 8))


def test_seg_loss_per_image_dice_by_hand():
    """--seg-dice image: soft Dice per image, then averaged, so a small annotation missed in one image
    costs as much as a large one in another; the batch pooling barely notices it."""
    target = torch.zeros(2, 1, 16, 16)
    target[0, 0, :8] = 1  # 128 px found
    target[1, 0, 0, 0] = 1  # 1 px missed
    logits = torch.where(target > 0, 8.0, -8.0)
    logits[1, 0, 0, 0] = -8.0
    p = torch.sigmoid(logits)
    bce = F.binary_cross_entropy_with_logits(logits, target)
    per_image = [1 - (2 * (p[i] * target[i]).sum() + 1) / (p[i].sum() + target[i].sum() + 1) for i in range(2)]
    torch.testing.assert_close(seg_loss(logits, target, dice="image"), bce + sum(per_image) / 2)
    torch.testing.assert_close(seg_loss(logits, target, dice="batch"), _manual_binary(logits, target))
    assert seg_loss(logits, target, dice="image") > 0.2 > 0.03 > seg_loss(logits, target, dice="batch")
    # an image without annotation: per image, any probability on it costs
    assert seg_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), dice="image") > 0.9


def test_seg_loss_unknown_dice_pooling():
    with pytest.raises(ValueError, match="batch, image"):
        seg_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 1, 8, 8), dice="pixel")


def _soft_case():
    """One image: a 3-px stroke (moved 40 levels), its softened edge (moved 7 and 8 levels), and a JPEG
    speck 5 px away from the stroke (moved 30 levels, off the mask)."""
    clean = torch.full((1, 3, 16, 16), 100, dtype=torch.uint8)
    noisy = clean.clone()
    noisy[0, :, 4:7, 2:12] += 40   # the stroke: in the mask
    noisy[0, 1, 7, 2:12] += 8      # its edge, largest channel 8 levels: in the mask
    noisy[0, 0, 8, 2:12] += 7      # one row further, 7 levels: out of the mask, 2 px from it
    noisy[0, :, 13, 14] += 30      # JPEG ringing far from the annotation: out of the mask
    mask = ((noisy.int() - clean.int()).abs().amax(1) >= 8).to(torch.uint8)
    mask[0, 13, 14] = 0            # the footprint rule keeps the far speck out
    return noisy, clean, mask


def test_soft_seg_target_ramps_across_the_cut_and_keeps_the_hard_mask():
    """--seg-soft: the target tells how far each pixel's change is from the mask rule's cut; at 0.5 it
    is the hard mask exactly, and nothing away from the mask (JPEG ringing) becomes a target."""
    noisy, clean, mask = _soft_case()
    t = soft_seg_target(noisy, clean, mask, min_diff=8, width=4, near_px=2)
    assert t.shape == (1, 1, 16, 16) and t.dtype == torch.float32
    assert torch.equal(t[:, 0] >= 0.5, mask > 0)
    assert t[0, 0, 5, 5] == 1.0                     # 40 levels: far over the cut
    assert t[0, 0, 7, 5] == pytest.approx(0.5625)   # 8 levels: just over (0.5 + 0.5 / 8)
    assert t[0, 0, 8, 5] == pytest.approx(0.4375)   # 7 levels: just under
    assert t[0, 0, 13, 14] == 0.0                   # 30 levels, but off the mask's neighbourhood
    assert t[0, 0, 0, 0] == 0.0
    wide = soft_seg_target(noisy, clean, mask, min_diff=8, width=16, near_px=2)
    assert 0.5 < wide[0, 0, 7, 5] < t[0, 0, 7, 5] and t[0, 0, 8, 5] < wide[0, 0, 8, 5] < 0.5
    with pytest.raises(ValueError, match="positive"):
        soft_seg_target(noisy, clean, mask, min_diff=8, width=0, near_px=2)


def test_seg_loss_soft_target_replaces_the_hard_one():
    """A soft target equal to the hard mask gives the hard loss. With the ramped target, the loss pulls
    confident edge pixels back toward the ramp (a sure 1 on the 8-level row and a sure 0 on the 7-level
    row both cost), where the hard target pushes them further out."""
    noisy, clean, mask = _soft_case()
    hard = (mask > 0).float().unsqueeze(1)
    base = torch.where(mask > 0, 6.0, -6.0).unsqueeze(1)
    torch.testing.assert_close(seg_loss(base, mask, soft_target=hard), seg_loss(base, mask))
    soft = soft_seg_target(noisy, clean, mask, min_diff=8, width=4, near_px=2)

    def edge_grads(edge_logit, target):
        logits = base.clone()
        logits[0, 0, 7:9] = edge_logit
        logits.requires_grad_(True)
        seg_loss(logits, mask, soft_target=target).backward()
        return logits.grad[0, 0, 7, 5].item(), logits.grad[0, 0, 8, 5].item()

    assert edge_grads(6.0, soft)[0] > 0 > edge_grads(6.0, None)[0]     # sure 1 at 8 levels: soft pulls it down
    assert edge_grads(-6.0, soft)[1] < 0 < edge_grads(-6.0, None)[1]   # sure 0 at 7 levels: soft pulls it up
    with pytest.raises(ValueError, match="binary"):
        seg_loss(torch.zeros(1, 3, 16, 16), mask, soft_target=soft)
