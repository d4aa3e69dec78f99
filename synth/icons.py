"""Annotation icon sets: RGBA PNGs in `<root>/<kind>/` described by `<root>/index.json`.

index.json schema (version 1):
    {"version": 1,
     "icons": [{"file": "body_marker/breast_left.png",   # path relative to the root, '/' separated
                "kind": "body_marker",                    # one of synth.kinds.CLASS_IDS
                "name": "breast_left",                    # unique within the set
                "size": [h, w],                           # pixels
                "colour": [r, g, b],                      # dominant opaque colour, 0..255
                "source": null | "annotated/x.jpg",       # where it was extracted from (null if drawn)
                "box": null | [x, y, w, h],               # its box in the source image
                "method": "drawn" | "colour" | "difference" | "roi",
                ...any extra keys are kept and ignored}]}
Icons are straight (not premultiplied) alpha, anti-aliased, tightly cropped to their alpha > 0 box.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from synth.kinds import CLASS_IDS

INDEX_NAME = "index.json"
DEFAULT_ICON_DIR = Path(__file__).resolve().parent.parent / "assets" / "annotation_icons"


class IconError(ValueError):
    """An icon folder that cannot be used; the message says which file and what to do."""


@dataclass(frozen=True)
class Icon:
    """One annotation icon. `rgba` is (h, w, 4) uint8, straight alpha."""

    name: str
    kind: str
    rgba: np.ndarray
    meta: dict = field(default_factory=dict, compare=False)


@dataclass(frozen=True)
class IconSet:
    """All icons of one folder, grouped by kind, plus the folder's content hash."""

    root: Path
    by_kind: dict[str, tuple[Icon, ...]]
    sha256: str

    def icons(self, kind: str) -> tuple[Icon, ...]:
        return self.by_kind.get(kind, ())

    def __len__(self) -> int:
        return sum(len(v) for v in self.by_kind.values())


def load_icon_set(root: str | Path = DEFAULT_ICON_DIR) -> IconSet:
    """Read `root/index.json` and every PNG it lists; raise IconError naming the bad file."""
    root = Path(root)
    index_path = root / INDEX_NAME
    if not index_path.is_file():
        raise IconError(f"{index_path} not found: an icon folder needs an {INDEX_NAME} "
                        f"(make one with `synth draw-icons` or `synth extract-icons`).")
    try:
        index = json.loads(index_path.read_text())
        entries = index["icons"]
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise IconError(f"{index_path} is not a valid icon index ({e}); regenerate it.") from e
    digest = hashlib.sha256()
    by_kind: dict[str, list[Icon]] = {}
    for entry in sorted(entries, key=lambda e: e.get("file", "")):
        path = root / entry.get("file", "")
        kind = entry.get("kind")
        if kind not in CLASS_IDS:
            raise IconError(f"{index_path}: icon {entry.get('file')!r} has unknown kind {kind!r}; "
                            f"use one of {', '.join(CLASS_IDS)}.")
        if not path.is_file():
            raise IconError(f"{path} is listed in {index_path} but missing.")
        raw = path.read_bytes()
        rgba = cv2.imdecode(np.frombuffer(raw, np.uint8), cv2.IMREAD_UNCHANGED)
        if rgba is None or rgba.ndim != 3 or rgba.shape[2] != 4 or rgba.dtype != np.uint8:
            raise IconError(f"{path} is not an 8-bit RGBA PNG; icons need an alpha channel.")
        if not rgba[..., 3].any():
            raise IconError(f"{path} is fully transparent; remove it from {index_path}.")
        rgba = cv2.cvtColor(rgba, cv2.COLOR_BGRA2RGBA)
        rgba.setflags(write=False)
        digest.update(entry["file"].encode() + b"\0" + hashlib.sha256(raw).digest())
        name = entry.get("name", path.stem)
        by_kind.setdefault(kind, []).append(Icon(name=name, kind=kind, rgba=rgba, meta=dict(entry)))
    if not by_kind:
        raise IconError(f"{index_path} lists no icons; add RGBA PNGs or use the shipped set.")
    return IconSet(root=root, by_kind={k: tuple(v) for k, v in by_kind.items()}, sha256=digest.hexdigest())


def write_icon(root: str | Path, icon: Icon, entries: list[dict]) -> None:
    """Write `icon` as `root/<kind>/<name>.png` and append its index entry to `entries`."""
    root = Path(root)
    rel = f"{icon.kind}/{icon.name}.png"
    (root / icon.kind).mkdir(parents=True, exist_ok=True)
    ok, buf = cv2.imencode(".png", cv2.cvtColor(np.ascontiguousarray(icon.rgba), cv2.COLOR_RGBA2BGRA),
                           [cv2.IMWRITE_PNG_COMPRESSION, 9])
    assert ok
    (root / rel).write_bytes(buf.tobytes())
    alpha = icon.rgba[..., 3]
    opaque = icon.rgba[..., :3][alpha >= 128]
    colour = np.median(opaque, axis=0).astype(int).tolist() if len(opaque) else [0, 0, 0]
    entry = {"file": rel, "kind": icon.kind, "name": icon.name, "size": list(icon.rgba.shape[:2]),
             "colour": colour, "source": None, "box": None, "method": "drawn"}
    entry.update({k: v for k, v in icon.meta.items() if k not in ("file", "kind", "name", "size")})
    entries.append(entry)


def write_index(root: str | Path, entries: list[dict]) -> Path:
    """Write `root/index.json` for `entries` (sorted by file, so the file is deterministic)."""
    path = Path(root) / INDEX_NAME
    path.write_text(json.dumps({"version": 1, "icons": sorted(entries, key=lambda e: e["file"])}, indent=1))
    return path
