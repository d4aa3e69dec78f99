"""`train check-real`: how a trained model does on real scans, where no truth mask exists.

Annotated scans: the reference is what `synth extract-icons` finds by colour keying (synth.extract.
find_annotations: caliper crosses, text labels, Doppler boxes; it finds 647 overlays in the 245 dev scans).
An overlay counts as found when at least FOUND_FRACTION of its pixels lie in the model's mask grown by
FOUND_REACH_PX. Clean scans: a scan is flagged when the model masks at least FLAG_FRACTION of it.
The colour-keyed reference misses white/grey marks, so "found" is a lower bound on what a model gets
right, and "off-reference" mask pixels on annotated scans are not all false alarms.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from synth.extract import fan_mask, find_annotations
from synth.images import ImageError, find_images, read_image, split_halves
from train import metrics as M
from train.checkpoint import TrainError
from train.evaluate import default_threshold, dilate, predicted_mask, threshold_grid, write_figure
from train.grow import GrowConfig, contrast_pixels, grow_image, grow_scores
from train.infer import checkpoint_label, checkpoint_paths, clean_image, load_predictor, predict_scaled, upscale_mask
from train.report import outline

FOUND_FRACTION = 0.3
"""Share of a reference overlay's pixels that must be masked for it to count as found. Not 1: the model
runs at its training scale (512 px or less on the long side), so masks come back up-scaled and thin
1 px lines are not covered pixel for pixel."""

FOUND_REACH_PX = 3
"""The model's mask is grown by this many full-resolution pixels before the overlap test (same reason)."""

FLAG_FRACTION = 0.0005
"""A scan is flagged when at least this fraction of its pixels (0.05 %, ~260 px of a 957x540 scan) is masked."""

FAN_INSET_PX = 10
"""'Inside the fan' is the B-mode fan (synth.extract.fan_mask) shrunk by this much: it leaves out the
scanner UI on the black frame (parameter text, logos, depth ticks, which are burned-in chrome rather than
annotations of the kinds trained here) and the fan's own rim."""


SWEEP_MIN_AREAS = (M.DEFAULT_MIN_AREA, 8, 16, 32, 64, 128, 256, 512)
"""Smallest mask component kept (pixels at the training scale) tried by `check-real --sweep`."""

MIN_POSITIVES = 20
"""`check-real --sweep` picks no operating point with fewer annotated scans than this in its scan-level
reference: with 3 the found rate moves in steps of 33 % and every point ties (issue 29)."""

MIN_NEGATIVES = 20
"""... nor with fewer clean scans than this: the false-flag rate could not be told from 0 below 1 in 20."""

MAX_FALSE_FLAG_RATE = 0.02
"""`check-real --sweep` default: the operating point may flag at most this share of the clean scans."""


@dataclass
class RealCheck:
    """Counts over one folder pair; by_kind: reference kind -> [found, total]."""

    annotated: int = 0
    annotated_with_reference: int = 0
    annotated_any_found: int = 0
    annotated_flagged: int = 0
    clean: int = 0
    clean_flagged: int = 0
    clean_flagged_in_fan: int = 0
    by_kind: dict[str, list[int]] = field(default_factory=dict)
    mask_on_reference_px: int = 0
    mask_px_annotated: int = 0
    clean_mask_fractions: list[float] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        d = dict(self.__dict__)
        fr = self.clean_mask_fractions
        d["clean_median_mask_fraction"] = float(np.median(fr)) if fr else 0.0
        d.pop("clean_mask_fractions")
        return d


def reference_mask(img: np.ndarray) -> tuple[np.ndarray, list[tuple[str, np.ndarray]]]:
    """(union of colour-keyed overlays, [(kind, that overlay's pixels)]) for one RGB scan."""
    h, w = img.shape[:2]
    union = np.zeros((h, w), bool)
    overlays = []
    for f in find_annotations(img).found:
        x, y, bw, bh = f.box
        m = np.zeros((h, w), bool)
        m[y:y + bh, x:x + bw] = f.rgba[..., 3] > 0
        union |= m
        overlays.append((f.kind, m))
    return union, overlays


def overlay_boxes(overlays: list[tuple[str, np.ndarray]]) -> list[tuple[str, tuple[slice, slice], np.ndarray, float]]:
    """[(kind, bounding box, the overlay's pixels inside it, pixels that must be masked for it to count
    as found)] for reference_mask's overlays, so that each test looks at the box only."""
    boxes = []
    for kind, m in overlays:
        ys, xs = np.nonzero(m)
        box = (slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1))
        boxes.append((kind, box, m[box], FOUND_FRACTION * len(ys)))
    return boxes


def overlays_found(mask: np.ndarray, boxes: list) -> list[bool]:
    """Per overlay of overlay_boxes: found by `mask` (grown by FOUND_REACH_PX)?"""
    grown = dilate(mask, FOUND_REACH_PX)
    return [bool((grown[box] & m).sum() >= need) for _kind, box, m, need in boxes]


def scan_fan(img: np.ndarray) -> np.ndarray:
    """The B-mode fan of an RGB scan shrunk by FAN_INSET_PX: where a mask is not on the scanner's frame."""
    return cv2.erode(fan_mask(cv2.cvtColor(img, cv2.COLOR_RGB2GRAY)).astype(np.uint8),
                     np.ones((2 * FAN_INSET_PX + 1,) * 2, np.uint8)).astype(bool)


def scan_files(annotated: str | Path | None, clean: str | Path | None, limit: int | None) -> list[tuple[str, Path]]:
    """[(label, file)] of the annotated then the clean folder (each sorted; the first `limit` of each)."""
    files = []
    for label, folder in (("annotated", annotated), ("clean", clean)):
        if folder is None:
            continue
        if not Path(folder).is_dir():
            raise TrainError(f"{folder}: no such folder of {label} scans.")
        found = find_images(folder)
        files += [(label, p) for p in (found[:limit] if limit else found)]
    if not files:
        raise TrainError("no PNG/JPG/BMP/TIFF scans in the folders given.")
    return files


def check_real(checkpoint: str | Path | list, annotated: str | Path | None, clean: str | Path | None, out: str | Path,
               panel_rows: int = 6, limit: int | None = None, progress=None, threshold: float | None = None,
               min_area: int = M.DEFAULT_MIN_AREA, grow: GrowConfig | None = None) -> RealCheck:
    """Apply a checkpoint to real annotated and clean scans; write real_check.md/.json, per_scan.csv and
    panel.png (input | cleaned with mask outlined | reference overlays) in `out`.
    threshold: default the one the run picked on its validation shards. checkpoint: one, or a list of seg
    checkpoints whose probabilities are averaged (load_predictor). grow: whole-mark growth of each mask
    (train.grow; None: none)."""
    predictor, meta = load_predictor(checkpoint)
    predictor.model.eval()
    threshold = meta.get("threshold") if threshold is None else threshold
    files = scan_files(annotated, clean, limit)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    res, rows, shown = RealCheck(), [], {"annotated": [], "clean": []}
    for k, (label, path) in enumerate(files):
        try:
            img = read_image(path)
        except (ImageError, OSError) as e:
            res.unreadable.append(f"{path}: {e}")
            continue
        cleaned, mask = clean_image(predictor, meta, img, threshold, min_area=min_area, grow=grow)
        frac = float(mask.mean())
        flagged = frac >= FLAG_FRACTION
        fan = scan_fan(img)
        frac_fan = float((mask & fan).sum() / mask.size)
        row = {"file": str(path), "label": label, "mask_fraction": round(frac, 6), "flagged": int(flagged),
               "mask_fraction_in_fan": round(frac_fan, 6), "flagged_in_fan": int(frac_fan >= FLAG_FRACTION)}
        if label == "annotated":
            ref, overlays = reference_mask(img)
            hits = 0
            for (kind, _m), hit in zip(overlays, overlays_found(mask, overlay_boxes(overlays))):
                res.by_kind.setdefault(kind, [0, 0])
                res.by_kind[kind][0] += int(hit)
                res.by_kind[kind][1] += 1
                hits += int(hit)
            res.annotated += 1
            res.annotated_with_reference += int(bool(overlays))
            res.annotated_any_found += int(hits > 0)
            res.annotated_flagged += int(flagged)
            res.mask_on_reference_px += int((mask & dilate(ref, FOUND_REACH_PX)).sum())
            res.mask_px_annotated += int(mask.sum())
            row.update(reference_overlays=len(overlays), found=hits)
        else:
            ref = None
            res.clean += 1
            res.clean_flagged += int(flagged)
            res.clean_flagged_in_fan += int(frac_fan >= FLAG_FRACTION)
            res.clean_mask_fractions.append(frac)
        rows.append(row)
        want = panel_rows - panel_rows // 3 if label == "annotated" else panel_rows // 3
        if len(shown[label]) < want and (label == "clean" or row.get("reference_overlays")):
            shown[label].append((img, cleaned, mask, ref))
        if progress:
            progress(k + 1, len(files))
    with open(out / "per_scan.csv", "w", newline="") as f:
        fields = ["file", "label", "mask_fraction", "flagged", "mask_fraction_in_fan", "flagged_in_fan",
                  "reference_overlays", "found"]
        w = csv.DictWriter(f, fieldnames=fields)
        w.writeheader()
        w.writerows(rows)
    (out / "real_check.json").write_text(json.dumps({"checkpoint": checkpoint_label(checkpoint), "threshold": threshold,
                                                      "min_area": min_area, "kinds": meta.get("kinds"),
                                                      "grow": grow.as_dict() if grow is not None else None,
                                                      **res.as_dict()}, indent=1))
    (out / "real_check.md").write_text(summary_markdown(res, checkpoint_label(checkpoint), meta.get("kinds", []),
                                                        threshold, min_area))
    examples = shown["annotated"] + shown["clean"]
    if examples:
        write_figure(out / "panel.png", panel(examples))
    return res


def summary_markdown(res: RealCheck, checkpoint: str, kinds: list[str], threshold: float | None = None,
                     min_area: int = M.DEFAULT_MIN_AREA) -> str:
    d = res.as_dict()
    lines = [f"# Real scans: `{checkpoint}` (trained on {', '.join(kinds) or '?'})", "",
             f"Operating point: threshold {threshold if threshold is not None else 'default'}, "
             f"smallest mask component kept {min_area} px (at the training scale).", "",
             f"Found = at least {FOUND_FRACTION:.0%} of a colour-keyed reference overlay's pixels masked (mask grown "
             f"{FOUND_REACH_PX} px); flagged = at least {FLAG_FRACTION:.2%} of the scan masked.", "",
             "| what | count |", "|---|---|",
             f"| annotated scans with a reference overlay in which the model found at least one | "
             f"{res.annotated_any_found} / {res.annotated_with_reference} |",
             f"| annotated scans flagged | {res.annotated_flagged} / {res.annotated} |",
             f"| clean scans flagged | {res.clean_flagged} / {res.clean} |",
             f"| clean scans flagged inside the fan ({FAN_INSET_PX} px in from its rim) | "
             f"{res.clean_flagged_in_fan} / {res.clean} |",
             f"| median masked fraction on clean scans | {d['clean_median_mask_fraction']:.3%} |",
             f"| masked pixels on annotated scans that lie on a reference overlay | "
             f"{res.mask_on_reference_px / max(1, res.mask_px_annotated):.1%} |"]
    for kind, (hit, total) in sorted(res.by_kind.items()):
        lines.append(f"| reference overlays found: {kind} | {hit} / {total} |")
    if res.unreadable:
        lines.append(f"| unreadable files skipped | {len(res.unreadable)} |")
    return "\n".join(lines) + "\n\n![real scans](panel.png)\n"


def panel(examples: list, height: int = 220) -> np.ndarray:
    """Rows of: input | cleaned with the model's mask outlined in red | reference overlays (white; grey
    background for clean scans, which have none)."""
    rows = []
    for img, cleaned, mask, ref in examples:
        s = height / img.shape[0]
        w = max(1, round(img.shape[1] * s))
        if ref is None:
            ref_img = np.full(img.shape, 60, np.uint8)
        else:
            ref_img = np.repeat(ref[..., None] * 255, 3, 2).astype(np.uint8)
        tiles = [img, outline(cleaned, dilate(mask, 1)), ref_img]
        tiles = [cv2.resize(t, (w, height), interpolation=cv2.INTER_AREA) for t in tiles]
        rows.append(np.concatenate([tiles[0], np.full((height, 4, 3), 255, np.uint8), tiles[1],
                                    np.full((height, 4, 3), 255, np.uint8), tiles[2]], axis=1))
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 4), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    header = np.full((22, width, 3), 255, np.uint8)
    cv2.putText(header, "input | cleaned, model mask in red | colour-keyed reference (grey: clean scan)", (4, 15),
                cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return np.concatenate([header, *rows], axis=0)


@dataclass(frozen=True)
class RefScan:
    """One scan of a scan-level reference: is it annotated (and with which kinds, in which colour)?"""

    file: Path
    annotated: bool
    kinds: tuple[str, ...] = ()
    colour: str = ""
    where: str = ""  # "ref.csv line 7" or the folder it came from


YES = ("yes", "y", "1", "true")
NO = ("no", "n", "0", "false")


def read_reference(path: str | Path) -> list[RefScan]:
    """A scan-level reference CSV: columns file, annotated (yes/no, 1/0, true/false), optional kinds (a
    semicolon list; `none` or empty for clean scans) and colour. Relative paths are read from the CSV's
    folder. A bad file raises TrainError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise TrainError(f"{path}: cannot read the reference CSV ({e}).") from None
    reader = csv.DictReader(io.StringIO(text))
    header = [(h or "").strip().lower() for h in reader.fieldnames or []]
    if "file" not in header or "annotated" not in header:
        raise TrainError(f"{path} line 1: the header must name the columns file and annotated (kinds and colour "
                         f"are optional); it names {', '.join(h for h in header if h) or 'nothing'}.")
    scans, seen = [], {}
    for raw in reader:
        line = reader.line_num
        row = {(k or "").strip().lower(): (v or "").strip() for k, v in raw.items() if isinstance(v, str)}
        if not any(row.values()):
            continue
        where = f"{path} line {line}"
        if not row.get("file"):
            raise TrainError(f"{where}: the file column is empty; give the scan's path (relative to {path.parent}).")
        value = row.get("annotated", "").lower()
        if value not in YES + NO:
            raise TrainError(f"{where}: annotated is {row.get('annotated', '')!r}; write yes/no, 1/0 or true/false.")
        kinds = tuple(k.strip() for k in row.get("kinds", "").split(";") if k.strip() and k.strip().lower() != "none")
        annotated = value in YES
        if kinds and not annotated:
            raise TrainError(f"{where}: annotated is {row['annotated']!r} but kinds lists {';'.join(kinds)}; "
                             f"a clean scan has no kinds (leave it empty or write none).")
        file = Path(row["file"])
        file = file if file.is_absolute() else path.parent / file
        if not file.is_file():
            raise TrainError(f"{where}: no scan at {file} (relative paths are read from the CSV's folder, "
                             f"{path.parent}).")
        key = file.resolve()
        if key in seen:
            raise TrainError(f"{where}: {row['file']} is listed twice (first on line {seen[key]}).")
        seen[key] = line
        scans.append(RefScan(file, annotated, kinds, row.get("colour", "").lower(), where))
    if not scans:
        raise TrainError(f"{path}: the reference lists no scans; one row per scan: file,annotated[,kinds].")
    return scans


def folder_reference(annotated: str | Path, clean: str | Path, limit: int | None = None) -> list[RefScan]:
    """The scan-level reference that --annotated and --clean folders are: every scan of the first annotated,
    of the second clean (the user sorted them)."""
    return [RefScan(p, label == "annotated", where=str(p.parent)) for label, p in scan_files(annotated, clean, limit)]


def reference_classes(scans: list[RefScan], detector_kinds: list[str] | None
                      ) -> tuple[list[RefScan], list[RefScan], list[RefScan]]:
    """(positives, negatives, left out) for the scan-level ROC. Negatives: clean scans. Positives: annotated
    scans, except those whose kinds (when the reference gives them and the detector's are known) share none
    with the kinds the detector was trained on: those are left out (a caliper detector is not asked to find
    text labels). Each list sorted by file."""
    detector = set(detector_kinds or ())
    pos, neg, out = [], [], []
    for s in sorted(scans, key=lambda s: str(s.file)):
        if not s.annotated:
            neg.append(s)
        elif s.kinds and detector and not detector & set(s.kinds):
            out.append(s)
        else:
            pos.append(s)
    return pos, neg, out


def check_reference_size(n_pos: int, n_neg: int, source: str, left_out: int = 0) -> None:
    """TrainError when the scan-level reference is too small to pick an operating point on."""
    if n_pos >= MIN_POSITIVES and n_neg >= MIN_NEGATIVES:
        return
    extra = f" ({left_out} annotated scans left out: none of their kinds is one the detector was trained on)" \
        if left_out else ""
    raise TrainError(f"no operating point picked: the scan-level reference ({source}) has {n_pos} annotated and "
                     f"{n_neg} clean scans{extra}, and picking one needs at least {MIN_POSITIVES} of each; tag more "
                     f"scans by hand in a --reference CSV (file,annotated[,kinds]).")


def roc_curve(pos: list[float], neg: list[float]) -> list[tuple[float, float, float]]:
    """[(cut, true-positive rate, false-positive rate)] for 'flag a scan when its score >= cut', from the
    strictest cut (inf: nothing flagged) to the loosest (every scan flagged)."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    cuts = [np.inf, *sorted(set(pos.tolist()) | set(neg.tolist()), reverse=True)]
    return [(float(c), float((pos >= c).mean()) if pos.size else 0.0, float((neg >= c).mean()) if neg.size else 0.0)
            for c in cuts]


def auc(pos: list[float], neg: list[float]) -> float:
    """Area under the ROC curve: the probability that a positive scores above a negative, ties counting
    half (Mann-Whitney U / (n_pos n_neg)). nan without positives or negatives."""
    pos, neg = np.asarray(pos, float), np.asarray(neg, float)
    if not pos.size or not neg.size:
        return float("nan")
    return float(((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (pos.size * neg.size))


def pick_point(tallies: dict[tuple[float, int], list[int]], max_false_flag_rate: float) -> tuple[float, int] | None:
    """The operating point (threshold, min area) that flags the most positives among those flagging at most
    max_false_flag_rate of the negatives; ties go to more colour-keyed overlays found, then to the looser point
    (lower threshold, then smaller min area). None when no point is that strict.
    tallies: point -> [positives flagged, positives, negatives flagged, negatives, overlays found, overlays]."""
    allowed = [p for p, c in tallies.items() if c[2] <= max_false_flag_rate * c[3] + 1e-9]
    if not allowed:
        return None
    return min(allowed, key=lambda p: (-tallies[p][0], -tallies[p][4], p[0], p[1]))


def largest_components(prob: np.ndarray, thresholds: tuple[float, ...]) -> dict[float, int]:
    """threshold -> pixels of the largest 8-connected component of prob >= threshold (0: none)."""
    out = {}
    for t in thresholds:
        m = (prob >= t).astype(np.uint8)
        if not m.any():
            out[t] = 0
            continue
        _n, _lab, stats, _ = cv2.connectedComponentsWithStats(m, connectivity=8)
        out[t] = int(stats[1:, cv2.CC_STAT_AREA].max())
    return out


def _rate(k: int, n: int) -> str:
    return f"{k} / {n} ({k / n:.0%})" if n else "0 / 0"


def write_roc_plot(path: Path, curves: dict[str, list[tuple[float, float, float]]], chosen: tuple[float, float] | None,
                   title: str) -> bool:
    """roc.png: one line per score (label -> roc_curve), the chosen point marked. matplotlib is imported here
    only (a dev extra); returns False without it."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, ax = plt.subplots(figsize=(4.6, 4.4), dpi=110)
    for label, roc in curves.items():
        ax.plot([f for _, _, f in roc], [t for _, t, _ in roc], drawstyle="steps-post", label=label)
    if chosen is not None:
        ax.plot([chosen[1]], [chosen[0]], "ko", label="picked point")
    ax.plot([0, 1], [0, 1], color="0.8", lw=0.8)
    ax.set(xlabel="clean scans flagged (false-flag rate)", ylabel="annotated scans flagged (found rate)",
           xlim=(-0.02, 1.02), ylim=(-0.02, 1.02), title=title)
    ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True


def sweep_real(checkpoint: str | Path | list, annotated: str | Path | None, clean: str | Path | None, out: str | Path,
               limit: int | None = None, progress=None, thresholds: tuple[float, ...] | None = None,
               min_areas: tuple[int, ...] = SWEEP_MIN_AREAS, reference: str | Path | None = None,
               max_false_flag_rate: float = MAX_FALSE_FLAG_RATE, grow: GrowConfig | None = None) -> dict:
    """Choose an operating point (mask threshold, smallest mask component kept) on real scans against a
    scan-level reference: a --reference CSV (read_reference) or else the --annotated/--clean folders.

    A scan is flagged at a point when the mask `train apply` would make there is not empty; its score is the
    area of its largest mask component at the threshold (pixels at the training scale). Positives and negatives
    (reference_classes) are each split by sorted position: even positions pick, odd ones are held out. The point
    picked (pick_point) flags the most positives of the pick half while flagging at most max_false_flag_rate of
    its negatives. With fewer than MIN_POSITIVES positives or MIN_NEGATIVES negatives nothing is picked
    (TrainError). Colour-keyed overlays (find_annotations) on annotated scans are an extra pixel-level tally
    (and the first tie-break), never the reference. grow: growth applied to masks for that tally.
    Writes operating_point.md/.json, roc.csv and roc.png in `out`; returns the json's dict."""
    predictor, meta = load_predictor(checkpoint)
    predictor.model.eval()
    mode = predictor.mode
    own = meta.get("threshold")
    own = default_threshold(mode) if own is None else own
    if reference is not None:
        scans, source = read_reference(reference), f"--reference {reference}"
        if limit:
            scans = [s for lab in (True, False) for s in [s for s in scans if s.annotated == lab][:limit]]
    else:
        if annotated is None or clean is None:
            raise TrainError("--sweep needs a scan-level reference: a --reference CSV, or both --annotated and "
                             "--clean folders.")
        scans = folder_reference(annotated, clean, limit)
        source = f"folders {annotated} (annotated) and {clean} (clean)"
    pos, neg, left_out = reference_classes(scans, meta.get("kinds"))
    check_reference_size(len(pos), len(neg), source, len(left_out))
    thresholds = tuple(sorted(set(thresholds or threshold_grid(mode)) | {own}))
    min_areas = tuple(sorted(set(min_areas) | {M.DEFAULT_MIN_AREA}))
    points = [(t, a) for t in thresholds for a in min_areas]
    held = {id(s) for group in (pos, neg, left_out) for s in split_halves(group)[1]}
    label = {id(s): lab for lab, group in (("positive", pos), ("negative", neg), ("left_out", left_out)) for s in group}
    ordered = pos + neg + left_out
    records, unreadable = [], []
    for k, s in enumerate(ordered):
        try:
            img = read_image(s.file)
        except (ImageError, OSError) as e:
            unreadable.append(f"{s.file}: {e}")
            continue
        h, w = img.shape[:2]
        small, pred, _ = predict_scaled(predictor, meta, img)
        rec = {"file": str(s.file), "label": label[id(s)], "half": "held_out" if id(s) in held else "pick",
               "kinds": ";".join(s.kinds), "colour": s.colour, "max_probability": float(pred.max()) if mode == "seg"
               else float("nan"), "largest": largest_components(pred if mode == "seg" else
                                                                np.abs(small.astype(np.float32) - pred).max(-1),
                                                                thresholds), "overlays": 0, "found": {}}
        if s.annotated:
            boxes = overlay_boxes(reference_mask(img)[1])
            rec["overlays"] = len(boxes)
            if boxes:
                cand = contrast_pixels(img, grow) if grow is not None and grow.contrast > 0 else None
                for t, a in points:
                    if rec["largest"][t] < a:
                        rec["found"][(t, a)] = 0
                        continue
                    seeds = predicted_mask(small, pred, mode, t, a)
                    if grow is not None:
                        seeds = grow_scores(seeds, pred if mode == "seg" else
                                            np.abs(small.astype(np.float32) - pred).max(-1), t, grow)
                    mask = upscale_mask(seeds, h, w)
                    if grow is not None:
                        mask = grow_image(mask, img, grow, cand)
                    rec["found"][(t, a)] = sum(overlays_found(mask, boxes))
        records.append(rec)
        if progress:
            progress(k + 1, len(ordered))

    def tally(half: str, t: float, a: int) -> list[int]:
        rs = [r for r in records if r["half"] == half]
        p = [r for r in rs if r["label"] == "positive"]
        n = [r for r in rs if r["label"] == "negative"]
        ann = [r for r in rs if r["label"] != "negative"]
        return [sum(r["largest"][t] >= a for r in p), len(p), sum(r["largest"][t] >= a for r in n), len(n),
                sum(r["found"].get((t, a), 0) for r in ann), sum(r["overlays"] for r in ann)]

    pick = {p: tally("pick", *p) for p in points}
    n_pos = sum(r["label"] == "positive" for r in records)
    n_neg = sum(r["label"] == "negative" for r in records)
    check_reference_size(n_pos, n_neg, source + f", {len(unreadable)} unreadable", len(left_out))
    best = pick_point(pick, max_false_flag_rate)
    base = (own, M.DEFAULT_MIN_AREA)
    held_tally = {p: tally("held_out", *p) for p in points}

    def scores(half: str, cls: str, score: str, t: float | None = None) -> list[float]:
        return [r["largest"][t] if score == "largest" else r["max_probability"] for r in records
                if r["half"] == half and r["label"] == cls]

    t_roc = best[0] if best else own
    aucs = {f"largest_component@{t:g}": {h: auc(scores(h, "positive", "largest", t),
                                                scores(h, "negative", "largest", t)) for h in ("pick", "held_out")}
            for t in thresholds}
    if mode == "seg":
        aucs["max_probability"] = {h: auc(scores(h, "positive", "max"), scores(h, "negative", "max"))
                                   for h in ("pick", "held_out")}
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    curves = {}
    with open(out / "roc.csv", "w", newline="") as f:
        wr = csv.writer(f)
        wr.writerow(["half", "score", "cut", "tpr", "fpr"])
        for h in ("pick", "held_out"):
            named = [(f"largest_component@{t_roc:g}", "largest")]
            named += [("max_probability", "max")] if mode == "seg" else []
            for name, score in named:
                roc = roc_curve(scores(h, "positive", score, t_roc), scores(h, "negative", score, t_roc))
                curves[f"{h}: {name} (AUC {aucs[name][h]:.3f})"] = roc
                wr.writerows([h, name, c, round(tp, 6), round(fp, 6)] for c, tp, fp in roc)

    def breakdown(key: str, point: tuple[float, int]) -> dict[str, list[int]]:
        t, a = point
        out_ = {}
        for r in records:
            if r["half"] == "held_out" and r["label"] == "positive":
                for v in (r[key].split(";") if key == "kinds" else [r[key]]):
                    c = out_.setdefault(v or "?", [0, 0])
                    c[0] += int(r["largest"][t] >= a)
                    c[1] += 1
        return dict(sorted(out_.items()))

    chosen_held = held_tally[best] if best else None
    result = {"checkpoint": checkpoint_label(checkpoint), "mode": mode, "kinds": meta.get("kinds"),
              "threshold": best[0] if best else None, "min_area": best[1] if best else None, "own_threshold": own,
              "reference": source, "max_false_flag_rate": max_false_flag_rate,
              "scan_score": "largest mask component (pixels at the training scale) at the threshold; flagged when "
                            ">= min area",
              "counts": {"positives": n_pos, "negatives": n_neg, "left_out": len(left_out),
                         "pick": {"positives": pick[base][1], "negatives": pick[base][3]},
                         "held_out": {"positives": held_tally[base][1], "negatives": held_tally[base][3]}},
              "auc": aucs, "grow": grow.as_dict() if grow is not None else None,
              "pick": {f"{t}/{a}": pick[(t, a)] for t, a in points},
              "held_out": {"chosen": chosen_held, "own": held_tally[base]},
              "held_out_by_colour": {"own": breakdown("colour", base),
                                     "chosen": breakdown("colour", best) if best else None},
              "held_out_by_kind": {"own": breakdown("kinds", base),
                                   "chosen": breakdown("kinds", best) if best else None},
              "unreadable": unreadable}
    (out / "operating_point.json").write_text(json.dumps(result, indent=1))
    chosen_xy = (chosen_held[0] / max(1, chosen_held[1]), chosen_held[2] / max(1, chosen_held[3])) if best else None
    plotted = write_roc_plot(out / "roc.png", {k: v for k, v in curves.items() if k.startswith("held_out")},
                             chosen_xy, "held-out half")
    (out / "operating_point.md").write_text(sweep_markdown(result, meta, points, pick, held_tally, best, base, plotted))
    if best is None:
        raise TrainError(f"no operating point picked: every point of the grid flags more than "
                         f"{max_false_flag_rate:.1%} of the clean scans of the pick half (see "
                         f"{out / 'operating_point.md'}); raise --max-false-flag-rate if that many is acceptable.")
    return result


def sweep_markdown(result: dict, meta: dict, points: list, pick: dict, held: dict, best: tuple | None, base: tuple,
                   plotted: bool) -> str:
    """operating_point.md for sweep_real's result."""
    rate = result["max_false_flag_rate"]
    c = result["counts"]
    unit = "probability" if result["mode"] == "seg" else "grey levels"
    kinds = ", ".join(meta.get("kinds", [])) or "?"
    grow = "with whole-mark growth (train.grow)" if result["grow"] else "without growth"
    lines = [f"# Operating point on real scans: `{result['checkpoint']}` (trained on {kinds})", "",
             f"Scan-level reference: {result['reference']}: {c['positives']} annotated scans (positives), "
             f"{c['negatives']} clean scans (negatives)"
             + (f", {c['left_out']} annotated scans left out (none of their kinds is one the detector was trained "
                f"on)" if c["left_out"] else "") + ". Each class is split by sorted file: even positions pick the "
             f"point ({c['pick']['positives']} + {c['pick']['negatives']}), odd positions are held out "
             f"({c['held_out']['positives']} + {c['held_out']['negatives']}).", "",
             f"Point = mask threshold ({unit}) and smallest mask component kept (pixels at the training scale). A "
             f"scan is flagged at a point when the mask `train apply` makes there is not empty: its score is the "
             f"area of its largest mask component at the threshold, flagged when at least the min area. Picked: "
             f"the most annotated scans flagged among the points that flag at most {rate:.1%} of the pick half's "
             f"clean scans; ties go to more colour-keyed overlays found, then to the looser point.", "",
             f"Colour-keyed overlays (an extra pixel-level reference that misses white and grey marks): found = "
             f"at least {FOUND_FRACTION:.0%} of an overlay masked (mask grown {FOUND_REACH_PX} px), {grow}.", ""]
    if best is None:
        lines += [f"**No point picked**: every point flags more than {rate:.1%} of the pick half's clean scans.", ""]
    lines += ["## Held-out half", "", "| operating point | annotated scans flagged (found) | clean scans flagged | "
              "colour-keyed overlays found |", "|---|---|---|---|"]
    rows = [(f"the run's own (threshold {base[0]:g}, min area {base[1]})", held[base])]
    if best is not None:
        rows.append((f"picked (threshold {best[0]:g}, min area {best[1]})", held[best]))
    for name, t in rows:
        lines.append(f"| {name} | {_rate(t[0], t[1])} | {_rate(t[2], t[3])} | {_rate(t[4], t[5])} |")
    if best is not None:
        use = " ".join(f"--checkpoint {p}" for p in checkpoint_paths(meta.get("checkpoints") or result["checkpoint"]))
        lines += ["", f"Use it: `train apply {use} --threshold {best[0]:g} --min-area {best[1]} "
                  f"{'--grow' if result['grow'] else '--no-grow'} ...`"]
    for what, key in (("overlay colour", "held_out_by_colour"), ("kind", "held_out_by_kind")):
        own, chosen = result[key]["own"], result[key]["chosen"]
        if set(own) != {"?"}:
            lines += ["", f"Annotated held-out scans flagged, per {what} (from the reference):", "",
                      f"| {what} | at the run's own point |" + (" at the picked point |" if chosen else ""),
                      "|---|---|" + ("---|" if chosen else "")]
            lines += [f"| {k} | {_rate(*v)} |" + (f" {_rate(*chosen[k])} |" if chosen else "") for k, v in own.items()]
    lines += ["", "## Scan-level ROC", "", "AUC of each scan score (roc.csv holds the curves of the picked "
              "threshold's score and of the max probability):", "", "| score | AUC, pick half | AUC, held-out half |",
              "|---|---|---|"]
    lines += [f"| {k} | {v['pick']:.3f} | {v['held_out']:.3f} |" for k, v in result["auc"].items()]
    lines += ["", "![ROC on the held-out half](roc.png)" if plotted else
              "(roc.png not drawn: matplotlib is not installed.)", "",
              "## Every point on the pick half", "",
              "| threshold | min area | annotated scans flagged | clean scans flagged | colour-keyed overlays found |",
              "|---|---|---|---|---|"]
    for t, a in points:
        n, mark = pick[(t, a)], " **(picked)**" if (t, a) == best else ""
        lines.append(f"| {t:g} | {a}{mark} | {_rate(n[0], n[1])} | {_rate(n[2], n[3])} | {_rate(n[4], n[5])} |")
    if result["unreadable"]:
        lines += ["", f"{len(result['unreadable'])} unreadable file(s) skipped."]
    return "\n".join(lines) + "\n"
