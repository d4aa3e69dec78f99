"""Paste annotations onto scans and keep their truth: the held-out annotated scans that the demo cleans and
scores (`synth phantom --annotate KIND --truth DIR`), and a fixture for tests that need a scan whose marks
are known pixel for pixel."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from synth.icons import DEFAULT_ICON_DIR, load_icon_set
from synth.kinds import KINDS
from synth.render import RenderOptions, render_pair_detailed


def annotate(image: np.ndarray, kind: str, rng: np.random.Generator, icons=None,
             opts: RenderOptions = RenderOptions()) -> tuple[np.ndarray, np.ndarray]:
    """(annotated (H, W, 3) uint8, truth (H, W) uint8 class ids) for one RGB scan: one draw of `kind`,
    softened like the training data; truth is the mask rule's output (0 = untouched)."""
    pair = render_pair_detailed(kind, rng, image, icons, opts)
    return pair.noisy_a, pair.mask


def annotate_folder(scans: list[Path], kind: str, out_dir: str | Path, truth_dir: str | Path, seed: int = 0,
                    icons_dir: str | Path | None = None) -> list[Path]:
    """Annotate each scan (read as RGB) with one draw of `kind` from SeedSequence([seed, k]); write
    OUT/NAME.png (annotated, replacing the scan's file when out_dir is its folder) and TRUTH/NAME.png (class
    ids, 0 = no annotation). Returns the annotated paths."""
    if kind not in KINDS:
        raise ValueError(f"unknown annotation kind {kind!r}; use one of {', '.join(KINDS)}")
    icons = load_icon_set(icons_dir or DEFAULT_ICON_DIR)
    out_dir, truth_dir = Path(out_dir), Path(truth_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    truth_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for k, path in enumerate(scans):
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise OSError(f"could not read {path}")
        rng = np.random.default_rng(np.random.SeedSequence([seed, k]))
        annotated, truth = annotate(np.ascontiguousarray(bgr[..., ::-1]), kind, rng, icons)
        target = out_dir / f"{path.stem}.png"
        for p, img in ((target, annotated[..., ::-1]), (truth_dir / f"{path.stem}.png", truth)):
            if not cv2.imwrite(str(p), np.ascontiguousarray(img)):
                raise OSError(f"could not write {p}")
        written.append(target)
    return written
