"""Does --hard-negatives 0.25 help the detectors trained on real clean scans, beyond seed noise?

`just hard-negatives-seeds` trains, per kind and seed, the real-background detector of "Twice the windows
on real backgrounds" (16,384 windows of 128 px, width 16) with and without `--hard-negatives 0.25`, sweeps
each on the real scans (`train check-real --sweep`) and compares them on the annotations pasted on held-out
real tissue (`train compare`), and sweeps the ensemble of all seeds' runs (probabilities averaged). This
script only reads those reports and writes the side-by-side table,
one row per seed and the paired difference (with - without) over seeds:

    python bench/hard_negatives_seeds.py --kinds radial_line vascular_flow body_marker --seeds 0 1 2 3
"""

from __future__ import annotations

import argparse
import json
import statistics
from pathlib import Path

from common import machine, table

ROOT = Path(__file__).resolve().parent.parent
OUT = Path(__file__).parent / "results" / "hard_negatives_seeds.md"
HARD = ", hard negatives 0.25"


def label(seed: int, hard: bool) -> str:
    return f"seed {seed}" + (HARD if hard else "")


def sweep(kind: str, seed: int | None, hard: bool, n_seeds: int = 0) -> dict:
    """One run's sweep, or (seed None) the sweep of the ensemble of all n_seeds runs."""
    hn = "_hardneg" if hard else ""
    name = f"sweep_real_trained_2x{hn}_seed{seed}" if seed is not None else f"sweep_ensemble_{n_seeds}seeds{hn}"
    path = ROOT / "reports/quality" / kind / "real_backgrounds" / name / "operating_point.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `just hard-negatives-seeds` (it writes it) first.")
    return json.loads(path.read_text())


def counts(kind: str, seed: int, hard: bool, dice: dict) -> dict:
    s = sweep(kind, seed, hard)
    own, chosen = s["held_out"]["own"], s["held_out"]["chosen"]
    fan = s.get("held_out_clean_flagged_in_fan", {})
    return {
        "dice": dice[label(seed, hard)]["dice"]["mean"],
        "own_found": own[0], "own_flagged": own[2], "own_fan": fan.get("own"),
        "found": chosen[0], "flagged": chosen[2], "fan": fan.get("chosen"),
        "point": f"{s['threshold']:g} / {s['min_area']}", "n_overlays": own[1], "n_clean": own[3],
    }


def spread(values: list[float], fmt: str, sign: bool = False) -> str:
    """mean ± sample standard deviation; sign: write the mean with its sign (a difference)."""
    mean = format(statistics.mean(values), ("+" if sign else "") + fmt)
    return mean if len(values) < 2 else f"{mean} ± {format(statistics.stdev(values), fmt)}"


def kind_section(kind: str, seeds: list[int]) -> str:
    compare = ROOT / "reports/quality" / kind / "real_backgrounds" / "hard_negatives_seeds" / "table.json"
    if not compare.is_file():
        raise SystemExit(f"{compare} is missing: run `just hard-negatives-seeds` (it writes it) first.")
    dice = json.loads(compare.read_text())
    rows, pairs = [], {"without": [], "with": []}
    for seed in seeds:
        for hard in (False, True):
            c = counts(kind, seed, hard, dice)
            pairs["with" if hard else "without"].append(c)
            rows.append([
                seed, "with" if hard else "without", f"{c['dice']:.3f}",
                f"{c['own_found']} / {c['own_flagged']} / {c['own_fan']}",
                f"{c['found']} / {c['flagged']} / {c['fan']}", c["point"],
            ])
    for hard in (False, True):  # all seeds as one detector: train check-real --checkpoint A --checkpoint B ...
        e = sweep(kind, None, hard, len(seeds))
        own, chosen, fan = e["held_out"]["own"], e["held_out"]["chosen"], e["held_out_clean_flagged_in_fan"]
        ens = dice.get(f"all {len(seeds)} seeds averaged" + (HARD if hard else ""))
        rows.append([
            f"all {len(seeds)}, averaged", "with" if hard else "without", f"{ens['dice']['mean']:.3f}" if ens else "",
            f"{own[0]} / {own[2]} / {fan['own']}", f"{chosen[0]} / {chosen[2]} / {fan['chosen']}",
            f"{e['threshold']:g} / {e['min_area']}",
        ])
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
    text = "\n\n".join([
        "# Hard negatives on real-background detectors, over seeds",
        "Each run: `train run --mode seg --preset cpu --crop 128 --samples 16384 --seed S` on 4,096 annotations "
        "pasted on the 39 even-position real clean scans (`just real-backgrounds`' shards), with or without "
        "`--hard-negatives 0.25`. Dice: the 128 annotations pasted on the 39 odd-position clean scans, at the "
        "threshold each run picked on its phantom validation shards. Counts: the held-out half of the real "
        "scans (`train check-real --sweep`): overlays found / clean scans flagged / clean scans flagged inside the "
        "B-mode fan, at the run's own point and at the point picked on the other half. The \"averaged\" rows "
        "run all seeds' detectors as one (`--checkpoint` repeated: probabilities averaged, own threshold the mean "
        "of theirs; `train compare --run LABEL=A,B,...`).",
        f"Machine: {machine()}.",
        *(kind_section(k, args.seeds) for k in args.kinds),
    ]) + "\n"
    OUT.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
