"""Clean scans: find and decode image files, bring them to the build size, augment them (seeded)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

IMAGE_EXTS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
RESIZE_POLICIES = ("letterbox", "crop")


class ImageError(ValueError):
    """An image file that cannot be used; the message names the file."""


def find_images(folder: str | Path) -> list[Path]:
    """All image files under `folder` (recursive, hidden files and folders skipped), sorted so the
    order is the same on every machine."""
    folder = Path(folder)
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def decode_image(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Decode PNG/JPEG/BMP/TIFF bytes (8 or 16 bit; grey, RGB or RGBA) to (H, W, 3) uint8 RGB.

    16-bit images are scaled by 1/257 (full range to full range); float images (TIFF) by their maximum
    (or by 255 when they lie in [0, 1]); alpha is dropped (scans are opaque).
    """
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED) if data else None
    if img is None or img.size == 0:
        raise ImageError(f"{name}: not a readable image (corrupt or unsupported format).")
    if img.dtype == np.uint16:
        img = (img.astype(np.float32) / 257.0 + 0.5).astype(np.uint8)
    elif img.dtype != np.uint8:
        img = img.astype(np.float64)
        hi = float(img.max())
        img = np.clip(img * (255.0 / hi) if hi > 1.0 else img * 255.0, 0, 255).astype(np.uint8)
    if img.ndim == 2:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2RGB)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2RGB)
    if img.shape[2] == 3:
        return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
    if img.shape[2] == 1:
        return cv2.cvtColor(img[..., 0], cv2.COLOR_GRAY2RGB)
    raise ImageError(f"{name}: {img.shape[2]} channels; expected grey, RGB or RGBA.")


def split_halves(paths: list[Path]) -> tuple[list[Path], list[Path]]:
    """A folder's sorted scans split by position: (even positions, odd positions). `train check-real --sweep`
    picks its operating point on the even half and reports the odd one; the real-background recipes train
    on the even half of the clean scans and hold out the odd one."""
    return paths[0::2], paths[1::2]


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file as (H, W, 3) uint8 RGB; ImageError naming the file if it cannot be read."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ImageError(f"{path}: cannot read the file ({e.strerror}).") from e
    return decode_image(data, str(path))


def fit_to_size(img: np.ndarray, size_px: int, policy: str = "letterbox") -> np.ndarray:
    """Resize (H, W, C) to (size_px, size_px, C) keeping the aspect ratio.

    letterbox: scale the long side to size_px and pad the short side with black, centred (nothing of
        the scan is lost, and black is what surrounds the fan anyway);
    crop: scale the short side to size_px and cut the centre of the long side.
    Downscaling uses INTER_AREA (no aliasing of speckle), upscaling INTER_LINEAR.
    """
    h, w = img.shape[:2]
    if policy == "letterbox":
        scale = size_px / max(h, w)
    elif policy == "crop":
        scale = size_px / min(h, w)
    else:
        raise ValueError(f"unknown resize policy {policy!r}; use one of {RESIZE_POLICIES}")
    new_h, new_w = max(1, round(h * scale)), max(1, round(w * scale))
    if (new_h, new_w) != (h, w):
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR
        img = cv2.resize(img, (new_w, new_h), interpolation=interp)
    if policy == "crop":
        y0, x0 = (new_h - size_px) // 2, (new_w - size_px) // 2
        return np.ascontiguousarray(img[y0:y0 + size_px, x0:x0 + size_px])
    out = np.zeros((size_px, size_px) + img.shape[2:], img.dtype)
    y0, x0 = (size_px - new_h) // 2, (size_px - new_w) // 2
    out[y0:y0 + new_h, x0:x0 + new_w] = img
    return out


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


@dataclass(frozen=True)
class AugmentOptions:
    """Seeded augmentation of the clean scan (albumentations); probabilities and limits."""

    hflip_p: float = 0.5
    brightness_contrast: float = 0.15
    gamma_range: tuple[int, int] = (80, 125)
    affine_p: float = 0.5
    rotate_deg: float = 5.0
    scale_range: tuple[float, float] = (0.92, 1.08)
    enabled: bool = True


class Augmenter:
    """Albumentations pipeline reseeded per call from the sample's rng, so results never depend on
    which worker or in which order samples are made."""

    def __init__(self, opts: AugmentOptions = AugmentOptions()):
        # NO_ALBUMENTATIONS_UPDATE (no version check against PyPI) is set on importing synth: synth/__init__.py
        import albumentations as A  # deferred: albumentations imports are slow and workers pay once

        self.opts = opts
        self.pipeline = A.Compose([
            A.HorizontalFlip(p=opts.hflip_p),
            A.RandomBrightnessContrast(brightness_limit=opts.brightness_contrast,
                                       contrast_limit=opts.brightness_contrast, p=0.7),
            A.RandomGamma(gamma_limit=opts.gamma_range, p=0.5),
            A.Affine(scale=opts.scale_range, rotate=(-opts.rotate_deg, opts.rotate_deg),
                     translate_percent=(-0.03, 0.03), border_mode=cv2.BORDER_CONSTANT, fill=0,
                     interpolation=cv2.INTER_LINEAR, p=opts.affine_p),
        ], seed=0)

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if not self.opts.enabled:
            return img
        self.pipeline.set_random_seed(int(rng.integers(2**31 - 1)))
        return self.pipeline(image=img)["image"]
