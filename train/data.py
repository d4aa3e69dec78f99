"""Streaming shards into training: an IterableDataset split by DDP rank, then by DataLoader worker.

Each epoch has one deterministic sample order per (seed, epoch, rank, worker): shards are dealt to ranks
and workers, read as contiguous blocks (one HDF5/Zarr read per block, not one per sample) in a shuffled
block order, and mixed through a shuffle buffer. The order is computed on indices first, so a resumed
run can start mid-epoch by skipping positions without reading the skipped samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from synth.shards import Shard, ShardError, read_manifest

MODE_FIELDS = {"n2n": ("noisy_a", "noisy_b"), "n2c": ("noisy_a", "clean"), "seg": ("noisy_a", "mask")}
EVAL_FIELDS = ("noisy_a", "clean", "mask")


class DataError(ValueError):
    """Shards that cannot be trained on; the message says what to do."""


@dataclass(frozen=True)
class ShardInfo:
    path: str
    n: int


def list_shard_files(folder: str | Path) -> tuple[list[ShardInfo], dict]:
    """The complete shards of a shard set and its manifest; DataError if there are none."""
    try:
        manifest = read_manifest(folder)
    except ShardError as e:
        raise DataError(str(e)) from e
    shards = [ShardInfo(str(Path(folder) / e["file"]), int(e["n"])) for e in manifest.get("shards", [])]
    if not shards:
        raise DataError(f"{folder}: the shard set has no complete shards yet; finish the `synth build` first.")
    return shards, manifest


def epoch_order(shards: list[ShardInfo], seed: int, epoch: int, rank: int, world: int, worker: int,
                n_workers: int, block: int, buffer: int, shuffle: bool) -> list[tuple[int, int]]:
    """The (shard index, sample index) sequence one worker of one rank yields in one epoch.

    Shards are dealt round-robin to ranks, then to workers (after a seeded shuffle of the shard list,
    so every rank sees different shards each epoch). Within a worker: blocks of `block` contiguous
    samples in seeded random order, then a shuffle buffer of `buffer` samples.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch]))
    ids = rng.permutation(len(shards)) if shuffle else np.arange(len(shards))
    mine = ids[rank::world][worker::n_workers]
    blocks = [(int(s), start, min(start + block, shards[s].n)) for s in mine for start in range(0, shards[s].n, block)]
    if not shuffle:
        return [(s, i) for s, a, b in blocks for i in range(a, b)]
    rng = np.random.default_rng(np.random.SeedSequence([seed, epoch, rank, worker]))
    blocks = [blocks[i] for i in rng.permutation(len(blocks))]
    order, buf = [], []
    for s, a, b in blocks:
        for i in range(a, b):
            buf.append((s, i))
            if len(buf) >= buffer:
                order.append(buf.pop(int(rng.integers(len(buf)))))
    while buf:
        order.append(buf.pop(int(rng.integers(len(buf)))))
    return order


class ShardStream(IterableDataset):
    """Yields dicts of uint8 tensors: images (3, H, W), masks (H, W). Convert to float on the device.

    fields: which arrays to read (MODE_FIELDS[mode] for training, EVAL_FIELDS for validation).
    n2n_swap: for n2n, swap noisy_a and noisy_b with probability 1/2 (free augmentation), seeded.
    skip: samples of this epoch already consumed (per rank) when resuming mid-epoch.
    crop: train on crop x crop windows instead of whole images (fully convolutional models, so cost per
        sample falls with the area while the scale stays that of the shards). With probability `focus`
        a window is centred on a random pixel where input and target differ by >= FOCUS_MIN_DIFF (n2n:
        noisy_a vs noisy_b; n2c: vs clean; seg: the mask), otherwise it is uniform. No labels are used
        in n2n: the focus comes from the two noisy copies alone. Seeded per position, so resumes are exact.
    negatives: seg only: with this probability (taken from the uniform windows) a window is centred on
        a hard negative instead (hard_negative_pixels: a bright mark on a dark surround, off the mask).
    """

    def __init__(self, folder: str | Path, fields: tuple[str, ...], seed: int = 0, shuffle: bool = True,
                 block: int = 8, buffer: int = 32, rank: int = 0, world: int = 1, n2n_swap: bool = False,
                 limit: int | None = None, batch_size: int = 1, crop: int | None = None, focus: float = 0.5,
                 negatives: float = 0.0):
        self.shards, self.manifest = list_shard_files(folder)
        self.fields, self.seed, self.shuffle = fields, seed, shuffle
        self.block, self.buffer, self.rank, self.world = block, buffer, rank, world
        self.n2n_swap, self.limit, self.batch_size = n2n_swap, limit, batch_size
        self.crop, self.focus, self.negatives = crop, focus, negatives
        size = self.manifest.get("image_size")
        if crop is not None and size is not None and (crop > size[0] or crop > size[1]):
            raise DataError(f"{folder}: --crop {crop} is larger than the shards' {size[0]}x{size[1]} images.")
        self.epoch, self.skip = 0, 0
        if world > len(self.shards):
            raise DataError(f"{folder}: {len(self.shards)} shards cannot feed {world} ranks; build with a smaller "
                            f"--shard-size so there is at least one shard per rank.")

    def set_epoch(self, epoch: int, skip: int = 0) -> None:
        self.epoch, self.skip = epoch, skip

    def __len__(self) -> int:
        """Samples this rank yields per epoch (its shards' total; a bound when shards are uneven)."""
        n = sum(s.n for s in self.shards[self.rank::self.world]) if not self.shuffle else \
            math.ceil(sum(s.n for s in self.shards) / self.world)
        return min(n, self.limit) if self.limit else n

    def _orders(self, n_workers: int) -> list[list[tuple[int, int]]]:
        return [epoch_order(self.shards, self.seed, self.epoch, self.rank, self.world, w, n_workers,
                            self.block, self.buffer, self.shuffle) for w in range(n_workers)]

    def __iter__(self):
        info = get_worker_info()
        real_worker, n_workers = (info.id, info.num_workers) if info else (0, 1)
        # The DataLoader takes whole batches from its workers in turn, always starting with worker 0. After
        # skipping k batches the next batch belongs to stream k % n_workers, so worker 0 plays that stream.
        worker = (real_worker + (self.skip // self.batch_size) % n_workers) % n_workers
        order = self._orders(n_workers)[worker]
        start = skip_for_worker(self.skip, worker, n_workers, self.batch_size)
        if self.limit:
            order = order[: self.limit // n_workers + (1 if worker < self.limit % n_workers else 0)]
        swap_rng = np.random.default_rng(np.random.SeedSequence([self.seed, self.epoch, self.rank, worker, 7]))
        swaps = swap_rng.random(len(order)) < 0.5
        open_shards: dict[int, Shard] = {}
        cache: dict[tuple[int, int], dict[str, np.ndarray]] = {}
        remaining: dict[tuple[int, int], int] = {}
        for s, i in order[start:]:
            remaining[(s, i // self.block)] = remaining.get((s, i // self.block), 0) + 1
        try:
            for pos in range(start, len(order)):
                s, i = order[pos]
                key = (s, i // self.block)
                if key not in cache:  # one contiguous read per block and field
                    if s not in open_shards:
                        open_shards[s] = Shard(self.shards[s].path)  # opened here: inside the worker
                    a = key[1] * self.block
                    b = min(a + self.block, self.shards[s].n)
                    cache[key] = {f: open_shards[s].read(f, a, b) for f in self.fields}
                item = {f: cache[key][f][i - key[1] * self.block] for f in self.fields}
                remaining[key] -= 1
                if remaining[key] == 0:
                    del cache[key]
                if self.n2n_swap and swaps[pos] and "noisy_b" in item:
                    item["noisy_a"], item["noisy_b"] = item["noisy_b"], item["noisy_a"]
                if self.crop:
                    item = crop_item(item, self.crop, self.focus, np.random.default_rng(
                        np.random.SeedSequence([self.seed, self.epoch, self.rank, worker, pos, 13])), self.negatives)
                yield {f: _to_tensor(v) for f, v in item.items()}
        finally:
            for sh in open_shards.values():
                sh.close()


FOCUS_MIN_DIFF = 8
"""Grey levels (largest channel) by which input and target must differ for a pixel to attract a crop."""


NEGATIVE_MIN_GREY = 100
"""A hard-negative pixel (`--hard-negatives`) is at least this bright (largest channel) ..."""
NEGATIVE_SURROUND_PX = 15
NEGATIVE_MAX_SURROUND = 60
"""... and the mean grey of the NEGATIVE_SURROUND_PX square around it is at most this: a bright mark on a
dark surround (depth ticks, focus marker, probe arc, scanner text, a bright speck in a cyst), the
structures a detector mistakes for annotations on clean scans."""
NEGATIVE_CLEAR_PX = 3
"""Hard-negative pixels keep this far from the annotation mask."""


def channel_max(img: np.ndarray) -> np.ndarray:
    """(H, W): the largest channel of an (H, W, C) image, as img.max(-1) but about 10x faster (numpy reduces
    a short last axis slowly, and the focus map of every training window uses it)."""
    return np.maximum.reduce([img[..., c] for c in range(img.shape[-1])]) if img.ndim == 3 else img


def hard_negative_pixels(noisy: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """(H, W) bool: bright marks on a dark surround, away from the annotation mask (see NEGATIVE_*)."""
    grey = channel_max(noisy)
    surround = cv2.blur(grey, (NEGATIVE_SURROUND_PX, NEGATIVE_SURROUND_PX))
    k = np.ones((2 * NEGATIVE_CLEAR_PX + 1,) * 2, np.uint8)
    near = cv2.dilate((mask > 0).astype(np.uint8), k).astype(bool)
    return (grey >= NEGATIVE_MIN_GREY) & (surround <= NEGATIVE_MAX_SURROUND) & ~near


def crop_item(item: dict[str, np.ndarray], crop: int, focus: float, rng: np.random.Generator,
              negatives: float = 0.0) -> dict:
    """The same crop x crop window of every array in `item` (see ShardStream's `crop` and `negatives`)."""
    h, w = item["noisy_a"].shape[:2]
    cy, cx = None, None
    u = rng.random()
    hot = None
    if u < focus:
        if "mask" in item:
            hot = item["mask"] > 0
        else:
            target = item.get("noisy_b", item.get("clean"))
            hot = channel_max(cv2.absdiff(item["noisy_a"], target)) >= FOCUS_MIN_DIFF
    elif u < focus + negatives and "mask" in item:
        hot = hard_negative_pixels(item["noisy_a"], item["mask"])
    if hot is not None:
        ys, xs = np.nonzero(hot)
        if len(ys):
            k = int(rng.integers(len(ys)))
            cy, cx = int(ys[k]), int(xs[k])
    if cy is None:
        y0, x0 = int(rng.integers(h - crop + 1)), int(rng.integers(w - crop + 1))
    else:
        y0 = min(max(cy - crop // 2, 0), h - crop)
        x0 = min(max(cx - crop // 2, 0), w - crop)
    return {f: v[y0:y0 + crop, x0:x0 + crop] if np.ndim(v) >= 2 else v for f, v in item.items()}


def skip_for_worker(skip: int, worker: int, n_workers: int, batch_size: int) -> int:
    """How many of its own samples `worker` must skip so that the DataLoader, which takes whole batches
    from workers in turn (0, 1, ..., 0, 1, ...), resumes right after the first `skip` samples."""
    full_batches, rest = divmod(skip, batch_size)
    mine = full_batches // n_workers + (1 if worker < full_batches % n_workers else 0)
    extra = rest if worker == full_batches % n_workers else 0
    return mine * batch_size + extra


def _to_tensor(a: np.ndarray) -> torch.Tensor:
    t = torch.from_numpy(np.ascontiguousarray(a))
    return t.permute(2, 0, 1).contiguous() if t.ndim == 3 else t


def dataset_mean_std(folder: str | Path, max_samples: int = 256) -> tuple[list[float], list[float]]:
    """Per-channel mean and std (0..1 scale) of noisy_a over up to `max_samples` samples spread over the
    shards: the SMN normalisation. Deterministic (first samples of every shard, in order)."""
    shards, _ = list_shard_files(folder)
    per = max(1, max_samples // len(shards))
    total, total_sq, count = np.zeros(3), np.zeros(3), 0
    for info in shards:
        with Shard(info.path) as s:
            x = s.read("noisy_a", 0, min(per, info.n)).astype(np.float64) / 255.0
        total += x.sum(axis=(0, 1, 2))
        total_sq += (x ** 2).sum(axis=(0, 1, 2))
        count += x.shape[0] * x.shape[1] * x.shape[2]
    mean = total / count
    std = np.sqrt(np.maximum(total_sq / count - mean ** 2, 1e-12))
    return mean.tolist(), std.tolist()
