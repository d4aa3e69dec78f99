"""`train audit`: an annotation inventory of an archive (kinds, boxes, areas, confidence per image or frame),
checked against rules, streamed one file at a time through a resumable journal."""

from __future__ import annotations

import csv
import dataclasses
import hashlib
import json
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch

from synth.images import ImageError, file_sha256, read_image
from synth.kinds import CLASS_IDS
from train import metrics as M
from train.checkpoint import TrainError
from train.dicom import READABLE_KEYS, header_attrs, is_dicom, iter_frames, read_header
from train.evaluate import Predictor, dilate, normalize
from train.infer import expand_inputs, filler_from_checkpoint, predict_scaled, predictor_from_checkpoint
from train.rules import Rule, check, require_known_kinds, rule_keywords

JOURNAL = "journal.jsonl"
CONFIG = "audit_config.json"
MEDIA = "media"

KIND_COLOURS: dict[str, tuple[int, int, int]] = {
    "body_marker": (255, 190, 0),
    "radial_line": (0, 200, 255),
    "vascular_flow": (255, 60, 170),
    "text": (120, 255, 80),
}
"""RGB of each kind in masks, thumbnails and the review page."""


@dataclass(frozen=True)
class AuditConfig:
    """What an audit folder was made with; a rerun into the same folder must match it (see `identity`).

    checkpoints: seg detector(s); fill: n2n/n2c filler for the 'after' previews (None: inpainting);
    threshold: annotation probability (None: the checkpoints' own); min_area: components under this many
    pixels at the model's scale are dropped; thumb_px / preview_px: long side of the grid thumbnails and of
    the before / mask / after previews.
    """

    out: str
    checkpoints: tuple[str, ...]
    fill: str | None = None
    threshold: float | None = None
    min_area: int = M.DEFAULT_MIN_AREA
    thumb_px: int = 160
    preview_px: int = 512

    def identity(self) -> dict:
        """The settings that decide the journal's content, with the checkpoints' SHA-256."""
        return {
            "checkpoints": [file_sha256(p) for p in self.checkpoints],
            "fill": file_sha256(self.fill) if self.fill else None,
            "threshold": self.threshold,
            "min_area": self.min_area,
            "thumb_px": self.thumb_px,
            "preview_px": self.preview_px,
        }


class KindDetector:
    """One or several seg checkpoints as a per-kind detector: called like a Predictor on (B, 3, H, W) uint8,
    it returns (B, H, W, 1 + K) float32: the annotation probability (1 - background, averaged over the
    members as `train apply` averages an ensemble), then one probability per kind of `kinds`. A model with a
    class per kind gives its softmax per kind (class ids from its meta["class_ids"]); a one-logit model gives
    its sigmoid to its one kind. Kinds several members know are averaged over those members."""

    mode = "seg"

    def __init__(self, members: list[tuple[Predictor, dict]]):
        self.members = members
        known = {k for _, meta in members for k in meta.get("kinds", [])}
        self.kinds = [k for k in CLASS_IDS if k in known]
        self.model = torch.nn.ModuleList([p.model for p, _ in members])
        self.model.size_multiple = math.lcm(*(p.model.size_multiple for p, _ in members))

    @torch.inference_mode()
    def __call__(self, x_uint8: torch.Tensor) -> np.ndarray:
        b, _, h, w = x_uint8.shape
        any_sum = torch.zeros(b, h, w)
        kind_sum = torch.zeros(b, h, w, len(self.kinds))
        kind_n = torch.zeros(len(self.kinds))
        for pred, meta in self.members:
            x = normalize(x_uint8.to(pred.device), pred.mean, pred.std)
            y = pred.model(x).float().cpu()
            if y.shape[1] == 1:
                p_any = torch.sigmoid(y[:, 0])
                per_kind = {meta["kinds"][0]: p_any} if meta.get("kinds") else {}
            else:
                sm = torch.softmax(y, 1)
                p_any = 1 - sm[:, 0]
                ids = {**CLASS_IDS, **meta.get("class_ids", {})}
                per_kind = {k: sm[:, ids[k]] for k in meta.get("kinds", []) if ids.get(k, y.shape[1]) < y.shape[1]}
            any_sum += p_any
            for k, p in per_kind.items():
                i = self.kinds.index(k)
                kind_sum[..., i] += p
                kind_n[i] += 1
        probs = torch.cat([(any_sum / len(self.members))[..., None], kind_sum / kind_n.clamp(min=1)], dim=-1)
        return probs.numpy()


def load_detector(checkpoints: list[str | Path]) -> tuple[KindDetector, dict]:
    """(KindDetector, meta) for seg checkpoints trained at one image size and scale; meta["threshold"] is
    the mean of their own thresholds (as for `train apply`'s ensembles)."""
    members = [predictor_from_checkpoint(p) for p in checkpoints]
    metas = [m for _, m in members]
    for p, meta in zip(checkpoints, metas):
        if meta["mode"] != "seg":
            raise TrainError(f"{p}: a {meta['mode']} checkpoint; the audit needs a seg detector (it reports kinds, "
                             f"which only seg models tell apart).")
        for key in ("image_size", "resize"):
            if meta.get(key) != metas[0].get(key):
                raise TrainError(f"{p}: trained with {key} {meta.get(key)}, {checkpoints[0]} with "
                                 f"{metas[0].get(key)}; combine detectors trained on shards of the same {key}.")
    for pred, _ in members:
        pred.model.eval()
    detector = KindDetector(members)
    meta = dict(metas[0])
    own = [m["threshold"] for m in metas if m.get("threshold") is not None]
    meta["threshold"] = round(float(np.mean(own)), 3) if own else None
    meta["kinds"] = detector.kinds
    return detector, meta


def inventory(probs: np.ndarray, kinds: list[str], threshold: float, min_area: int, scale: float
              ) -> tuple[np.ndarray, dict[str, dict]]:
    """(mask (h, w) int: 0 or 1 + the kind's index, kinds found) from a KindDetector's (h, w, 1 + K) output
    at the model's scale. Each connected component of the annotation mask (probability >= threshold, parts
    under min_area pixels dropped) is one detection, of the kind with the highest mean probability over it;
    its confidence is that mean. Per kind: boxes [x, y, w, h] and area_px in the scan's own pixels (divided
    by `scale`, the model's scale), the number of detections and the highest confidence."""
    mask = M.drop_small(probs[..., 0] >= threshold, min_area)
    labels = np.zeros(mask.shape, np.int32)
    found: dict[str, dict] = {}
    if not mask.any() or not kinds:
        return labels, found
    n, comp, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
    area = stats[:, cv2.CC_STAT_AREA].astype(np.float64)
    flat = comp.ravel()
    means = np.stack([np.bincount(flat, weights=probs[..., 1 + i].ravel(), minlength=n) / np.maximum(area, 1)
                      for i in range(len(kinds))], axis=1)  # (n, K), row 0 is the background
    best = means.argmax(1)
    labels = np.where(comp > 0, best[comp] + 1, 0).astype(np.int32)
    for c in range(1, n):
        kind = kinds[best[c]]
        x, y, w, h = (int(v) for v in stats[c, :4])
        box = [round(x / scale), round(y / scale), max(1, round(w / scale)), max(1, round(h / scale))]
        entry = found.setdefault(kind, {"count": 0, "area_px": 0, "confidence": 0.0, "boxes": []})
        entry["count"] += 1
        entry["area_px"] += round(area[c] / scale ** 2)
        entry["confidence"] = round(max(entry["confidence"], float(means[c, best[c]])), 4)
        entry["boxes"].append(box)
    return labels, found


def colour_mask(labels: np.ndarray, kinds: list[str]) -> np.ndarray:
    """(h, w, 3) uint8 RGB: each kind in its KIND_COLOURS colour on black."""
    lut = np.zeros((len(kinds) + 1, 3), np.uint8)
    for i, k in enumerate(kinds):
        lut[i + 1] = KIND_COLOURS.get(k, (255, 255, 255))
    return lut[labels]


def _fit(img: np.ndarray, long_px: int) -> np.ndarray:
    h, w = img.shape[:2]
    s = long_px / max(h, w)
    if s >= 1:
        return img
    return cv2.resize(img, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def _write(path: Path, rgb: np.ndarray, quality: int = 85) -> None:
    ext = path.suffix.lower()
    params = [cv2.IMWRITE_JPEG_QUALITY, quality] if ext == ".jpg" else [cv2.IMWRITE_PNG_COMPRESSION, 3]
    ok, buf = cv2.imencode(ext, cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), params)
    if not ok:
        raise OSError(f"could not encode {path}")
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(buf.tobytes())
    os.replace(tmp, path)


def media_id(file: str, frame: int | None) -> str:
    """A stable name for one image or frame's previews (SHA-1 of the file path and frame number)."""
    return hashlib.sha1(f"{file}#{frame or 0}".encode()).hexdigest()[:16]


def write_media(out: Path, mid: str, small: np.ndarray, labels: np.ndarray, cleaned: np.ndarray, kinds: list[str],
                found: dict[str, dict], width: int, cfg: AuditConfig) -> list[int]:
    """MEDIA/ID.t.jpg (thumbnail, mask overlaid, a frame around each detection so that small marks show),
    ID.b.jpg / ID.m.png / ID.a.jpg (before, mask, after, at most preview_px). found: inventory's boxes in
    the scan's pixels, `width` its width. Returns the thumbnail's [width, height]."""
    colour = colour_mask(labels, kinds)
    on = labels > 0
    overlay = small.copy()
    overlay[on] = (0.45 * small[on] + 0.55 * colour[on]).astype(np.uint8)
    thumb = np.ascontiguousarray(_fit(overlay, cfg.thumb_px))
    s = thumb.shape[1] / width
    for kind, v in found.items():
        for x, y, w, h in v["boxes"]:
            cv2.rectangle(thumb, (int(x * s) - 1, int(y * s) - 1), (int((x + w) * s), int((y + h) * s)),
                          KIND_COLOURS.get(kind, (255, 255, 255)), 1)
    media = out / MEDIA
    _write(media / f"{mid}.t.jpg", thumb, 80)
    _write(media / f"{mid}.b.jpg", _fit(small, cfg.preview_px))
    _write(media / f"{mid}.m.png", _fit(colour, cfg.preview_px))
    _write(media / f"{mid}.a.jpg", _fit(cleaned, cfg.preview_px))
    return [thumb.shape[1], thumb.shape[0]]


def audit_frame(detector: KindDetector, meta: dict, img: np.ndarray, filler: Predictor | None, cfg: AuditConfig,
                threshold: float, out: Path, mid: str) -> dict:
    """Inventory one RGB image or frame, write its previews; returns its journal record (without file keys)."""
    h, w = img.shape[:2]
    small, probs, fill = predict_scaled(detector, meta, img, filler)
    scale = small.shape[1] / w
    labels, found = inventory(probs, detector.kinds, threshold, cfg.min_area, scale)
    grown = dilate(labels > 0)
    if fill is not None:
        cleaned = np.where(grown[..., None], np.clip(np.rint(fill), 0, 255).astype(np.uint8), small)
    elif grown.any():
        cleaned = cv2.inpaint(small, grown.astype(np.uint8), 3, cv2.INPAINT_TELEA)
    else:
        cleaned = small
    thumb = write_media(out, mid, small, labels, cleaned, detector.kinds, found, w, cfg)
    n_small = int((labels > 0).sum())
    return {
        "id": mid, "width": w, "height": h, "kinds": found,
        "annotated_px": round(n_small / scale ** 2), "fraction": round(n_small / labels.size, 6),
        "confidence": max((v["confidence"] for v in found.values()), default=0.0),
        "peak": round(float(probs[..., 0].max()), 4), "thumb": thumb,
    }


def read_journal(out: Path) -> dict[str, dict]:
    """file -> its journal line. A line cut short by a kill is dropped and the file truncated after the last
    whole line, so that the next append starts clean."""
    path = out / JOURNAL
    if not path.exists():
        return {}
    data = path.read_bytes()
    end = data.rfind(b"\n") + 1
    if end < len(data):
        with open(path, "r+b") as f:
            f.truncate(end)
    done = {}
    for line in data[:end].splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        done[entry["file"]] = entry
    return done


def _append(fd: int, entry: dict) -> None:
    """One journal line in one write() on an O_APPEND file: a kill leaves whole lines, or a cut last one."""
    os.write(fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())


def prepare_out(cfg: AuditConfig) -> None:
    """Create the audit folder, or check that it holds an audit with the same settings (then it resumes)."""
    out = Path(cfg.out)
    ident = cfg.identity()
    path = out / CONFIG
    (out / MEDIA).mkdir(parents=True, exist_ok=True)
    if path.exists():
        old = json.loads(path.read_text())
        if old.get("identity") != ident:
            raise TrainError(f"--out {out} holds an audit made with another detector or other settings; choose "
                             "another folder, or delete it to start over.")
        return
    tmp = path.with_name(CONFIG + ".tmp")
    tmp.write_text(json.dumps({"config": dataclasses.asdict(cfg), "identity": ident}, indent=1))
    os.replace(tmp, path)


def run_audit(cfg: AuditConfig, inputs: list[Path], rules: list[Rule] | None = None, progress=None,
              rules_path: str | None = None) -> dict:
    """Audit every scan (images and DICOM files, folders recursive) into cfg.out; rerun to resume.

    Files already in the journal are skipped; each new file is read, inventoried frame by frame (one frame in
    memory at a time), its previews written, then its journal line appended. At the end audit.csv,
    audit.json and index.html are rebuilt from the journal with the rules' verdicts (write_reports).
    progress: callable(files_done, files_to_do). Returns write_reports' summary plus "skipped" (files
    found in the journal) and "new" (files audited now).
    """
    detector, meta = load_detector(list(cfg.checkpoints))
    filler = filler_from_checkpoint(cfg.fill, meta)
    threshold = cfg.threshold if cfg.threshold is not None else meta.get("threshold")
    threshold = M.SEG_THRESHOLD if threshold is None else threshold
    require_known_kinds(rules or [], detector.kinds, rules_path or "rules")
    out = Path(cfg.out)
    items = expand_inputs(inputs)
    if not items:
        raise TrainError("no PNG/JPG/BMP/TIFF or DICOM (.dcm) scans found in the inputs given.")
    prepare_out(cfg)
    done = read_journal(out)
    todo = [(p, stem) for p, stem in items if str(p) not in done]
    keywords = rule_keywords(rules or [])
    fd = os.open(out / JOURNAL, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        for k, (path, stem) in enumerate(todo):
            entry = {"file": str(path), "rel": stem + path.suffix, "dicom": None, "dicom_keys": None,
                     "frames": [], "error": None}
            try:
                if is_dicom(path):
                    ds = read_header(path)
                    entry["dicom"], entry["dicom_keys"] = header_attrs(ds, keywords), keywords
                    for i, img in enumerate(iter_frames(path, ds)):
                        rec = audit_frame(detector, meta, img, filler, cfg, threshold, out, media_id(str(path), i + 1))
                        entry["frames"].append({"frame": i + 1, **rec})
                else:
                    img = read_image(path)
                    rec = audit_frame(detector, meta, img, filler, cfg, threshold, out, media_id(str(path), None))
                    entry["frames"].append({"frame": None, **rec})
            except ImageError as e:  # the file cannot be read (a write error stops the audit: rerun to resume)
                entry["error"], entry["frames"] = str(e), []
            _append(fd, entry)
            if progress:
                progress(k + 1, len(todo))
    finally:
        os.close(fd)
    label = " + ".join(str(p) for p in cfg.checkpoints)
    summary = write_reports(out, rules, detector.kinds, {"detector": label, "threshold": threshold,
                                                          "rules": rules_path})
    return {**summary, "skipped": len(items) - len(todo), "new": len(todo)}


def records(out: Path, rules: list[Rule] | None) -> tuple[list[dict], list[dict]]:
    """(one record per image or frame with its verdict, unreadable files) from the journal."""
    keywords = rule_keywords(rules or [])
    rows, bad = [], []
    for entry in read_journal(out).values():
        if entry.get("error"):
            bad.append({"file": entry["file"], "error": entry["error"]})
            continue
        dicom = entry.get("dicom")
        if dicom is not None and not set(keywords) <= set(entry.get("dicom_keys") or []):
            try:  # the rules name attributes the audit did not record: read them now
                dicom = header_attrs(read_header(entry["file"]), keywords)
            except ImageError:
                pass
        by_keyword = None if dicom is None else _by_keyword(dicom)
        for fr in entry["frames"]:
            rec = {"file": entry["file"], "rel": entry["rel"], **fr, "dicom": dicom}
            verdict = check(rules or [], fr["kinds"], (entry["file"], entry["rel"]), by_keyword)
            rec["verdict"], rec["failures"], rec["rules"], rec["failed_rules"] = verdict
            rows.append(rec)
    rows.sort(key=lambda r: (r["file"], r["frame"] or 0))
    return rows, bad


def _by_keyword(attrs: dict[str, str]) -> dict[str, str]:
    """Header attributes keyed by DICOM keyword (the audit stores READABLE_KEYS names)."""
    return {READABLE_KEYS.get(k, k): v for k, v in attrs.items()}


def summarize(rows: list[dict], bad: list[dict], rules: list[Rule] | None, kinds: list[str]) -> dict:
    """Counts: images, per verdict, per kind (images with it), per rule (images it applied to, failed)."""
    per_rule = {r.name: {"rule": r.name, "line": r.line, "matched": 0, "failed": 0} for r in rules or []}
    for row in rows:
        for name in row["rules"]:
            per_rule[name]["matched"] += 1
        for name in row["failed_rules"]:
            per_rule[name]["failed"] += 1
    return {
        "images": len(rows),
        "files": len({r["file"] for r in rows}),
        "unreadable": len(bad),
        "verdicts": {v: sum(r["verdict"] == v for r in rows) for v in ("pass", "fail", "unmatched")},
        "kinds": {k: sum(k in r["kinds"] for r in rows) for k in kinds},
        "annotated": sum(bool(r["kinds"]) for r in rows),
        "rules": list(per_rule.values()),
    }


CSV_DICOM = ("modality", "body_part", "study_description", "series_description", "burned_in_annotation")


def write_reports(out: Path, rules: list[Rule] | None, kinds: list[str], info: dict) -> dict:
    """audit.csv, audit.json and the review page (index.html) from the journal; returns the summary."""
    from train.review import write_review

    rows, bad = records(out, rules)
    summary = summarize(rows, bad, rules, kinds)
    fields = ["file", "frame", "width", "height", "verdict", "failures", "kinds", "annotated_px", "fraction",
              "confidence", *CSV_DICOM]
    for k in kinds:
        fields += [f"{k}_count", f"{k}_area_px", f"{k}_confidence", f"{k}_boxes"]
    tmp = out / "audit.csv.tmp"
    with open(tmp, "w", newline="") as f:
        wr = csv.DictWriter(f, fieldnames=fields)
        wr.writeheader()
        for r in rows:
            row = {key: r[key] for key in ("file", "frame", "width", "height", "verdict", "annotated_px", "fraction",
                                           "confidence")}
            row["frame"] = r["frame"] or ""
            row["failures"] = "; ".join(r["failures"])
            row["kinds"] = ";".join(k for k in kinds if k in r["kinds"])
            row.update({key: (r["dicom"] or {}).get(key, "") for key in CSV_DICOM})
            for k in kinds:
                v = r["kinds"].get(k)
                row[f"{k}_count"] = v["count"] if v else 0
                row[f"{k}_area_px"] = v["area_px"] if v else 0
                row[f"{k}_confidence"] = v["confidence"] if v else ""
                row[f"{k}_boxes"] = " ".join(",".join(str(c) for c in b) for b in v["boxes"]) if v else ""
            wr.writerow(row)
    os.replace(tmp, out / "audit.csv")
    info = {**info, "generated": time.strftime("%Y-%m-%d %H:%M:%S")}
    doc = {"summary": summary, **info, "kinds": kinds, "box_format": "x, y, width, height in the scan's pixels",
           "images": rows, "unreadable": bad}
    tmp = out / "audit.json.tmp"
    tmp.write_text(json.dumps(doc, indent=1))
    os.replace(tmp, out / "audit.json")
    write_review(out, rows, summary, kinds, {k: KIND_COLOURS.get(k, (255, 255, 255)) for k in kinds}, info)
    return summary
