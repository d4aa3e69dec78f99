"""DICOM in and out: pydicom's shipped test files (no download) and files written here from phantoms with
pasted annotations, read frame by frame, cleaned by `train apply` into new derived instances, audited."""

import hashlib
import io
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np  # noqa: E402
import pydicom  # noqa: E402
import pydicom.data  # noqa: E402
import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from PIL import Image  # noqa: E402
from pydicom.dataset import Dataset, FileMetaDataset  # noqa: E402
from pydicom.encaps import encapsulate  # noqa: E402
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid  # noqa: E402
from test_audit import colour_detector, paste  # noqa: E402

from synth.phantom import make_phantom  # noqa: E402
from train.audit import AuditConfig, run_audit  # noqa: E402
from train.cli import main  # noqa: E402
from train.dicom import DicomError, burned_in_after, find_scans, is_dicom, iter_frames, read_header  # noqa: E402
from train.evaluate import dilate  # noqa: E402
from train.rules import load_rules  # noqa: E402

US_IMAGE = "1.2.840.10008.5.1.4.1.1.6.1"
US_MULTIFRAME = "1.2.840.10008.5.1.4.1.1.3.1"


def shipped(name: str) -> str:
    """A test file inside the pydicom wheel (never downloaded)."""
    path = pydicom.data.get_testdata_file(name, download=False)
    assert path is not None, f"{name} is not in this pydicom install"
    return path


def sha256(path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def write_dicom(path: Path, frames: list[np.ndarray], grey: bool = False, jpeg: bool = False, **attrs) -> Path:
    """A US DICOM file of (H, W, 3) uint8 RGB frames: MONOCHROME2 (grey) or RGB uncompressed, or JPEG
    baseline YBR_FULL_422 (each frame a 4:2:2 JPEG, encapsulated)."""
    h, w = frames[0].shape[:2]
    ds = Dataset()
    ds.SOPClassUID = US_MULTIFRAME if len(frames) > 1 else US_IMAGE
    ds.SOPInstanceUID, ds.StudyInstanceUID = generate_uid(), generate_uid()
    ds.SeriesInstanceUID = attrs.pop("SeriesInstanceUID", generate_uid())
    ds.Modality, ds.PatientName, ds.PatientID = "US", "Phantom^Test", "PH0001"
    ds.ImageType = ["ORIGINAL", "PRIMARY", "ABDOMINAL"]
    ds.Rows, ds.Columns = h, w
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
    if len(frames) > 1:
        ds.NumberOfFrames = len(frames)
    for k, v in attrs.items():
        setattr(ds, k, v)
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID = ds.SOPClassUID, ds.SOPInstanceUID
    if grey:
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        ds.PixelData = b"".join(f[..., 0].tobytes() for f in frames)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    elif jpeg:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "YBR_FULL_422", 0
        encoded = []
        for f in frames:
            buf = io.BytesIO()
            Image.fromarray(f).save(buf, "JPEG", quality=95, subsampling=1)  # 4:2:2
            encoded.append(buf.getvalue())
        ds.PixelData = encapsulate(encoded)
        ds["PixelData"].VR = "OB"
        ds.LossyImageCompression = "01"
        meta.TransferSyntaxUID = JPEGBaseline8Bit
    else:
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.PixelData = b"".join(f.tobytes() for f in frames)
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta = meta
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(path, enforce_file_format=True)
    return path


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return colour_detector(tmp_path_factory.mktemp("det") / "colour.pt")


@pytest.mark.parametrize("name, n, shape", [
    ("examples_ybr_color.dcm", 30, (240, 320)),  # multi-frame JPEG baseline YBR_FULL_422 ultrasound
    ("examples_rgb_color.dcm", 1, (240, 320)),  # uncompressed RGB ultrasound
    ("ExplVR_BigEnd.dcm", 1, (60, 80)),  # big endian RGB ultrasound
    ("examples_palette.dcm", 1, (350, 800)),  # palette colour ultrasound
    ("SC_rgb_rle_2frame.dcm", 2, (100, 100)),  # RLE, 2 frames
    ("SC_rgb_rle_16bit.dcm", 1, (100, 100)),  # 16 bits per sample
    ("MR_small.dcm", 1, (64, 64)),  # 16-bit grey with a window
    ("image_dfl.dcm", 1, (512, 512)),  # deflated
    ("examples_jpeg2k.dcm", 1, (480, 640)),  # JPEG 2000 ultrasound
])
def test_shipped_files_decode_frame_by_frame_to_display_rgb(name, n, shape):
    path = shipped(name)
    assert is_dicom(path)
    frames = list(iter_frames(path))
    assert len(frames) == n
    for f in frames:
        assert f.shape == (*shape, 3) and f.dtype == np.uint8 and f.std() > 5
    if read_header(path).PhotometricInterpretation.startswith("MONOCHROME"):
        assert (frames[0][..., 0] == frames[0][..., 2]).all()


@pytest.mark.parametrize("name", ["SC_rgb_dcmtk_+eb+cy+s2.dcm", "SC_rgb_jpeg_dcmtk.dcm",
                                  "SC_ybr_full_422_uncompressed.dcm"])
def test_ybr_and_jpeg_baseline_match_the_lossless_rgb_original(name):
    ref = next(iter_frames(shipped("SC_rgb_rle.dcm"))).astype(int)
    got = next(iter_frames(shipped(name))).astype(int)
    assert np.abs(ref - got).mean() < 2, "YBR converted to RGB (unconverted, the difference is ~100)"


def test_files_we_write_as_jpeg_baseline_ybr_422_decode_close_to_their_pixels(tmp_path):
    frames = [paste(make_phantom(s, 96), "body_marker", 10 + 20 * s, 10, 16, 12) for s in range(3)]
    path = write_dicom(tmp_path / "cine.dcm", frames, jpeg=True)
    got = list(iter_frames(path))
    assert len(got) == 3
    for a, b in zip(frames, got):
        assert np.abs(a.astype(int) - b.astype(int)).mean() < 3


def test_unreadable_files_raise_one_sentence(tmp_path):
    (tmp_path / "x.dcm").write_bytes(b"hello")
    with pytest.raises(DicomError, match="x.dcm: not a DICOM file"):
        read_header(tmp_path / "x.dcm")
    with pytest.raises(DicomError, match="JPEG Lossless.*Install a decoder"):
        list(iter_frames(shipped("SC_rgb_jpeg_gdcm.dcm")))


def test_folders_list_dicom_files_and_named_files_are_sniffed(tmp_path):
    write_dicom(tmp_path / "a" / "one.dcm", [make_phantom(0, 64)])
    write_dicom(tmp_path / "IM0001", [make_phantom(1, 64)])  # no suffix, as PACS exports often are
    (tmp_path / "a" / "notes.txt").write_text("x")
    assert [p.name for p in find_scans(tmp_path)] == ["one.dcm"]
    assert is_dicom(tmp_path / "IM0001") and not is_dicom(tmp_path / "a" / "notes.txt")


def test_apply_writes_a_derived_rgb_instance_frames_in_order_and_leaves_the_input(detector, tmp_path):
    base = make_phantom(3, 128)
    frames = [paste(base, "body_marker", 10 + 25 * i, 20 + 10 * i, 18, 12) for i in range(4)]
    series = generate_uid()
    src = write_dicom(tmp_path / "in" / "cine.dcm", frames, SeriesInstanceUID=series, BodyPartExamined="BREAST",
                      BurnedInAnnotation="YES", SeriesDescription="Breast L")
    write_dicom(tmp_path / "in" / "still.dcm", [paste(base, "text", 60, 100, 30, 8)], SeriesInstanceUID=series)
    before = sha256(src)
    r = CliRunner().invoke(main, ["apply", "--checkpoint", str(detector), str(tmp_path / "in"), "--out",
                                  str(tmp_path / "out"), "--no-grow"])
    assert r.exit_code == 0, r.output
    assert sha256(src) == before, "the input is never modified"
    out = pydicom.dcmread(tmp_path / "out" / "cine.clean.dcm")
    src_ds = pydicom.dcmread(src)
    assert out.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian and out.PhotometricInterpretation == "RGB"
    assert out.SOPInstanceUID != src_ds.SOPInstanceUID
    assert out.file_meta.MediaStorageSOPInstanceUID == out.SOPInstanceUID
    assert out.SeriesInstanceUID != series and out.StudyInstanceUID == src_ds.StudyInstanceUID
    assert pydicom.dcmread(tmp_path / "out" / "still.clean.dcm").SeriesInstanceUID == out.SeriesInstanceUID, \
        "cleaned copies of one series form one new series"
    assert list(out.ImageType)[:2] == ["DERIVED", "SECONDARY"] and "us-annotation-n2n" in out.DerivationDescription
    assert "4 of 4 frame(s)" in out.DerivationDescription
    ref = out.SourceImageSequence[0]
    assert ref.ReferencedSOPInstanceUID == src_ds.SOPInstanceUID and ref.ReferencedSOPClassUID == US_MULTIFRAME
    assert out.BurnedInAnnotation == "NO" and out.PatientID == "PH0001" and out.BodyPartExamined == "BREAST"
    assert out.SeriesDescription == "Breast L" and int(out.NumberOfFrames) == 4
    pixels = out.pixel_array
    assert pixels.shape == (4, 128, 128, 3)
    for i, (frame, cleaned) in enumerate(zip(frames, pixels)):
        mask = np.array(Image.open(tmp_path / "out" / f"cine.f{i + 1:04d}.mask.png")) > 0
        assert abs(int(mask.sum()) - 18 * 12) < 60, "each frame's own marker is found"
        ys, xs = np.nonzero(mask)
        assert abs(xs.min() - (10 + 25 * i)) <= 1, "frames keep their order"
        keep = ~dilate(mask)
        assert (cleaned[keep] == frame[keep]).all(), "outside the mask the pixels are the input's"
        assert cleaned[mask].astype(int).std(-1).mean() < 10, "the yellow marker is gone"
    rows = (tmp_path / "out" / "apply.csv").read_text().splitlines()
    assert len(rows) == 3 and rows[1].startswith(str(src)) and rows[1].split(",")[3] != "0"


def test_apply_keeps_grey_images_monochrome2_and_a_declared_mark_it_did_not_find(detector, tmp_path):
    grey = make_phantom(5, 64)
    src = write_dicom(tmp_path / "g.dcm", [grey], grey=True, BurnedInAnnotation="YES")
    r = CliRunner().invoke(main, ["apply", "--checkpoint", str(detector), str(src), "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    out = pydicom.dcmread(tmp_path / "o" / "g.clean.dcm")
    assert out.PhotometricInterpretation == "MONOCHROME2" and out.SamplesPerPixel == 1 and "NumberOfFrames" not in out
    assert (out.pixel_array == grey[..., 0]).all(), "nothing found: the pixels are the input's"
    assert out.BurnedInAnnotation == "YES", "declared burned in, nothing found: we cannot vouch that it is gone"
    assert burned_in_after("YES", True, ["body_marker"]) == "YES"
    assert burned_in_after("YES", True, ["body_marker", "radial_line", "vascular_flow", "text"]) == "NO"
    assert burned_in_after(None, False, []) == "NO"


def test_apply_cleans_the_shipped_jpeg_ybr_ultrasound_cine(tmp_path):
    small = colour_detector(tmp_path / "det64.pt", size_px=64)  # 30 frames: run the model at 64 px
    src = shipped("examples_ybr_color.dcm")
    before = sha256(src)
    r = CliRunner().invoke(main, ["apply", "--checkpoint", str(small), src, "--out", str(tmp_path / "o")])
    assert r.exit_code == 0, r.output
    assert sha256(src) == before
    out = pydicom.dcmread(tmp_path / "o" / "examples_ybr_color.clean.dcm")
    assert int(out.NumberOfFrames) == 30 and out.PhotometricInterpretation == "RGB"
    assert out.LossyImageCompression == "01" and out.LossyImageCompressionMethod == "ISO_10918_1"
    frames = list(iter_frames(src))
    cleaned = out.pixel_array
    for i in (0, 13, 29):
        mask = np.array(Image.open(tmp_path / "o" / f"examples_ybr_color.f{i + 1:04d}.mask.png")) > 0
        keep = ~dilate(mask)
        assert (cleaned[i][keep] == frames[i][keep]).all()
    assert len(list((tmp_path / "o").glob("examples_ybr_color.f*.mask.png"))) == 30


def test_apply_reports_a_file_it_cannot_decode_and_goes_on(detector, tmp_path):
    good = write_dicom(tmp_path / "in" / "good.dcm", [make_phantom(0, 64)])
    bad = tmp_path / "in" / "lossless.dcm"
    bad.write_bytes(Path(shipped("SC_rgb_jpeg_gdcm.dcm")).read_bytes())
    r = CliRunner().invoke(main, ["apply", "--checkpoint", str(detector), str(tmp_path / "in"), "--out",
                                  str(tmp_path / "o")])
    assert r.exit_code == 1 and "lossless.dcm: cannot decode its pixel data" in r.output
    assert (tmp_path / "o" / "good.clean.dcm").is_file() and not list((tmp_path / "o").glob("lossless*"))
    assert good.is_file()


def test_audit_reads_dicom_attributes_for_rules_and_reports_each_frame(detector, tmp_path):
    base = make_phantom(9, 128)
    write_dicom(tmp_path / "in" / "breast_ok.dcm", [paste(base, "body_marker", 5, 5, 15, 15)],
                BodyPartExamined="BREAST")
    write_dicom(tmp_path / "in" / "breast_cine.dcm", [base, paste(base, "body_marker", 50, 50, 15, 15), base],
                BodyPartExamined="BREAST", jpeg=True)
    write_dicom(tmp_path / "in" / "research.dcm", [paste(base, "radial_line", 20, 60, 60, 3)],
                SeriesDescription="Export for RESEARCH", BodyPartExamined="LIVER")
    from test_audit import write_png

    write_png(tmp_path / "in" / "plain.png", base)
    rules = load_rules(Path(__file__).resolve().parents[1] / "docs" / "examples" / "rules.toml")
    r = run_audit(AuditConfig(out=str(tmp_path / "a"), checkpoints=(str(detector),)), [tmp_path / "in"], rules)
    assert r["images"] == 6 and r["files"] == 4
    recs = {(Path(x["file"]).name, x["frame"]): x for x in
            json.loads((tmp_path / "a" / "audit.json").read_text())["images"]}
    assert recs[("breast_ok.dcm", 1)]["verdict"] == "pass"
    assert [recs[("breast_cine.dcm", i)]["verdict"] for i in (1, 2, 3)] == ["fail", "pass", "fail"]
    assert recs[("breast_cine.dcm", 1)]["failures"] == ["breast: body marker required: missing body_marker"]
    assert recs[("research.dcm", 1)]["failures"] == [
        "research export: no calipers or text: has radial_line (forbidden)"]
    assert recs[("research.dcm", 1)]["dicom"]["series_description"] == "Export for RESEARCH"
    assert recs[("plain.png", None)]["verdict"] == "unmatched" and recs[("plain.png", None)]["dicom"] is None
    assert "Phantom" not in (tmp_path / "a" / "audit.json").read_text(), "no patient data in the audit"
    by_rule = {x["rule"]: x for x in r["rules"]}
    assert by_rule["breast: body marker required"] == {"rule": "breast: body marker required", "line": 11,
                                                       "matched": 4, "failed": 2}
