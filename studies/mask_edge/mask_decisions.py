"""Can a better decision rule, rather than a better detector, lift a detector's Dice?

For a trained `seg` detector and restoration fillers (n2n/n2c), on a validation and a held-out test shard
set, this scores three test-time rules against the detector's own (probability >= its threshold):

- refine: the detector's mask grown by r px, cut to the pixels where the filler changed the input by at
  least t grey levels (the shard's MASK RULE applied to the filler's output, only near the detector's finds);
- union: the detector's mask plus the grown band's pixels where the filler changed the input by >= t;
- expected Dice: per image, the top-k pixels by probability with k chosen to maximise the expected Dice
  under the detector's probabilities (softened by a temperature T), instead of one fixed threshold.

Every parameter is picked on the validation shards and the pick is reported on the test shards.

    python studies/mask_edge/mask_decisions.py --kind radial_line --seg out/gpu_dice/radial_line/runs/seg/weights.pt \
        --fill N2N=out/gpu/radial_line/runs/n2n/weights.pt --fill N2C=out/gpu/radial_line/runs/n2c/weights.pt \
        --val out/quality/radial_line/shards/val --test out/quality/radial_line/shards/test
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
from torch.utils.data import DataLoader

from train import metrics as M
from train.data import EVAL_FIELDS, ShardStream
from train.evaluate import dilate
from train.infer import filler_from_checkpoint, predictor_from_checkpoint

OUT = Path(__file__).parent / "results" / "mask_decisions.md"


def outputs(seg, fillers: dict, shards: str) -> dict[str, np.ndarray]:
    """prob (n, H, W), res_LABEL (n, H, W) = max-channel |input - filler output|, truth (n, H, W) bool."""
    got: dict[str, list] = {"prob": [], "truth": [], **{f"res_{k}": [] for k in fillers}}
    for batch in DataLoader(ShardStream(shards, EVAL_FIELDS, shuffle=False), batch_size=8):
        inp = batch["noisy_a"].permute(0, 2, 3, 1).numpy().astype(np.float32)
        got["prob"].append(seg(batch["noisy_a"]))
        for k, f in fillers.items():
            got[f"res_{k}"].append(np.abs(inp - f(batch["noisy_a"])).max(-1))
        got["truth"].append(batch["mask"].numpy() > 0)
    return {k: np.concatenate(v) for k, v in got.items()}


def expected_dice_mask(p: np.ndarray) -> np.ndarray:
    """The top-k pixels by probability, k maximising 2 * sum(top-k p) / (k + sum(p)) (expected Dice,
    pixels taken as independent)."""
    flat = p.ravel()
    order = np.argsort(-flat)
    s = np.cumsum(flat[order])
    k = int(np.argmax(2 * s / (np.arange(1, len(s) + 1) + s[-1]))) + 1
    m = np.zeros(flat.shape, bool)
    m[order[:k]] = True
    return m.reshape(p.shape)


def mean_dice(d: dict, rule) -> float:
    return float(np.mean([M.dice(M.drop_small(rule(d, i)), d["truth"][i]) for i in range(len(d["truth"]))]))


def rules(fills: list[str], own: float) -> dict[str, list]:
    """name -> [(parameter text, rule(d, i) -> bool mask)] for every parameter tried."""
    def seg(d, i, t=own):
        return d["prob"][i] >= t

    def temper(p, temp):
        p = np.clip(p.astype(np.float64), 1e-6, 1 - 1e-6)
        return 1 / (1 + np.exp(-np.log(p / (1 - p)) / temp))

    out = {"detector, its own threshold": [(f"p >= {own:g}", seg)],
           "expected Dice per image": [(f"T {t:g}", lambda d, i, t=t: expected_dice_mask(temper(d["prob"][i], t)))
                                       for t in (0.5, 1.0, 1.5, 2.0)]}
    for k in fills:
        r = f"res_{k}"
        out[f"refine with {k}"] = [
            (f"p >= {st:g}, grown {g} px, change >= {t}",
             lambda d, i, st=st, g=g, t=t, r=r: dilate(seg(d, i, st), g) & (d[r][i] >= t))
            for st, g, t in itertools.product(sorted({0.3, 0.5, own}), (1, 2, 3), (4, 6, 8, 10))]
        out[f"union with {k}"] = [
            (f"grown {g} px, change >= {t}",
             lambda d, i, g=g, t=t, r=r: seg(d, i) | (dilate(seg(d, i), g) & (d[r][i] >= t)))
            for g, t in itertools.product((1, 2), (8, 16, 24))]
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--kind", required=True)
    ap.add_argument("--seg", required=True, help="the seg checkpoint")
    ap.add_argument("--fill", action="append", default=[], help="LABEL=CHECKPOINT of an n2n/n2c filler")
    ap.add_argument("--val", required=True)
    ap.add_argument("--test", required=True)
    ap.add_argument("--out", type=Path, default=OUT, help="markdown file; one section per kind is replaced or added")
    args = ap.parse_args()
    seg, meta = predictor_from_checkpoint(args.seg)
    seg.model.eval()
    fillers = {lab: filler_from_checkpoint(ck, meta) for lab, _, ck in (f.partition("=") for f in args.fill)}
    own = float(meta["threshold"])
    val, test = outputs(seg, fillers, args.val), outputs(seg, fillers, args.test)
    lines = [f"## {args.kind}", "", f"Detector `{args.seg}`; fillers: "
             + (", ".join(f"{k} `{v.partition('=')[2]}`" for k, v in zip(fillers, args.fill)) or "none")
             + f". Picked on `{args.val}` ({len(val['truth'])} images), reported on `{args.test}` "
             f"({len(test['truth'])} images).", "",
             "| rule | parameters picked on validation | validation Dice | test Dice |", "|---|---|---|---|"]
    for name, tries in rules(list(fillers), own).items():
        scored = [(mean_dice(val, rule), text, rule) for text, rule in tries]
        v, text, rule = max(scored, key=lambda s: s[0])
        lines.append(f"| {name} | {text} | {v:.4f} | {mean_dice(test, rule):.4f} |")
        print(lines[-1], flush=True)
    section = "\n".join(lines) + "\n"
    head = ("# Test-time mask rules against the detector's own threshold (`studies/mask_edge/mask_decisions.py`)\n\n"
            "Means over images; each rule's parameters picked on the validation shards.\n\n")
    old = args.out.read_text() if args.out.exists() else head
    parts = [p for p in old.split("\n## ")[1:] if not p.startswith(f"{args.kind}\n")]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(head + "".join("## " + p.rstrip("\n") + "\n\n" for p in parts) + section)


if __name__ == "__main__":
    main()
