"""train: streaming data, every model in every mode, resume after a kill, eval and apply end to end."""

import json
import os
import signal
import subprocess
import sys
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from conftest import SHARDS_SIZE_PX as SIZE  # noqa: E402

from synth.build import BuildConfig, make_plan, run_build  # noqa: E402
from train.cli import LOSS_NAMES, MODEL_NAMES, main  # noqa: E402
from train.config import PRESETS, TrainConfig  # noqa: E402
from train.data import MODE_FIELDS, ShardStream  # noqa: E402
from train.loop import TrainError, load_checkpoint, train_run  # noqa: E402
from train.losses import LOSSES  # noqa: E402
from train.models import MODELS  # noqa: E402


def _cfg(shards, out, **kw):
    base = dict(shards=str(shards / "train"), out=str(out), preset="cpu", width=8, batch_size=2, samples=4,
                log_every=1, val_samples=4)
    return TrainConfig(**{**base, **kw})


def test_cli_choices_match_registries():
    assert set(MODEL_NAMES) == set(MODELS) and set(LOSS_NAMES) == set(LOSSES)


@pytest.mark.parametrize("model", sorted(MODELS))
@pytest.mark.parametrize("mode", ["n2n", "n2c", "seg"])
def test_every_model_trains_in_every_mode(shards, tmp_path, model, mode):
    width = None if model in ("fcn", "linknet") else 8
    encoder = {"fcn": "resnet50", "n2n_unet": None, "multiresunet": None}.get(model, "resnet18")
    r = train_run(_cfg(shards, tmp_path / "run", model=model, mode=mode, width=width, encoder=encoder, samples=4))
    assert r["steps"] == 2 and r["samples"] == 4
    ckpt = load_checkpoint(tmp_path / "run" / "last.pt")
    assert ckpt["model_config"]["name"] == model and ckpt["meta"]["mode"] == mode
    stats = [json.loads(x) for x in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert all(np.isfinite(s["loss"]) for s in stats if "loss" in s)


def test_validation_metrics_and_best_checkpoint(shards, tmp_path):
    r = train_run(_cfg(shards, tmp_path / "run", val_shards=str(shards / "val"), samples=8))
    assert set(r["val"]) >= {"dice", "iou", "pixel_accuracy", "ssim", "psnr_hvsm", "psnr"}
    assert (tmp_path / "run" / "best.pt").exists()
    lines = [json.loads(x) for x in (tmp_path / "run" / "stats.jsonl").read_text().splitlines()]
    assert any("val_dice" in x for x in lines)
    assert all({"step", "samples", "loss", "lr", "img_s", "data_wait"} <= set(x) for x in lines if "loss" in x)


def test_rerun_after_kill_matches_uninterrupted_run(shards, tmp_path):
    ref, killed = tmp_path / "ref", tmp_path / "killed"
    def cmd(out):
        return [sys.executable, "-m", "train.cli", "run", "--shards", str(shards / "train"), "--out", str(out),
                "--preset", "cpu", "--width", "8", "--batch-size", "2", "--samples", "32", "--ckpt-every", "1",
                "--log-every", "1"]

    # the uninterrupted reference runs the same way (a fresh process: same thread count, same kernels)
    r = subprocess.run(cmd(ref), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    proc = subprocess.Popen(cmd(killed), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while time.time() < deadline:
        if (killed / "last.pt").exists() and torch.load(killed / "last.pt", weights_only=True)["state"]["step"] >= 3:
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    step_at_kill = torch.load(killed / "last.pt", weights_only=True)["state"]["step"]
    assert 3 <= step_at_kill < 16, "the kill should land mid-run"
    r = subprocess.run(cmd(killed), capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "resuming" in r.stderr
    a, b = load_checkpoint(ref / "last.pt"), load_checkpoint(killed / "last.pt")
    assert a["state"]["step"] == b["state"]["step"] == 16
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


def test_time_limit_stops_checkpointed_and_a_rerun_ends_where_an_unstopped_run_ends(shards, tmp_path):
    """--time-limit stops a run mid-epoch with best.pt and last.pt but no result.json, says how to go on, and the
    rerun continues to the very weights of a run that was never stopped (the stop's validation draws nothing)."""
    ref = train_run(_cfg(shards, tmp_path / "ref", val_shards=str(shards / "val"), samples=12))
    args = ["run", "--shards", str(shards / "train"), "--val-shards", str(shards / "val"), "--out",
            str(tmp_path / "cut"), "--preset", "cpu", "--width", "8", "--batch-size", "2", "--samples", "12",
            "--val-samples", "4", "--log-every", "1"]
    r = CliRunner().invoke(main, [*args, "--time-limit", "1e-6"])
    assert r.exit_code == 0, r.output
    assert "stopped at the time limit" in r.output and "after 2 of 12 samples" in r.output
    assert "Rerun the same command" in r.output
    cut = tmp_path / "cut"
    assert (cut / "best.pt").exists() and not (cut / "result.json").exists()
    assert load_checkpoint(cut / "last.pt")["state"]["step"] == 1
    r = CliRunner().invoke(main, args)
    assert r.exit_code == 0 and "trained 6 steps (12 samples)" in r.output, r.output
    a, b = load_checkpoint(tmp_path / "ref" / "last.pt"), load_checkpoint(cut / "last.pt")
    assert a["state"]["step"] == b["state"]["step"] == 6 and a["state"]["epoch"] == b["state"]["epoch"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k
    assert json.loads((cut / "result.json").read_text())["val"]["dice"] == pytest.approx(ref["val"]["dice"])


def test_rerunning_a_finished_run_trains_nothing_and_keeps_its_result(shards, tmp_path):
    cfg = _cfg(shards, tmp_path / "run", val_shards=str(shards / "val"), samples=8)
    first = train_run(cfg)
    before = (tmp_path / "run" / "result.json").read_text()
    r = CliRunner().invoke(main, ["run", "--shards", cfg.shards, "--val-shards", cfg.val_shards, "--out", cfg.out,
                                  "--preset", "cpu", "--width", str(cfg.width), "--batch-size", str(cfg.batch_size),
                                  "--samples", "8", "--seed", str(cfg.seed), "--val-samples", "4", "--log-every", "1"])
    assert r.exit_code == 0, r.output
    assert "already trained" in r.output and "0/?" not in r.output and "resuming" not in r.output
    assert (tmp_path / "run" / "result.json").read_text() == before
    assert json.loads(before)["val"]["dice"] == pytest.approx(first["val"]["dice"])


def test_different_settings_in_run_dir_are_refused(shards, tmp_path):
    train_run(_cfg(shards, tmp_path / "run"))
    with pytest.raises(TrainError, match="different run"):
        train_run(_cfg(shards, tmp_path / "run", lr=0.5))


def test_seg_dice_per_image_is_a_different_run_and_seg_only(shards, tmp_path):
    """--seg-dice image trains (it changes the loss, so a batch-pooled run in the same folder is not
    resumed with it), and is refused with a restoration mode."""
    train_run(_cfg(shards, tmp_path / "run", mode="seg"))
    with pytest.raises(TrainError, match="different run"):
        train_run(_cfg(shards, tmp_path / "run", mode="seg", seg_dice="image"))
    r = train_run(_cfg(shards, tmp_path / "img", mode="seg", seg_dice="image"))
    assert r["steps"] == 2 and json.loads((tmp_path / "img" / "config.json").read_text())["seg_dice"] == "image"
    res = CliRunner().invoke(main, ["run", "--shards", str(shards / "train"), "--out", str(tmp_path / "n"),
                                    "--mode", "n2n", "--seg-dice", "image"])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert "does not apply to --mode n2n" in res.output


@pytest.mark.parametrize("mode", ["n2n", "seg"])
def test_eval_and_apply_from_the_cli(shards, tmp_path, mode):
    train_run(_cfg(shards, tmp_path / "run", samples=4, mode=mode))
    runner = CliRunner()
    r = runner.invoke(main, ["eval", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--shards",
                             str(shards / "val"), "--out", str(tmp_path / "ev"), "--save-examples", "2"])
    assert r.exit_code == 0, r.output
    rows = (tmp_path / "ev" / "per_image.csv").read_text().splitlines()
    assert len(rows) == 7 and rows[0].startswith("sample_id,dice,iou,pixel_accuracy,ssim,psnr,psnr_hvsm")
    assert (tmp_path / "ev" / "example_01.png").exists() and "psnr_hvsm" in (tmp_path / "ev" / "summary.md").read_text()
    # apply: any size and aspect, a folder with a bad file in it
    scans = tmp_path / "scans"
    scans.mkdir()
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (90, 150, 3), dtype=np.uint8)
    cv2.imwrite(str(scans / "wide.png"), img)
    (scans / "broken.png").write_bytes(b"nope")
    r = runner.invoke(main, ["apply", "--checkpoint", str(tmp_path / "run" / "best.pt"), str(scans), "--out",
                             str(tmp_path / "applied")])
    assert r.exit_code == 1 and "broken.png" in r.output and "Traceback" not in r.output
    cleaned = cv2.imread(str(tmp_path / "applied" / "wide.clean.png"))
    mask = cv2.imread(str(tmp_path / "applied" / "wide.mask.png"), cv2.IMREAD_GRAYSCALE)
    assert cleaned.shape == (90, 150, 3) and mask.shape == (90, 150)
    from train.evaluate import dilate
    outside = ~dilate(mask > 0)
    assert np.array_equal(cleaned[outside], img[outside]), "pixels outside the mask are untouched"
    assert "wide.png" in (tmp_path / "applied" / "apply.csv").read_text()


def test_bad_checkpoint_is_refused(tmp_path):
    bogus = tmp_path / "evil.pt"
    import pickle

    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    bogus.write_bytes(pickle.dumps(Evil(), protocol=2))  # torch.save's protocol: no warning about the protocol
    r = CliRunner().invoke(main, ["apply", "--checkpoint", str(bogus), str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "Traceback" not in r.output
    assert "can read safely" in r.output and "evil.pt" in r.output
    assert not marker.exists()  # the payload never ran


def test_fp16_on_cpu_is_refused(shards, tmp_path):
    if torch.cuda.is_available():
        pytest.skip("has CUDA")
    with pytest.raises(TrainError, match="fp16 needs a CUDA GPU"):
        train_run(_cfg(shards, tmp_path / "run", amp="fp16"))


def test_bf16_autocast_on_cpu_trains_the_same_model_and_keeps_float32_weights(shards, tmp_path):
    """--amp bf16 on a CPU: the losses track an fp32 run of the same seed (bf16 changes the arithmetic, not the
    model), and the checkpoint stores float32 weights, so `apply` and `eval` load it on any machine."""
    losses = {}
    for amp in ("off", "bf16"):
        r = train_run(_cfg(shards, tmp_path / amp, amp=amp, samples=8))
        assert r["steps"] == 4
        stats = [json.loads(x) for x in (tmp_path / amp / "stats.jsonl").read_text().splitlines()]
        losses[amp] = [s["loss"] for s in stats if "loss" in s]
    assert len(losses["bf16"]) == 4 and all(np.isfinite(losses["bf16"]))
    np.testing.assert_allclose(losses["bf16"], losses["off"], rtol=0.05)
    ckpt = load_checkpoint(tmp_path / "bf16" / "best.pt")
    assert ckpt["config"]["amp"] == "bf16"
    assert all(v.dtype == torch.float32 for v in ckpt["model"].values() if v.is_floating_point())


def test_torchrun_one_rank_ddp(shards, tmp_path):
    """`torchrun --nproc_per_node=1` runs the same command under DDP (gloo on the CPU)."""
    out = tmp_path / "ddp"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=1", "--master_port=29533", "-m",
           "train.cli", "run", "--shards", str(shards / "train"), "--out", str(out), "--preset", "cpu",
           "--width", "8", "--batch-size", "2", "--samples", "4"]
    r = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert r.returncode == 0, r.stderr[-2000:]
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["state"]["step"] == 2
    assert not any(k.startswith("module.") for k in ckpt["model"]), "checkpoints hold the unwrapped model"


def test_smn_normalisation_and_val_fraction(shards, tmp_path):
    """--norm smn reads the dataset mean/std once (kept in the run dir and checkpoint); --val-fraction
    holds out whole shards for validation."""
    out = tmp_path / "run"
    r = train_run(_cfg(shards, out, norm="smn", val_fraction=0.25, samples=4))
    stats = json.loads((out / "norm_stats.json").read_text())
    ckpt = load_checkpoint(out / "last.pt")
    assert ckpt["norm"] == {"mean": stats["mean"], "std": stats["std"]}
    assert all(0.0 < m < 1.0 for m in stats["mean"]) and all(0.0 < s < 1.0 for s in stats["std"])
    assert r["val"] and 0.0 <= r["val"]["dice"][0] <= 1.0
    with pytest.raises(TrainError, match="leaves no training shards"):
        train_run(_cfg(shards, tmp_path / "r2", val_fraction=0.99))


def test_zarr_shards_stream_like_hdf5(tmp_path):
    cfg = BuildConfig(kind="text", n=6, size_px=SIZE, shard_size=3, n_phantoms=2, fmt="zarr")
    run_build(make_plan(cfg), tmp_path / "z")
    ds = ShardStream(tmp_path / "z", MODE_FIELDS["seg"] + ("sample_id",), shuffle=False)
    items = list(ds)
    assert [int(x["sample_id"]) for x in items] == list(range(6))
    assert items[0]["mask"].shape == (SIZE, SIZE) and items[0]["noisy_a"].dtype == torch.uint8
    r = train_run(TrainConfig(shards=str(tmp_path / "z"), out=str(tmp_path / "run"), preset="cpu", width=8,
                              batch_size=2, samples=2, mode="seg"))
    assert r["steps"] == 1


def test_pair_boost_option_overrides_the_preset(shards, tmp_path):
    """`--pair-boost 0` turns the preset's pair weighting off, and the run records what it used."""
    for boost, expect in ((None, PRESETS["cpu"]["pair_boost"]), ("0", 0.0), ("4", 4.0)):
        out = tmp_path / f"run_{boost}"
        args = ["run", "--shards", str(shards / "train"), "--out", str(out), "--preset", "cpu", "--width", "8",
                "--batch-size", "2", "--samples", "2"] + (["--pair-boost", boost] if boost else [])
        r = CliRunner().invoke(main, args)
        assert r.exit_code == 0, r.output
        assert json.loads((out / "config.json").read_text())["pair_boost"] == expect
    bad = CliRunner().invoke(main, ["run", "--shards", str(shards / "train"), "--out", str(tmp_path / "x"),
                                    "--pair-boost", "-1"])
    assert bad.exit_code != 0 and "--pair-boost" in bad.output


def test_clip_grad_logs_the_norm_and_clips_only_above_it(shards, tmp_path):
    """--clip-grad NORM logs each window's largest gradient norm; a NORM above every step's norm trains to the
    very weights of an unclipped run, a small one to other weights. The presets do not clip, and a run made
    before the option existed resumes (it is left out of the identity at 0)."""
    def weights(out):
        return load_checkpoint(out / "last.pt")["model"]

    train_run(_cfg(shards, tmp_path / "plain", mode="seg"))
    assert json.loads((tmp_path / "plain" / "config.json").read_text())["clip_grad"] == 0.0
    assert "clip_grad" not in _cfg(shards, tmp_path / "plain").resolved().identity()
    train_run(_cfg(shards, tmp_path / "huge", mode="seg", clip_grad=1e9))
    train_run(_cfg(shards, tmp_path / "tiny", mode="seg", clip_grad=1e-3))
    norms = [json.loads(x)["grad_norm"] for x in (tmp_path / "huge" / "stats.jsonl").read_text().splitlines()
             if "grad_norm" in x]
    assert len(norms) == 2 and all(0 < g < 1e9 for g in norms)
    plain, huge, tiny = weights(tmp_path / "plain"), weights(tmp_path / "huge"), weights(tmp_path / "tiny")
    assert all(torch.equal(plain[k], huge[k]) for k in plain)
    assert not all(torch.equal(plain[k], tiny[k]) for k in plain)
    r = CliRunner().invoke(main, ["run", "--shards", str(shards / "train"), "--out", str(tmp_path / "x"),
                                  "--clip-grad", "-1"])
    assert r.exit_code != 0 and "--clip-grad" in r.output and "Traceback" not in r.output


def test_seg_soft_trains_on_one_softened_kind_and_says_where_it_cannot(shards, tmp_path):
    """--seg-soft trains a seg run (a different run from the hard-target one), is refused with a
    restoration mode, and says in one sentence why it cannot be used on mixed or unsoftened shards."""
    train_run(_cfg(shards, tmp_path / "run", mode="seg"))
    with pytest.raises(TrainError, match="different run"):
        train_run(_cfg(shards, tmp_path / "run", mode="seg", seg_soft=4.0))
    r = train_run(_cfg(shards, tmp_path / "soft", mode="seg", seg_soft=4.0))
    assert r["steps"] == 2 and json.loads((tmp_path / "soft" / "config.json").read_text())["seg_soft"] == 4.0
    with pytest.raises(TrainError, match="does not apply to --mode n2c"):
        train_run(_cfg(shards, tmp_path / "n2c", mode="n2c", seg_soft=4.0))
    for name, kw in (("mixed", dict(kind="mixed")), ("hard", dict(kind="body_marker", soften=False))):
        run_build(make_plan(BuildConfig(n=4, size_px=SIZE, shard_size=4, n_phantoms=2, **kw)), tmp_path / name)
        res = CliRunner().invoke(main, ["run", "--shards", str(tmp_path / name), "--out", str(tmp_path / f"r{name}"),
                                        "--mode", "seg", "--seg-soft", "4", "--preset", "cpu", "--width", "8",
                                        "--samples", "2", "--batch-size", "2"])
        assert res.exit_code != 0 and "Traceback" not in res.output, res.output
        assert ("one kind's shards" if name == "mixed" else "capture softening") in res.output


def test_full_skip_trains_n2n_unet_and_is_refused_elsewhere(shards, tmp_path):
    """--full-skip trains an n2n_unet whose checkpoint rebuilds the wider last stage (eval loads it), is a
    different run from the plain one, and is refused with one sentence for a model without that stage."""
    out = tmp_path / "fs"
    r = CliRunner().invoke(main, ["run", "--shards", str(shards / "train"), "--out", str(out), "--preset", "cpu",
                                  "--mode", "seg", "--width", "8", "--batch-size", "2", "--samples", "2",
                                  "--full-skip"])
    assert r.exit_code == 0, r.output
    ckpt = load_checkpoint(out / "best.pt")
    assert ckpt["model_config"]["full_skip"] is True
    assert ckpt["model"]["dec_conv1a.weight"].shape[1] == 2 * 8 + 3 + 8
    assert "full_skip" not in _cfg(shards, tmp_path / "plain").resolved().identity()
    assert _cfg(shards, out, full_skip=True).resolved().identity()["full_skip"] is True
    e = CliRunner().invoke(main, ["eval", "--checkpoint", str(out / "best.pt"), "--shards", str(shards / "val")])
    assert e.exit_code == 0, e.output
    bad = CliRunner().invoke(main, ["run", "--shards", str(shards / "train"), "--out", str(tmp_path / "x"),
                                    "--model", "unet", "--full-skip", "--samples", "2"])
    assert bad.exit_code != 0 and "--full-skip applies to n2n_unet" in bad.output and "Traceback" not in bad.output


@pytest.mark.parametrize("mode", ["seg", "n2n"])
def test_validation_runs_the_model_once_per_batch_with_the_same_result(shards, tmp_path, mode, monkeypatch):
    """The threshold sweep and the scoring share one forward pass per validation batch (Replay); the
    validation rows are those of running the model twice, which is what happens above VAL_CACHE_BYTES."""
    from torch.utils.data import DataLoader

    import train.loop
    from train.data import EVAL_FIELDS
    from train.evaluate import Replay, evaluate_batches, first_batches, sweep_thresholds
    from train.infer import predictor_from_checkpoint

    cached = train_run(_cfg(shards, tmp_path / "cached", mode=mode, val_shards=str(shards / "val"), samples=32))
    monkeypatch.setattr(train.loop, "VAL_CACHE_BYTES", 0)
    twice = train_run(_cfg(shards, tmp_path / "twice", mode=mode, val_shards=str(shards / "val"), samples=32))

    def val_lines(run):
        lines = (tmp_path / run / "stats.jsonl").read_text().splitlines()
        return [x for x in map(json.loads, lines) if "val_dice" in x]

    assert val_lines("cached") == val_lines("twice") and len(val_lines("cached")) >= 2
    assert cached["best"] == twice["best"]

    predictor, _ = predictor_from_checkpoint(tmp_path / "cached" / "best.pt")
    calls = []
    predictor.model.register_forward_hook(lambda *_: calls.append(1))
    stream = ShardStream(str(shards / "val"), (*EVAL_FIELDS, "sample_id"), shuffle=False)
    kept = first_batches(DataLoader(stream, batch_size=2), 5, 1 << 30)
    assert [len(b["noisy_a"]) for b in kept] == [2, 2, 2]  # the batches holding the first 5 samples
    replay = Replay(predictor, kept)
    sweep = sweep_thresholds(replay, kept, max_samples=5)
    rows, _ = evaluate_batches(replay, kept, threshold=min(sweep), max_samples=5)
    assert len(calls) == 3 and len(rows) == 5
    assert sweep == sweep_thresholds(predictor, kept, max_samples=5)
    assert rows == evaluate_batches(predictor, kept, threshold=min(sweep), max_samples=5)[0]
    assert first_batches(DataLoader(stream, batch_size=2), 5, SIZE * SIZE * 10) is None  # over the budget
    # the outputs are priced as Predictor returns them: 3 float32 per pixel for restoration, 1 for seg
    held = sum(v.nbytes for b in kept for v in b.values() if isinstance(v, torch.Tensor))
    seg_budget = held + sum(b["noisy_a"][:, 0].numel() for b in kept) * 4
    assert first_batches(DataLoader(stream, batch_size=2), 5, seg_budget, "seg") is not None
    assert first_batches(DataLoader(stream, batch_size=2), 5, seg_budget, "n2n") is None
