"""`train study`: the plan covers the paper's tables; time boxes, resuming, and continuing elsewhere."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402
import shutil  # noqa: E402

import pytest  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from train.cli import main  # noqa: E402


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


def test_a_study_continues_from_its_out_folder_alone(tmp_path, monkeypatch):
    """What a study continues from is its --out folder (OUT/runs, kept by the user), not anything committed:
    with the report folder gone, a rerun of the same command trains nothing and writes the same results."""
    import dataclasses

    from train import study

    tiny = dataclasses.replace(study.PLANS["quick"], size=64, n_train=8, n_val=4, n_test=4, samples=4,
                               batch_size=2, widths={"n2n_unet": 8})
    monkeypatch.setitem(study.PLANS, "tiny", tiny)
    report = tmp_path / "report"
    study.run_study("tiny", tmp_path / "out", only="V-VI", log=lambda *_: None, report=report)
    results = json.loads((report / "results.json").read_text())
    shutil.rmtree(report)

    def no_training(*_, **__):
        pytest.fail("a finished run in OUT/runs was trained again")

    monkeypatch.setattr(study, "train_run", no_training)
    md = study.run_study("tiny", tmp_path / "out", only="V-VI", log=lambda *_: None, report=report).read_text()
    assert json.loads((report / "results.json").read_text()) == results
    assert "Not run yet" not in md and (report / "fig5_radial_line.png").exists()


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
