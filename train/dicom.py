"""DICOM in and out: read scans frame by frame as RGB, write cleaned copies as new derived instances."""

from __future__ import annotations

import copy
import datetime
import os
import struct
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pydicom
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.errors import InvalidDicomError
from pydicom.multival import MultiValue
from pydicom.sequence import Sequence
from pydicom.uid import PYDICOM_IMPLEMENTATION_UID, UID, ExplicitVRLittleEndian, generate_uid

from synth.images import IMAGE_EXTS, ImageError

DICOM_EXTS = (".dcm", ".dicom")
"""Suffixes that folders are searched for; a file named on the command line is also taken when it starts
like a DICOM file (the 'DICM' marker after the 128-byte preamble), whatever its name."""

READABLE_KEYS: dict[str, str] = {
    "modality": "Modality",
    "body_part": "BodyPartExamined",
    "study_description": "StudyDescription",
    "series_description": "SeriesDescription",
    "protocol": "ProtocolName",
    "manufacturer": "Manufacturer",
    "model": "ManufacturerModelName",
    "institution": "InstitutionName",
    "station": "StationName",
    "burned_in_annotation": "BurnedInAnnotation",
}
"""Readable names of the header attributes that the audit records and rules can match on -> DICOM keywords.
None of them identifies a patient; rules may also name any other DICOM keyword."""

_LOSSY_METHOD = {
    pydicom.uid.JPEGBaseline8Bit: "ISO_10918_1",
    pydicom.uid.JPEGExtended12Bit: "ISO_10918_1",
    pydicom.uid.JPEGLSNearLossless: "ISO_14495_1",
    pydicom.uid.JPEG2000: "ISO_15444_1",
}
"""Transfer syntaxes whose pixels went through lossy compression, and the method name DICOM records for it."""

_PIXEL_MODULE_DROP = (
    # what described the old pixel data or a display transform already applied to the frames we write
    "PlanarConfiguration", "PixelPaddingValue", "PixelPaddingRangeLimit", "SmallestImagePixelValue",
    "LargestImagePixelValue", "RescaleIntercept", "RescaleSlope", "RescaleType", "ModalityLUTSequence",
    "WindowCenter", "WindowWidth", "WindowCenterWidthExplanation", "VOILUTFunction", "VOILUTSequence",
    "RedPaletteColorLookupTableDescriptor", "GreenPaletteColorLookupTableDescriptor",
    "BluePaletteColorLookupTableDescriptor", "RedPaletteColorLookupTableData", "GreenPaletteColorLookupTableData",
    "BluePaletteColorLookupTableData", "SegmentedRedPaletteColorLookupTableData",
    "SegmentedGreenPaletteColorLookupTableData", "SegmentedBluePaletteColorLookupTableData",
    "PaletteColorLookupTableUID", "ICCProfile", "ColorSpace", "ExtendedOffsetTable", "ExtendedOffsetTableLengths",
    "FloatPixelData", "DoubleFloatPixelData", "PixelDataProviderURL",
    # a thumbnail of the original pixels would carry the annotations we removed
    "IconImageSequence",
    # a signature over the original bytes no longer holds
    "DigitalSignaturesSequence", "MACParametersSequence",
)

SOURCE_PURPOSE = ("121322", "DCM", "Source image for image processing operation")
"""DICOM CID 7202 code for SourceImageSequence's PurposeOfReferenceCodeSequence."""


class DicomError(ImageError):
    """A DICOM file that cannot be used; the message names the file and what to do."""


def is_dicom(path: str | Path) -> bool:
    """True for a .dcm/.dicom name, or for a file with the 'DICM' marker at byte 128."""
    path = Path(path)
    if path.suffix.lower() in DICOM_EXTS:
        return True
    if path.suffix.lower() in IMAGE_EXTS or not path.is_file():
        return False
    try:
        with open(path, "rb") as f:
            f.seek(128)
            return f.read(4) == b"DICM"
    except OSError:
        return False


def find_scans(folder: str | Path) -> list[Path]:
    """Image files and DICOM files (.dcm/.dicom) under `folder`, recursive, hidden ones skipped, sorted."""
    folder = Path(folder)
    exts = IMAGE_EXTS + DICOM_EXTS
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def read_header(path: str | Path) -> Dataset:
    """The file's data set without its pixel data; DicomError when it is not a DICOM image."""
    path = Path(path)
    try:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
    except InvalidDicomError as e:
        raise DicomError(f"{path}: not a DICOM file ({e}); give DICOM Part 10 files (.dcm) or PNG/JPEG scans.") from e
    except OSError as e:
        raise DicomError(f"{path}: cannot read the file ({e.strerror or e}).") from e
    except Exception as e:  # pydicom raises several types on damaged files
        raise DicomError(f"{path}: damaged DICOM file ({type(e).__name__}: {str(e)[:200]}).") from e
    if "Rows" not in ds or "Columns" not in ds:
        raise DicomError(f"{path}: a DICOM file without an image (no Rows/Columns; SOP class "
                         f"{ds.get('SOPClassUID', UID('')).name or 'unknown'}); give image files.")
    return ds


def frame_count(ds: Dataset) -> int:
    """Frames in the file (NumberOfFrames, 1 when absent)."""
    try:
        return max(1, int(ds.get("NumberOfFrames", 1) or 1))
    except (TypeError, ValueError):
        return 1


def is_grey(ds: Dataset) -> bool:
    """True for MONOCHROME1/2 images: the cleaned copy is written MONOCHROME2, colour ones RGB."""
    return str(ds.get("PhotometricInterpretation", "")).upper().startswith("MONOCHROME")


def transfer_syntax(ds: Dataset) -> UID:
    meta = getattr(ds, "file_meta", None)
    return UID(meta.get("TransferSyntaxUID", ExplicitVRLittleEndian)) if meta is not None else ExplicitVRLittleEndian


def iter_frames(path: str | Path, ds: Dataset | None = None) -> Iterator[np.ndarray]:
    """Each frame of a DICOM file as (Rows, Columns, 3) uint8 RGB for display, decoded one at a time.

    YBR colour (incl. YBR_FULL_422, JPEG baseline) is converted to RGB, palette colour through its LUT;
    grey images go through the modality and VOI (window) transforms, or their own min..max when they have
    no window, and MONOCHROME1 is inverted, so that 255 is white.
    """
    path = Path(path)
    ds = read_header(path) if ds is None else ds
    ts = transfer_syntax(ds)
    # a deflated data set cannot be read frame by frame from the file: such files (rare, small) are read whole
    src = pydicom.dcmread(path) if ts == pydicom.uid.DeflatedExplicitVRLittleEndian else path
    frames = pydicom.pixels.iter_pixels(src)
    index = 0
    while True:
        try:
            arr = next(frames)
        except StopIteration:
            return
        except (AttributeError, KeyError) as e:
            raise DicomError(f"{path}: no pixel data in this DICOM file ({e}).") from e
        except Exception as e:  # decoders raise RuntimeError, NotImplementedError, ValueError...
            first = str(e).splitlines()[0][:200] if str(e) else type(e).__name__
            raise DicomError(f"{path}: cannot decode its pixel data ({ts.name}: {first}). Install a decoder for it "
                             "(pip install pylibjpeg pylibjpeg-libjpeg pylibjpeg-openjpeg) or convert the file to "
                             "uncompressed, e.g. with dcmtk's dcmdjpeg.") from e
        yield display_rgb(arr, ds, index)
        index += 1


def display_rgb(arr: np.ndarray, ds: Dataset, index: int = 0) -> np.ndarray:
    """One decoded frame (as pydicom gives it: RGB for colour) -> (H, W, 3) uint8 RGB as shown on screen."""
    pi = str(ds.get("PhotometricInterpretation", "")).upper()
    if pi == "PALETTE COLOR":
        rgb = pydicom.pixels.apply_color_lut(arr, ds)
        return _bits_to_uint8(rgb, 16 if rgb.dtype != np.uint8 else 8)
    if arr.ndim == 3 and arr.shape[-1] == 3:
        return _bits_to_uint8(arr, int(ds.get("BitsStored", 8)))
    if arr.ndim == 3 and arr.shape[-1] == 1:
        arr = arr[..., 0]
    if arr.ndim != 2:
        raise ValueError(f"unexpected frame shape {arr.shape} for {pi or 'no'} photometric interpretation")
    grey = _grey_to_uint8(arr, ds, index)
    if pi == "MONOCHROME1":
        grey = 255 - grey
    return cv2.cvtColor(grey, cv2.COLOR_GRAY2RGB)


def _bits_to_uint8(arr: np.ndarray, bits: int) -> np.ndarray:
    if arr.dtype == np.uint8 and bits <= 8:
        return np.ascontiguousarray(arr)
    top = float(2 ** min(max(bits, 1), 16) - 1)
    return np.clip(np.rint(arr.astype(np.float32) * (255.0 / top)), 0, 255).astype(np.uint8)


def _first(value) -> float:
    return float(value[0] if isinstance(value, (list, tuple, MultiValue)) else value)


def _grey_to_uint8(arr: np.ndarray, ds: Dataset, index: int) -> np.ndarray:
    windowed = "WindowCenter" in ds and "WindowWidth" in ds
    rescaled = "RescaleSlope" in ds or "RescaleIntercept" in ds or "ModalityLUTSequence" in ds
    if arr.dtype == np.uint8 and not windowed and not rescaled:
        return np.ascontiguousarray(arr)
    x = pydicom.pixels.apply_modality_lut(arr, ds).astype(np.float64) if rescaled else arr.astype(np.float64)
    if windowed:  # DICOM's linear VOI function (PS3.3 C.11.2.1.2.1)
        c, w = _first(ds.WindowCenter), max(_first(ds.WindowWidth), 1.0)
        y = np.clip((x - (c - 0.5)) / max(w - 1.0, 1.0) + 0.5, 0.0, 1.0)
    else:
        lo, hi = float(x.min()), float(x.max())
        y = (x - lo) / (hi - lo) if hi > lo else np.zeros_like(x)
    return np.rint(y * 255.0).astype(np.uint8)


def header_attrs(ds: Dataset, keywords: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """The READABLE_KEYS attributes (readable names) plus any other `keywords` (as given) that the file has,
    as strings (multi-valued ones joined by '\\')."""
    out = {}
    for name, kw in [*READABLE_KEYS.items(), *((k, k) for k in keywords)]:
        value = ds.get(kw)
        if value is None or value == "":
            continue
        if isinstance(value, (list, tuple, MultiValue)):
            value = "\\".join(str(v) for v in value)
        out[name] = str(value).strip()
    return out


def derived_series_uid(source_series_uid: str, salt: str) -> UID:
    """The new Series Instance UID for cleaned copies of one source series: the same for every file of that
    series cleaned into one output folder (salt), so that they form one derived series."""
    return generate_uid(entropy_srcs=[str(source_series_uid), "us-annotation-n2n cleaned", salt])


def burned_in_after(declared: str | None, found_any: bool, kinds_known: list[str]) -> str:
    """BurnedInAnnotation of the cleaned copy: 'NO' once what was found is removed, but 'YES' where the source
    declared burned-in annotation and the detector found none in any frame, or cannot see every kind the
    project knows (then some of it may remain)."""
    from synth.kinds import CLASS_IDS

    if str(declared or "").strip().upper() == "YES" and (not found_any or not set(CLASS_IDS) <= set(kinds_known)):
        return "YES"
    return "NO"


def derived_header(src: Dataset, *, grey: bool, n_frames: int, burned_in: str, description: str,
                   series_uid: str, sop_uid: str | None = None) -> Dataset:
    """A copy of `src` (a header read without pixel data) describing a cleaned, derived instance: 8-bit
    MONOCHROME2 or RGB pixels, Explicit VR Little Endian, new SOP and Series Instance UIDs, ImageType
    DERIVED, DerivationDescription, SourceImageSequence and BurnedInAnnotation; other attributes kept."""
    ds = copy.deepcopy(src)
    for elem in list(ds):  # stale group lengths, and anything sorted after the pixel data we append
        if elem.tag.element == 0 or elem.tag > 0x7FE00010:
            del ds[elem.tag]
    for kw in _PIXEL_MODULE_DROP:
        if kw in ds:
            delattr(ds, kw)
    ts = transfer_syntax(src)
    sop_uid = UID(sop_uid or generate_uid())
    ds.SOPInstanceUID = sop_uid
    ds.SeriesInstanceUID = UID(series_uid)
    ds.SamplesPerPixel = 1 if grey else 3
    ds.PhotometricInterpretation = "MONOCHROME2" if grey else "RGB"
    if not grey:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if "NumberOfFrames" in src or n_frames > 1:
        ds.NumberOfFrames = n_frames
    image_type = [str(v) for v in (src.get("ImageType") or [])]
    ds.ImageType = ["DERIVED", "SECONDARY", *image_type[2:]]
    ds.DerivationDescription = description[:1024]
    source = Dataset()
    source.ReferencedSOPClassUID = src.get("SOPClassUID", "")
    source.ReferencedSOPInstanceUID = src.get("SOPInstanceUID", "")
    purpose = Dataset()
    purpose.CodeValue, purpose.CodingSchemeDesignator, purpose.CodeMeaning = SOURCE_PURPOSE
    source.PurposeOfReferenceCodeSequence = Sequence([purpose])
    ds.SourceImageSequence = Sequence([source])
    ds.BurnedInAnnotation = burned_in
    if ts in _LOSSY_METHOD or str(src.get("LossyImageCompression", "")) == "01":
        ds.LossyImageCompression = "01"  # once lossy, always lossy, though we write uncompressed
        if "LossyImageCompressionMethod" not in ds and ts in _LOSSY_METHOD:
            ds.LossyImageCompressionMethod = _LOSSY_METHOD[ts]
    now = datetime.datetime.now()
    ds.InstanceCreationDate, ds.InstanceCreationTime = now.strftime("%Y%m%d"), now.strftime("%H%M%S")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = src.get("SOPClassUID", UID("1.2.840.10008.5.1.4.1.1.7"))
    meta.MediaStorageSOPInstanceUID = sop_uid
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    meta.ImplementationClassUID = PYDICOM_IMPLEMENTATION_UID
    ds.file_meta = meta
    return ds


class DerivedWriter:
    """Writes a cleaned copy of a DICOM file frame by frame with bounded memory: frames go to a temporary
    raw file next to the output, then header and pixels are joined into `out` (atomically, os.replace).
    The source file is only ever read."""

    def __init__(self, src: Dataset, out: str | Path):
        self.src, self.out = src, Path(out)
        self.grey = is_grey(src)
        self.rows, self.cols = int(src.Rows), int(src.Columns)
        self.n = 0
        self._raw_path = self.out.with_name(self.out.name + ".pixels.tmp")
        self._raw = open(self._raw_path, "wb")

    def add(self, rgb: np.ndarray) -> None:
        """Append one (Rows, Columns, 3) uint8 RGB frame (grey sources keep its luma)."""
        if rgb.shape[:2] != (self.rows, self.cols):
            raise ValueError(f"frame of {rgb.shape[:2]} for a {self.rows}x{self.cols} image")
        frame = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY) if self.grey else rgb
        self._raw.write(np.ascontiguousarray(frame, dtype=np.uint8).tobytes())
        self.n += 1

    def finish(self, burned_in: str, description: str, series_uid: str) -> Path:
        """Write the new instance; returns its path."""
        self._raw.close()
        n_bytes = self._raw_path.stat().st_size
        pad = n_bytes % 2
        if n_bytes + pad > 0xFFFFFFFE:
            self.abort()
            raise DicomError(f"{self.out}: {n_bytes} bytes of pixel data do not fit one uncompressed DICOM file.")
        ds = derived_header(self.src, grey=self.grey, n_frames=self.n, burned_in=burned_in, description=description,
                            series_uid=series_uid)
        tmp = self.out.with_name(self.out.name + ".tmp")
        with open(tmp, "wb") as f:
            pydicom.dcmwrite(f, ds, enforce_file_format=True)
            f.write(struct.pack("<HH2sHI", 0x7FE0, 0x0010, b"OB", 0, n_bytes + pad))  # Pixel Data, explicit VR LE
            with open(self._raw_path, "rb") as raw:
                while block := raw.read(1 << 22):
                    f.write(block)
            f.write(b"\0" * pad)
        os.replace(tmp, self.out)
        self._raw_path.unlink(missing_ok=True)
        return self.out

    def abort(self) -> None:
        """Drop the temporary files (after an error)."""
        self._raw.close()
        self._raw_path.unlink(missing_ok=True)
        self.out.with_name(self.out.name + ".tmp").unlink(missing_ok=True)


def write_png(path: Path, img: np.ndarray) -> None:
    """Write a PNG (grey, or BGR as OpenCV takes it) atomically."""
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise OSError(f"could not encode {path} as PNG")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)


def mask_name(stem: str, frame: int, n_frames: int) -> str:
    """NAME.mask.png for a single-frame file, NAME.f0001.mask.png ... (1-based, as DICOM counts) for cine."""
    return f"{stem}.mask.png" if n_frames == 1 else f"{stem}.f{frame + 1:04d}.mask.png"


def clean_dicom(path: str | Path, target: Path, clean_fn: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
                kinds: list[str], detector: str, salt: str = "") -> dict:
    """`train apply` for one DICOM file: every frame through clean_fn(rgb) -> (cleaned rgb, bool mask), written
    as TARGET.clean.dcm (a new derived instance, frames in order) with TARGET.mask.png per frame; returns the
    apply.csv row (annotated_px and fraction over all frames). salt: what makes the new Series Instance UIDs
    of this run its own (the output folder)."""
    path, target = Path(path), Path(target)
    ds = read_header(path)
    n = frame_count(ds)
    target.parent.mkdir(parents=True, exist_ok=True)
    writer = DerivedWriter(ds, target.with_name(target.name + ".clean.dcm"))
    n_px, frames_found = 0, 0
    try:
        for i, rgb in enumerate(iter_frames(path, ds)):
            cleaned, mask = clean_fn(rgb)
            writer.add(cleaned)
            write_png(target.with_name(mask_name(target.name, i, n)), mask.astype(np.uint8) * 255)
            n_px += int(mask.sum())
            frames_found += bool(mask.any())
        if writer.n != n:
            raise DicomError(f"{path}: NumberOfFrames says {n}, the pixel data holds {writer.n} frames.")
        found = f"annotation found and removed in {frames_found} of {writer.n} frame(s)" if frames_found else \
            f"no annotation found in {writer.n} frame(s)"
        description = f"Burned-in annotations removed by us-annotation-n2n (detector {detector}): {found}."
        burned = burned_in_after(ds.get("BurnedInAnnotation"), frames_found > 0, kinds)
        writer.finish(burned, description, derived_series_uid(ds.get("SeriesInstanceUID", ""), salt))
    except BaseException:
        writer.abort()
        raise
    total = writer.rows * writer.cols * max(writer.n, 1)
    row = {"file": str(path), "width": writer.cols, "height": writer.rows, "annotated_px": n_px,
           "fraction": round(n_px / total, 6)}
    row.update({f"has_{kind}": int(n_px > 0) for kind in kinds})
    return row
