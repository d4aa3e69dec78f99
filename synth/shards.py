"""Shard files (format version 1): write whole shards atomically, read them back, hash and verify them.

A dataset is a folder: `manifest.json` plus `shard-00000.h5` (HDF5) or `shard-00000.zarr` (Zarr v3
group). Every shard holds n samples as the arrays in FIELDS, one sample per chunk, plus attributes
that repeat the build parameters, so a shard alone says where it came from.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import socket
from pathlib import Path

import numpy as np

FORMAT_VERSION = 1
MANIFEST_NAME = "manifest.json"
FORMATS = ("hdf5", "zarr")
EXT = {"hdf5": ".h5", "zarr": ".zarr"}

IMAGE_FIELDS = ("noisy_a", "noisy_b", "clean")
MASK_FIELDS = ("mask", "mask_b")
FIELDS: dict[str, tuple[tuple[int, ...], str]] = {
    # name: (shape after (n,) with H, W as -1, -2; dtype)
    "noisy_a": ((-1, -2, 3), "uint8"),
    "noisy_b": ((-1, -2, 3), "uint8"),
    "clean": ((-1, -2, 3), "uint8"),
    "mask": ((-1, -2), "uint8"),
    "mask_b": ((-1, -2), "uint8"),
    "sample_id": ((), "int64"),
    "clean_id": ((), "int32"),
}
# Compression names: "none", "lzf" and "gzip-<1..9>" (HDF5 only), "zstd-<1..22>" and "blosc-zstd-<1..9>"
# (Zarr; HDF5 through hdf5plugin). Zarr's gzip codec writes the current time into every chunk's header,
# so its shards could never be byte-identical: it is refused. Defaults picked by bench/bench_build.py.
DEFAULT_COMPRESSION = {"hdf5": "gzip-1", "zarr": "zstd-3"}


class ShardError(ValueError):
    """A path that is not a usable shard or shard set; the message says what to do."""


def shard_name(index: int, fmt: str) -> str:
    return f"shard-{index:05d}{EXT[fmt]}"


def field_shape(name: str, n: int, h: int, w: int) -> tuple[int, ...]:
    tail = tuple({-1: h, -2: w}.get(d, d) for d in FIELDS[name][0])
    return (n, *tail)


def parse_compression(spec: str, fmt: str) -> tuple[str, int | None]:
    """Split 'gzip-4' into ('gzip', 4) and check it is valid for `fmt`; ValueError says what is."""
    name, _, level = spec.rpartition("-") if spec[-1:].isdigit() else (spec, "", "")
    lvl = int(level) if level else None
    ok = {
        "none": lvl is None, "lzf": lvl is None and fmt == "hdf5",
        "gzip": lvl is not None and 1 <= lvl <= 9 and fmt == "hdf5", "zstd": lvl is not None and 1 <= lvl <= 22,
        "blosc-zstd": lvl is not None and 1 <= lvl <= 9,
    }.get(name, False)
    if not ok:
        raise ValueError(
            f"compression {spec!r} is not valid for {fmt}; use none, "
            + ("lzf, gzip-1..9, " if fmt == "hdf5" else "") + "zstd-1..22 or blosc-zstd-1..9")
    return name, lvl


def _hdf5_filter(spec: str) -> dict:
    name, lvl = parse_compression(spec, "hdf5")
    if name == "none":
        return {}
    if name == "lzf":
        return {"compression": "lzf"}
    if name == "gzip":
        return {"compression": "gzip", "compression_opts": lvl}
    try:
        import hdf5plugin
    except ImportError as e:
        raise ValueError(f"compression {spec!r} needs hdf5plugin: pip install hdf5plugin "
                         f"(and readers need `import hdf5plugin` too)") from e
    if name == "zstd":
        return dict(hdf5plugin.Zstd(clevel=lvl))
    return dict(hdf5plugin.Blosc(cname="zstd", clevel=lvl, shuffle=hdf5plugin.Blosc.NOSHUFFLE))


def _zarr_codecs(spec: str) -> list:
    from zarr.codecs import BloscCodec, ZstdCodec

    name, lvl = parse_compression(spec, "zarr")
    return {
        "none": lambda: [],
        "zstd": lambda: [ZstdCodec(level=lvl)],
        "blosc-zstd": lambda: [BloscCodec(cname="zstd", clevel=lvl, shuffle="noshuffle")],
    }[name]()


class ShardWriter:
    """Write one shard to `<final>.tmp` and rename it to `final` only when every sample is in.

    with ShardWriter(path, "hdf5", n=256, h=512, w=512, compression="lzf", attrs={...}) as w:
        w.write(j, {"noisy_a": ..., ...})     # j = 0..n-1, each exactly once
    An exception inside the block deletes the temp file: a shard is either complete or absent.
    """

    def __init__(self, final: str | Path, fmt: str, n: int, h: int, w: int, compression: str, attrs: dict):
        self.final, self.fmt, self.n = Path(final), fmt, n
        self.tmp = self.final.with_name(self.final.name + ".tmp")
        self.written = np.zeros(n, bool)
        remove_path(self.tmp)
        attrs = {k: (json.dumps(v, sort_keys=True) if isinstance(v, (dict, list, tuple)) else v)
                 for k, v in attrs.items()}
        if fmt == "hdf5":
            import h5py

            self._file = h5py.File(self.tmp, "w", track_order=False)
            filt = _hdf5_filter(compression)
            self._arrays = {}
            for name, (_, dtype) in FIELDS.items():
                shape = field_shape(name, n, h, w)
                chunked = len(shape) > 1  # images: one sample per chunk; 1-D ids: contiguous
                self._arrays[name] = self._file.create_dataset(
                    name, shape=shape, dtype=dtype, track_times=False,
                    **({"chunks": (1, *shape[1:]), **filt} if chunked else {}))
            self._file.attrs.update(attrs)
        elif fmt == "zarr":
            import zarr

            self._file = zarr.open_group(str(self.tmp), mode="w", zarr_format=3, attributes=attrs)
            codecs = _zarr_codecs(compression)
            self._arrays = {}
            for name, (_, dtype) in FIELDS.items():
                shape = field_shape(name, n, h, w)
                self._arrays[name] = self._file.create_array(
                    name, shape=shape, dtype=dtype, chunks=(1, *shape[1:]) if len(shape) > 1 else shape,
                    compressors=codecs, fill_value=0)
            self._ids = {"sample_id": np.zeros(n, np.int64), "clean_id": np.zeros(n, np.int32)}
        else:
            raise ValueError(f"unknown format {fmt!r}; use one of {FORMATS}")

    def write(self, j: int, sample: dict[str, np.ndarray]) -> None:
        for name in FIELDS:
            if self.fmt == "zarr" and name in ("sample_id", "clean_id"):
                self._ids[name][j] = sample[name]  # 1-D arrays: one chunk, written once at the end
            else:
                self._arrays[name][j] = sample[name]
        self.written[j] = True

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            if exc_type is None:
                if not self.written.all():
                    raise RuntimeError(f"shard {self.final.name}: {int((~self.written).sum())} samples "
                                       f"never written")
                if self.fmt == "zarr":
                    for name, values in self._ids.items():
                        self._arrays[name][:] = values
            if self.fmt == "hdf5":
                self._file.close()
        except BaseException:
            remove_path(self.tmp)
            raise
        if exc_type is not None:
            remove_path(self.tmp)
            return
        _fsync_path(self.tmp)
        os.replace(self.tmp, self.final)


def _fsync_path(path: Path) -> None:
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for p in files:
        fd = os.open(p, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def remove_path(path: str | Path) -> None:
    path = Path(path)
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def shard_sha256(path: str | Path) -> str:
    """sha256 of a shard: of the file (HDF5), or of every file's relative path and bytes (Zarr folder)."""
    path = Path(path)
    h = hashlib.sha256()
    files = [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())
    for p in files:
        if p != path:
            h.update(p.relative_to(path).as_posix().encode() + b"\0")
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    return h.hexdigest()


def shard_bytes(path: str | Path) -> int:
    path = Path(path)
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


class Shard:
    """Read access to one shard: `shard["noisy_a"][i]`, `len(shard)`, `shard.attrs` (decoded JSON).

    Open it in the process that reads it (h5py handles do not survive fork).
    """

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.suffix == ".h5" and self.path.is_file():
            import h5py

            try:
                self._file = h5py.File(self.path, "r")
            except OSError as e:
                raise ShardError(f"{self.path}: not a readable HDF5 shard ({e}).") from e
            raw_attrs = dict(self._file.attrs)
            self.format = "hdf5"
        elif self.path.suffix == ".zarr" and self.path.is_dir():
            import zarr

            try:
                self._file = zarr.open_group(str(self.path), mode="r")
            except Exception as e:  # zarr raises several types for a broken store
                raise ShardError(f"{self.path}: not a readable Zarr shard ({e}).") from e
            raw_attrs = dict(self._file.attrs)
            self.format = "zarr"
        else:
            raise ShardError(f"{self.path}: not a shard (expected shard-NNNNN.h5 or shard-NNNNN.zarr).")
        missing = [f for f in FIELDS if f not in self._file]
        if missing or raw_attrs.get("format_version") != FORMAT_VERSION:
            raise ShardError(f"{self.path}: not a version-{FORMAT_VERSION} shard (missing "
                             f"{', '.join(missing) or 'format_version'}); rebuild it with `synth build`.")
        self.attrs = {k: _maybe_json(v) for k, v in raw_attrs.items()}

    def __getitem__(self, name: str):
        return self._file[name]

    def __len__(self) -> int:
        return int(self._file["sample_id"].shape[0])

    def read(self, name: str, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) of one field as a numpy array (one contiguous read)."""
        return np.asarray(self._file[name][start:stop])

    def codec(self) -> str:
        return str(self.attrs.get("compression", "?"))

    def close(self) -> None:
        if self.format == "hdf5":
            self._file.close()

    def __enter__(self) -> Shard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _maybe_json(v):
    if isinstance(v, bytes):
        v = v.decode()
    if isinstance(v, str) and v[:1] in "[{":
        try:
            return json.loads(v)
        except json.JSONDecodeError:
            return v
    if isinstance(v, np.generic):
        return v.item()
    return v


def read_manifest(folder: str | Path) -> dict:
    """The manifest of a shard set; ShardError if `folder` is not one."""
    folder = Path(folder)
    path = folder / MANIFEST_NAME
    if not folder.is_dir():
        raise ShardError(f"{folder}: no such folder; give a folder made by `synth build`.")
    if not path.is_file():
        raise ShardError(f"{folder}: not a shard set (no {MANIFEST_NAME}); give a folder made by `synth build`.")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ShardError(f"{path}: not valid JSON ({e}); rebuild or restore it.") from e
    if manifest.get("format") != "us-annotation-shards":
        raise ShardError(f"{path}: not a shard-set manifest; give a folder made by `synth build`.")
    return manifest


def write_json_atomic(path: str | Path, obj) -> None:
    path = Path(path)
    # per host and process: --part jobs on several machines may share the folder
    tmp = path.with_name(f"{path.name}.{socket.gethostname()}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(obj, indent=1, sort_keys=False))
    os.replace(tmp, path)


def remove_orphan_json_temps(path: str | Path) -> None:
    """Delete the temp files `write_json_atomic` left for `path` when its process was killed mid-write:
    those of this host whose process is gone (or is this one). Other hosts' are left alone: their
    writers cannot be checked from here."""
    path = Path(path)
    host, me = socket.gethostname(), os.getpid()
    for tmp in path.parent.glob(f"{path.name}.*.tmp"):
        owner_host, _, pid = tmp.name[len(path.name) + 1:-len(".tmp")].rpartition(".")
        if owner_host != host or not pid.isdigit():
            continue
        if int(pid) != me:
            try:
                os.kill(int(pid), 0)
                continue  # a live process of this host may be writing it right now
            except ProcessLookupError:
                pass
            except PermissionError:
                continue  # alive, another user's
        remove_path(tmp)


def list_shards(folder: str | Path) -> list[Path]:
    """Complete shards in a folder (temp files are ignored), sorted by index."""
    folder = Path(folder)
    return sorted(p for p in folder.glob("shard-*") if p.suffix in (".h5", ".zarr"))
