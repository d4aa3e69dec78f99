"""Tests for synth.draw_icons: the procedurally drawn, committed annotation icon set."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from synth import draw_icons
from synth.icons import DEFAULT_ICON_DIR, INDEX_NAME, load_icon_set

REGENERATE = "regenerate it with `python -m synth.draw_icons --out assets/annotation_icons`"


@pytest.fixture(scope="module")
def drawn(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("icons")
    draw_icons.draw_default_icons(out)
    return out


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _index(root: Path) -> list[dict]:
    return json.loads((root / INDEX_NAME).read_text())["icons"]


def test_set_loads_with_expected_kinds(drawn):
    icons = load_icon_set(drawn)
    markers, calipers = icons.icons("body_marker"), icons.icons("radial_line")
    assert len(markers) >= 12
    glyphs = {i.meta["glyph"] for i in calipers}
    assert glyphs == {"+", "x"}
    assert {i.meta["style"] for i in calipers} == {"ge_standard", "ge_large", "mindray"}
    assert {i.meta["number"] for i in calipers} == {None, 1, 2, 3}
    assert {"breast_left", "breast_right", "thyroid", "kidney_left", "kidney_right"} <= {i.name for i in markers}


def test_icons_are_antialiased_rgba_and_tightly_cropped(drawn):
    for icon in load_icon_set(drawn).icons("body_marker") + load_icon_set(drawn).icons("radial_line"):
        rgba = icon.rgba
        assert rgba.dtype == np.uint8 and rgba.ndim == 3 and rgba.shape[2] == 4, icon.name
        alpha = rgba[..., 3]
        assert ((alpha > 0) & (alpha < 255)).any(), f"{icon.name}: alpha is not anti-aliased"
        for border in (alpha[0], alpha[-1], alpha[:, 0], alpha[:, -1]):
            assert border.any(), f"{icon.name}: not tightly cropped"


def test_body_markers_are_white_with_probe_bar_inside(drawn):
    for icon in load_icon_set(drawn).icons("body_marker"):
        h, w = icon.rgba.shape[:2]
        assert 30 <= max(h, w) <= 70, f"{icon.name}: {h}x{w} px"
        core = icon.rgba[icon.rgba[..., 3] == 255]
        assert len(core) and (core[:, :3] == 255).all(), f"{icon.name}: opaque pixels should be white"
        x, y, bw, bh = icon.meta["probe_bar"]
        assert 0 <= x and 0 <= y and x + bw <= w and y + bh <= h and max(bw, bh) >= 6
        assert (icon.rgba[y:y + bh, x:x + bw, 3] == 255).any()


def test_caliper_anchor_is_the_cross_centre(drawn):
    for icon in load_icon_set(drawn).icons("radial_line"):
        cy, cx = icon.meta["anchor"]
        h, w = icon.rgba.shape[:2]
        # Core coverage without the shadow: straight-alpha R times alpha (R is 255 in yellow and white).
        core = icon.rgba[..., 0].astype(float) * icon.rgba[..., 3] / 255**2
        # The cross is point-symmetric about its centre; the digit lies outside this window.
        half = min(cy, cx, h - 1 - cy, w - 1 - cx, icon.meta["span_px"] / 2)
        half = np.floor(half - cy % 1) + cy % 1  # so that cy +- half are pixel indices
        window = core[round(cy - half):round(cy + half) + 1, round(cx - half):round(cx + half) + 1]
        assert window.sum() > 10, icon.name
        assert np.abs(window - window[::-1, ::-1]).mean() < 0.02, icon.name


def test_ge_standard_plus_matches_measured_geometry(drawn):
    icon = next(i for i in load_icon_set(drawn).icons("radial_line") if i.name == "plus_ge_standard")
    yellow = (icon.rgba[..., 3] == 255) & (icon.rgba[..., 0] == 255) & (icon.rgba[..., 2] == 0)
    ys, xs = np.nonzero(yellow)
    assert xs.max() - xs.min() + 1 == 12 and ys.max() - ys.min() + 1 == 12  # tip to tip
    row = yellow[int(icon.meta["anchor"][0])]
    assert row.sum() == 8  # two 4 px arms with a 4 px gap
    shadow = (icon.rgba[..., 3] > 0) & (icon.rgba[..., :3].max(axis=2) == 0)
    assert shadow[-1].any() and shadow[:, -1].any() and not shadow[0].any()  # drop shadow at (+1, +1)


def test_drawing_is_deterministic(drawn, tmp_path):
    draw_icons.main(["--out", str(tmp_path)])
    assert _files(tmp_path) == _files(drawn)


def test_redraw_removes_stale_drawn_icons(tmp_path):
    draw_icons.draw_default_icons(tmp_path)
    stale = tmp_path / "body_marker" / "renamed_away.png"
    stale.write_bytes((tmp_path / "body_marker" / "heart.png").read_bytes())
    index = json.loads((tmp_path / INDEX_NAME).read_text())
    index["icons"].append({**index["icons"][0], "file": "body_marker/renamed_away.png", "name": "renamed_away"})
    (tmp_path / INDEX_NAME).write_text(json.dumps(index))
    draw_icons.draw_default_icons(tmp_path)
    assert not stale.exists()


def test_committed_assets_equal_a_fresh_draw(drawn):
    from conftest import drawing_cause

    committed = DEFAULT_ICON_DIR
    assert (committed / INDEX_NAME).is_file(), f"{committed} has no index; {REGENERATE}"
    assert sorted(_files(committed)) == sorted(_files(drawn)), f"icon files differ; {REGENERATE}"
    for old, new in zip(_index(committed), _index(drawn), strict=True):
        # Another OpenCV build may round an edge pixel differently: allow 1 px in the bar box.
        assert np.allclose(old.pop("probe_bar", 0), new.pop("probe_bar", 0), atol=1), drawing_cause(REGENERATE)
        assert old == new, f"{new['file']}: index entry differs; {drawing_cause(REGENERATE)}"
        a = cv2.imread(str(committed / old["file"]), cv2.IMREAD_UNCHANGED).astype(int)
        b = cv2.imread(str(drawn / new["file"]), cv2.IMREAD_UNCHANGED).astype(int)
        assert a.shape == b.shape and np.abs(a - b).max() <= 2, f"{new['file']} differs; {drawing_cause(REGENERATE)}"


def test_contact_sheet_shows_every_icon(drawn):
    icons = draw_icons.default_icons()[:5]
    sheet = draw_icons.contact_sheet(icons, zoom=2, cols=5)
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
    assert sheet.shape[1] % (2 * 5) == 0


def test_a_drawing_mismatch_names_its_cause(monkeypatch):
    from conftest import drawing_cause, locked_version

    locked = locked_version("opencv-python-headless")
    assert locked and locked.count(".") == 3
    assert "drawing code changed" in drawing_cause(REGENERATE) if cv2.__version__ == locked.rsplit(".", 1)[0] \
        else "just setup" in drawing_cause(REGENERATE)
    monkeypatch.setattr(cv2, "__version__", "5.1.0")  # what pip resolved on a machine without the lock
    text = drawing_cause(REGENERATE)
    assert "OpenCV 5.1.0 is installed" in text and locked in text and "just setup" in text
