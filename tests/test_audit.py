"""train audit: the per-kind inventory, the journal that makes it resumable, the CLI, and a colour-keyed
detector (a registry model with set weights) that the DICOM and review-page tests share."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from synth.kinds import CLASS_IDS  # noqa: E402
from synth.phantom import make_phantom  # noqa: E402
from train.audit import AuditConfig, inventory, read_journal, run_audit  # noqa: E402
from train.cli import main  # noqa: E402
from train.models import create_model  # noqa: E402
from train.rules import load_rules  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

KIND_RGB = {"body_marker": (255, 255, 0), "radial_line": (0, 255, 255), "vascular_flow": (255, 0, 0),
            "text": (0, 255, 0)}
"""The colour the colour-keyed detector reads as each kind."""


def colour_detector(path: Path, size_px: int = 128, threshold: float = 0.5, width: int = 8) -> Path:
    """Save a seg checkpoint (as `train run` writes one: model_config, weights, meta, norm) of an n2n_unet
    with a class per kind whose weights are set so that it labels pixels by colour: yellow body_marker, cyan
    radial_line, red vascular_flow, green text; grey is background (probability of annotation 0.17).

    Only the full-resolution decoder stage is used: its 3x3 convs see the input's RGB at the centre tap;
    everything else is zero, so the output at a pixel depends on that pixel's colour alone. width: the
    model's width (>= 5; 48 is the paper's), for benchmarks at a realistic cost."""
    torch.manual_seed(0)
    model = create_model("n2n_unet", in_channels=3, out_channels=len(CLASS_IDS) + 1, width=width)
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        a, b, c = model.dec_conv1a, model.dec_conv1b, model.dec_conv1c
        r, g, bl = a.in_channels - 3, a.in_channels - 2, a.in_channels - 1  # the input is concatenated last
        for k, (plus, minus) in enumerate([(r, bl), (g, bl), (r, g), (bl, r), (g, r), (bl, g)]):
            a.weight[k, plus, 1, 1], a.weight[k, minus, 1, 1] = 1.0, -1.0
        # u1 R-B, u2 G-B, u3 R-G, u4 B-R, u5 G-R, u6 B-G -> one score per colour, 2 on a saturated one
        scores = {"body_marker": {0: 1, 1: 1, 2: -2, 4: -2}, "radial_line": {3: 1, 4: 1, 5: -2, 1: -2},
                  "vascular_flow": {0: 1, 2: 1, 1: -2, 5: -2}, "text": {1: 1, 4: 1, 0: -2, 3: -2}}
        for j, kind in enumerate(CLASS_IDS):
            for k, w in scores[kind].items():
                b.weight[j, k, 1, 1] = w
            c.weight[CLASS_IDS[kind], j, 1, 1] = 4.0
        c.bias[0] = 3.0
    meta = {"mode": "seg", "kinds": list(CLASS_IDS), "class_ids": dict(CLASS_IDS), "image_size": [size_px, size_px],
            "resize": "letterbox", "norm": "linear", "threshold": threshold}
    torch.save({"model_config": model.model_config, "model": model.state_dict(), "meta": meta,
                "norm": {"mean": [0.0] * 3, "std": [1.0] * 3}}, path)
    return path


def paste(img: np.ndarray, kind: str, x: int, y: int, w: int, h: int) -> np.ndarray:
    """Draw a filled rectangle of `kind`'s colour (a stand-in annotation with a known box)."""
    out = img.copy()
    out[y:y + h, x:x + w] = KIND_RGB[kind]
    return out


def write_png(path: Path, rgb: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


@pytest.fixture(scope="module")
def detector(tmp_path_factory):
    return colour_detector(tmp_path_factory.mktemp("det") / "colour.pt")


@pytest.fixture(scope="module")
def scans(tmp_path_factory):
    """Six 128 px phantoms: clean, body marker, text, body marker + calipers, and two in research/."""
    root = tmp_path_factory.mktemp("scans")
    base = [make_phantom(seed, 128) for seed in range(6)]
    write_png(root / "a_clean.png", base[0])
    write_png(root / "b_marker.png", paste(base[1], "body_marker", 10, 12, 20, 14))
    write_png(root / "c_text.png", paste(base[2], "text", 70, 100, 40, 8))
    write_png(root / "d_marker_caliper.png", paste(paste(base[3], "body_marker", 90, 10, 16, 16),
                                                    "radial_line", 30, 60, 50, 3))
    write_png(root / "research" / "e_caliper.png", paste(base[4], "radial_line", 20, 40, 3, 40))
    write_png(root / "research" / "f_clean.png", base[5])
    return root


def test_the_colour_detector_finds_each_pasted_kind_with_its_box(detector, scans, tmp_path):
    out = tmp_path / "audit"
    r = run_audit(AuditConfig(out=str(out), checkpoints=(str(detector),)), [scans])
    assert r["images"] == 6 and r["files"] == 6 and r["unreadable"] == 0 and r["new"] == 6
    doc = json.loads((out / "audit.json").read_text())
    got = {Path(x["file"]).name: x for x in doc["images"]}
    assert got["a_clean.png"]["kinds"] == {} and got["f_clean.png"]["kinds"] == {}
    assert set(got["b_marker.png"]["kinds"]) == {"body_marker"}
    assert set(got["d_marker_caliper.png"]["kinds"]) == {"body_marker", "radial_line"}
    assert set(got["c_text.png"]["kinds"]) == {"text"}
    bm = got["b_marker.png"]["kinds"]["body_marker"]
    assert bm["count"] == 1 and bm["confidence"] > 0.9
    x, y, w, h = bm["boxes"][0]
    assert abs(x - 10) <= 1 and abs(y - 12) <= 1 and abs(w - 20) <= 2 and abs(h - 14) <= 2
    assert abs(bm["area_px"] - 20 * 14) <= 40
    assert r["kinds"] == {"body_marker": 2, "radial_line": 2, "vascular_flow": 0, "text": 1}
    # the CSV has a row per image and the per-kind columns
    lines = (out / "audit.csv").read_text().splitlines()
    assert len(lines) == 7 and "body_marker_boxes" in lines[0]
    # every record's previews exist
    for rec in doc["images"]:
        for suffix in (".t.jpg", ".b.jpg", ".m.png", ".a.jpg"):
            assert (out / "media" / (rec["id"] + suffix)).is_file()
    after = cv2.imread(str(out / "media" / (got["b_marker.png"]["id"] + ".a.jpg")))[..., ::-1]
    assert after[15:24, 13:27].astype(int).std(-1).mean() < 8, "the yellow marker is gone from the 'after' preview"


def test_boxes_are_in_the_scans_own_pixels_at_any_size(detector, tmp_path):
    big = paste(make_phantom(7, 256), "vascular_flow", 100, 40, 60, 30)  # the model runs at 128: scale 0.5
    write_png(tmp_path / "big.png", big)
    run_audit(AuditConfig(out=str(tmp_path / "a"), checkpoints=(str(detector),)), [tmp_path / "big.png"])
    rec = json.loads((tmp_path / "a" / "audit.json").read_text())["images"][0]
    x, y, w, h = rec["kinds"]["vascular_flow"]["boxes"][0]
    assert abs(x - 100) <= 2 and abs(y - 40) <= 2 and abs(w - 60) <= 3 and abs(h - 30) <= 3
    assert rec["width"] == 256 and abs(rec["annotated_px"] - 1800) <= 200


def test_inventory_labels_each_component_by_its_dominant_kind():
    probs = np.zeros((20, 20, 5), np.float32)
    probs[2:6, 2:8, 0], probs[2:6, 2:8, 1] = 0.9, 0.8  # a body marker
    probs[10:18, 10:12, 0], probs[10:18, 10:12, 4], probs[10:12, 10:12, 2] = 0.7, 0.6, 0.9  # text, a corner caliper
    labels, found = inventory(probs, list(CLASS_IDS), 0.5, 2, scale=0.5)
    assert set(found) == {"body_marker", "text"}
    assert found["body_marker"]["boxes"] == [[4, 4, 12, 8]] and found["body_marker"]["area_px"] == 24 * 4
    assert found["text"]["count"] == 1 and labels[11, 11] == 1 + list(CLASS_IDS).index("text")
    assert inventory(probs, list(CLASS_IDS), 0.95, 2, 1.0)[1] == {}


def test_rules_give_each_image_a_verdict_and_count_failures(detector, scans, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "marker everywhere"\nrequire = ["body_marker"]\n\n[[rule]]\n'
                     'name = "research export"\nmatch.path = "*research/*"\nforbid = ["radial_line", "text"]\n')
    out = tmp_path / "audit"
    r = run_audit(AuditConfig(out=str(out), checkpoints=(str(detector),)), [scans], load_rules(rules))
    by_rule = {x["rule"]: x for x in r["rules"]}
    assert by_rule["marker everywhere"] == {"rule": "marker everywhere", "line": 1, "matched": 6, "failed": 4}
    assert by_rule["research export"]["matched"] == 2 and by_rule["research export"]["failed"] == 1
    assert r["verdicts"] == {"pass": 2, "fail": 4, "unmatched": 0}
    got = {Path(x["file"]).name: x for x in json.loads((out / "audit.json").read_text())["images"]}
    assert got["e_caliper.png"]["failures"] == ["marker everywhere: missing body_marker",
                                                "research export: has radial_line (forbidden)"]
    assert got["b_marker.png"]["verdict"] == "pass"


def test_a_rerun_skips_audited_files_and_new_rules_only_rebuild_the_reports(detector, scans, tmp_path):
    out = tmp_path / "audit"
    cfg = AuditConfig(out=str(out), checkpoints=(str(detector),))
    first = run_audit(cfg, [scans / "research"])
    assert first["new"] == 2
    thumbs = {p: p.stat().st_mtime_ns for p in (out / "media").glob("*.t.jpg")}
    r = run_audit(cfg, [scans])
    assert r["skipped"] == 2 and r["new"] == 4 and r["images"] == 6
    assert all(p.stat().st_mtime_ns == t for p, t in thumbs.items()), "audited files are not redone"
    assert len((out / "journal.jsonl").read_text().splitlines()) == 6
    rules = tmp_path / "r.toml"
    rules.write_text('[[rule]]\nname = "no text"\nforbid = ["text"]\n')
    again = run_audit(cfg, [scans], load_rules(rules))
    assert again["new"] == 0 and again["verdicts"] == {"pass": 5, "fail": 1, "unmatched": 0}
    with pytest.raises(Exception, match="another detector or other settings"):
        run_audit(AuditConfig(out=str(out), checkpoints=(str(detector),), min_area=50), [scans])


def test_a_line_cut_by_a_kill_is_dropped_and_redone(detector, scans, tmp_path):
    out = tmp_path / "audit"
    cfg = AuditConfig(out=str(out), checkpoints=(str(detector),))
    run_audit(cfg, [scans / "research"])
    with open(out / "journal.jsonl", "ab") as f:
        f.write(b'{"file": "half a li')
    assert len(read_journal(out)) == 2
    assert (out / "journal.jsonl").read_bytes().endswith(b"\n")
    assert run_audit(cfg, [scans])["new"] == 4


def test_audit_resumes_after_sigkill(detector, scans, tmp_path):
    """A real kill: the CLI in a subprocess is killed once it has journaled a file; the rerun finishes the
    rest, and every file appears exactly once."""
    out = tmp_path / "audit"
    many = tmp_path / "many"
    for i in range(40):
        write_png(many / f"s{i:02d}.png", paste(make_phantom(100 + i, 128), "text", 5 + i, 60, 20, 6))
    cmd = [sys.executable, "-m", "train.cli", "audit", str(many), "--out", str(out), "--checkpoint", str(detector)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    journal = out / "journal.jsonl"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if journal.exists() and journal.read_bytes().count(b"\n") >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    n_before = len(read_journal(out))
    assert 3 <= n_before < 40, "killed mid-way"
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert f"{n_before} file(s) were audited before" in r.stdout
    files = [json.loads(line)["file"] for line in journal.read_text().splitlines()]
    assert sorted(files) == sorted(str(p) for p in many.glob("*.png"))
    assert "40 images from 40 files: 40 with annotation" in r.stdout


def test_cli_audit_runs_and_reports(detector, scans, tmp_path):
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "no calipers"\nforbid = ["radial_line"]\n')
    res = CliRunner().invoke(main, ["audit", str(scans), "--out", str(tmp_path / "o"), "--checkpoint", str(detector),
                                    "--rules", str(rules)])
    assert res.exit_code == 0, res.output
    assert "6 images from 6 files: 4 with annotation; 2 fail, 4 pass, 0 matched no rule." in res.output
    assert "no calipers: applied to 6, failed 2" in res.output
    assert (tmp_path / "o" / "index.html").is_file()


def test_cli_audit_user_mistakes_are_one_sentence(detector, scans, tmp_path):
    run = lambda *a: CliRunner().invoke(main, ["audit", *map(str, a)])
    r = run(tmp_path / "nope", "--out", tmp_path / "o", "--checkpoint", detector)
    assert r.exit_code == 1 and "no such file or folder" in r.output and "Traceback" not in r.output
    bad = tmp_path / "bad.toml"
    bad.write_text('[[rule]]\nname = "x"\nrequire = ["body_marker"]\nforbidd = ["text"]\n')
    r = run(scans, "--out", tmp_path / "o", "--checkpoint", detector, "--rules", bad)
    assert r.exit_code == 1 and "line 4" in r.output and "forbidd" in r.output
    r = run(scans, "--out", tmp_path / "o", "--checkpoint", tmp_path / "missing.pt")
    assert r.exit_code == 1 and "no such checkpoint file" in r.output
    notdcm = tmp_path / "junk" / "x.dcm"
    notdcm.parent.mkdir()
    notdcm.write_bytes(b"not a dicom file at all")
    r = run(notdcm.parent, scans, "--out", tmp_path / "o2", "--checkpoint", detector)
    assert r.exit_code == 1 and "x.dcm: not a DICOM file" in r.output and "Traceback" not in r.output


def test_without_checkpoint_the_shipped_detector_is_used_or_named(scans, tmp_path):
    from train.shipped import DETECTOR

    r = CliRunner().invoke(main, ["audit", str(scans), "--out", str(tmp_path / "o")])
    if DETECTOR.is_file():
        assert r.exit_code == 0, r.output
    else:
        assert r.exit_code == 1 and "no shipped model" in r.output and "--checkpoint" in r.output


def test_rules_naming_a_kind_the_detector_does_not_report_are_refused(scans, tmp_path):
    ckpt = torch.load(colour_detector(tmp_path / "c.pt"), weights_only=True)
    ckpt["meta"]["kinds"] = ["body_marker"]  # a detector that reports one kind
    torch.save(ckpt, tmp_path / "one.pt")
    rules = tmp_path / "rules.toml"
    rules.write_text('[[rule]]\nname = "ok"\nrequire = ["body_marker"]\n\n[[rule]]\nname = "t"\nforbid = ["text"]\n')
    r = CliRunner().invoke(main, ["audit", str(scans), "--out", str(tmp_path / "o"), "--checkpoint",
                                  str(tmp_path / "one.pt"), "--rules", str(rules)])
    assert r.exit_code == 1 and "line 5: rule 't' names text, which the detector does not find" in r.output
    assert not (tmp_path / "o" / "journal.jsonl").exists(), "refused before any scan is read"


def test_a_restoration_checkpoint_is_refused(detector, scans, tmp_path):
    ckpt = torch.load(detector, weights_only=True)
    ckpt["meta"]["mode"] = "n2n"
    torch.save(ckpt, tmp_path / "n2n.pt")
    r = CliRunner().invoke(main, ["audit", str(scans), "--out", str(tmp_path / "o"), "--checkpoint",
                                  str(tmp_path / "n2n.pt")])
    assert r.exit_code == 1 and "needs a seg detector" in r.output
