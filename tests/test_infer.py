"""Inference: the validation threshold a run picks and `train eval` uses, threaded scoring, `train apply`
(filled masks, averaged detectors)."""

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import json  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402
from conftest import SHARDS_SIZE_PX as SIZE  # noqa: E402

from train.checkpoint import load_checkpoint  # noqa: E402
from train.cli import main  # noqa: E402
from train.data import EVAL_FIELDS, ShardStream  # noqa: E402
from train.evaluate import best_threshold  # noqa: E402
from train.metrics import SEG_THRESHOLD_GRID, THRESHOLD_GRID  # noqa: E402


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
