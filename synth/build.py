"""`synth build`: render seeded (noisy_a, noisy_b, clean, mask) quadruples into shards, in parallel,
deterministically, crash-safely and resumably.

Sample i draws everything from default_rng(SeedSequence([seed, i])), so its arrays do not depend on the
worker count, the order of work or the machine. A shard is the unit of work: one worker renders and
writes it to a temp name, then renames it; a rerun of the same command skips complete shards.
"""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import multiprocessing as mp
import queue
import shutil
import signal
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

import synth
from synth.clean import CleanCache, CleanSet, folder_clean_set, phantom_clean_set
from synth.exactmath import cpu_exact
from synth.icons import DEFAULT_ICON_DIR, IconSet, load_icon_set
from synth.images import Augmenter, AugmentOptions
from synth.interrupt import StopRequested
from synth.kinds import CLASS_IDS, KINDS
from synth.shards import (
    DEFAULT_COMPRESSION,
    FIELDS,
    FORMAT_VERSION,
    MANIFEST_NAME,
    Shard,
    ShardError,
    ShardWriter,
    list_shards,
    parse_compression,
    read_manifest,
    remove_orphan_json_temps,
    remove_path,
    shard_bytes,
    shard_name,
    shard_sha256,
    write_json_atomic,
)


class BuildError(RuntimeError):
    """A build that cannot start or go on; the message says what to do."""


@dataclass(frozen=True)
class BuildConfig:
    """Everything that determines the shard contents (the fingerprint covers all of it)."""

    kind: str
    n: int
    fmt: str = "hdf5"
    size_px: int = 512
    resize: str = "letterbox"
    shard_size: int = 256
    seed: int = 0
    compression: str = ""          # "" = the format's default (DEFAULT_COMPRESSION)
    clean: str | None = None       # folder of clean scans; None = built-in phantoms
    n_phantoms: int = 64
    clean_seed: int | None = None  # phantom seed; None = same as seed (so a new --seed gives unseen phantoms)
    phantom_chrome: bool = False   # the scanner's text, logos and bars on the phantoms (synth/chrome.py)
    phantom_reflectors: bool = False  # crisp specular reflections and point echoes in the phantoms' tissue
    icons: str | None = None       # icon folder; None = assets/annotation_icons
    palette: str = "measured"      # annotation colours: as measured on the dev scans, or "any" (RenderOptions)
    placement: str = "anywhere"
    soften: bool = True
    augment: bool = True

    def resolved(self) -> BuildConfig:
        return dataclasses.replace(
            self,
            compression=self.compression or DEFAULT_COMPRESSION[self.fmt],
            clean_seed=self.seed if self.clean_seed is None else self.clean_seed,
            clean=str(Path(self.clean).resolve()) if self.clean else None,
            icons=str(Path(self.icons or DEFAULT_ICON_DIR).resolve()))

    def n_shards(self) -> int:
        return -(-self.n // self.shard_size)

    def shard_range(self, k: int) -> tuple[int, int]:
        return k * self.shard_size, min((k + 1) * self.shard_size, self.n)


@dataclass(frozen=True)
class BuildPlan:
    """A validated config plus the resolved inputs a worker needs."""

    cfg: BuildConfig
    clean: CleanSet
    icons_sha256: str
    fingerprint: str
    shard_attrs: dict = field(default_factory=dict)


def validate(cfg: BuildConfig) -> None:
    if cfg.kind not in KINDS:
        raise BuildError(f"unknown --type {cfg.kind!r}; use one of {', '.join(KINDS)}.")
    if cfg.n < 1:
        raise BuildError(f"--n must be at least 1 (got {cfg.n}).")
    if cfg.shard_size < 1:
        raise BuildError(f"--shard-size must be at least 1 (got {cfg.shard_size}).")
    if cfg.size_px < 32:
        raise BuildError(f"--size must be at least 32 px (got {cfg.size_px}).")
    for option, on in (("--phantom-chrome", cfg.phantom_chrome), ("--phantom-reflectors", cfg.phantom_reflectors)):
        if on and cfg.clean:
            raise BuildError(f"{option} changes the built-in phantom scans, and --clean {cfg.clean} replaces them "
                             f"with your scans; leave {option} out.")
    try:
        parse_compression(cfg.compression or DEFAULT_COMPRESSION[cfg.fmt], cfg.fmt)
    except ValueError as e:
        raise BuildError(f"--compression: {e}.") from e


def render_options(cfg: BuildConfig):
    from synth.render import RenderOptions

    return RenderOptions(placement=cfg.placement, soften=cfg.soften, palette=cfg.palette)


def rendering_libraries() -> dict[str, str]:
    """Versions of the libraries whose arithmetic and random streams the shard arrays depend on."""
    import importlib.metadata

    import cv2

    versions = {"numpy": np.__version__, "opencv": cv2.__version__}
    try:  # read from the installed metadata: importing albumentations takes a second
        versions["albumentations"] = importlib.metadata.version("albumentations")
    except importlib.metadata.PackageNotFoundError:
        versions["albumentations"] = "not installed"
    return versions


DRAWING_CODE = ("render/*.py", "raster.py", "images.py", "exactmath.py", "kinds.py", "icons.py")
"""The synth source files (patterns relative to synth/) whose code turns a clean scan, icons and a seed
into the sample arrays: every module of the annotation renderer (a new kind's module is covered without
an edit here), the rasteriser it shares with the scanner chrome, augmentation, exact maths, class ids and
icon loading (the phantom generator's code is in the clean set's digest)."""


def drawing_code_files() -> list[Path]:
    """The files DRAWING_CODE names, in hashing order (each pattern's matches sorted by name)."""
    root = Path(__file__).parent
    files = []
    for pattern in DRAWING_CODE:
        found = sorted(root.glob(pattern))
        if not found:
            raise RuntimeError(f"synth/{pattern} matches no file: the installed synth package is incomplete")
        files += found
    return files


def drawing_code_sha256() -> str:
    """sha256 over the source of the DRAWING_CODE files: a build continued by changed code would mix two renderers."""
    root = Path(__file__).parent
    digest = hashlib.sha256()
    for path in drawing_code_files():
        name = path.relative_to(root).with_suffix("").as_posix()
        digest.update(name.encode() + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


def make_plan(cfg: BuildConfig, skip_bad: bool = False, progress=None) -> BuildPlan:
    """Validate `cfg`, resolve the clean set and icons, and fingerprint the build."""
    validate(cfg)
    cfg = cfg.resolved()
    if cfg.clean:
        try:
            clean = folder_clean_set(cfg.clean, skip_bad=skip_bad, progress=progress)
        except ValueError as e:
            raise BuildError(str(e)) from e
    else:
        if cfg.n_phantoms < 1:
            raise BuildError(f"--phantoms must be at least 1 (got {cfg.n_phantoms}).")
        clean = phantom_clean_set(cfg.n_phantoms, cfg.clean_seed, chrome=cfg.phantom_chrome,
                                  reflectors=cfg.phantom_reflectors)
    icons = _load_icons(cfg)
    params = dataclasses.asdict(cfg)
    for option in ("phantom_chrome", "phantom_reflectors"):
        if not params[option]:  # builds from before the option keep their fingerprint (and resume)
            del params[option]
    params["render"] = dataclasses.asdict(render_options(cfg))
    if cfg.palette == "measured":  # builds from before the option keep their parameters
        del params["palette"], params["render"]["palette"]
    params["augment_options"] = dataclasses.asdict(AugmentOptions(enabled=cfg.augment))
    libraries = rendering_libraries()
    code = drawing_code_sha256()
    identity = {"params": params, "clean_sha256": clean.sha256, "icons_sha256": icons.sha256,
                "drawing_code_sha256": code, "format_version": FORMAT_VERSION, "package_version": synth.__version__,
                "libraries": libraries}
    fingerprint = hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()
    kinds = list(CLASS_IDS) if cfg.kind == "mixed" else [cfg.kind]
    attrs = {
        "format_version": FORMAT_VERSION, "kind": cfg.kind, "kinds": kinds,
        "class_ids": {k: CLASS_IDS[k] for k in kinds}, "seed": cfg.seed,
        "image_size": [cfg.size_px, cfg.size_px], "resize": cfg.resize, "compression": cfg.compression,
        "package_version": synth.__version__, "libraries": libraries, "params": params,
        "icons_sha256": icons.sha256, "clean_sha256": clean.sha256, "drawing_code_sha256": code,
        "fingerprint": fingerprint,
    }
    return BuildPlan(cfg=cfg, clean=clean, icons_sha256=icons.sha256, fingerprint=fingerprint,
                     shard_attrs=attrs)


def _load_icons(cfg: BuildConfig) -> IconSet:
    from synth.icons import IconError

    try:
        icons = load_icon_set(cfg.icons)
    except IconError as e:
        raise BuildError(f"--icons: {e}") from e
    if cfg.kind == "body_marker" and not icons.icons("body_marker"):
        raise BuildError(f"--icons {cfg.icons}: no body_marker icons in this set; --type body_marker "
                         f"needs them (use the shipped set or extract some).")
    return icons


class SampleMaker:
    """Per-process state to render samples of one plan (icons, clean-scan cache, augmenter)."""

    def __init__(self, plan: BuildPlan):
        self.plan = plan
        self.icons = load_icon_set(plan.cfg.icons)
        if self.icons.sha256 != plan.icons_sha256:
            raise BuildError(f"the icon folder {plan.cfg.icons} changed during the build; rerun.")
        self.clean = CleanCache(plan.clean, plan.cfg.size_px, plan.cfg.resize)
        self.augment = Augmenter(AugmentOptions(enabled=plan.cfg.augment))
        self.render_opts = render_options(plan.cfg)

    @cpu_exact
    def rendered(self, i: int):
        """(RenderedPair, clean_id) of sample i: every random choice comes from SeedSequence([seed, i])."""
        from synth.render import render_pair_detailed

        cfg = self.plan.cfg
        rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, i]))
        clean_id = int(rng.integers(len(self.plan.clean)))
        clean = self.augment(self.clean(clean_id), rng)
        return render_pair_detailed(cfg.kind, rng, clean, self.icons, self.render_opts), clean_id

    def __call__(self, i: int) -> dict[str, np.ndarray]:
        """Sample i of the build, as the shard stores it."""
        pair, clean_id = self.rendered(i)
        out = pair.arrays()
        out["sample_id"] = np.int64(i)
        out["clean_id"] = np.int32(clean_id)
        return out


def build_shard(plan: BuildPlan, k: int, out: Path, maker: SampleMaker, on_sample=None) -> dict:
    """Render and write shard k; returns its manifest entry."""
    cfg = plan.cfg
    start, stop = cfg.shard_range(k)
    path = out / shard_name(k, cfg.fmt)
    attrs = {**plan.shard_attrs, "shard_index": k, "sample_start": start, "sample_stop": stop}
    with ShardWriter(path, cfg.fmt, stop - start, cfg.size_px, cfg.size_px, cfg.compression, attrs) as w:
        for j, i in enumerate(range(start, stop)):
            w.write(j, maker(i))
            if on_sample:
                on_sample(1)
    return shard_entry(path, k, start, stop)


def shard_entry(path: Path, k: int, start: int, stop: int) -> dict:
    return {"file": path.name, "index": k, "start": start, "stop": stop, "n": stop - start,
            "bytes": shard_bytes(path), "sha256": shard_sha256(path)}


def verify_existing(plan: BuildPlan, path: Path, k: int, known: dict | None) -> dict | None:
    """The manifest entry of an already complete shard of this build, or None if it must be rebuilt."""
    start, stop = plan.cfg.shard_range(k)
    try:
        with Shard(path) as s:
            if s.attrs.get("fingerprint") != plan.fingerprint or len(s) != stop - start:
                return None
    except ShardError:
        return None
    entry = shard_entry(path, k, start, stop)
    if known and known.get("sha256") != entry["sha256"]:
        return None
    return entry


# ---- worker processes ---------------------------------------------------------------------------

_WORKER: dict = {}


def _worker_init(plan: BuildPlan, progress_queue) -> None:
    import cv2

    # Ctrl-C reaches the whole process group; the parent alone decides when to stop and then ends the workers
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    cv2.setNumThreads(1)  # parallelism comes from processes; threads inside would oversubscribe the cores
    _WORKER["maker"] = SampleMaker(plan)
    _WORKER["plan"] = plan
    _WORKER["queue"] = progress_queue


def _worker_build(args: tuple[int, str]) -> dict:
    k, out = args
    q = _WORKER["queue"]
    return build_shard(_WORKER["plan"], k, Path(out), _WORKER["maker"], on_sample=lambda d: q.put(d))


def parse_part(part: str | None) -> tuple[int, int]:
    """'k/K' (1-based) -> (k, K); None -> (1, 1). Part k builds shards with index % K == k - 1."""
    if not part:
        return 1, 1
    try:
        k, total = (int(x) for x in part.split("/"))
    except ValueError:
        raise BuildError(f"--part {part!r}: write it as k/K, e.g. 2/8 for the second of eight parts.") from None
    if not 1 <= k <= total:
        raise BuildError(f"--part {part!r}: k must be between 1 and K.")
    return k, total


def _different_build(out: Path, old: dict, plan: BuildPlan) -> str:
    """Why the build in `out` is not this one, as one sentence with what to do."""
    new = json.loads(json.dumps(plan.shard_attrs))  # as the manifest stores it (tuples become lists)
    inputs = (("params", "parameters"), ("icons_sha256", "icons"), ("clean_sha256", "clean scans"),
              ("drawing_code_sha256", "drawing code"))
    differs = [what for key, what in inputs if old.get(key) != new[key]]
    if not differs:
        was = {"synth": old.get("package_version"), **(old.get("libraries") or {})}
        now = {"synth": new["package_version"], **new["libraries"]}
        changed = ", ".join(f"{k} {was.get(k, 'unrecorded')} (now {v})" for k, v in now.items() if was.get(k) != v)
        return (f"--out {out} holds this build made with other versions: {changed}. Its shards would not match "
                f"the ones made now; finish it with those versions, or pass --overwrite to rebuild it all.")
    if differs == ["clean scans"] and plan.clean.is_phantom and old.get("clean_sources") == list(plan.clean.names):
        why = "the same phantom scans, drawn by changed code (synth/phantom.py or synth/chrome.py)"
    elif differs == ["drawing code"]:
        why = ("the same inputs, drawn by changed code ("
               + ", ".join(f"synth/{pattern}" for pattern in DRAWING_CODE) + ")")
    else:
        why = "other " + " and ".join(differs)
    return f"--out {out} holds a different build ({why}); choose another folder or pass --overwrite to replace it."


def prepare_out(plan: BuildPlan, out: Path, overwrite: bool) -> dict:
    """Check the output folder holds nothing or this same build; returns the known shard entries."""
    if out.exists() and not out.is_dir():
        raise BuildError(f"--out {out} is a file; give a folder.")
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST_NAME
    others = [p for p in out.iterdir() if p.name != MANIFEST_NAME and not p.name.startswith("shard-")
              and not p.name.startswith(MANIFEST_NAME)]
    if manifest_path.exists():
        try:
            old = read_manifest(out)
        except ShardError as e:
            raise BuildError(f"--out {out}: {e}") from e
        if old.get("fingerprint") != plan.fingerprint:
            if not overwrite:
                raise BuildError(_different_build(out, old, plan))
            for p in list_shards(out):
                remove_path(p)
            return {}
        return {e["file"]: e for e in old.get("shards", [])}
    if others or list_shards(out):
        raise BuildError(f"--out {out} is not empty and holds no shard set; choose an empty or new folder.")
    return {}


def write_manifest(plan: BuildPlan, out: Path, entries: dict[str, dict], skipped: tuple[str, ...] = ()) -> dict:
    """Write manifest.json listing the complete shards (merged with entries another part wrote)."""
    cfg = plan.cfg
    path = out / MANIFEST_NAME
    if path.exists():
        try:
            old = read_manifest(out)
            if old.get("fingerprint") == plan.fingerprint:
                for e in old.get("shards", []):
                    if (out / e["file"]).exists():
                        entries.setdefault(e["file"], e)
        except ShardError:
            pass
    shards = sorted(entries.values(), key=lambda e: e["index"])
    n_done = sum(e["n"] for e in shards)
    manifest = {
        "format": "us-annotation-shards",
        **plan.shard_attrs,
        "status": "complete" if len(shards) == cfg.n_shards() else "partial",
        "n_samples": cfg.n, "n_samples_present": n_done, "n_shards": cfg.n_shards(),
        "storage": cfg.fmt,
        "clean_sources": list(plan.clean.names), "clean_skipped": list(skipped),
        "fields": {name: {"dtype": dt, "shape": ["n", *["H" if d == -1 else "W" if d == -2 else d for d in shp]]}
                   for name, (shp, dt) in FIELDS.items()},
        "shards": shards,
    }
    write_json_atomic(path, manifest)
    return manifest


ESTIMATE_SAMPLES = 4
"""Samples rendered and encoded before a build to measure its bytes per sample (about 0.1 s at 512 px)."""

ESTIMATE_MARGIN = 1.1
"""Free space asked for beyond the measured estimate (samples vary around the measured mean)."""


def measure_bytes_per_sample(plan: BuildPlan, n: int = ESTIMATE_SAMPLES) -> float:
    """Bytes one sample of this build takes on disk: the build's first n samples, rendered and written with
    its format and codec into a temporary shard (deleted), divided by n."""
    n = max(1, min(n, plan.cfg.n))
    maker = SampleMaker(plan)
    with tempfile.TemporaryDirectory(prefix="synth-estimate-") as tmp:
        path = Path(tmp) / shard_name(0, plan.cfg.fmt)
        with ShardWriter(path, plan.cfg.fmt, n, plan.cfg.size_px, plan.cfg.size_px, plan.cfg.compression,
                         plan.shard_attrs) as w:
            for j in range(n):
                w.write(j, maker(j))
        return shard_bytes(path) / n


def free_bytes(out: Path) -> int:
    """Free bytes on the filesystem that holds `out` (or its nearest existing parent)."""
    p = out.resolve()
    while not p.exists():
        p = p.parent
    return shutil.disk_usage(p).free


def run_build(plan: BuildPlan, out: str | Path, workers: int = 1, part: str | None = None,
              overwrite: bool = False, on_progress=None, on_start=None, stop=None,
              check_space: bool = True) -> dict:
    """Build every missing shard of this part; returns a summary dict. Safe to interrupt and rerun.

    on_start(n_samples_to_build, estimated_bytes) is called once before the first shard. stop: a callable
    that raises StopRequested when the user asked to stop (synth.interrupt.StopOnSigint.check); it is
    polled between samples and while waiting on workers. check_space: refuse (BuildError) when the target's
    free space is below the measured estimate."""
    out = Path(out)
    stop = stop or (lambda: None)
    k_part, n_parts = parse_part(part)
    entries: dict[str, dict] = {}
    temps: list[Path] = []
    try:
        stop()
        known = prepare_out(plan, out, overwrite)
        mine = [k for k in range(plan.cfg.n_shards()) if k % n_parts == k_part - 1]
        # temp files of this part's shards were left by a killed run (never complete); other parts' temp
        # files may belong to jobs running right now on the same folder, so they are left alone
        temps = [out / (shard_name(k, plan.cfg.fmt) + ".tmp") for k in mine]
        for stale in temps:
            remove_path(stale)
        remove_orphan_json_temps(out / MANIFEST_NAME)  # a run killed while it rewrote the manifest
        todo = []
        for k in mine:
            stop()
            path = out / shard_name(k, plan.cfg.fmt)
            entry = verify_existing(plan, path, k, known.get(path.name)) if path.exists() else None
            if entry:
                entries[path.name] = entry
            else:
                if path.exists():
                    remove_path(path)
                todo.append(k)
        write_manifest(plan, out, dict(entries), plan.clean.skipped)
        n_todo = sum(plan.cfg.shard_range(k)[1] - plan.cfg.shard_range(k)[0] for k in todo)
        need = 0
        if n_todo:
            stop()
            per_sample = measure_bytes_per_sample(plan)
            need = int(per_sample * n_todo)
            free = free_bytes(out)
            if check_space and need * ESTIMATE_MARGIN > free:
                raise BuildError(
                    f"{out} has {free / 1e9:.1f} GB free but these {n_todo} samples need about "
                    f"{need / 1e9:.1f} GB ({per_sample / 1e3:.0f} kB per sample measured with "
                    f"{plan.cfg.compression}): free space, pick a stronger codec or a smaller --size, or pass "
                    f"--ignore-disk-space to build anyway.")
        if on_start:
            on_start(n_todo, need)
        t0 = time.perf_counter()
        if workers <= 1 or len(todo) <= 1:
            _run_here(plan, out, todo, entries, on_progress, stop)
        else:
            _run_pool(plan, out, todo, workers, entries, on_progress, stop)
    except OSError as e:
        for stale in temps:
            remove_path(stale)
        done = len(entries)
        what = "the disk is full" if e.errno == errno.ENOSPC else f"writing failed ({e})"
        raise BuildError(f"{what} while building in {out}: {done} complete shards are kept; "
                         f"free space (or fix the cause) and rerun the same command to finish.") from e
    except (KeyboardInterrupt, StopRequested):
        for stale in temps:
            remove_path(stale)
        if out.is_dir() and (out / MANIFEST_NAME).exists():
            write_manifest(plan, out, dict(entries), plan.clean.skipped)
        raise BuildError(f"interrupted: {len(entries)} complete shards are kept in {out}; "
                         f"rerun the same command to finish.") from None
    seconds = time.perf_counter() - t0
    manifest = write_manifest(plan, out, dict(entries), plan.clean.skipped)
    mine_entries = [e for e in manifest["shards"] if e["index"] in set(mine)]
    total_bytes = sum(e["bytes"] for e in mine_entries)
    n_mine = sum(e["n"] for e in mine_entries)
    return {
        "out": str(out), "status": manifest["status"], "shards_built": len(todo),
        "shards_skipped": len(mine) - len(todo), "samples_built": n_todo, "seconds": seconds,
        "samples_per_s": n_todo / seconds if seconds > 0 and n_todo else 0.0,
        "bytes": total_bytes, "bytes_per_sample": total_bytes / max(n_mine, 1), "estimated_bytes": need,
        "compression": plan.cfg.compression, "format": plan.cfg.fmt, "part": f"{k_part}/{n_parts}",
        "clean_sources": len(plan.clean), "clean_skipped": list(plan.clean.skipped),
        "clean_what": plan.clean.description,
    }


def _run_here(plan: BuildPlan, out: Path, todo: list[int], entries: dict, on_progress, stop) -> None:
    """Build in this process, on one core like each pool worker (OpenCV threads off meanwhile)."""
    import cv2

    def on_sample(delta: int) -> None:
        stop()
        if on_progress:
            on_progress(delta)

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        maker = SampleMaker(plan) if todo else None
        for k in todo:
            e = build_shard(plan, k, out, maker, on_sample=on_sample)
            entries[e["file"]] = e
            write_manifest(plan, out, dict(entries), plan.clean.skipped)
    finally:
        cv2.setNumThreads(threads)


def _run_pool(plan: BuildPlan, out: Path, todo: list[int], workers: int, entries: dict, on_progress,
              stop) -> None:
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    # forkserver: workers fork from a clean server process, so they inherit no HDF5 handles or OpenCV thread
    # pools from this process. It preloads only synth.worker_signals (SIGINT ignored): the renderer's imports
    # then run in the workers, in parallel, and never block this process where a Ctrl-C must be answered.
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["synth.worker_signals"])
    q = ctx.Queue()

    def drain() -> None:
        while True:
            try:
                delta = q.get_nowait()
            except queue.Empty:
                return
            if on_progress:
                on_progress(delta)

    # not `with pool:` — its exit waits for every queued shard, which turned a Ctrl-C into "finish first"
    pool = ProcessPoolExecutor(min(workers, len(todo)), mp_context=ctx, initializer=_worker_init,
                               initargs=(plan, q))
    finished = False
    try:
        pending = {pool.submit(_worker_build, (k, str(out))) for k in todo}
        while pending:
            stop()
            done, pending = wait(pending, timeout=0.2, return_when=FIRST_COMPLETED)
            drain()
            for f in done:
                e = f.result()  # re-raises a worker's exception here
                entries[e["file"]] = e
                write_manifest(plan, out, dict(entries), plan.clean.skipped)
        drain()
        finished = True
    except BrokenProcessPool as e:
        stop()  # a worker killed by the same Ctrl-C before it could ignore it: an interruption, not a crash
        raise BuildError("a worker process died (out of memory, killed, or it could not start: when calling "
                         "run_build from a script with --workers > 1, put the call under "
                         "`if __name__ == \"__main__\":`); complete shards are kept, rerun to finish.") from e
    finally:
        if finished:
            pool.shutdown(wait=True)
        else:
            _end_pool(pool)


def _end_pool(pool) -> None:
    """Stop a pool now: drop queued shards and end the workers (their temp files are removed by the caller)."""
    processes = list((getattr(pool, "_processes", None) or {}).values())
    pool.shutdown(wait=False, cancel_futures=True)
    for p in processes:
        if p.is_alive():
            p.terminate()
    for p in processes:
        p.join(timeout=5)
