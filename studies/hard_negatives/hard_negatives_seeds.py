"""Does --hard-negatives 0.25 help the detectors trained on real clean scans, beyond seed noise?

`just hard-negatives-seeds` trains, per kind and seed, the real-background detector of "Twice the windows
on real backgrounds" (16,384 windows of 128 px, width 16) with and without `--hard-negatives 0.25`, sweeps
each on the real scans (`train check-real --sweep`) and compares them on the annotations pasted on held-out
real tissue (`train compare`), and sweeps the ensemble of all seeds' runs (probabilities averaged). This
script only reads those reports and writes the side-by-side table,
one row per seed and the paired difference (with - without) over seeds:

    python studies/hard_negatives/hard_negatives_seeds.py --kinds radial_line vascular_flow body_marker --seeds 0 1 2 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # bench/common.py
from common import spread, table, write_summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).parent / "results" / "hard_negatives_seeds.md"
HARD = ", hard negatives 0.25"


def label(name: str, hard: bool) -> str:
    """A detector's label in `train compare`'s table (the recipe's --run LABEL)."""
    return name + (HARD if hard else "")


def load(kind: str, report: str) -> dict:
    """A report's json under reports/quality/KIND/real_backgrounds/."""
    path = ROOT / "reports/quality" / kind / "real_backgrounds" / report
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `just hard-negatives-seeds` (it writes it) first.")
    return json.loads(path.read_text())


def counts(sweep: dict, compared: dict | None) -> dict:
    """One detector's figures: its sweep (operating_point.json) and its `train compare` entry, if any."""
    own, chosen = sweep["held_out"]["own"], sweep["held_out"]["chosen"]
    fan = sweep["held_out_clean_flagged_in_fan"]
    return {
        "dice": compared["dice"]["mean"] if compared else None,
        "own_found": own[0], "own_flagged": own[2], "own_fan": fan["own"],
        "found": chosen[0], "flagged": chosen[2], "fan": fan["chosen"],
        "point": f"{sweep['threshold']:g} / {sweep['min_area']}", "n_overlays": own[1], "n_clean": own[3],
    }


def row(name, hard: bool, c: dict) -> list:
    return [
        name, "with" if hard else "without", "" if c["dice"] is None else f"{c['dice']:.3f}",
        f"{c['own_found']} / {c['own_flagged']} / {c['own_fan']}", f"{c['found']} / {c['flagged']} / {c['fan']}",
        c["point"],
    ]


def kind_section(kind: str, seeds: list[int]) -> str:
    dice = load(kind, "hard_negatives_seeds/table.json")
    rows, pairs = [], {"without": [], "with": []}
    for seed in seeds:
        for hard in (False, True):
            hn = "_hardneg" if hard else ""
            sweep = load(kind, f"sweep_real_trained_2x{hn}_seed{seed}/operating_point.json")
            c = counts(sweep, dice[label(f"seed {seed}", hard)])
            pairs["with" if hard else "without"].append(c)
            rows.append(row(seed, hard, c))
    for hard in (False, True):  # all seeds as one detector: train check-real --checkpoint A --checkpoint B ...
        hn, name = "_hardneg" if hard else "", label(f"all {len(seeds)} seeds averaged", hard)
        c = counts(load(kind, f"sweep_ensemble_{len(seeds)}seeds{hn}/operating_point.json"), dice.get(name))
        rows.append(row(f"all {len(seeds)}, averaged", hard, c))
    n_over, n_clean = pairs["with"][0]["n_overlays"], pairs["with"][0]["n_clean"]
    summary = []
    for key, name, fmt in (
        ("dice", "Dice on held-out real tissue", ".3f"),
        ("own_found", f"own point: overlays found (of {n_over})", ".1f"),
        ("own_flagged", f"own point: clean scans flagged (of {n_clean})", ".1f"),
        ("found", f"picked point: overlays found (of {n_over})", ".1f"),
        ("flagged", f"picked point: clean scans flagged (of {n_clean})", ".1f"),
        ("fan", f"picked point: flagged inside the fan (of {n_clean})", ".1f"),
    ):
        a = [c[key] for c in pairs["without"]]
        b = [c[key] for c in pairs["with"]]
        diff = [y - x for x, y in zip(a, b)]
        summary.append([name, spread(a, fmt), spread(b, fmt), spread(diff, fmt, sign=True)])
    return "\n\n".join([
        f"## {kind}",
        table(["seed", "hard negatives", "Dice", "own point: found / flagged / in fan",
               "picked point: found / flagged / in fan", "picked threshold / min area"], rows),
        f"Mean ± standard deviation over {len(seeds)} seeds; the last column pairs each seed's two runs:",
        table(["measure", "without", "with --hard-negatives 0.25", "with - without"], summary),
    ])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="+", default=["radial_line", "vascular_flow", "body_marker"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    args = ap.parse_args()
    write_summary(
        OUT,
        "Hard negatives on real-background detectors, over seeds",
        "Each run: `train run --mode seg --preset cpu --crop 128 --samples 16384 --seed S` on 4,096 annotations "
        "pasted on the 39 even-position real clean scans (`just real-backgrounds`' shards), with or without "
        "`--hard-negatives 0.25`. Dice: the 128 annotations pasted on the 39 odd-position clean scans, at the "
        "threshold each run picked on its phantom validation shards. Counts: the held-out half of the real "
        "scans (`train check-real --sweep`): overlays found / clean scans flagged / clean scans flagged inside the "
        "B-mode fan, at the run's own point and at the point picked on the other half. The \"averaged\" rows "
        "run all seeds' detectors as one (`--checkpoint` repeated: probabilities averaged, own threshold the mean "
        "of theirs; `train compare --run LABEL=A,B,...`).",
        (kind_section(k, args.seeds) for k in args.kinds),
    )


if __name__ == "__main__":
    main()
