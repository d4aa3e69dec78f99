"""The ready model in the package: loads safely, is small, knows every kind, and is what apply and eval use
when no --checkpoint is given."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
import torch
from click.testing import CliRunner

from synth.annotate import annotate_folder
from synth.kinds import CLASS_IDS
from synth.phantom import export_phantoms
from train import shipped
from train.checkpoint import TrainError
from train.cli import main as train_main

MAX_MB = 10


def test_shipped_files_load_with_weights_only_and_are_small():
    for path in (shipped.DETECTOR, shipped.FILLER):
        assert path.is_file(), f"{path} is missing: `just release-model` makes it"
        assert path.stat().st_size < MAX_MB * 1e6
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        assert set(ckpt) == {"model_config", "model", "meta", "norm", "config"}  # no optimiser, no resume state
    det = torch.load(shipped.DETECTOR, map_location="cpu", weights_only=True)
    assert det["meta"]["mode"] == "seg" and sorted(det["meta"]["kinds"]) == sorted(CLASS_IDS)
    assert det["config"]["shards"].startswith("out/release/")  # trained on the recipe's phantom shards only
    assert torch.load(shipped.FILLER, map_location="cpu", weights_only=True)["meta"]["mode"] == "n2n"


def test_apply_without_checkpoint_uses_the_shipped_model(tmp_path):
    scans = export_phantoms(2, tmp_path / "scans", size_px=256, seed=3)
    annotate_folder(scans, "radial_line", tmp_path / "scans", tmp_path / "truth", seed=3)
    r = CliRunner().invoke(train_main, ["apply", str(tmp_path / "scans"), "--out", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    assert "the shipped detector" in r.output and "filler.pt" in r.output
    for name in ("phantom-00000", "phantom-00001"):
        clean = cv2.imread(str(tmp_path / "out" / f"{name}.clean.png"))
        assert clean.shape == (256, 256, 3)
    header = (tmp_path / "out" / "apply.csv").read_text().splitlines()[0]
    assert all(f"has_{k}" in header for k in CLASS_IDS)


def test_eval_without_checkpoint_uses_the_shipped_model(shards, tmp_path):
    r = CliRunner().invoke(train_main, ["eval", "--shards", str(shards / "val"), "--out", str(tmp_path / "ev"),
                                        "--max-samples", "2", "--save-examples", "0"])
    assert r.exit_code == 0, r.output
    assert "the shipped detector" in r.output and "dice" in r.output


def test_a_missing_shipped_model_says_what_to_do(tmp_path, monkeypatch):
    monkeypatch.setattr(shipped, "DETECTOR", tmp_path / "detector.pt")
    with pytest.raises(TrainError, match="no shipped model.*--checkpoint.*just release-model"):
        shipped.default_checkpoint()
    r = CliRunner().invoke(train_main, ["apply", str(tmp_path), "--out", str(tmp_path / "o")])
    assert r.exit_code != 0 and "no shipped model" in r.output and "Traceback" not in r.output


def test_model_card_matches_the_weights():
    from pathlib import Path

    card = Path(__file__).resolve().parents[1] / "docs" / "model_card" / "phantom_test" / "table.json"
    table = json.loads(card.read_text())
    assert table["detector"]["checkpoint"] == "train/weights/detector.pt"
    assert 0.0 < table["detector"]["dice"]["mean"] <= 1.0 and np.isfinite(table["detector+filler"]["psnr_hvsm"]["mean"])
