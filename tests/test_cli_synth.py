"""The `synth` command line: every command runs, and user mistakes get one clear sentence, no traceback."""

import json

import cv2
import h5py
import numpy as np
import pytest
from click.testing import CliRunner

from synth.cli import main

SMALL = ["--size", "96", "--phantoms", "3", "--shard-size", "4"]


def run(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    return result


def _user_error(result, *needles):
    assert result.exit_code != 0
    assert "Traceback" not in result.output and result.exc_info[0] is SystemExit, result.output
    for needle in needles:
        assert needle in result.output, result.output


def _clean_folder(tmp_path, n=3, corrupt=False):
    folder = tmp_path / "clean"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for k in range(n):  # grey 8-bit, RGB 16-bit, RGBA: all must be accepted
        if k % 3 == 0:
            img = rng.integers(0, 256, (60, 80), dtype=np.uint8)
        elif k % 3 == 1:
            img = rng.integers(0, 65536, (70, 50, 3), dtype=np.uint16)
        else:
            img = rng.integers(0, 256, (64, 64, 4), dtype=np.uint8)
        cv2.imwrite(str(folder / ("sub" if k else "") / f"scan{k}.png"), img)
    if corrupt:
        (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return folder


def test_build_inspect_verify_preview(tmp_path):
    out = tmp_path / "shards"
    r = run("build", "--type", "radial_line", "--n", 6, "--out", out, *SMALL)
    assert r.exit_code == 0, r.output
    assert "samples/s" in r.output or "samples built" in r.output
    r = run("inspect", out, "--verify", "--preview", tmp_path / "p.png", "--k", 3)
    assert r.exit_code == 0, r.output
    assert "shard-00000.h5" in r.output and "verified" in r.output
    png = cv2.imread(str(tmp_path / "p.png"))
    assert png is not None and png.shape[0] > 3 * 100 and png.shape[1] > 5 * 100


def test_inspect_reports_a_corrupt_shard(tmp_path):
    out = tmp_path / "shards"
    assert run("build", "--type", "text", "--n", 8, "--out", out, *SMALL).exit_code == 0
    path = out / "shard-00001.h5"
    data = bytearray(path.read_bytes())
    data[-100] ^= 0x01
    path.write_bytes(bytes(data))
    r = run("inspect", out, "--verify")
    _user_error(r, "shard-00001.h5", "checksum mismatch")
    assert "shard-00000.h5: checksum" not in r.output


def _digest_lines(path):
    r = run("inspect", path, "--digest")
    assert r.exit_code == 0, r.output
    return [line for line in r.output.splitlines() if "content sha256" in line or line.endswith((".h5", ".zarr"))]


def test_content_digest_is_the_same_for_any_format_and_codec(tmp_path):
    builds = {}
    for name, args in {"gzip": [], "lzf": ["--compression", "lzf"], "zarr": ["--format", "zarr"],
                       "seed1": ["--seed", 1]}.items():
        out = tmp_path / name
        assert run("build", "--type", "vascular_flow", "--n", 6, "--out", out, *SMALL, *args).exit_code == 0
        builds[name] = _digest_lines(out)
    digest = {name: lines[-1].split()[0] for name, lines in builds.items()}
    assert digest["gzip"] == digest["lzf"] == digest["zarr"] != digest["seed1"]
    assert len(digest["gzip"]) == 64
    # one line per shard before the set's line (6 samples in shards of 4: two shards), same per-shard digests
    assert len(builds["gzip"]) == 3 and builds["gzip"][0].endswith("shard-00000.h5")
    assert [line.split()[0] for line in builds["gzip"]] == [line.split()[0] for line in builds["zarr"]]
    # the files themselves differ, which is why the digest exists
    assert (tmp_path / "gzip" / "manifest.json").read_text() != (tmp_path / "lzf" / "manifest.json").read_text()


def test_inspect_refuses_what_is_not_a_shard_set(tmp_path):
    _user_error(run("inspect", tmp_path), "not a shard set")
    _user_error(run("inspect", tmp_path / "nothing"), "no such folder")


def test_build_from_a_clean_folder_of_mixed_formats(tmp_path):
    folder = _clean_folder(tmp_path, n=3)
    out = tmp_path / "s"
    r = run("build", "--type", "vascular_flow", "--n", 4, "--clean", folder, "--out", out, *SMALL)
    assert r.exit_code == 0, r.output
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["clean_sources"] == ["scan0.png", "sub/scan1.png", "sub/scan2.png"]
    with h5py.File(out / "shard-00000.h5") as f:
        assert f["clean"].shape == (4, 96, 96, 3)


def test_corrupt_clean_scan_is_named_and_skip_bad_counts_it(tmp_path):
    folder = _clean_folder(tmp_path, n=2, corrupt=True)
    r = run("build", "--type", "text", "--n", 2, "--clean", folder, "--out", tmp_path / "s", *SMALL)
    _user_error(r, "broken.jpg", "--skip-bad")
    r = run("build", "--type", "text", "--n", 2, "--clean", folder, "--out", tmp_path / "s", "--skip-bad", *SMALL)
    assert r.exit_code == 0, r.output
    assert "1 unreadable" in r.output and "broken.jpg" in r.output
    assert json.loads((tmp_path / "s" / "manifest.json").read_text())["clean_skipped"] == ["broken.jpg"]


@pytest.mark.parametrize("args,needles", [
    (["--clean", "{tmp}/missing"], ["missing", "no such folder"]),
    (["--clean", "{tmp}/empty"], ["empty", "no PNG/JPG/BMP/TIFF images"]),
    (["--n", "0"], ["--n must be at least 1"]),
    (["--type", "arrows"], ["arrows"]),
    (["--icons", "{tmp}/empty"], ["index.json"]),
    (["--part", "3/2"], ["--part"]),
])
def test_bad_build_input(tmp_path, args, needles):
    (tmp_path / "empty").mkdir()
    base = {"--type": "body_marker", "--n": "2"}
    extra = [a.replace("{tmp}", str(tmp_path)) for a in args]
    for k, v in base.items():
        if k not in extra:
            extra += [k, v]
    r = run("build", "--out", tmp_path / "out", *SMALL, *extra)
    _user_error(r, *[n.replace("{tmp}", str(tmp_path)) for n in needles])


def test_icon_folder_without_usable_icons(tmp_path):
    icons = tmp_path / "icons"
    (icons / "body_marker").mkdir(parents=True)
    cv2.imwrite(str(icons / "body_marker" / "flat.png"), np.full((8, 8, 3), 255, np.uint8))  # no alpha
    (icons / "index.json").write_text(json.dumps({"version": 1, "icons": [
        {"file": "body_marker/flat.png", "kind": "body_marker", "name": "flat"}]}))
    r = run("build", "--type", "body_marker", "--n", 2, "--icons", icons, "--out", tmp_path / "o", *SMALL)
    _user_error(r, "flat.png", "RGBA")


@pytest.mark.parametrize("option", ["--phantom-chrome", "--phantom-reflectors"])
def test_phantom_options_need_phantoms(tmp_path, option):
    folder = _clean_folder(tmp_path)
    r = run("build", "--type", "radial_line", "--n", 2, "--clean", folder, option, "--out", tmp_path / "o", *SMALL)
    _user_error(r, option, str(folder), f"leave {option} out")
    assert not (tmp_path / "o").exists()


def test_phantom_export(tmp_path):
    r = run("phantom", "--n", 3, "--out", tmp_path / "ph", "--size", 64)
    assert r.exit_code == 0, r.output
    pngs = sorted((tmp_path / "ph").glob("*.png"))
    assert len(pngs) == 3 and cv2.imread(str(pngs[0])).shape == (64, 64, 3)
    r = run("phantom", "--n", 4, "--out", tmp_path / "chrome", "--size", 128, "--chrome")
    assert r.exit_code == 0, r.output
    images = [cv2.imread(str(p)) for p in sorted((tmp_path / "chrome").glob("*.png"))]
    assert len(images) == 4 and any((im[..., 0] != im[..., 2]).any() for im in images)  # the chrome's colours
