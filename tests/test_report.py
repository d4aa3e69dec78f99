"""`train compare`: the paper's table (mean ± variance per metric) and its Fig. 4-like figure."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from conftest import SHARDS_SIZE_PX as SIZE  # noqa: E402

from train.cli import main  # noqa: E402
from train.report import figure_rows_for  # noqa: E402


def test_compare_writes_the_papers_table_and_figure(runs, shards, tmp_path):
    out = tmp_path / "cmp"
    r = CliRunner().invoke(main, ["compare", "--shards", str(shards / "val"),
                                  "--run", f"N2N={runs / 'n2n' / 'best.pt'}",
                                  "--run", f"SEG={runs / 'seg' / 'best.pt'}",
                                  "--run", f"FILLED={runs / 'seg' / 'best.pt'}+{runs / 'n2n' / 'best.pt'}",
                                  "--out", str(out), "--figure-rows", "3"])
    assert r.exit_code == 0, r.output
    md = (out / "table.md").read_text()
    for col in ("Dice", "IoU", "PA", "SSIM", "PSNR-HVS-M"):
        assert f"| {col}" in md or f" {col} |" in md
    assert "| N2N | N2N |" in md and "| SEG | SEG |" in md and "| FILLED | SEG + FILL |" in md and "±" in md
    table = json.loads((out / "table.json").read_text())
    per_image = (out / "per_image_N2N.csv").read_text().splitlines()
    dice = np.mean([float(line.split(",")[1]) for line in per_image[1:]])
    assert len(per_image) == 7 and np.isclose(table["N2N"]["dice"]["mean"], dice)
    fig = cv2.imread(str(out / "figure.png"))
    assert fig.shape[0] > 3 * SIZE and fig.shape[1] >= 5 * SIZE, "3 rows of input | N2N | SEG | FILLED | truth"
    # the filled seg model has the seg model's masks, and its own cleaned images
    seg, filled = table["SEG"], table["FILLED"]
    assert seg["dice"] == filled["dice"] and seg["ssim"] != filled["ssim"]
    bad = CliRunner().invoke(main, ["compare", "--shards", str(shards / "val"), "--run", "nolabel", "--out", str(out)])
    assert bad.exit_code != 0 and "LABEL=CHECKPOINT" in bad.output and "Traceback" not in bad.output
    missing = CliRunner().invoke(main, ["compare", "--shards", str(shards / "val"), "--run", "X=nope.pt", "--out",
                                        str(out)])
    assert missing.exit_code != 0 and "no checkpoint at nope.pt" in missing.output


def test_compare_draws_fewer_figure_rows_above_256_px(runs, shards, tmp_path):
    assert [figure_rows_for(s) for s in (96, 256, 257, 512)] == [4, 4, 2, 2]
    out = tmp_path / "cmp"  # without --figure-rows: the default for the shards' image size (SIZE <= 256: 4 rows)
    r = CliRunner().invoke(main, ["compare", "--shards", str(shards / "val"),
                                  "--run", f"N2N={runs / 'n2n' / 'best.pt'}", "--out", str(out)])
    assert r.exit_code == 0, r.output
    assert 4 * SIZE < cv2.imread(str(out / "figure.png")).shape[0] < 5 * SIZE
    bad = CliRunner().invoke(main, ["compare", "--shards", str(tmp_path / "none"), "--run",
                                    f"N2N={runs / 'n2n' / 'best.pt'}", "--out", str(out)])
    assert bad.exit_code != 0 and "none" in bad.output and "Traceback" not in bad.output
