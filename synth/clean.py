"""The list of clean sources a build draws from: a user's folder of scans, or built-in phantoms."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from synth.images import ImageError, decode_image, find_images, fit_to_size, read_image


class CleanError(ValueError):
    """A clean-scan folder that cannot be used; the message says what to do."""


@dataclass(frozen=True)
class CleanSet:
    """Clean sources by index (`clean_id` in the shards). Either `paths` (a folder) or `n_phantoms`
    phantom scans drawn from `phantom_seed`, with the scanner's chrome when `phantom_chrome` and crisp
    specular reflections and point echoes when `phantom_reflectors` (`synth.phantom.make_phantom`)."""

    names: tuple[str, ...]
    sha256: str
    root: str | None = None
    n_phantoms: int = 0
    phantom_seed: int = 0
    phantom_chrome: bool = False
    phantom_reflectors: bool = False
    skipped: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.names)

    @property
    def is_phantom(self) -> bool:
        return self.root is None

    @property
    def description(self) -> str:
        """What the sources are, in words (the build summary's)."""
        if not self.is_phantom:
            return f"scans from {self.root}"
        extras = [what for what, on in (("the scanner's chrome", self.phantom_chrome),
                                        ("reflectors", self.phantom_reflectors)) if on]
        return "phantom scans" + (" with " + " and ".join(extras) if extras else "")

    def load(self, clean_id: int, size_px: int, policy: str) -> np.ndarray:
        """Clean source `clean_id` as (size_px, size_px, 3) uint8 RGB."""
        if self.is_phantom:
            from synth.phantom import make_phantom, phantom_seed

            return make_phantom(phantom_seed(self.phantom_seed, clean_id), size_px=size_px,
                                chrome=self.phantom_chrome, reflectors=self.phantom_reflectors)
        return fit_to_size(read_image(Path(self.root) / self.names[clean_id]), size_px, policy)


def phantom_clean_set(n: int, seed: int, chrome: bool = False, reflectors: bool = False) -> CleanSet:
    """`n` phantom scans; phantom k is make_phantom(SeedSequence([seed, k])), with the scanner's chrome
    (`synth.chrome`) when `chrome` and specular reflections and point echoes when `reflectors`."""
    from synth import chrome as chrome_module
    from synth import phantom

    extras = "".join(f"+{name}" for name, on in (("chrome", chrome), ("reflectors", reflectors)) if on)
    names = tuple(f"phantom{extras}:{seed}:{k}" for k in range(n))
    # the generator's source is part of the hash: a change to it changes every phantom
    code = Path(phantom.__file__).read_bytes()
    if chrome:
        code += Path(chrome_module.__file__).read_bytes()
    digest = hashlib.sha256(json.dumps(names).encode() + hashlib.sha256(code).digest()).hexdigest()
    return CleanSet(names=names, sha256=digest, n_phantoms=n, phantom_seed=seed, phantom_chrome=chrome,
                    phantom_reflectors=reflectors)


def folder_clean_set(folder: str | Path, skip_bad: bool = False, progress=None) -> CleanSet:
    """Every decodable image under `folder`; a corrupt file is an error naming it unless `skip_bad`."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CleanError(f"--clean {folder}: no such folder; give a folder of PNG/JPG/BMP/TIFF scans "
                         f"or leave --clean out to use built-in phantom scans.")
    paths = find_images(folder)
    if not paths:
        raise CleanError(f"--clean {folder}: no PNG/JPG/BMP/TIFF images found (searched recursively).")
    digest = hashlib.sha256()
    names, skipped = [], []
    for k, path in enumerate(paths):
        rel = path.relative_to(folder).as_posix()
        try:
            data = path.read_bytes()
            decode_image(data, str(path))
        except (ImageError, OSError) as e:
            if not skip_bad:
                raise CleanError(f"{e} Fix or remove it, or pass --skip-bad to leave bad files out.") from e
            skipped.append(rel)
        else:
            names.append(rel)
            digest.update(rel.encode() + b"\0" + hashlib.sha256(data).digest())
        if progress:
            progress(k + 1, len(paths))
    if not names:
        raise CleanError(f"--clean {folder}: none of the {len(paths)} images could be read.")
    return CleanSet(names=tuple(names), sha256=digest.hexdigest(), root=str(folder.resolve()),
                    skipped=tuple(skipped))


class CleanCache:
    """Small LRU cache of resized clean scans, one per worker (decoding and resizing dominate otherwise)."""

    def __init__(self, clean: CleanSet, size_px: int, policy: str, capacity: int = 256):
        self.clean, self.size_px, self.policy, self.capacity = clean, size_px, policy, capacity
        self._items: OrderedDict[int, np.ndarray] = OrderedDict()

    def __call__(self, clean_id: int) -> np.ndarray:
        img = self._items.get(clean_id)
        if img is None:
            img = self.clean.load(clean_id, self.size_px, self.policy)
            img.setflags(write=False)
            self._items[clean_id] = img
            if len(self._items) > self.capacity:
                self._items.popitem(last=False)
        else:
            self._items.move_to_end(clean_id)
        return img
