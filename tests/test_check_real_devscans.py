"""`train check-real` end to end on the internal dev scans (skipped without them): counts, and the
--sweep that picks an operating point on one half and reports the other."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402

from click.testing import CliRunner  # noqa: E402

from train.cli import main  # noqa: E402


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
