"""Tests for synth.extract (`synth extract-icons`): colour keying on real dev scans, the difference and
box methods on synthetic pairs, de-duplication, image reading, and user errors."""

import csv
import json
import os
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest

from synth.extract import (
    ExtractError,
    Found,
    dedupe,
    extract_icons,
    find_annotations,
    icon_distance,
    read_rgb,
)
from synth.icons import load_icon_set

# Dev scans checked by eye (ANNOTATION_STATS.md, contact sheets). The scans are read from ../shared at
# run time through symlinks in a tmp folder; nothing of them is written into the repository.
# 0792, 1445: the large GE glyph; 1422: Mindray white crosses
CALIPER_SCANS = ["0033", "0042", "0084", "0097", "0133", "0271", "0792", "1445", "1422"]
DOPPLER_BOX_SCANS = ["0393", "0396", "0419", "0439", "0457", "0826"]
TEXT_SCANS = ["0009"]  # "CY", "ROV" labels, no calipers
CLEAN_SCANS = ["0005", "0038", "0046", "0095", "0446", "0640"]  # 0095 logo, 0446 colour bar, 0640 'm' logo


def _name(n: str) -> str:
    return f"otu2d_{n}.jpg"


def _tags(devdata: Path) -> dict[str, str]:
    with open(devdata / "manifest.csv", newline="") as f:
        return {Path(r["file"]).name: r["heuristic_overlay_tags"] for r in csv.DictReader(f)}


def _link(src: Path, dst: Path) -> None:
    try:
        os.symlink(src, dst)
    except OSError:
        shutil.copyfile(src, dst)


@pytest.fixture(scope="module")
def real_run(devdata, tmp_path_factory):
    """extract_icons once on 16 selected annotated scans; returns (src, out, summary, index)."""
    src = tmp_path_factory.mktemp("annotated")
    for n in CALIPER_SCANS + DOPPLER_BOX_SCANS + TEXT_SCANS:
        _link(devdata / "annotated" / _name(n), src / _name(n))
    out = tmp_path_factory.mktemp("runs") / "icons"
    calls = []
    summary = extract_icons(src, out, progress=lambda done, total: calls.append((done, total)))
    index = json.loads((out / "index.json").read_text())
    return src, out, summary, index, calls


def _by_source(index: dict) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for e in index["icons"]:
        out.setdefault(e["source"], []).append(e)
        for s in e.get("duplicate_sources", []):  # a merged duplicate was still found in its scan
            out.setdefault(s, []).append({**e, "source": s})
    return out


# ------------------------------------------------------------------------------------- real dev scans
def test_selected_scans_carry_the_expected_tags(devdata):
    tags = _tags(devdata)
    for n in CALIPER_SCANS:
        assert re.search("calipers", tags[_name(n)]), n
    for n in DOPPLER_BOX_SCANS:
        assert "doppler_sample_box" in tags[_name(n)], n


def test_summary_and_progress(real_run):
    _, out, summary, index, calls = real_run
    n = len(CALIPER_SCANS + DOPPLER_BOX_SCANS + TEXT_SCANS)
    assert summary["files"] == n and summary["bad_files"] == []
    assert summary["written"] == len(index["icons"])
    assert summary["found"] == summary["written"] + summary["duplicates"]
    assert sum(summary["by_kind"].values()) == summary["written"]
    assert calls[-1] == (n, n) and [c[0] for c in calls] == list(range(1, n + 1))
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".icons.tmp")]  # no temp left


def test_finds_caliper_crosses(real_run):
    _, _, _, index, _ = real_run
    found = _by_source(index)
    total = 0
    for n in CALIPER_SCANS:
        crosses = [e for e in found.get(_name(n), []) if e["kind"] == "radial_line"]
        assert crosses, f"no caliper cross found in {n}"
        total += len(crosses)
        for e in crosses:
            h, w = e["size"]
            assert 10 <= h <= 26 and 10 <= w <= 26, (n, e["size"])  # '+' spans 12-17 px, plus shadow
    assert total >= 2 * len(CALIPER_SCANS) - 1  # crosses come in pairs


def test_finds_doppler_sector_boxes(real_run, devdata):
    _, _, _, index, _ = real_run
    found = _by_source(index)
    for n in DOPPLER_BOX_SCANS:
        boxes = [e for e in found.get(_name(n), []) if e["kind"] == "vascular_flow"]
        assert len(boxes) == 1, f"{n}: {len(boxes)} Doppler boxes"
        H, W = read_rgb(devdata / "annotated" / _name(n)).shape[:2]
        _, _, w, h = boxes[0]["box"]
        assert w >= 0.3 * W and h >= 0.3 * H  # the whole sector, not a fragment
        r, g, b = boxes[0]["colour"]
        assert g > r and g > b  # green outline
    for n in CALIPER_SCANS + TEXT_SCANS:  # no Doppler box there
        assert not [e for e in found.get(_name(n), []) if e["kind"] == "vascular_flow"], n


def test_finds_text_labels(real_run):
    _, _, _, index, _ = real_run
    texts = [e for e in _by_source(index).get(_name("0009"), []) if e["kind"] == "text"]
    assert len(texts) == 2  # "CY" and "ROV"
    for e in texts:
        r, g, b = e["colour"]
        assert min(r, g) > b + 40  # yellow


def test_written_icons_load_and_index_is_complete(real_run, devdata):
    src, out, summary, index, _ = real_run
    icon_set = load_icon_set(out)
    assert len(icon_set) == summary["written"]
    assert {k: len(v) for k, v in icon_set.by_kind.items()} == summary["by_kind"]
    for e in index["icons"]:
        assert {"source", "box", "kind", "colour", "size", "method", "duplicates"} <= set(e)
        assert e["method"] == "colour"
        assert re.fullmatch(rf"{e['kind']}_{Path(e['source']).stem}_\d{{3}}", e["name"])
        assert (src / e["source"]).is_file()
        x, y, w, h = e["box"]
        assert [h, w] == e["size"]
        H, W = read_rgb(src / e["source"]).shape[:2]
        assert 0 <= x and 0 <= y and x + w <= W and y + h <= H
    for icon in (i for icons in icon_set.by_kind.values() for i in icons):
        a = icon.rgba[..., 3]
        assert a[0].any() and a[-1].any() and a[:, 0].any() and a[:, -1].any()  # tightly cropped


def test_dedupe_reduces_near_identical_crosses(real_run):
    _, _, summary, index, _ = real_run
    merged = [e for e in index["icons"] if e["kind"] == "radial_line" and e["duplicates"] > 0]
    assert summary["duplicates"] >= 3 and merged
    for e in merged:
        assert len(e["duplicate_sources"]) == e["duplicates"]


def test_clean_scans_give_no_crosses_or_boxes(devdata):
    for n in CLEAN_SCANS:
        res = find_annotations(read_rgb(devdata / "clean" / _name(n)))
        assert [f.kind for f in res.found if f.kind != "text"] == [], n
        assert len(res.found) <= 1, n  # at most a stray logo


def test_kind_forces_one_kind(devdata, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    for n in ("0133", "0393"):
        _link(devdata / "annotated" / _name(n), src / _name(n))
    summary = extract_icons(src, tmp_path / "out", kind="vascular_flow")
    assert set(summary["by_kind"]) == {"vascular_flow"}


# ------------------------------------------------------------------------------ difference and box
def _synthetic_pair(devdata: Path, tmp_path: Path, centre=(400, 300), half=7):
    """A clean scan as reference and a PNG copy with a yellow 2 px '+' drawn in; returns (ann, ref, box)."""
    ref_dir, ann_dir = tmp_path / "ref", tmp_path / "ann"
    ref_dir.mkdir()
    ann_dir.mkdir()
    shutil.copyfile(devdata / "clean" / _name("0005"), ref_dir / "scan.jpg")
    clean = read_rgb(ref_dir / "scan.jpg")
    drawn = clean.copy()
    cx, cy = centre
    cv2.line(drawn, (cx - half, cy), (cx + half, cy), (255, 255, 0), 2)
    cv2.line(drawn, (cx, cy - half), (cx, cy + half), (255, 255, 0), 2)
    cv2.imwrite(str(ann_dir / "scan.png"), cv2.cvtColor(drawn, cv2.COLOR_RGB2BGR))
    ys, xs = np.nonzero((drawn != clean).any(axis=2))
    box = [int(xs.min()), int(ys.min()), int(xs.max() - xs.min() + 1), int(ys.max() - ys.min() + 1)]
    return ann_dir, ref_dir, box


def test_reference_difference_finds_exactly_the_drawn_cross(devdata, tmp_path):
    ann, ref, box = _synthetic_pair(devdata, tmp_path)
    summary = extract_icons(ann, tmp_path / "out", reference=ref)
    assert summary["written"] == 1 and summary["by_kind"] == {"radial_line": 1}
    (e,) = json.loads((tmp_path / "out" / "index.json").read_text())["icons"]
    assert e["method"] == "difference" and e["source"] == "scan.png"
    assert e["box"] == box
    icon = load_icon_set(tmp_path / "out").icons("radial_line")[0]
    opaque = icon.rgba[icon.rgba[..., 3] >= 128][:, :3]
    assert np.abs(opaque.astype(int) - [255, 255, 0]).max() <= 2  # unmixed: the drawn colour


def test_roi_cuts_the_box(devdata, tmp_path):
    ann, ref, box = _synthetic_pair(devdata, tmp_path)
    roi = (box[0] - 12, box[1] - 12, box[2] + 24, box[3] + 24)
    summary = extract_icons(ann, tmp_path / "out", roi=roi, reference=ref)
    (e,) = json.loads((tmp_path / "out" / "index.json").read_text())["icons"]
    assert summary["by_kind"] == {"radial_line": 1}
    assert e["method"] == "roi" and e["box"] == box and e["alpha_from"] == "difference"
    # colour keying inside the box, kind forced: the cross is inside, nothing outside the box
    extract_icons(ann, tmp_path / "out2", roi=roi, kind="text")
    (e,) = json.loads((tmp_path / "out2" / "index.json").read_text())["icons"]
    x, y, w, h = e["box"]
    assert e["kind"] == "text" and e["alpha_from"] == "colour"
    assert roi[0] <= x and roi[1] <= y and x + w <= roi[0] + roi[2] and y + h <= roi[1] + roi[3]
    assert x <= box[0] + 2 and y <= box[1] + 2 and x + w >= box[0] + box[2] - 2


def test_roi_on_a_real_cross(devdata, tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    _link(devdata / "annotated" / _name("0133"), src / _name("0133"))
    summary = extract_icons(src, tmp_path / "out", roi=(108, 174, 36, 34))  # the left cross of 0133
    assert summary["by_kind"] == {"radial_line": 1}


def test_roi_outside_the_image(devdata, tmp_path):
    ann, _, _ = _synthetic_pair(devdata, tmp_path)
    with pytest.raises(ExtractError, match=r"scan\.png"):
        extract_icons(ann, tmp_path / "out", roi=(5000, 10, 20, 20))
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------------------- dedupe
def test_dedupe_unit():
    rng = np.random.default_rng(0)
    cross = np.zeros((15, 15, 4), np.uint8)
    cross[6:8, :, :] = (230, 235, 170, 255)
    cross[:, 6:8, :] = (230, 235, 170, 255)
    noisy = cross.copy()
    noisy[..., :3] = np.clip(noisy[..., :3] + rng.integers(-6, 7, noisy[..., :3].shape), 0, 255)
    shifted = np.zeros((16, 16, 4), np.uint8)
    shifted[1:, 1:] = cross
    word = np.zeros((15, 40, 4), np.uint8)
    word[3:12, 2:38] = (237, 243, 150, 255)
    assert icon_distance(cross, noisy) < 5
    assert icon_distance(cross, shifted) == 0
    assert icon_distance(cross, word) == float("inf")
    found = [Found("radial_line", (0, 0, 15, 15), cross, "colour", source="a.jpg"),
             Found("radial_line", (5, 5, 15, 15), noisy, "colour", source="b.jpg"),
             Found("radial_line", (9, 9, 16, 16), shifted, "colour", source="c.jpg"),
             Found("text", (0, 0, 15, 15), cross.copy(), "colour", source="d.jpg"),  # other kind: kept
             Found("text", (0, 0, 40, 15), word, "colour", source="e.jpg")]
    kept, n_dup = dedupe(found)
    assert n_dup == 2 and len(kept) == 3
    assert kept[0].duplicates == 2 and kept[0].meta["duplicate_sources"] == ["b.jpg", "c.jpg"]


# ---------------------------------------------------------------------------------------- reading
@pytest.mark.parametrize("case", ["grey8.png", "grey16.png", "rgb16.tif", "rgba.png", "rgb.bmp", "rgb.jpg"])
def test_read_rgb_formats(tmp_path, case):
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (20, 30, 3), dtype=np.uint8)
    path = tmp_path / case
    if case == "grey8.png":
        arr, want = base[..., 0], np.repeat(base[..., :1], 3, axis=2)
    elif case == "grey16.png":
        arr, want = base[..., 0].astype(np.uint16) * 257, np.repeat(base[..., :1], 3, axis=2)
    elif case == "rgb16.tif":
        arr, want = cv2.cvtColor(base, cv2.COLOR_RGB2BGR).astype(np.uint16) * 257, base
    elif case == "rgba.png":
        arr = cv2.cvtColor(np.dstack([base, np.full((20, 30), 77, np.uint8)]), cv2.COLOR_RGBA2BGRA)
        want = base
    else:
        arr, want = cv2.cvtColor(base, cv2.COLOR_RGB2BGR), base
    assert cv2.imwrite(str(path), arr)
    rgb = read_rgb(path)
    assert rgb.shape == (20, 30, 3) and rgb.dtype == np.uint8
    if not case.endswith(".jpg"):
        assert np.array_equal(rgb, want)


# ---------------------------------------------------------------------------------------- errors
def test_missing_and_empty_folders(tmp_path):
    with pytest.raises(ExtractError, match="does not exist"):
        extract_icons(tmp_path / "nope", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "notes.txt").write_text("no images here")
    with pytest.raises(ExtractError, match="No images"):
        extract_icons(tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_bad_arguments(tmp_path):
    src = tmp_path / "in"
    src.mkdir()
    cv2.imwrite(str(src / "a.png"), np.zeros((50, 50, 3), np.uint8))
    with pytest.raises(ExtractError, match="Unknown kind 'calipers'"):
        extract_icons(src, tmp_path / "out", kind="calipers")
    with pytest.raises(ExtractError, match="--roi"):
        extract_icons(src, tmp_path / "out", roi=(0, 0, 0, 10))
    with pytest.raises(ExtractError, match="Reference folder"):
        extract_icons(src, tmp_path / "out", reference=tmp_path / "missing")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("x")
    with pytest.raises(ExtractError, match="not an empty folder"):
        extract_icons(src, tmp_path / "full")
    with pytest.raises(ExtractError, match="inside the --from folder"):
        extract_icons(src, src / "icons")
    with pytest.raises(ExtractError, match="No annotations found"):  # a black image has none
        extract_icons(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_corrupt_file_named_and_skip_bad(devdata, tmp_path):
    ann, ref, _ = _synthetic_pair(devdata, tmp_path)
    (ann / "broken.jpg").write_bytes(b"\xff\xd8\xff not really a jpeg")
    with pytest.raises(ExtractError, match=r"broken\.jpg.*--skip-bad"):
        extract_icons(ann, tmp_path / "out", reference=ref)
    assert not (tmp_path / "out").exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".out.tmp")]
    summary = extract_icons(ann, tmp_path / "out", reference=ref, skip_bad=True)
    assert summary["bad_files"] == ["broken.jpg"] and summary["files"] == 2
    assert summary["written"] == 1
    assert load_icon_set(tmp_path / "out")
