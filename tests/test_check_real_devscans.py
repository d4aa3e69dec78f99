"""`train check-real` end to end on the internal dev scans (skipped without them): counts, and the
--sweep that picks an operating point on one half and reports the other."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import shutil  # noqa: E402

from click.testing import CliRunner  # noqa: E402

from train.cli import main  # noqa: E402
from train.metrics import SEG_THRESHOLD_GRID  # noqa: E402


def test_check_real_counts_on_the_dev_scans(runs, devdata, tmp_path):
    out = tmp_path / "real"
    r = CliRunner().invoke(main, ["check-real", "--checkpoint", str(runs / "n2n" / "best.pt"), "--annotated",
                                  str(devdata / "annotated"), "--clean", str(devdata / "clean"), "--out", str(out),
                                  "--limit", "3", "--panel-rows", "3"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "real_check.json").read_text())
    assert res["annotated"] == 3 and res["clean"] == 3
    assert res["annotated_with_reference"] >= 1 and sum(t for _, t in res["by_kind"].values()) >= 1
    assert 0 <= res["clean_flagged_in_fan"] <= res["clean_flagged"] <= 3
    rows = (out / "per_scan.csv").read_text().splitlines()
    assert len(rows) == 7 and (out / "panel.png").exists()
    assert "clean scans flagged" in (out / "real_check.md").read_text()
    empty = CliRunner().invoke(main, ["check-real", "--checkpoint", str(runs / "n2n" / "best.pt"), "--out", str(out)])
    assert empty.exit_code != 0 and "--annotated" in empty.output


def test_check_real_sweep_picks_on_one_half_and_reports_the_other(runs, devdata, tmp_path):
    from synth.images import find_images
    from train.realcheck import SWEEP_MIN_AREAS

    ckpt = str(runs / "seg" / "best.pt")
    out = tmp_path / "sweep"
    r = CliRunner().invoke(main, ["check-real", "--checkpoint", ckpt, "--annotated", str(devdata / "annotated"),
                                  "--clean", str(devdata / "clean"), "--out", str(out), "--limit", "4", "--sweep"])
    assert r.exit_code == 0, r.output
    res = json.loads((out / "operating_point.json").read_text())
    assert res["threshold"] in SEG_THRESHOLD_GRID and res["min_area"] in SWEEP_MIN_AREAS
    assert "--threshold" in r.output and "Held-out half" in r.output
    pick = {tuple(map(float, k.split("/"))): v for k, v in res["pick"].items()}
    assert {v[3] for v in pick.values()} == {2}, "positions 0 and 2 of 4 clean scans pick"
    assert len({v[1] for v in pick.values()}) == 1, "every point sees the same overlays"
    for (t, a), (found, _, flagged, _) in pick.items():  # stricter points mask subsets: never more found/flagged
        for (t2, a2), (found2, _, flagged2, _) in pick.items():
            if t2 >= t and a2 >= a:
                assert found2 <= found and flagged2 <= flagged
    # the held-out tally at the run's own point is what a plain check-real reports on those scans
    for label in ("annotated", "clean"):
        (tmp_path / label).mkdir()
        for f in find_images(devdata / label)[:4][1::2]:
            shutil.copy(f, tmp_path / label / f.name)
    plain = CliRunner().invoke(main, ["check-real", "--checkpoint", ckpt, "--annotated", str(tmp_path / "annotated"),
                                      "--clean", str(tmp_path / "clean"), "--out", str(tmp_path / "plain")])
    assert plain.exit_code == 0, plain.output
    p = json.loads((tmp_path / "plain" / "real_check.json").read_text())
    found, total, flagged, clean = res["held_out"]["own"]
    assert (found, total) == tuple(map(sum, zip(*p["by_kind"].values()))) and (flagged, clean) == (
        p["clean_flagged"], p["clean"])
    assert res["held_out_clean_flagged_in_fan"]["own"] == p["clean_flagged_in_fan"] <= flagged
    assert "flagged inside the fan" in (out / "operating_point.md").read_text()
    half = CliRunner().invoke(main, ["check-real", "--checkpoint", ckpt, "--annotated", str(devdata / "annotated"),
                                     "--out", str(out), "--sweep"])
    assert half.exit_code != 0 and "--sweep needs both" in half.output
