"""Do soft seg targets along the mask's edge (`train run --seg-soft LEVELS`) raise the detectors' Dice?

`just seg-soft` trains, per kind, level and seed, the `quality` recipe's detector (4,096 phantom samples at
256 px, 128 px windows, width 16, 8,192 windows) with `--seg-soft LEVELS` (0: the hard mask) and compares
them on the held-out test shards (`train compare`). This script only reads those tables and writes the
summary: mean ± standard deviation over seeds per level, and each level's paired difference from the hard
targets of the same seed:

    python studies/seg_soft/seg_soft.py --kinds radial_line body_marker --levels 0 2 4 8 --seeds 0 1 2 3
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))  # bench/common.py
from common import spread, table, write_summary  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = Path(__file__).parent / "results" / "seg_soft.md"
MEASURES = (("dice", "Dice", ".4f"), ("iou", "IoU", ".4f"), ("psnr_hvsm", "PSNR-HVS-M (inpainted)", ".2f"))


def kind_section(kind: str, levels: list[str], seeds: list[int]) -> str:
    path = ROOT / "reports/quality" / kind / "seg_soft" / "table.json"
    if not path.is_file():
        raise SystemExit(f"{path} is missing: run `just seg-soft {kind}` (it writes it) first.")
    runs = json.loads(path.read_text())

    def values(level: str, key: str) -> list[float]:
        return [runs[f"seg-soft {level}, seed {s}"][key]["mean"] for s in seeds]

    rows = []
    for level in levels:
        row = [level if float(level) else "0 (hard mask)"]
        for key, _, fmt in MEASURES:
            row.append(spread(values(level, key), fmt))
        hard, soft = values(levels[0], "dice"), values(level, "dice")
        row.append("" if level == levels[0] else spread([b - a for a, b in zip(hard, soft)], ".4f", sign=True))
        row.append(", ".join(f"{runs[f'seg-soft {level}, seed {s}']['threshold']:g}" for s in seeds))
        rows.append(row)
    headers = ["--seg-soft", *(name for _, name, _ in MEASURES), f"Dice - level {levels[0]}, paired", "thresholds"]
    return "\n\n".join([f"## {kind}", table(headers, rows)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kinds", nargs="+", default=["radial_line", "body_marker"])
    ap.add_argument("--levels", nargs="+", default=["0", "2", "4", "8"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2, 3])
    args = ap.parse_args()
    write_summary(
        OUT,
        "Soft seg targets along the mask's edge, over seeds",
        "Each run: `train run --mode seg --preset cpu --crop 128 --samples 8192 --seed S --seg-soft LEVELS` on "
        "4,096 phantom samples at 256 px (the `quality` recipe's detector). With LEVELS > 0 a pixel's target ramps "
        "from 0 to 1 as its change goes from LEVELS grey levels under the mask rule's cut (8) to LEVELS over it, near "
        "the mask only; 0 is the hard mask. Metrics: the 128 held-out test samples (unseen phantoms), at the "
        "threshold each run picked on its validation shards; mean ± standard deviation over "
        f"{len(args.seeds)} seeds (seeds {', '.join(map(str, args.seeds))}). Per-run rows: "
        "reports/quality/KIND/seg_soft/table.md.",
        (kind_section(k, args.levels, args.seeds) for k in args.kinds),
    )


if __name__ == "__main__":
    main()
