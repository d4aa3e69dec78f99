"""`train check-real --sweep` against a scan-level reference: the CSV, the refusal, ROC/AUC, the pick."""

import csv
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from synth.build import BuildConfig, make_plan, run_build  # noqa: E402
from train.checkpoint import TrainError  # noqa: E402
from train.cli import main  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.loop import train_run  # noqa: E402
from train.realcheck import (  # noqa: E402
    MIN_NEGATIVES,
    MIN_POSITIVES,
    RefScan,
    auc,
    check_reference_size,
    largest_components,
    pick_point,
    read_reference,
    reference_classes,
    roc_curve,
)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """The tiny model's forward pass is ~25x slower on 2 threads when other jobs share the 2 cores."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def write_png(path, seed, white=False):
    """A 96x72 grey speckle scan, with a white caliper cross when white=True."""
    rng = np.random.default_rng(seed)
    img = np.clip(rng.normal(80, 15, (72, 96)), 0, 255).astype(np.uint8)
    if white:
        cv2.line(img, (40, 36), (52, 36), 255, 1)
        cv2.line(img, (46, 30), (46, 42), 255, 1)
    cv2.imwrite(str(path), img)
    return path


def write_csv(path, rows, header=("file", "annotated", "kinds")):
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)
    return path


def test_reference_csv_reads_labels_kinds_and_paths(tmp_path):
    (tmp_path / "scans").mkdir()
    a = write_png(tmp_path / "scans" / "a.png", 0, True)
    b = write_png(tmp_path / "scans" / "b.png", 1)
    c = write_png(tmp_path / "c.png", 2, True)
    ref = write_csv(tmp_path / "ref.csv", [("scans/a.png", "yes", "radial_line;text"), ("scans/b.png", "0", "none"),
                                           ("", "", ""), (str(c), "TRUE", "")])
    scans = read_reference(ref)
    assert [(s.file, s.annotated, s.kinds) for s in scans] == [
        (tmp_path / "scans" / "a.png", True, ("radial_line", "text")), (tmp_path / "scans" / "b.png", False, ()),
        (c, True, ())]
    assert scans[0].where == f"{ref} line 2" and scans[2].where == f"{ref} line 5"
    assert a.exists() and b.exists()
    # an optional colour column, any column order, a byte-order mark
    (tmp_path / "r2.csv").write_text("\ufeffcolour,Annotated,file\nwhite,1,scans/a.png\n,no,scans/b.png\n")
    assert [s.colour for s in read_reference(tmp_path / "r2.csv")] == ["white", ""]


@pytest.mark.parametrize("rows, header, message", [
    ([("a.png", "yes"), ("a2.png", "maybe")], ("file", "annotated"), "line 3: annotated is 'maybe'; write yes/no"),
    ([("missing.png", "no")], ("file", "annotated"), "line 2: no scan at"),
    ([("a.png", "yes"), ("./a.png", "no")], ("file", "annotated"), "line 3: ./a.png is listed twice (first on line 2)"),
    ([("a.png", "no", "text")], ("file", "annotated", "kinds"), "line 2: annotated is 'no' but kinds lists text"),
    ([("a.png", "yes")], ("path", "annotated"), "line 1: the header must name the columns file and annotated"),
    ([], ("file", "annotated"), "lists no scans"),
])
def test_a_bad_reference_csv_names_its_file_and_line(tmp_path, rows, header, message):
    write_png(tmp_path / "a.png", 0)
    write_png(tmp_path / "a2.png", 1)
    ref = write_csv(tmp_path / "ref.csv", rows, header)
    with pytest.raises(TrainError) as e:
        read_reference(ref)
    assert str(ref) in str(e.value) and message in str(e.value)


def test_positives_leave_out_kinds_the_detector_was_not_trained_on(tmp_path):
    scans = [RefScan(tmp_path / f"{i}.png", ann, kinds) for i, (ann, kinds) in enumerate(
        [(True, ("radial_line", "text")), (True, ("text",)), (True, ()), (False, ())])]
    pos, neg, out = reference_classes(scans, ["radial_line"])
    assert [s.file.name for s in pos] == ["0.png", "2.png"] and [s.file.name for s in neg] == ["3.png"]
    assert [s.file.name for s in out] == ["1.png"]
    pos, _, out = reference_classes(scans, None)  # detector kinds unknown: every annotated scan counts
    assert len(pos) == 3 and not out


def test_fewer_than_20_positives_or_negatives_refuse_with_a_sentence():
    check_reference_size(MIN_POSITIVES, MIN_NEGATIVES, "ref.csv")
    with pytest.raises(TrainError, match=r"has 3 annotated and 40 clean scans, .*at least 20 of each"):
        check_reference_size(3, 40, "ref.csv")
    with pytest.raises(TrainError, match=r"has 25 annotated and 19 clean scans \(4 annotated scans left out"):
        check_reference_size(25, 19, "ref.csv", left_out=4)


def test_roc_and_auc_on_a_case_with_a_known_answer():
    pos, neg = [3, 4, 5], [1, 2, 3]
    # 9 pairs: 3 > 1, 3 > 2, 3 = 3 (half), 4 and 5 beat all three: (2 + 0.5 + 3 + 3) / 9
    assert auc(pos, neg) == pytest.approx(8.5 / 9)
    assert auc([2, 3], [0, 1]) == 1.0 and auc([0, 1], [2, 3]) == 0.0 and auc([1, 1], [1, 1]) == 0.5
    assert np.isnan(auc([], [1]))
    roc = roc_curve(pos, neg)
    assert roc[0] == (np.inf, 0.0, 0.0) and roc[-1] == (1.0, 1.0, 1.0)
    assert [(c, round(t, 3), round(f, 3)) for c, t, f in roc[1:]] == [
        (5, 0.333, 0.0), (4, 0.667, 0.0), (3, 1.0, 0.333), (2, 1.0, 0.667), (1, 1.0, 1.0)]
    # the trapezoid area under the curve is the AUC
    fpr, tpr = [f for _, _, f in roc], [t for _, t, _ in roc]
    assert np.trapezoid(tpr, fpr) == pytest.approx(8.5 / 9)


def test_largest_components_score_a_scan_by_its_biggest_mask_piece():
    prob = np.zeros((20, 20), np.float32)
    prob[2:4, 2:8] = 0.9  # 12 px
    prob[10, 10:13] = 0.6  # 3 px
    assert largest_components(prob, (0.5, 0.8, 0.95)) == {0.5: 12, 0.8: 12, 0.95: 0}


def test_the_pick_respects_the_false_flag_rate_and_breaks_ties_toward_the_looser_point():
    # point -> [positives flagged, positives, negatives flagged, negatives, overlays found, overlays]
    tallies = {(0.3, 2): [40, 40, 5, 50, 9, 10],   # finds all, flags 10 % of clean scans: not allowed
               (0.5, 2): [30, 40, 1, 50, 6, 10],   # 2 %: allowed
               (0.5, 8): [30, 40, 0, 50, 6, 10],   # ties with (0.5, 2) on found and overlays: looser wins
               (0.7, 2): [30, 40, 0, 50, 7, 10],   # same found, more overlays: wins the tie before looseness
               (0.8, 2): [20, 40, 0, 50, 7, 10]}
    assert pick_point(tallies, 0.02) == (0.7, 2)
    tallies[(0.7, 2)][4] = 6
    assert pick_point(tallies, 0.02) == (0.5, 2), "ties go to the lower threshold, then the smaller min area"
    assert pick_point(tallies, 0.0) == (0.5, 8)
    assert pick_point(tallies, 0.1) == (0.3, 2)
    assert pick_point({(0.5, 2): [1, 2, 3, 10, 0, 0]}, 0.02) is None


@pytest.fixture(scope="module")
def seg_checkpoint(tmp_path_factory):
    """A tiny seg detector trained for a few steps on 64 px radial_line phantoms (seconds)."""
    root = tmp_path_factory.mktemp("realcheck")
    for name, seed, n in (("train", 0, 8), ("val", 1, 4)):
        run_build(make_plan(BuildConfig(kind="radial_line", n=n, size_px=64, shard_size=4, seed=seed, n_phantoms=2)),
                  root / name)
    train_run(TrainConfig(shards=str(root / "train"), out=str(root / "seg"), val_shards=str(root / "val"),
                          preset="cpu", width=8, batch_size=2, samples=4, crop=32, mode="seg", val_samples=4),
              log=lambda *a, **k: None)
    return root / "seg" / "best.pt"


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """22 annotated (white crosses) and 22 clean 96x72 scans with a reference CSV, and a 5-positive one."""
    root = tmp_path_factory.mktemp("scans")
    rows = [(write_png(root / f"ann{i:02d}.png", i, True).name, "yes", "radial_line", "white") for i in range(22)]
    rows += [(write_png(root / f"cln{i:02d}.png", 100 + i).name, "no", "", "") for i in range(22)]
    write_csv(root / "ref.csv", rows, ("file", "annotated", "kinds", "colour"))
    write_csv(root / "few.csv", rows[:5] + rows[22:], ("file", "annotated", "kinds", "colour"))
    return root


def test_sweep_with_a_reference_picks_and_writes_roc_and_point(seg_checkpoint, scans, tmp_path):
    out = tmp_path / "sweep"
    r = CliRunner().invoke(main, ["check-real", "--checkpoint", str(seg_checkpoint), "--sweep", "--reference",
                                  str(scans / "ref.csv"), "--out", str(out), "--max-false-flag-rate", "0.1"])
    res = json.loads((out / "operating_point.json").read_text())
    assert res["counts"]["positives"] == 22 and res["counts"]["negatives"] == 22
    assert res["counts"]["pick"] == {"positives": 11, "negatives": 11}
    for name, v in res["auc"].items():
        assert 0 <= v["pick"] <= 1 and 0 <= v["held_out"] <= 1, name
    rows = list(csv.DictReader(open(out / "roc.csv")))
    assert {r["half"] for r in rows} == {"pick", "held_out"} and {r["score"] for r in rows} >= {"max_probability"}
    assert (out / "roc.png").stat().st_size > 1000
    md = (out / "operating_point.md").read_text()
    assert "Scan-level ROC" in md and "--reference" in md and "| white |" in md
    if r.exit_code == 0:  # a point was picked: it flags at most 10 % of the pick half's clean scans
        pick = res["pick"][f"{res['threshold']}/{res['min_area']}"]
        assert pick[2] <= 0.1 * pick[3] and "--threshold" in r.output
    else:  # the tiny detector flags every clean scan at every point: refused, in a sentence
        assert res["threshold"] is None and "no operating point picked" in r.output and "Traceback" not in r.output


def test_sweep_refuses_a_small_reference_without_a_traceback(seg_checkpoint, scans, tmp_path):
    r = CliRunner().invoke(main, ["check-real", "--checkpoint", str(seg_checkpoint), "--sweep", "--reference",
                                  str(scans / "few.csv"), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "has 5 annotated and 22 clean scans" in r.output and "at least 20 of each" in r.output
    assert not (tmp_path / "o" / "operating_point.json").exists()
    # folders are a scan-level reference too, and just as small here
    (tmp_path / "a").mkdir()
    (tmp_path / "c").mkdir()
    for i in range(3):
        write_png(tmp_path / "a" / f"{i}.png", i, True)
        write_png(tmp_path / "c" / f"{i}.png", 50 + i)
    r = CliRunner().invoke(main, ["check-real", "--checkpoint", str(seg_checkpoint), "--sweep", "--annotated",
                                  str(tmp_path / "a"), "--clean", str(tmp_path / "c"), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "has 3 annotated and 3 clean scans" in r.output and "Traceback" not in r.output
    bad = CliRunner().invoke(main, ["check-real", "--checkpoint", str(seg_checkpoint), "--reference",
                                    str(scans / "ref.csv"), "--out", str(tmp_path / "o")])
    assert bad.exit_code != 0 and "--reference goes with --sweep" in bad.output


def test_make_reference_turns_the_pumch_manifest_into_a_reference(devdata_pumch, tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    from make_reference import manifest_to_reference

    counts = manifest_to_reference(devdata_pumch / "manifest.csv", tmp_path / "ref.csv")
    scans = read_reference(tmp_path / "ref.csv")
    n_annotated = sum(s.annotated for s in scans)
    assert counts["annotated"] == n_annotated and counts["clean"] == len(scans) - n_annotated
    assert counts["clean"] >= MIN_NEGATIVES and all(s.file.is_file() for s in scans)
    pos, neg, out = reference_classes(scans, ["radial_line"])
    assert len(pos) >= MIN_POSITIVES and all("radial_line" in s.kinds for s in pos)
    assert all(s.colour in ("white", "grey", "mixed", "green") for s in pos + out)


def test_sweep_on_the_dev_folders_reports_the_held_out_half_as_check_real_does(seg_checkpoint, devdata, tmp_path):
    """The folders as the scan-level reference: 20 + 20 scans, split 10 + 10; at the run's own point the
    held-out colour-keyed tally is what a plain check-real counts on those scans (growth off in both: the
    untrained detector's many mask pieces make growth at 72 points slow)."""
    import shutil

    from synth.images import find_images

    out = tmp_path / "sweep"
    r = CliRunner().invoke(main, ["check-real", "--checkpoint", str(seg_checkpoint), "--sweep", "--annotated",
                                  str(devdata / "annotated"), "--clean", str(devdata / "clean"), "--out", str(out),
                                  "--limit", "20", "--no-grow"])
    assert "Traceback" not in r.output, r.output
    res = json.loads((out / "operating_point.json").read_text())
    assert res["counts"]["pick"] == {"positives": 10, "negatives": 10} and "folders" in res["reference"]
    for label in ("annotated", "clean"):
        (tmp_path / label).mkdir()
        for f in find_images(devdata / label)[:20][1::2]:
            shutil.copy(f, tmp_path / label / f.name)
    plain = CliRunner().invoke(main, ["check-real", "--checkpoint", str(seg_checkpoint), "--annotated",
                                      str(tmp_path / "annotated"), "--clean", str(tmp_path / "clean"), "--out",
                                      str(tmp_path / "plain"), "--no-grow"])
    assert plain.exit_code == 0, plain.output
    p = json.loads((tmp_path / "plain" / "real_check.json").read_text())
    found, total = res["held_out"]["own"][4:6]
    assert (found, total) == tuple(map(sum, zip(*p["by_kind"].values())))
