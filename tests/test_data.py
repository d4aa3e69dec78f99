"""train.data: the shard stream (each sample once per epoch, resuming mid-epoch), crop windows (seeded,
centred on the annotation), hard-negative windows, and the run options that pick windows."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from conftest import SHARDS_SIZE_PX as SIZE  # noqa: E402

from train.checkpoint import TrainError  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.data import (  # noqa: E402
    MODE_FIELDS,
    DataError,
    ShardStream,
    crop_item,
    epoch_order,
    list_shard_files,
    skip_for_worker,
)
from train.loop import train_run  # noqa: E402


def test_stream_covers_each_sample_once_per_epoch(shards):
    seen = []
    for worker in range(2):
        seen += epoch_order(list_shard_files(shards / "train")[0], 0, 3, 0, 1, worker, 2, 4, 8, True)
    assert sorted(seen) == [(s, i) for s in range(4) for i in range(4)]
    ranks = [set(epoch_order(list_shard_files(shards / "train")[0], 0, 0, r, 2, 0, 1, 4, 8, True)) for r in range(2)]
    assert not ranks[0] & ranks[1] and len(ranks[0] | ranks[1]) == 16
    a = epoch_order(list_shard_files(shards / "train")[0], 0, 0, 0, 1, 0, 1, 4, 8, True)
    b = epoch_order(list_shard_files(shards / "train")[0], 0, 1, 0, 1, 0, 1, 4, 8, True)
    assert a != b, "each epoch has its own order"


def test_stream_yields_uint8_tensors_and_resumes_mid_epoch(shards):
    ds = ShardStream(shards / "train", MODE_FIELDS["n2n"] + ("sample_id",), seed=0, batch_size=2)
    full = [int(x["sample_id"]) for x in ds]
    first = next(iter(ds))
    assert first["noisy_a"].dtype == torch.uint8 and first["noisy_a"].shape == (3, SIZE, SIZE)
    ds.set_epoch(0, skip=6)
    assert [int(x["sample_id"]) for x in ds] == full[6:]
    loader = torch.utils.data.DataLoader(ds, batch_size=2, num_workers=2)
    ds.set_epoch(0, skip=0)
    order = [int(i) for b in loader for i in b["sample_id"]]
    ds.set_epoch(0, skip=6)
    assert [int(i) for b in loader for i in b["sample_id"]] == order[6:]
    assert skip_for_worker(6, 0, 2, 2) == 4 and skip_for_worker(6, 1, 2, 2) == 2


def test_crop_windows_are_seeded_and_follow_the_annotation(shards):
    ds = ShardStream(shards / "train", MODE_FIELDS["seg"] + ("sample_id",), seed=0, crop=32, focus=1.0)
    items = list(ds)
    assert all(x["noisy_a"].shape == (3, 32, 32) and x["mask"].shape == (32, 32) for x in items)
    assert all(x["mask"].any() for x in items), "focus=1 windows are centred on annotation"
    again = list(ShardStream(shards / "train", MODE_FIELDS["seg"] + ("sample_id",), seed=0, crop=32, focus=1.0))
    assert all(np.array_equal(a["noisy_a"], b["noisy_a"]) for a, b in zip(items, again)), "same seed, same crops"
    # n2n focus comes from the two noisy copies only (no labels): the window holds a pixel where they differ
    rng = np.random.default_rng(0)
    a = np.zeros((64, 64, 3), np.uint8)
    b = a.copy()
    b[50, 60] = 200
    for _ in range(5):
        c = crop_item({"noisy_a": a, "noisy_b": b}, 16, 1.0, rng)
        assert c["noisy_a"].shape == (16, 16, 3) and c["noisy_b"].max() == 200
    with pytest.raises(DataError, match="larger than"):
        ShardStream(shards / "train", MODE_FIELDS["n2n"], crop=128)


def test_hard_negative_windows_land_on_bright_marks_off_the_mask():
    """--hard-negatives: a window centred on a bright mark on a dark surround (a depth tick), never on
    the annotation; at 0 the windows are exactly those of before (the same random draws)."""
    img = np.zeros((96, 96, 3), np.uint8)
    img[10:12, 4:8] = 200  # a depth tick on the black frame
    img[60:64, 60:64] = 220  # an annotation...
    mask = np.zeros((96, 96), np.uint8)
    mask[60:64, 60:64] = 1  # ...masked, so never a hard negative
    img[40:96, 0:40] = 90  # tissue: not bright enough
    from train.data import hard_negative_pixels

    hot = hard_negative_pixels(img, mask)
    assert hot[10:12, 4:8].all() and hot.sum() == 8
    for seed in range(5):
        c = crop_item({"noisy_a": img, "mask": mask}, 16, 0.0, np.random.default_rng(seed), negatives=1.0)
        assert c["noisy_a"].max() == 200 and not c["mask"].any()
        plain = crop_item({"noisy_a": img, "mask": mask}, 16, 0.5, np.random.default_rng(seed))
        same = crop_item({"noisy_a": img, "mask": mask}, 16, 0.5, np.random.default_rng(seed), negatives=0.0)
        assert np.array_equal(plain["noisy_a"], same["noisy_a"])


def test_hard_negatives_need_seg_windows(shards, tmp_path):
    with pytest.raises(TrainError, match="--mode seg and --crop"):
        train_run(TrainConfig(shards=str(shards / "train"), out=str(tmp_path / "r"), preset="cpu", width=8,
                              samples=2, crop=32, mode="n2n", hard_negatives=0.25))
    r = train_run(TrainConfig(shards=str(shards / "train"), out=str(tmp_path / "s"), preset="cpu", width=8,
                              batch_size=2, samples=4, crop=32, mode="seg", hard_negatives=0.25))
    assert r["steps"] == 2


def test_crop_must_fit_the_model(shards, tmp_path):
    with pytest.raises(TrainError, match="multiple of 32"):
        train_run(TrainConfig(shards=str(shards / "train"), out=str(tmp_path / "r"), preset="cpu", width=8,
                              samples=2, crop=40))
