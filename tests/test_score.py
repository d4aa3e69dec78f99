"""train score-apply (marks found / missed / removed fraction / false flags against truth), synth phantom
--annotate (annotated phantoms with their truth) and train compare --reference (tolerances)."""

from __future__ import annotations

import csv
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from synth.annotate import annotate
from synth.cli import main as synth_main
from synth.phantom import make_phantom
from train.cli import main as train_main
from train.reference import TOLERANCES, compare_tables, verdict
from train.score import FOUND_FRACTION, score_scan, truth_marks


def _cross(h=64, w=64, at=(20, 20), half=6) -> np.ndarray:
    t = np.zeros((h, w), np.uint8)
    y, x = at
    t[y, x - half:x + half + 1] = 2
    t[y - half:y + half + 1, x] = 2
    return t


def test_a_mark_is_its_joined_pixels():
    t = _cross() | _cross(at=(20, 50))
    t[20, 29] = 2  # a digit pixel 3 px right of the first cross belongs to it
    marks = truth_marks(t)
    assert len(marks) == 2
    assert sorted(int(m.sum()) for m in marks) == [25, 26]


def test_half_a_mark_is_found_but_not_whole_and_stray_mask_is_a_false_mark():
    truth = _cross()
    mask = np.zeros_like(truth, bool)
    mask[20, 14:21] = True  # the left arm and the centre: 7 of 25 pixels (plus reach)
    mask[50:54, 50:54] = True  # far from any mark
    row = score_scan(mask, truth)
    assert row["marks"] == 1 and row["false_marks"] == 1
    f = row["removed_fractions"][0]
    assert FOUND_FRACTION <= f < 0.9 and row["found"] == 1
    whole = score_scan(truth > 0, truth)
    assert whole["removed_fractions"] == [1.0] and whole["false_marks"] == 0
    missed = score_scan(np.zeros_like(mask), truth)
    assert missed["found"] == 0 and missed["removed_fractions"] == [0.0]


def test_clean_scan_is_flagged_by_any_mask_pixel():
    mask = np.zeros((32, 32), bool)
    assert score_scan(mask, None) == {"clean": True, "flagged": False, "masked_px": 0}
    mask[3, 3] = True
    assert score_scan(mask, None)["flagged"] is True


def test_annotate_changes_only_where_the_truth_says():
    clean = make_phantom(5, 256)
    annotated, truth = annotate(clean, "radial_line", np.random.default_rng(3))
    assert annotated.shape == clean.shape and truth.shape == clean.shape[:2] and truth.any()
    # softening (JPEG round trip) touches every pixel a little; the annotation itself only where truth is set
    big = np.abs(annotated.astype(int) - clean.astype(int)).max(axis=2) > 40
    assert (big & (truth == 0)).sum() <= 0.01 * big.sum()


def test_phantom_annotate_writes_scans_and_truth(tmp_path):
    r = CliRunner().invoke(synth_main, ["phantom", "--n", "2", "--size", "128", "--annotate", "body_marker",
                                        "--truth", str(tmp_path / "truth"), "--out", str(tmp_path / "scans")])
    assert r.exit_code == 0, r.output
    for name in ("phantom-00000.png", "phantom-00001.png"):
        assert cv2.imread(str(tmp_path / "scans" / name)).shape == (128, 128, 3)
        assert (cv2.imread(str(tmp_path / "truth" / name), cv2.IMREAD_GRAYSCALE) > 0).any()
    r = CliRunner().invoke(synth_main, ["phantom", "--n", "1", "--annotate", "text", "--out", str(tmp_path / "x")])
    assert r.exit_code != 0 and "--annotate and --truth go together" in r.output


def _applied(tmp_path, scans: dict) -> None:
    """A folder laid out as `train apply --out` writes it: apply.csv, STEM.mask.png, STEM.clean.png."""
    applied = tmp_path / "applied"
    rows = []
    for stem, (img, mask) in scans.items():
        src = tmp_path / "scans" / f"{stem}.png"
        src.parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(src), img)
        (applied / stem).parent.mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(applied / f"{stem}.mask.png"), mask.astype(np.uint8) * 255)
        cv2.imwrite(str(applied / f"{stem}.clean.png"), img)
        rows.append({"file": str(src)})
    with open(applied / "apply.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["file"])
        w.writeheader()
        w.writerows(rows)


def test_score_apply_counts_and_panels(tmp_path):
    img = np.full((64, 64, 3), 90, np.uint8)
    truth = _cross()
    (tmp_path / "truth" / "annotated").mkdir(parents=True)
    cv2.imwrite(str(tmp_path / "truth" / "annotated" / "a.png"), truth)
    flagged = np.zeros((64, 64), bool)
    flagged[5:9, 5:9] = True
    _applied(tmp_path, {"annotated/a": (img, truth > 0), "clean/a": (img, flagged),
                        "clean/b": (img, np.zeros((64, 64), bool))})
    r = CliRunner().invoke(train_main, ["score-apply", str(tmp_path / "applied"), "--truth", str(tmp_path / "truth")])
    assert r.exit_code == 0, r.output
    s = json.loads((tmp_path / "applied" / "score" / "score.json").read_text())
    assert (s["annotated_scans"], s["marks"], s["found"], s["missed"]) == (1, 1, 1, 0)
    assert (s["clean_scans"], s["clean_flagged"], s["false_marks"]) == (2, 1, 0)
    assert s["mean_removed_fraction_of_found"] == 1.0
    assert "1/1 marks found" in r.output and "clean scans flagged: 1/2" in r.output
    panel = cv2.imread(str(tmp_path / "applied" / "score" / "panels" / "annotated__a.png"))
    assert panel.shape[0] == 240 and panel.shape[1] > 3 * 240


def test_score_apply_says_what_is_missing(tmp_path):
    r = CliRunner().invoke(train_main, ["score-apply", str(tmp_path), "--truth", str(tmp_path)])
    assert r.exit_code != 0 and "apply.csv not found" in r.output and "Traceback" not in r.output


def _table(**means) -> dict:
    return {"SEG": {m: {"mean": v, "var": 0.0} for m, v in means.items()}}


def test_reference_tolerances(tmp_path):
    ref = _table(dice=0.70, ssim=0.99, psnr_hvsm=37.0)
    assert all(r["ok"] for r in compare_tables(_table(dice=0.705, ssim=0.99, psnr_hvsm=37.9), ref))
    rows = compare_tables(_table(dice=0.70 + 2 * TOLERANCES["dice"], ssim=0.99, psnr_hvsm=37.0), ref)
    assert [r["metric"] for r in rows if not r["ok"]] == ["dice"]
    assert not all(r["ok"] for r in compare_tables({}, ref))  # a missing model does not match
    (tmp_path / "ref.json").write_text(json.dumps(ref))
    (tmp_path / "got.json").write_text(json.dumps(_table(dice=0.5, ssim=0.99, psnr_hvsm=37.0)))
    ok, text = verdict(tmp_path / "got.json", tmp_path / "ref.json")
    assert not ok and "DIFFERS" in text and "SEG Dice: 0.5000 vs 0.7000" in text
    ok, text = verdict(tmp_path / "ref.json", tmp_path / "ref.json")
    assert ok and "matches" in text


@pytest.mark.parametrize("committed", ["reports/demo/table.json"])
def test_committed_demo_reference_has_every_model(committed):
    from pathlib import Path

    ref = json.loads((Path(__file__).resolve().parents[1] / committed).read_text())
    assert set(ref) == {"N2N", "N2C", "SEG", "SEG+N2N"}
    assert all("dice" in row and "psnr_hvsm" in row for row in ref.values())
