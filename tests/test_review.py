"""The audit's review page in a real headless browser (Debian's chromium driven by Playwright): counts, filters,
sorting, the before / mask / after viewer with keyboard navigation, 5,000 images, and a screenshot.

`python tests/test_review.py docs/img/review_page.png` remakes the docs' screenshot (phantoms only)."""

import json
import os
import shutil
import sys
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from test_audit import KIND_RGB, colour_detector, write_png  # noqa: E402

from synth.phantom import make_phantom  # noqa: E402
from train.audit import KIND_COLOURS, AuditConfig, run_audit  # noqa: E402
from train.review import write_review  # noqa: E402
from train.rules import load_rules  # noqa: E402

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]
ROOT = Path(__file__).resolve().parents[1]


def draw_marks(img: np.ndarray, kinds: list[str], rng: np.random.Generator) -> np.ndarray:
    """Scanner-like marks in the colours the colour-keyed detector reads: a body-marker pictogram (yellow),
    caliper crosses joined by a dotted line (cyan), a colour-flow patch (red), a text label (green)."""
    out = img.copy()
    h, w = out.shape[:2]
    u = w / 256
    for kind in kinds:
        c = KIND_RGB[kind]
        if kind == "body_marker":
            x, y = int(w - 60 * u), int(h - 60 * u)
            cv2.ellipse(out, (x + int(22 * u), y + int(22 * u)), (int(20 * u), int(15 * u)), 0, 180, 360, c,
                        max(1, int(2 * u)))
            cv2.rectangle(out, (x + int(rng.integers(5, 30) * u), y + int(18 * u)),
                          (x + int(rng.integers(31, 40) * u), y + int(24 * u)), c, -1)
        elif kind == "radial_line":
            p = np.array([rng.integers(60, 120), rng.integers(80, 150)]) * u
            q = p + np.array([rng.integers(40, 90), rng.integers(-30, 30)]) * u
            for t in np.linspace(0, 1, 12):
                cv2.circle(out, tuple(int(v) for v in p + t * (q - p)), max(1, int(1.2 * u)), c, -1)
            for a in (p, q):
                ax, ay = int(a[0]), int(a[1])
                cv2.line(out, (ax - int(5 * u), ay), (ax + int(5 * u), ay), c, max(1, int(1.5 * u)))
                cv2.line(out, (ax, ay - int(5 * u)), (ax, ay + int(5 * u)), c, max(1, int(1.5 * u)))
        elif kind == "vascular_flow":
            x, y = int(rng.integers(70, 130) * u), int(rng.integers(90, 150) * u)
            cv2.ellipse(out, (x, y), (int(18 * u), int(7 * u)), float(rng.integers(0, 180)), 0, 360, c, -1)
        elif kind == "text":
            label = ["LT BREAST 2H", "RT THYROID", "LIVER SAG", "D 2.41 cm"][int(rng.integers(4))]
            cv2.putText(out, label, (int(8 * u), int(20 * u)), cv2.FONT_HERSHEY_SIMPLEX, 0.45 * u, c, max(1, int(u)),
                        cv2.LINE_AA)
    return out


DEMO = [[], ["body_marker"], ["text"], ["body_marker", "radial_line"], ["radial_line", "text"], ["vascular_flow"],
        ["body_marker", "text"], [], ["text", "vascular_flow"], ["body_marker"], [], ["radial_line"]]
"""Which marks each demo phantom carries (cycled)."""


def demo_archive(root: Path, n: int, size_px: int = 128) -> Path:
    """n phantoms with scanner-like marks under root/clinic and root/research (every third one)."""
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([7, i]))
        img = draw_marks(make_phantom(i, size_px), DEMO[i % len(DEMO)], rng)
        write_png(root / ("research" if i % 3 == 2 else "clinic") / f"scan_{i:03d}.png", img)
    return root


def audit_demo(tmp: Path, n: int = 12, size_px: int = 128) -> Path:
    """An audit folder of the demo archive with the example rules and a path rule of our own."""
    archive = demo_archive(tmp / "archive", n, size_px)
    write_png(archive / "clinic" / "x<b>y.png", make_phantom(99, size_px))  # a name the page must escape
    rules = tmp / "rules.toml"
    rules.write_text((ROOT / "docs" / "examples" / "rules.toml").read_text() +
                     '\n[[rule]]\nname = "clinic: body marker required"\nmatch.path = "*clinic/*"\n'
                     'require = ["body_marker"]\n')
    det = colour_detector(tmp / "colour.pt", size_px=size_px)
    out = tmp / "audit"
    run_audit(AuditConfig(out=str(out), checkpoints=(str(det),)), [archive], load_rules(rules),
              rules_path="rules.toml")
    return out


def launch(p):
    """Debian's chromium; skipped when absent (failed under REQUIRE_DEVDATA=1, as CI runs)."""
    if not CHROMIUM.exists():
        msg = f"{CHROMIUM} not found (apt-get install chromium)"
        if os.environ.get("REQUIRE_DEVDATA") == "1":
            pytest.fail(msg + " (REQUIRE_DEVDATA=1)")
        pytest.skip(msg)
    return p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)


@pytest.fixture(scope="module")
def audited(tmp_path_factory):
    return audit_demo(tmp_path_factory.mktemp("review"))


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = launch(p)
        yield b
        b.close()


def open_page(browser, folder: Path, width: int = 1280, height: int = 900):
    page = browser.new_page(viewport={"width": width, "height": height})
    errors = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto((folder / "index.html").as_uri())
    page.wait_for_selector("#grid .card")
    return page, errors


def test_the_page_counts_filters_sorts_and_opens_before_mask_after(audited, browser, tmp_path):
    doc = json.loads((audited / "audit.json").read_text())
    s = doc["summary"]
    n, v = s["images"], s["verdicts"]
    assert n == 13 and v["fail"] > 0 and v["pass"] > 0
    page, errors = open_page(browser, audited)
    assert page.inner_text("#count") == (f"showing {n} of {n} images · {v['fail']} fail · {v['pass']} pass · "
                                         f"{v['unmatched']} no rule")
    assert page.locator("#grid .card").count() == n
    assert page.locator("#grid .card img[loading=lazy]").count() == n
    assert "x<b>y.png" in page.inner_text("#grid"), "file names are shown as text"
    assert page.locator("#grid figcaption b").count() == 0
    page.screenshot(path=str(tmp_path / "grid.png"), full_page=True)

    page.select_option("#verdict", "fail")
    assert page.locator("#grid .card").count() == v["fail"]
    assert page.locator("#grid .card.fail").count() == v["fail"]
    page.select_option("#kind", "text")
    both = [r for r in doc["images"] if r["verdict"] == "fail" and "text" in r["kinds"]]
    assert page.locator("#grid .card").count() == len(both) > 0
    page.select_option("#verdict", "")
    page.select_option("#kind", "@none")
    assert page.locator("#grid .card").count() == n - s["annotated"]
    page.select_option("#kind", "")

    page.select_option("#sort", "conf-desc")
    top = max(doc["images"], key=lambda r: (r["confidence"] * 2 + r["peak"]))
    assert Path(top["file"]).name in page.inner_text("#grid .card >> nth=0")

    page.click("#grid .card >> nth=0")
    page.wait_for_selector("#viewer:not([hidden])")
    page.wait_for_function("['before','mask','after'].every(id => document.getElementById(id).complete "
                           "&& document.getElementById(id).naturalWidth > 0)")
    assert page.inner_text("#vtitle").startswith(f"1 / {n} · ")
    assert top["id"] in page.get_attribute("#before", "src")
    page.screenshot(path=str(tmp_path / "viewer.png"))
    page.keyboard.press("ArrowRight")
    assert page.inner_text("#vtitle").startswith(f"2 / {n} · ")
    page.keyboard.press("ArrowLeft")
    page.keyboard.press("ArrowLeft")  # stays on the first
    assert page.inner_text("#vtitle").startswith(f"1 / {n} · ")
    page.keyboard.press("Escape")
    assert page.locator("#viewer").is_hidden()
    assert errors == []
    assert (tmp_path / "grid.png").stat().st_size > 10_000 and (tmp_path / "viewer.png").stat().st_size > 10_000


def test_five_thousand_images_render_a_page_at_a_time(audited, browser, tmp_path):
    """The page's own work for 5,000 records: cards are added as the grid scrolls, filters stay quick."""
    doc = json.loads((audited / "audit.json").read_text())
    out = tmp_path / "big"
    shutil.copytree(audited / "media", out / "media")
    rows = []
    for i in range(5000):
        r = dict(doc["images"][i % len(doc["images"])])
        r["rel"], r["file"] = f"archive/scan_{i:05d}.png", f"/data/archive/scan_{i:05d}.png"
        rows.append(r)
    summary = {**doc["summary"], "images": 5000, "files": 5000,
               "verdicts": {k: sum(r["verdict"] == k for r in rows) for k in ("pass", "fail", "unmatched")}}
    write_review(out, rows, summary, doc["kinds"], KIND_COLOURS, {"detector": "d", "threshold": 0.5})
    assert (out / "review" / "data.js").stat().st_size < 3_000_000
    t0 = time.perf_counter()
    page, errors = open_page(browser, out)
    first_s = time.perf_counter() - t0
    first = page.locator("#grid .card").count()
    assert 0 < first < 1000, "only the first pages of cards are built"
    assert page.inner_text("#count").startswith("showing 5000 of 5000 images")
    t0 = time.perf_counter()
    page.select_option("#verdict", "fail")
    fails = summary["verdicts"]["fail"]
    page.wait_for_function(f"document.getElementById('count').textContent.startsWith('showing {fails} ')")
    filter_s = time.perf_counter() - t0
    page.select_option("#verdict", "")
    page.mouse.wheel(0, 200_000)
    page.wait_for_function(f"document.querySelectorAll('#grid .card').length > {first}")
    page.click("#grid .card >> nth=3")
    for _ in range(5):
        page.keyboard.press("ArrowRight")
    assert page.inner_text("#vtitle").startswith("9 / 5000")
    assert first_s < 10 and filter_s < 2, (first_s, filter_s)
    assert errors == []


def make_docs_screenshot(path: Path) -> None:
    """The docs' picture of the page: 24 phantoms at 256 px, the grid and the viewer side by side."""
    import tempfile

    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        out = audit_demo(Path(tmp), n=24, size_px=256)
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
            page = b.new_page(viewport={"width": 1280, "height": 800})
            page.goto((out / "index.html").as_uri())
            page.wait_for_selector("#grid .card")
            page.select_option("#sort", "conf-desc")
            page.wait_for_function("[...document.images].filter(i => i.getBoundingClientRect().top < 800)"
                                   ".every(i => i.complete)")
            page.screenshot(path=str(path.with_name(path.stem + "_grid.png")))
            page.click("#grid .card >> nth=1")
            page.wait_for_function("['before','mask','after'].every(id => document.getElementById(id).complete)")
            page.screenshot(path=str(path))
            b.close()
    grid, viewer = cv2.imread(str(path.with_name(path.stem + "_grid.png"))), cv2.imread(str(path))
    path.with_name(path.stem + "_grid.png").unlink()
    both = np.concatenate([grid, np.full((8, grid.shape[1], 3), 40, np.uint8), viewer], axis=0)
    both = cv2.resize(both, (both.shape[1] * 3 // 4, both.shape[0] * 3 // 4), interpolation=cv2.INTER_AREA)
    cv2.imwrite(str(path), both, [cv2.IMWRITE_PNG_COMPRESSION, 9])


if __name__ == "__main__":
    make_docs_screenshot(Path(sys.argv[1] if len(sys.argv) > 1 else "docs/img/review_page.png"))
