"""End-to-end pieces of issue 4: crop training, the validation threshold sweep, `train compare` (the
paper's table and Fig. 4) and `train check-real` on the real dev scans."""

import json
import os
import shutil
import subprocess
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from synth.build import BuildConfig, make_plan, run_build  # noqa: E402
from train.cli import main  # noqa: E402
from train.config import TrainConfig  # noqa: E402
from train.data import EVAL_FIELDS, MODE_FIELDS, DataError, ShardStream, crop_item  # noqa: E402
from train.evaluate import best_threshold  # noqa: E402
from train.loop import TrainError, load_checkpoint, train_run  # noqa: E402
from train.metrics import SEG_THRESHOLD_GRID, THRESHOLD_GRID  # noqa: E402
from train.report import figure_rows_for  # noqa: E402

SIZE = 64


@pytest.fixture(scope="module")
def shards(tmp_path_factory):
    root = tmp_path_factory.mktemp("shards")
    for name, seed, n in (("train", 0, 16), ("val", 1, 6)):
        cfg = BuildConfig(kind="body_marker", n=n, size_px=SIZE, shard_size=4, seed=seed, n_phantoms=3)
        run_build(make_plan(cfg), root / name)
    return root


@pytest.fixture(scope="module")
def runs(shards, tmp_path_factory):
    """Tiny trained runs (n2n, seg and a second seg of another seed) with validation, shared below."""
    root = tmp_path_factory.mktemp("runs")
    for mode in ("n2n", "seg"):
        train_run(TrainConfig(shards=str(shards / "train"), out=str(root / mode), val_shards=str(shards / "val"),
                              preset="cpu", width=8, batch_size=2, samples=8, crop=32, mode=mode, val_samples=6))
    # a second detector (another seed) for the ensemble test
    train_run(TrainConfig(shards=str(shards / "train"), out=str(root / "seg2"), val_shards=str(shards / "val"),
                          preset="cpu", width=8, batch_size=2, samples=8, crop=32, mode="seg", val_samples=6, seed=1))
    return root


def test_crop_windows_are_seeded_and_follow_the_annotation(shards):
    ds = ShardStream(shards / "train", MODE_FIELDS["seg"] + ("sample_id",), seed=0, crop=32, focus=1.0)
    items = list(ds)
    assert all(x["noisy_a"].shape == (3, 32, 32) and x["mask"].shape == (32, 32) for x in items)
    assert all(x["mask"].any() for x in items), "focus=1 windows are centred on annotation"
    again = list(ShardStream(shards / "train", MODE_FIELDS["seg"] + ("sample_id",), seed=0, crop=32, focus=1.0))
    assert all(np.array_equal(a["noisy_a"], b["noisy_a"]) for a, b in zip(items, again)), "same seed, same crops"
    # n2n focus comes from the two noisy copies only (no labels): the window holds a pixel where they differ
    rng = np.random.default_rng(0)
    a = np.zeros((64, 64, 3), np.uint8)
    b = a.copy()
    b[50, 60] = 200
    for _ in range(5):
        c = crop_item({"noisy_a": a, "noisy_b": b}, 16, 1.0, rng)
        assert c["noisy_a"].shape == (16, 16, 3) and c["noisy_b"].max() == 200
    with pytest.raises(DataError, match="larger than"):
        ShardStream(shards / "train", MODE_FIELDS["n2n"], crop=128)


def test_hard_negative_windows_land_on_bright_marks_off_the_mask():
    """--hard-negatives: a window centred on a bright mark on a dark surround (a depth tick), never on
    the annotation; at 0 the windows are exactly those of before (the same random draws)."""
    img = np.zeros((96, 96, 3), np.uint8)
    img[10:12, 4:8] = 200  # a depth tick on the black frame
    img[60:64, 60:64] = 220  # an annotation...
    mask = np.zeros((96, 96), np.uint8)
    mask[60:64, 60:64] = 1  # ...masked, so never a hard negative
    img[40:96, 0:40] = 90  # tissue: not bright enough
    from train.data import hard_negative_pixels

    hot = hard_negative_pixels(img, mask)
    assert hot[10:12, 4:8].all() and hot.sum() == 8
    for seed in range(5):
        c = crop_item({"noisy_a": img, "mask": mask}, 16, 0.0, np.random.default_rng(seed), negatives=1.0)
        assert c["noisy_a"].max() == 200 and not c["mask"].any()
        plain = crop_item({"noisy_a": img, "mask": mask}, 16, 0.5, np.random.default_rng(seed))
        same = crop_item({"noisy_a": img, "mask": mask}, 16, 0.5, np.random.default_rng(seed), negatives=0.0)
        assert np.array_equal(plain["noisy_a"], same["noisy_a"])


def test_hard_negatives_need_seg_windows(shards, tmp_path):
    with pytest.raises(TrainError, match="--mode seg and --crop"):
        train_run(TrainConfig(shards=str(shards / "train"), out=str(tmp_path / "r"), preset="cpu", width=8,
                              samples=2, crop=32, mode="n2n", hard_negatives=0.25))
    r = train_run(TrainConfig(shards=str(shards / "train"), out=str(tmp_path / "s"), preset="cpu", width=8,
                              batch_size=2, samples=4, crop=32, mode="seg", hard_negatives=0.25))
    assert r["steps"] == 2


def test_crop_must_fit_the_model(shards, tmp_path):
    with pytest.raises(TrainError, match="multiple of 32"):
        train_run(TrainConfig(shards=str(shards / "train"), out=str(tmp_path / "r"), preset="cpu", width=8,
                              samples=2, crop=40))


def test_run_picks_a_mask_threshold_on_validation_and_eval_uses_it(runs, shards, tmp_path):
    for mode, grid in (("n2n", THRESHOLD_GRID), ("seg", SEG_THRESHOLD_GRID)):
        t = load_checkpoint(runs / mode / "best.pt")["meta"]["threshold"]
        assert t in grid
        stats = [json.loads(x) for x in (runs / mode / "stats.jsonl").read_text().splitlines()]
        assert [s["threshold"] for s in stats if "threshold" in s][-1] == t
    assert best_threshold({4.0: 0.2, 8.0: 0.5, 12.0: 0.5}) == 8.0
    r = CliRunner().invoke(main, ["eval", "--checkpoint", str(runs / "n2n" / "best.pt"), "--shards",
                                  str(shards / "val"),
                                  "--out", str(tmp_path / "a"), "--save-examples", "0"])
    r2 = CliRunner().invoke(main, ["eval", "--checkpoint", str(runs / "n2n" / "best.pt"), "--shards",
                                   str(shards / "val"), "--out", str(tmp_path / "b"), "--save-examples", "0",
                                   "--threshold", "256"])
    assert r.exit_code == 0 and r2.exit_code == 0, r.output + r2.output
    a = json.loads((tmp_path / "a" / "summary.json").read_text())
    b = json.loads((tmp_path / "b" / "summary.json").read_text())
    assert b["dice"]["mean"] == 0.0 and a["dice"]["mean"] > 0.0, "an explicit --threshold overrides the checkpoint's"


def test_threaded_scoring_gives_the_rows_and_examples_of_one_thread_in_order(runs, shards, monkeypatch):
    from torch.utils.data import DataLoader

    from train import evaluate as E
    from train.infer import predictor_from_checkpoint

    def score(threads):
        monkeypatch.setattr(E, "METRIC_THREADS", threads)
        out = []
        for mode in ("n2n", "seg"):
            pred, _ = predictor_from_checkpoint(runs / mode / "best.pt", torch.device("cpu"))
            stream = ShardStream(shards / "val", (*EVAL_FIELDS, "sample_id"), shuffle=False)
            # batches of 4, cut at 5 samples: the second batch is scored in part
            rows, examples = E.evaluate_batches(pred, DataLoader(stream, batch_size=4), threshold=None,
                                                max_samples=5, keep_examples=3)
            sweep = E.sweep_thresholds(pred, DataLoader(stream, batch_size=4), max_samples=5)
            out.append((rows, [[a.tobytes() for a in ex] for ex in examples], sweep))
        return out

    one, many = score(1), score(4)
    assert [len(rows) for rows, _, _ in one] == [5, 5] and [len(ex) for _, ex, _ in one] == [3, 3]
    assert [r["sample_id"] for r in one[0][0]] == [0, 1, 2, 3, 4]
    assert many == one


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


def test_apply_fills_seg_masks_with_a_restoration_model(runs, tmp_path):
    scans = tmp_path / "scans"
    scans.mkdir()
    img = np.random.default_rng(1).integers(0, 256, (70, 100, 3), dtype=np.uint8)
    cv2.imwrite(str(scans / "a.png"), img)
    seg, n2n = str(runs / "seg" / "best.pt"), str(runs / "n2n" / "best.pt")
    r = CliRunner().invoke(main, ["apply", "--checkpoint", seg, str(scans), "--out", str(tmp_path / "o"), "--fill", n2n,
                                  "--threshold", "0"])
    assert r.exit_code == 0, r.output
    cleaned = cv2.imread(str(tmp_path / "o" / "a.clean.png"))
    assert cleaned.shape == img.shape and not np.array_equal(cleaned, img), "threshold 0 masks everything"
    bad = CliRunner().invoke(main, ["apply", "--checkpoint", n2n, str(scans), "--out", str(tmp_path / "o"),
                                    "--fill", seg])
    assert bad.exit_code != 0 and "only a seg model's masks are filled" in bad.output


def test_several_seg_checkpoints_average_their_probabilities(runs, shards, tmp_path):
    """apply/check-real with repeated --checkpoint, compare with LABEL=A,B: an ensemble of detectors."""
    import torch

    from train.infer import load_predictor, predictor_from_checkpoint

    seg = runs / "seg" / "best.pt"
    x = torch.from_numpy(np.random.default_rng(2).integers(0, 256, (1, 3, SIZE, SIZE), dtype=np.uint8))
    one, _ = predictor_from_checkpoint(seg)
    two, _ = predictor_from_checkpoint(runs / "seg2" / "best.pt")
    one.model.eval(), two.model.eval()
    both, meta = load_predictor([seg, runs / "seg2" / "best.pt"])
    np.testing.assert_allclose(both(x), (one(x) + two(x)) / 2, rtol=1e-6, atol=1e-7)
    own = [load_checkpoint(p)["meta"]["threshold"] for p in (seg, runs / "seg2" / "best.pt")]
    assert meta["threshold"] == pytest.approx(np.mean(own), abs=1e-3) and len(meta["checkpoints"]) == 2
    # the same detector twice is the detector: apply writes the same mask
    scans = tmp_path / "scans"
    scans.mkdir()
    cv2.imwrite(str(scans / "a.png"), np.random.default_rng(3).integers(0, 256, (70, 100, 3), dtype=np.uint8))
    for name, ckpts in (("single", [seg]), ("twice", [seg, seg])):
        args = ["apply", *[a for c in ckpts for a in ("--checkpoint", str(c))], str(scans), "--out",
                str(tmp_path / name), "--threshold", "0.5"]
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
    assert np.array_equal(cv2.imread(str(tmp_path / "single" / "a.mask.png")),
                          cv2.imread(str(tmp_path / "twice" / "a.mask.png")))
    # train compare: members joined by ',' are one run; the same detector twice scores as the detector once
    out = tmp_path / "cmp"
    r = CliRunner().invoke(main, ["compare", "--shards", str(shards / "val"), "--out", str(out), "--run", f"ONE={seg}",
                                  "--run", f"TWICE={seg},{seg}", "--run", f"BOTH={seg},{runs / 'seg2' / 'best.pt'}"])
    assert r.exit_code == 0, r.output
    table = json.loads((out / "table.json").read_text())
    assert table["TWICE"]["dice"] == table["ONE"]["dice"] and table["BOTH"]["threshold"] == meta["threshold"]
    bad = CliRunner().invoke(main, ["apply", "--checkpoint", str(seg), "--checkpoint", str(runs / "n2n" / "best.pt"),
                                    str(scans), "--out", str(tmp_path / "o")])
    assert bad.exit_code != 0 and "only seg detectors can be combined" in bad.output and "Traceback" not in bad.output


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


def test_study_plan_covers_the_papers_tables():
    from train.models import MODELS
    from train.study import PLANS, STUDY_LOSSES, study_runs

    for variant, plan in PLANS.items():
        runs = study_runs(plan)
        t12 = {(r.model, r.mode, r.norm) for r in runs if r.table == "I-II"}
        assert {(m, mode, "linear") for m in MODELS for mode in ("n2c", "n2n")} <= t12, variant
        assert {(m, mode, "smn") for m in plan.smn_models for mode in ("n2c", "n2n")} <= t12
        assert {r.loss for r in runs if r.table == "III-IV"} | {"l1"} == set(STUDY_LOSSES)
        assert {(r.kind, r.mode) for r in runs if r.table in ("V-VI", "VII-VIII")} == {
            (k, m) for k in ("radial_line", "vascular_flow") for m in ("n2c", "n2n")}
    assert set(PLANS["full"].smn_models) == set(MODELS), "the full study has SMN rows for every model"


def test_study_minutes_time_box_writes_the_finished_runs_and_a_rerun_continues(tmp_path, monkeypatch):
    import dataclasses

    from train import study
    from train.loop import train_run

    tiny = dataclasses.replace(study.PLANS["quick"], size=64, n_train=8, n_val=4, n_test=4, samples=4,
                               batch_size=2, widths={"n2n_unet": 8})
    monkeypatch.setitem(study.PLANS, "tiny", tiny)
    said = []
    path = study.run_study("tiny", tmp_path / "s", only="V-VI", log=said.append, minutes=1e-9)
    md = path.read_text()
    assert "## Not run yet: 2 of 2 runs" in md and "radial_line-n2n_unet-n2n-linear-l1" in md
    assert "## Tables V-VI: radial_line" not in md and "stopped part-way" not in md
    assert json.loads((tmp_path / "s" / "results.json").read_text()) == {}
    assert "0 of 2 runs finished; rerun the same command" in said[-1]
    assert not (tmp_path / "s" / "shards").exists(), "a kind's shards are built only when one of its runs starts"
    # a run stopped by its time limit (as --minutes stops the run in progress) is listed as part-way
    study.build_shards(tiny, tmp_path / "s" / "shards", ["radial_line"], log=lambda *_: None)
    first = study.study_runs(tiny)[0]
    cfg = study.run_config(tiny, first, tmp_path / "s" / "shards", tmp_path / "s" / "runs" / first.name)
    assert train_run(dataclasses.replace(cfg, time_limit=1e-9, log_every=1), log=lambda *_: None)["stopped"]
    md = study.run_study("tiny", tmp_path / "s", only="V-VI", log=said.append, minutes=1e-9).read_text()
    assert f"- Tables V-VI: {first.name} (stopped part-way)" in md
    md = study.run_study("tiny", tmp_path / "s", only="V-VI", log=said.append).read_text()
    assert "Not run yet" not in md and "n2n_unet N2C" in md and "n2n_unet N2N" in md
    assert "Training time of all runs" in md
    assert set(json.loads((tmp_path / "s" / "results.json").read_text())) == {
        "radial_line-n2n_unet-n2c-linear-l1", "radial_line-n2n_unet-n2n-linear-l1"}


def test_study_does_not_start_a_run_that_cannot_finish_in_the_time_left(tmp_path, monkeypatch):
    """On a lent card a run stopped part-way is lost with the machine: once a run has taken longer than what
    is left of --minutes, the next one waits for the rerun. The clock is made to advance 60 s per run."""
    import dataclasses

    from train import study

    tiny = dataclasses.replace(study.PLANS["quick"], size=64, n_train=8, n_val=4, n_test=4, samples=4,
                               batch_size=2, widths={"n2n_unet": 8})
    monkeypatch.setitem(study.PLANS, "tiny", tiny)
    clock, real_train = [0.0], study.train_run

    def train_60s(cfg, log):
        clock[0] += 60
        return real_train(cfg, log=log)

    monkeypatch.setattr(study, "clock", lambda: clock[0])
    monkeypatch.setattr(study, "train_run", train_60s)
    md = study.run_study("tiny", tmp_path / "s", only="V-VI", log=lambda *_: None, minutes=1.5).read_text()
    assert "## Not run yet: 1 of 2 runs" in md and "n2n_unet N2C" in md, "60 s taken, 30 s left: N2N waits"
    assert "stopped part-way" not in md
    assert not (tmp_path / "s" / "runs" / "radial_line-n2n_unet-n2n-linear-l1").exists()


def test_the_study_runs_a_report_carries_are_not_git_ignored():
    """REPORT/runs is what the next lent machine continues from: ignored, it never reaches the repo (nor the
    next machine, which gets the working tree)."""
    root = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    probe = "reports/study/runs/radial_line-n2n_unet-n2c-linear-l1/result.json"
    r = subprocess.run(["git", "check-ignore", "-q", probe], cwd=root)
    assert r.returncode == 1, f"{probe} is git-ignored; a study continued on a lent card would start over"


def test_a_study_continues_on_a_bare_machine_from_its_report(tmp_path, monkeypatch):
    """A lent card starts bare: the runs finished on an earlier one travel in REPORT/runs (about 100 kB each) and
    are neither trained nor evaluated again; their figure stays, and the tables name the machine per run."""
    import dataclasses

    from train import study

    tiny = dataclasses.replace(study.PLANS["quick"], size=64, n_train=8, n_val=4, n_test=4, samples=4,
                               batch_size=2, widths={"n2n_unet": 8})
    monkeypatch.setitem(study.PLANS, "tiny", tiny)
    report = tmp_path / "report"
    study.run_study("tiny", tmp_path / "first", only="V-VI", log=lambda *_: None, report=report)
    results = json.loads((report / "results.json").read_text())
    kept = sorted(p.name for p in (report / "runs").iterdir())
    assert kept == sorted(results) and all(
        {f.name for f in (report / "runs" / k).iterdir()} == set(study.CARRIED) for k in kept)
    for k in kept:  # as if the first machine had been a card
        cache = report / "runs" / k / "test_eval.json"
        cache.write_text(json.dumps({**json.loads(cache.read_text()), "machine": "NVIDIA H200"}))
    fig = (report / "fig5_radial_line.png").read_bytes()
    said = []
    md = study.run_study("tiny", tmp_path / "second", only="V-VI", log=said.append, report=report).read_text()
    assert said[0] == f"2 finished runs taken from {report / 'runs'} (an earlier machine's); not trained again"
    assert not (tmp_path / "second" / "shards").exists() and not list((tmp_path / "second").rglob("*.pt"))
    assert json.loads((report / "results.json").read_text()) == results
    assert "Machine: NVIDIA H200." in md and "n2n_unet N2C" in md and "Not run yet" not in md
    assert (report / "fig5_radial_line.png").read_bytes() == fig and "fig5_radial_line.png" in md


def test_study_runs_end_to_end_and_resumes(tmp_path, monkeypatch):
    import dataclasses

    from train import study

    tiny = dataclasses.replace(study.PLANS["quick"], size=64, n_train=8, n_val=4, n_test=4, samples=4,
                               batch_size=2, widths={"n2n_unet": 8})
    monkeypatch.setitem(study.PLANS, "tiny", tiny)
    path = study.run_study("tiny", tmp_path / "s", only="V-VI", log=lambda *_: None)
    md = path.read_text()
    assert "## Tables V-VI: radial_line" in md and "n2n_unet N2C" in md and "n2n_unet N2N" in md
    assert (tmp_path / "s" / "fig5_radial_line.png").exists()
    results = json.loads((tmp_path / "s" / "results.json").read_text())
    assert set(results) == {"radial_line-n2n_unet-n2c-linear-l1", "radial_line-n2n_unet-n2n-linear-l1"}
    mtime = (tmp_path / "s" / "runs" / "radial_line-n2n_unet-n2n-linear-l1" / "best.pt").stat().st_mtime
    study.run_study("tiny", tmp_path / "s", only="V-VI", log=lambda *_: None)
    assert (tmp_path / "s" / "runs" / "radial_line-n2n_unet-n2n-linear-l1" / "best.pt").stat().st_mtime == mtime
    assert json.loads((tmp_path / "s" / "results.json").read_text()) == results, "a rerun skips finished runs"
    # shards made by another version are refused with what to do, not a traceback (once a run needs them)
    (tmp_path / "s" / "runs" / "radial_line-n2n_unet-n2n-linear-l1" / "test_eval.json").unlink()
    manifest = tmp_path / "s" / "shards" / "radial_line" / "train" / "manifest.json"
    m = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**m, "package_version": "0.1.0", "fingerprint": "from 0.1.0"}))
    monkeypatch.setitem(study.PLANS, "quick", tiny)  # the command line's --quick, at the tiny size
    r = CliRunner().invoke(main, ["study", "--quick", "--only", "V-VI", "--out", str(tmp_path / "s"),
                                  "--report", str(tmp_path / "r")])
    assert r.exit_code != 0 and "Traceback" not in r.output and r.exc_info[0] is SystemExit
    assert "synth 0.1.0 (now" in r.output and "delete" in r.output and "radial_line" in r.output
