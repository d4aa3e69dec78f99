"""Shard files: round trip through plain h5py and zarr, atomic writes, codecs, byte determinism."""

import time

import h5py
import numpy as np
import pytest
import zarr

from synth.shards import (
    DEFAULT_COMPRESSION,
    FIELDS,
    Shard,
    ShardError,
    ShardWriter,
    parse_compression,
    shard_name,
    shard_sha256,
)


def _samples(n, h=24, w=20, seed=0):
    rng = np.random.default_rng(seed)
    for j in range(n):
        img = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        mask = (rng.random((h, w)) < 0.1).astype(np.uint8) * 2
        yield {"noisy_a": img, "noisy_b": img[::-1].copy(), "clean": img // 2, "mask": mask, "mask_b": mask.T[:h, :w]
               if h == w else mask, "sample_id": np.int64(100 + j), "clean_id": np.int32(j % 3)}


def _write(path, fmt, compression, n=3, seed=0):
    with ShardWriter(path, fmt, n, 24, 20, compression, {"format_version": 1, "compression": compression,
                                                          "params": {"kind": "text"}}) as w:
        for j, s in enumerate(_samples(n, seed=seed)):
            w.write(j, s)


@pytest.mark.parametrize("fmt,compression", [("hdf5", "none"), ("hdf5", "lzf"), ("hdf5", "gzip-4"),
                                             ("zarr", "none"), ("zarr", "zstd-1"), ("zarr", "blosc-zstd-3")])
def test_round_trip_plain_libraries(tmp_path, fmt, compression):
    path = tmp_path / shard_name(0, fmt)
    _write(path, fmt, compression)
    expected = list(_samples(3))
    if fmt == "hdf5":  # exactly what a user does: plain h5py, no project import, no plugin
        with h5py.File(path, "r") as f:
            assert f["noisy_a"].chunks == (1, 24, 20, 3)  # one sample per chunk
            arrays = {k: f[k][:] for k in FIELDS}
            assert f.attrs["format_version"] == 1
    else:
        g = zarr.open_group(str(path), mode="r")
        assert g["noisy_a"].chunks == (1, 24, 20, 3)
        arrays = {k: g[k][:] for k in FIELDS}
        assert g.attrs["format_version"] == 1
    for k, (shape, dtype) in FIELDS.items():
        assert arrays[k].dtype == np.dtype(dtype)
        assert arrays[k].shape[0] == 3
        np.testing.assert_array_equal(arrays[k], np.stack([np.asarray(s[k]) for s in expected]))
    with Shard(path) as s:
        assert len(s) == 3 and s.attrs["params"] == {"kind": "text"}
        np.testing.assert_array_equal(s.read("noisy_a", 1, 3), arrays["noisy_a"][1:3])


@pytest.mark.parametrize("fmt", ["hdf5", "zarr"])
def test_same_content_gives_byte_identical_shard(tmp_path, fmt):
    a, b = tmp_path / "a" / shard_name(0, fmt), tmp_path / "b" / shard_name(0, fmt)
    a.parent.mkdir(), b.parent.mkdir()
    codec = DEFAULT_COMPRESSION[fmt]
    _write(a, fmt, codec)
    time.sleep(1.1)  # a codec that stamps the time (zarr's gzip) would now differ
    _write(b, fmt, codec)
    assert shard_sha256(a) == shard_sha256(b)
    c = tmp_path / "c" / shard_name(0, fmt)
    c.parent.mkdir()
    _write(c, fmt, codec, seed=1)
    assert shard_sha256(c) != shard_sha256(a)


@pytest.mark.parametrize("fmt", ["hdf5", "zarr"])
def test_failure_mid_write_leaves_nothing(tmp_path, fmt):
    path = tmp_path / shard_name(0, fmt)
    with pytest.raises(OSError):
        with ShardWriter(path, fmt, 3, 24, 20, "none", {"format_version": 1}) as w:
            w.write(0, next(_samples(1)))
            raise OSError(28, "No space left on device")
    assert list(tmp_path.iterdir()) == []


def test_incomplete_shard_is_not_published(tmp_path):
    path = tmp_path / shard_name(0, "hdf5")
    with pytest.raises(RuntimeError, match="never written"):
        with ShardWriter(path, "hdf5", 3, 24, 20, "none", {"format_version": 1}) as w:
            w.write(0, next(_samples(1)))
    assert list(tmp_path.iterdir()) == []


def test_compression_names_are_checked():
    assert parse_compression("gzip-4", "hdf5") == ("gzip", 4)
    assert parse_compression("lzf", "hdf5") == ("lzf", None)
    assert parse_compression("blosc-zstd-3", "zarr") == ("blosc-zstd", 3)
    for bad, fmt in [("lzf", "zarr"), ("gzip-1", "zarr"), ("gzip-12", "hdf5"), ("brotli", "hdf5"), ("gzip", "hdf5")]:
        with pytest.raises(ValueError, match="not valid"):
            parse_compression(bad, fmt)


def test_not_a_shard_is_refused(tmp_path):
    bogus = tmp_path / "shard-00000.h5"
    bogus.write_bytes(b"not hdf5 at all")
    with pytest.raises(ShardError, match="not a readable HDF5 shard"):
        Shard(bogus)
    with pytest.raises(ShardError, match="not a shard"):
        Shard(tmp_path / "notes.txt")
    with h5py.File(tmp_path / "shard-00001.h5", "w") as f:
        f["noisy_a"] = np.zeros((1, 2, 2, 3), np.uint8)
    with pytest.raises(ShardError, match="not a version-1 shard"):
        Shard(tmp_path / "shard-00001.h5")
