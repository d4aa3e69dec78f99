"""Do phantoms closer to real scans stop detectors flagging real clean scans?

`just phantom-chrome` trains, per kind and seed, the `quality` recipe's detector (4,096 phantom samples at
256 px, 128 px windows, width 16, 8,192 windows) on phantoms with the scanner's chrome (`synth build
--phantom-chrome`), and on phantoms with chrome plus crisp specular reflections and point echoes
(`--phantom-reflectors`), and sets them against the same recipe on plain phantoms (the hard-mask runs of
`just seg-soft`, same seeds): Dice on each kind of held-out phantom and on annotations pasted on held-out real
tissue (`train compare`), and on the real development scans the overlays found and the clean scans flagged
(`train check-real --sweep`: held-out half, at the run's own threshold and at the point picked on the other
half). This script only reads those reports and writes the summary:

    python studies/phantom_chrome/phantom_chrome.py --kinds radial_line body_marker --seeds 0 1 2 3 --seeds-1024 0 1
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # bench/common.py
from common import spread, table, write_summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).parent / "results" / "phantom_chrome.md"
TRAINED_ON = (("plain", "64 plain phantoms"), ("chrome", "64 chrome phantoms"),
              ("reflectors", "64 chrome + reflectors phantoms"), ("plain1024", "1,024 plain phantoms"),
              ("reflectors1024", "1,024 chrome + reflectors phantoms"))
TESTS = (("plain_test", "Dice, plain phantoms"), ("chrome_test", "Dice, chrome phantoms"),
         ("reflectors_test", "Dice, chrome + reflectors phantoms"), ("real_tissue", "Dice, real tissue"))


def _read(path: Path, what: str) -> dict:
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `just phantom-chrome` (it writes {what}) first.")
    return json.loads(path.read_text())


def _counts(values: list[list[int]]) -> str:
    """'found/total (pct) / flagged/total (pct)', summed over seeds."""
    found, total, flagged, clean = (sum(v[k] for v in values) for k in range(4))
    return f"{found}/{total} ({100 * found / total:.0f} %) / {flagged}/{clean} ({100 * flagged / clean:.0f} %)"


def _rows(rep: Path, tables: dict, variants, seeds_of) -> list[list[str]]:
    rows = []
    for key, trained_on in variants:
        seeds = seeds_of(key)
        names = [f"{key} phantoms, seed {s}" for s in seeds]
        sweeps = [_read(rep / f"sweep_{key}_s{s}" / "operating_point.json", "the real-scan sweeps") for s in seeds]
        rows.append([
            f"{trained_on} ({len(seeds)} seeds)",
            *(spread([tables[test][n]["dice"]["mean"] for n in names], ".3f") for test, _ in TESTS),
            _counts([sw["held_out"]["own"] for sw in sweeps]),
            _counts([sw["held_out"]["chosen"] for sw in sweeps]),
            ", ".join(f"{sw['threshold']:g}/{sw['min_area']}" for sw in sweeps),
        ])
    return rows


def kind_section(kind: str, seeds: list[int], seeds_1024: list[int]) -> str:
    rep = ROOT / "reports/quality" / kind / "phantom_chrome"
    tables = {test: _read(rep / test / "table.json", "the comparison tables") for test, _ in TESTS}
    headers = ["trained on", *(name for _, name in TESTS), "real scans, own point: found / clean flagged",
               "real scans, picked point: found / clean flagged", "picked threshold/min area"]
    every = _rows(rep, tables, TRAINED_ON, lambda key: seeds_1024 if key.endswith("1024") else seeds)
    paired = _rows(rep, tables, TRAINED_ON, lambda key: seeds_1024)
    listed = ", ".join(map(str, seeds)), ", ".join(map(str, seeds_1024))
    return "\n\n".join([
        f"## {kind}", f"All runs (seeds {listed[0]}; 1,024 phantoms: seeds {listed[1]}):", table(headers, every),
        f"Every variant on the same seeds ({listed[1]}):", table(headers, paired),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="+", default=["radial_line", "body_marker"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    ap.add_argument("--seeds-1024", nargs="+", type=int, default=[0, 1], help="seeds of the 1,024-phantom runs")
    args = ap.parse_args()
    write_summary(
        OUT,
        "Phantoms closer to real scans (scanner chrome, specular reflections), against plain phantoms",
        "Each detector: `train run --mode seg --preset cpu --crop 128 --samples 8192 --seed S` on 4,096 phantom "
        "samples at 256 px: plain, with `--phantom-chrome`, or with `--phantom-chrome --phantom-reflectors` "
        "(validation: the same plain phantom shards). "
        "Dice: 128 held-out samples (unseen phantoms of each kind, or annotations pasted on the 39 odd-position real "
        "clean scans), at the threshold each run picked on its validation shards; mean ± standard deviation over "
        f"seeds {', '.join(map(str, args.seeds))} ({', '.join(map(str, args.seeds_1024))} for the 1,024-phantom "
        "runs). Real scans: `train check-real --sweep` on the MMOTU development "
        "scans, held-out half (122 annotated scans with 303 colour-keyed overlays, 39 clean scans), counts summed "
        "over the seeds; the picked point is chosen on the other half. Per-run rows: "
        "reports/quality/KIND/phantom_chrome/.",
        (kind_section(k, args.seeds, args.seeds_1024) for k in args.kinds),
    )


if __name__ == "__main__":
    main()
