"""The audit's review page: a static index.html (grid, filters, before / mask / after viewer) that opens from
disk, with the audit's records embedded in a script file (browsers refuse fetch() of local JSON)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

PAGE_DIR = Path(__file__).resolve().parent / "review_page"
"""index.html, review.js and review.css: copied into every audit folder as they are."""


def page_record(r: dict) -> dict:
    """The few fields the page needs of one audit record, with short keys (5,000 images: about 1 MB)."""
    d = r.get("dicom") or {}
    desc = " · ".join(v for v in (d.get("modality"), d.get("body_part"), d.get("study_description"),
                                  d.get("series_description")) if v)
    return {
        "i": r["id"], "f": r["rel"], "n": r["frame"], "w": r["width"], "h": r["height"],
        "t": r["thumb"],
        "v": r["verdict"], "r": r["failures"], "c": r["confidence"], "p": r["peak"], "d": desc,
        "k": {k: [v["count"], v["area_px"], v["confidence"]] for k, v in r["kinds"].items()},
    }


def write_review(out: str | Path, rows: list[dict], summary: dict, kinds: list[str],
                 colours: dict[str, tuple[int, int, int]], info: dict) -> Path:
    """Write OUT/index.html and OUT/review/{review.js, review.css, data.js} for the audit records `rows`
    (whose previews are in OUT/media). Returns the index.html path."""
    out = Path(out)
    (out / "review").mkdir(parents=True, exist_ok=True)
    data = {
        "summary": summary, "kinds": kinds, "colours": {k: list(c) for k, c in colours.items()},
        "detector": str(info.get("detector", "")), "threshold": info.get("threshold"), "rules": info.get("rules"),
        "generated": info.get("generated", ""), "images": [page_record(r) for r in rows],
    }
    text = "window.AUDIT = " + json.dumps(data, separators=(",", ":")).replace("</", "<\\/") + ";\n"
    tmp = out / "review" / "data.js.tmp"
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, out / "review" / "data.js")
    for name in ("review.js", "review.css"):
        shutil.copyfile(PAGE_DIR / name, out / "review" / name)
    shutil.copyfile(PAGE_DIR / "index.html", out / "index.html")
    return out / "index.html"
