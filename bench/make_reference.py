"""A scan-level reference CSV for `train check-real --sweep --reference` from a dev set's manifest.

The manifest (e.g. ../shared/devdata/pumch_thyroid/manifest.csv) has one row per scan with `file`, `kinds`
(a semicolon list; `none` for a clean scan) and `colour`. The reference gets file (absolute, so it can be
written anywhere), annotated (yes/no), kinds and colour. In the PUMCH manifest `radial_line` means calipers
and `text` labels, the kinds `synth build` draws.

    .venv/bin/python bench/make_reference.py ../shared/devdata/pumch_thyroid/manifest.csv out/pumch_ref.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path


def manifest_to_reference(manifest: str | Path, out: str | Path, kinds: set[str] | None = None) -> dict[str, int]:
    """Write the reference CSV; returns counts {annotated, clean, skipped}. kinds: keep only clean scans and
    scans with at least one of these kinds (others are skipped)."""
    manifest = Path(manifest)
    with open(manifest, newline="", encoding="utf-8-sig") as f:
        rows = list(csv.DictReader(f))
    if not rows or "file" not in rows[0] or "kinds" not in rows[0]:
        sys.exit(f"{manifest}: needs the columns file and kinds.")
    counts = {"annotated": 0, "clean": 0, "skipped": 0}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    with open(out, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["file", "annotated", "kinds", "colour"])
        for r in rows:
            ks = [k.strip() for k in r["kinds"].split(";") if k.strip() and k.strip() != "none"]
            if kinds and ks and not kinds & set(ks):
                counts["skipped"] += 1
                continue
            w.writerow([(manifest.parent / r["file"]).resolve(), "yes" if ks else "no", ";".join(ks),
                        r.get("colour", "") if ks else ""])
            counts["annotated" if ks else "clean"] += 1
    return counts


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest", type=Path, help="manifest.csv with file, kinds (none = clean) and colour")
    ap.add_argument("out", type=Path, help="reference CSV to write")
    ap.add_argument("--kinds", default="", help="keep only scans with one of these kinds (comma list) and clean ones")
    a = ap.parse_args()
    counts = manifest_to_reference(a.manifest, a.out, {k for k in a.kinds.split(",") if k} or None)
    print(f"{a.out}: {counts['annotated']} annotated, {counts['clean']} clean, {counts['skipped']} skipped")


if __name__ == "__main__":
    main()
