"""`synth inspect`: describe a shard set, verify its checksums, and draw a preview grid."""

from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from synth.kinds import CLASS_IDS
from synth.shards import (
    FIELDS,
    MANIFEST_NAME,
    Shard,
    ShardError,
    list_shards,
    read_manifest,
    shard_bytes,
    shard_sha256,
)

# overlay colours per class id (RGB), for previews and figures
CLASS_COLOURS = {1: (255, 64, 64), 2: (255, 220, 0), 3: (0, 230, 120), 4: (80, 160, 255)}


def shard_files(path: str | Path) -> tuple[list[Path], dict]:
    """(the shard files, the manifest) of a shard set, or ([path], {}) for a single shard."""
    path = Path(path)
    if path.suffix in (".h5", ".zarr") and not (path / MANIFEST_NAME).exists():  # a single shard
        return [path], {}
    manifest = read_manifest(path)
    shards = [path / e["file"] for e in manifest.get("shards", [])]
    missing = [p.name for p in shards if not p.exists()]
    if missing:
        raise ShardError(f"{path}: the manifest lists shards that are missing ({', '.join(missing[:5])}); "
                         f"rerun the build command to restore them.")
    return shards, manifest


def describe(path: str | Path) -> dict:
    """Manifest summary and one row per shard (samples, shapes, dtypes, codec, bytes per sample)."""
    shards, manifest = shard_files(path)
    rows = []
    for p in shards:
        with Shard(p) as s:
            n = len(s)
            rows.append({
                "file": p.name, "n": n, "start": s.attrs.get("sample_start"), "kind": s.attrs.get("kind"),
                "fields": {f: (tuple(s[f].shape), str(s[f].dtype)) for f in ("noisy_a", "mask", "sample_id")},
                "codec": s.codec(), "bytes": shard_bytes(p), "bytes_per_sample": shard_bytes(p) / max(n, 1),
            })
    return {"path": str(path), "manifest": manifest, "shards": rows}


def verify(path: str | Path, on_shard=None) -> list[str]:
    """Recompute every shard's sha256 against the manifest; returns one problem per bad shard."""
    path = Path(path)
    manifest = read_manifest(path)
    problems = []
    listed = {e["file"] for e in manifest.get("shards", [])}
    for e in manifest.get("shards", []):
        p = path / e["file"]
        if not p.exists():
            problems.append(f"{e['file']}: missing")
        else:
            digest = shard_sha256(p)
            if digest != e["sha256"]:
                problems.append(f"{e['file']}: checksum mismatch (corrupt or modified): rebuild it by deleting "
                                f"it and rerunning the build command")
            else:
                try:
                    with Shard(p) as s:
                        if len(s) != e["n"]:
                            problems.append(f"{e['file']}: holds {len(s)} samples, manifest says {e['n']}")
                except ShardError as err:
                    problems.append(str(err))
        if on_shard:
            on_shard(e["file"])
    for p in list_shards(path):
        if p.name not in listed:
            problems.append(f"{p.name}: present but not in the manifest (rerun the build command to adopt it)")
    return problems


def content_digest(path: str | Path, on_shard=None, chunk: int = 64) -> tuple[str, list[tuple[str, str]]]:
    """sha256 of the decoded arrays, not of the files: (digest of the set, [(file, digest of the shard)]).

    The same build stored as HDF5 or Zarr, with any codec, or compressed by another zlib, has the same
    digest; the manifest's per-file sha256 differs between those. Each field is hashed by name, dtype,
    shape and bytes, in FIELDS order, `chunk` samples at a time."""
    whole = hashlib.sha256()
    rows = []
    for p in shard_files(path)[0]:
        h = hashlib.sha256()
        with Shard(p) as s:
            n = len(s)
            for name in FIELDS:
                h.update(f"{name} {s[name].dtype} {tuple(s[name].shape)}".encode())
                for start in range(0, n, chunk):
                    h.update(np.ascontiguousarray(s.read(name, start, min(start + chunk, n))).tobytes())
        rows.append((p.name, h.hexdigest()))
        whole.update(h.digest())
        if on_shard:
            on_shard(p.name)
    return whole.hexdigest(), rows


def overlay_mask(img: np.ndarray, mask: np.ndarray, alpha: float = 0.6) -> np.ndarray:
    """(H, W, 3) uint8 image with mask pixels tinted by class colour."""
    out = img.astype(np.float32)
    for cid, colour in CLASS_COLOURS.items():
        m = mask == cid
        out[m] = (1 - alpha) * out[m] + alpha * np.array(colour, np.float32)
    return out.round().astype(np.uint8)


def preview(path: str | Path, out_png: str | Path, k: int = 6, tile_px: int = 256) -> Path:
    """Write a PNG grid: one row per sample (first k of the set, spread over its shards):
    noisy_a | noisy_b | clean | mask A over noisy_a | mask B over noisy_b."""
    path = Path(path)
    files = shard_files(path)[0]
    if not files:
        raise ShardError(f"{path}: no complete shards to preview yet.")
    picks: list[tuple[Path, int]] = []
    per = max(1, -(-k // len(files)))
    for f in files:
        with Shard(f) as s:
            picks += [(f, j) for j in range(min(per, len(s)))]
    picks = picks[:k]
    header_px = 22
    cols = ["noisy_a", "noisy_b", "clean", "mask A", "mask B"]
    rows = []
    for f, j in picks:
        with Shard(f) as s:
            a, b, c = (np.asarray(s[n][j]) for n in ("noisy_a", "noisy_b", "clean"))
            ma, mb = np.asarray(s["mask"][j]), np.asarray(s["mask_b"][j])
            sid = int(s["sample_id"][j])
        tiles = [a, b, c, overlay_mask(a, ma), overlay_mask(b, mb)]
        tiles = [cv2.resize(t, (tile_px, tile_px), interpolation=cv2.INTER_AREA) for t in tiles]
        row = np.concatenate([np.pad(t, ((0, 2), (0, 2), (0, 0)), constant_values=40) for t in tiles], axis=1)
        cv2.putText(row, f"#{sid}", (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.4, (255, 255, 255), 1, cv2.LINE_AA)
        rows.append(row)
    grid = np.concatenate(rows, axis=0)
    header = np.full((header_px, grid.shape[1], 3), 24, np.uint8)
    for i, name in enumerate(cols):
        cv2.putText(header, name, (i * (tile_px + 2) + 6, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45,
                    (230, 230, 230), 1, cv2.LINE_AA)
    footer = np.full((header_px, grid.shape[1], 3), 24, np.uint8)
    x = 6
    for name, cid in CLASS_IDS.items():  # each class name written in its overlay colour
        label = f"{cid} {name}"
        cv2.putText(footer, label, (x, 15), cv2.FONT_HERSHEY_SIMPLEX, 0.45, CLASS_COLOURS[cid], 1, cv2.LINE_AA)
        x += 12 + cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)[0][0]
    grid = np.concatenate([header, grid, footer], axis=0)
    out_png = Path(out_png)
    out_png.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(out_png), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    return out_png
