"""Does a comparison table match a committed reference within stated tolerances? (`train compare
--reference`, which the demo uses instead of overwriting its committed table.)"""

from __future__ import annotations

import json
from pathlib import Path

from train.report import HEADERS as NAMES  # the table's own column names

TOLERANCES = {"dice": 0.01, "iou": 0.01, "pixel_accuracy": 0.002, "ssim": 0.005, "psnr_hvsm": 1.0}
"""Largest |difference| of a row's mean that still matches: wider than the demo table's measured spread across
processors and library versions (docs/install.md, "What reproduces, and under what")."""



def compare_tables(table: dict, reference: dict, tolerances: dict = TOLERANCES) -> list[dict]:
    """One row per (model label, metric) of the reference: got, expected, tolerance, ok. A label or metric
    missing from `table` does not match."""
    rows = []
    for label, ref in reference.items():
        for metric, tol in tolerances.items():
            if metric not in ref:
                continue
            want = ref[metric]["mean"]
            got = table.get(label, {}).get(metric, {}).get("mean")
            ok = got is not None and abs(got - want) <= tol
            rows.append({"label": label, "metric": metric, "got": got, "want": want, "tolerance": tol, "ok": ok})
    return rows


def verdict(table_path: str | Path, reference_path: str | Path) -> tuple[bool, str]:
    """(matches, a few lines saying so and naming every metric out of tolerance)."""
    table = json.loads(Path(table_path).read_text())
    reference = json.loads(Path(reference_path).read_text())
    rows = compare_tables(table, reference)
    tol = "; ".join(f"{NAMES[m]} ±{t:g}{' dB' if m == 'psnr_hvsm' else ''}" for m, t in TOLERANCES.items())
    bad = [r for r in rows if not r["ok"]]
    if not bad:
        return True, (f"the table matches the reference {reference_path} within tolerances ({tol}): "
                      f"{len(rows)} values over {len(reference)} models.")
    lines = [f"the table DIFFERS from the reference {reference_path} (tolerances: {tol}):"]
    for r in bad:
        got = "missing" if r["got"] is None else f"{r['got']:.4f}"
        lines.append(f"  {r['label']} {NAMES[r['metric']]}: {got} vs {r['want']:.4f}")
    lines.append("  Under the locked environment (just setup) it matched on the development machines; other "
                 "library versions or processors move training results (README, Reproducibility).")
    return False, "\n".join(lines)
