"""The `synth` command line: thin wrappers that validate options and call the library."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click

from synth.kinds import KINDS


def _fail(e: Exception) -> click.ClickException:
    return click.ClickException(str(e))


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(package_name="us-annotation-n2n")
def main() -> None:
    """Synthesise Noise2Noise training shards of annotated ultrasound scans."""


@main.command()
@click.option("--type", "kind", type=click.Choice(KINDS), required=True, help="Annotation kind to draw.")
@click.option("--n", type=int, required=True, help="Number of samples (quadruples) to build.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder (created).")
@click.option(
    "--clean",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of clean scans (PNG/JPG/BMP/TIFF, recursive). Default: built-in phantom scans.",
)
@click.option(
    "--phantoms", "n_phantoms", type=int, default=64, help="Phantom scans to draw from when --clean is not given."
)
@click.option("--clean-seed", type=int, default=None, help="Seed of the phantom scans (default: --seed).")
@click.option(
    "--phantom-chrome/--no-phantom-chrome",
    default=False,
    show_default=True,
    help="Draw the scanner's own text, logos, depth digits and cine bar on the phantom scans (not annotations: "
    "never masked).",
)
@click.option(
    "--phantom-reflectors/--no-phantom-reflectors",
    default=False,
    show_default=True,
    help="Add crisp specular reflections (thin bright curved lines) and point echoes to the phantoms' tissue.",
)
@click.option(
    "--icons",
    type=click.Path(path_type=Path),
    default=None,
    help="Icon folder with index.json. Default: the shipped assets/annotation_icons.",
)
@click.option("--format", "fmt", type=click.Choice(["hdf5", "zarr"]), default="hdf5", help="Shard storage.")
@click.option("--size", "size_px", type=int, default=512, help="Image side in pixels (square).")
@click.option(
    "--resize",
    type=click.Choice(["letterbox", "crop"]),
    default="letterbox",
    help="How clean scans of other aspect ratios are brought to --size.",
)
@click.option("--shard-size", type=int, default=256, help="Samples per shard (the unit of parallel work).")
@click.option("--seed", type=int, default=0, help="Master seed: sample i uses SeedSequence([seed, i]).")
@click.option("--workers", type=click.IntRange(1, 256), default=1, help="Worker processes.")
@click.option(
    "--compression",
    default="",
    help="none, lzf (hdf5), gzip-N (hdf5), zstd-N, blosc-zstd-N. "
    "Default: gzip-1 for hdf5, zstd-3 for zarr (chosen by bench/bench_build.py).",
)
@click.option("--part", default=None, help="Build only part k of K (k/K, 1-based) for cluster array jobs.")
@click.option(
    "--placement", type=click.Choice(["anywhere", "edges"]), default="anywhere", help="Where body markers may go."
)
@click.option("--palette", type=click.Choice(["measured", "any"]), default="measured",
              help="Annotation colours: as measured on the development scans (mostly yellow calipers), or any: "
              "white, grey, yellow, green, cyan alike, Philips-style crosses, solid lines (shape, not colour).")
@click.option("--soften/--no-soften", default=True, help="Capture softening: chroma blur + JPEG round trip.")
@click.option("--augment/--no-augment", default=True, help="Seeded flips, brightness/contrast, gamma, affine.")
@click.option("--skip-bad", is_flag=True, help="Leave unreadable clean scans out (counted) instead of stopping.")
@click.option("--overwrite", is_flag=True, help="Replace a different build in --out.")
@click.option("--ignore-disk-space", is_flag=True,
              help="Build even when the target's free space is below the measured estimate.")
def build(
    kind,
    n,
    out,
    clean,
    n_phantoms,
    clean_seed,
    phantom_chrome,
    phantom_reflectors,
    icons,
    fmt,
    size_px,
    resize,
    shard_size,
    seed,
    workers,
    compression,
    part,
    placement,
    palette,
    soften,
    augment,
    skip_bad,
    overwrite,
    ignore_disk_space,
) -> None:
    """Render seeded (noisy_a, noisy_b, clean, mask) quadruples into shards.

    Ctrl-C stops within a second or two at any point, keeps the complete shards and exits non-zero; rerun the
    same command to finish. The expected size is measured on a few samples and checked against free space
    before the first shard."""
    from synth.interrupt import StopOnSigint, StopRequested

    with StopOnSigint() as stop:
        try:
            from rich.console import Console
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            from synth.build import BuildConfig, BuildError, make_plan, run_build

            console = Console(stderr=True)
            cfg = BuildConfig(
                kind=kind,
                n=n,
                fmt=fmt,
                size_px=size_px,
                resize=resize,
                shard_size=shard_size,
                seed=seed,
                compression=compression,
                clean=str(clean) if clean else None,
                n_phantoms=n_phantoms,
                clean_seed=clean_seed,
                phantom_chrome=phantom_chrome,
                phantom_reflectors=phantom_reflectors,
                icons=str(icons) if icons else None,
                placement=placement,
                palette=palette,
                soften=soften,
                augment=augment,
            )
            columns = [
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TextColumn("{task.fields[rate]:>7.1f} samples/s"),
                TimeElapsedColumn(),
                TimeRemainingColumn(),
            ]
            with Progress(*columns, console=console, transient=False) as bar:
                try:
                    check = bar.add_task("checking clean scans", total=None, rate=0.0)

                    def checked(k: int, total: int) -> None:
                        stop.check()
                        bar.update(check, completed=k, total=total)

                    plan = make_plan(cfg, skip_bad=skip_bad, progress=checked)
                    bar.remove_task(check)
                    task = bar.add_task(f"building {kind}", total=None, rate=0.0)
                    clock = {"t0": time.perf_counter(), "done": 0}

                    def started(total: int, need_bytes: int) -> None:
                        clock["t0"] = time.perf_counter()
                        if total:
                            per_kb = need_bytes / total / 1e3
                            console.print(f"synth build: {total} samples to build into {out}, about "
                                          f"{need_bytes / 1e9:.2f} GB ({per_kb:.0f} kB per sample, measured on "
                                          f"this build's first samples with {plan.cfg.compression})")
                        bar.update(task, total=total)

                    def advance(delta: int) -> None:
                        clock["done"] += delta
                        rate = clock["done"] / max(time.perf_counter() - clock["t0"], 1e-9)
                        bar.update(task, advance=delta, rate=rate)

                    summary = run_build(
                        plan, out, workers=workers, part=part, overwrite=overwrite, on_progress=advance,
                        on_start=started, stop=stop.check, check_space=not ignore_disk_space,
                    )
                except BuildError as e:
                    raise _fail(e) from None
        except (StopRequested, KeyboardInterrupt):
            raise click.ClickException(f"interrupted: 0 shards built before the build started; {out} is unchanged. "
                                       f"Rerun the same command to build.") from None
    _print_summary(summary)


def _print_summary(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title="synth build", show_header=False)
    t.add_row("output", f"{s['out']} ({s['format']}, {s['compression']}, part {s['part']})")
    t.add_row("status", s["status"])
    t.add_row("shards built / already complete", f"{s['shards_built']} / {s['shards_skipped']}")
    t.add_row("samples built", f"{s['samples_built']} in {s['seconds']:.1f} s ({s['samples_per_s']:.1f} samples/s)")
    t.add_row("size on disk", f"{s['bytes'] / 1e6:.1f} MB ({s['bytes_per_sample'] / 1e3:.0f} kB per sample)")
    t.add_row(
        "clean sources",
        f"{s['clean_sources']} {s['clean_what']}"
        + (
            f" ({len(s['clean_skipped'])} unreadable, skipped: {', '.join(s['clean_skipped'][:5])})"
            if s["clean_skipped"]
            else ""
        ),
    )
    Console().print(t)


@main.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--verify", is_flag=True, help="Recompute every shard's checksum against the manifest.")
@click.option("--preview", type=click.Path(path_type=Path), default=None, help="Write a PNG grid of samples here.")
@click.option("--k", type=click.IntRange(1, 64), default=6, help="Samples in the preview.")
@click.option("--digest", is_flag=True,
              help="sha256 of the decoded arrays: equal for equal builds on any machine, format or codec.")
def inspect(path, verify, preview, k, digest) -> None:
    """Describe a shard set (or one shard); verify checksums; print a content digest; write a preview PNG."""
    from rich.console import Console
    from rich.table import Table

    from synth import inspect as lib
    from synth.shards import ShardError

    console = Console()
    try:
        info = lib.describe(path)
    except ShardError as e:
        raise _fail(e) from None
    m = info["manifest"]
    if m:
        head = Table(title=f"shard set {path}", show_header=False)
        for key in (
            "status",
            "kind",
            "class_ids",
            "n_samples",
            "n_samples_present",
            "n_shards",
            "storage",
            "compression",
            "image_size",
            "resize",
            "seed",
            "package_version",
            "libraries",
            "icons_sha256",
            "clean_sha256",
        ):
            head.add_row(key, str(m.get(key)))
        head.add_row("clean sources", f"{len(m.get('clean_sources', []))}")
        p = m.get("params", {})
        head.add_row("params", ", ".join(f"{k}={v}" for k, v in p.items() if k not in ("render", "augment_options")))
        console.print(head)
    t = Table(title="shards")
    t.add_column("file", no_wrap=True, min_width=15)
    for col in ("samples", "first id", "codec", "MB", "kB/sample"):
        t.add_column(col, justify="left" if col == "codec" else "right")
    for r in info["shards"]:
        t.add_row(
            r["file"],
            str(r["n"]),
            str(r["start"]),
            r["codec"],
            f"{r['bytes'] / 1e6:.1f}",
            f"{r['bytes_per_sample'] / 1e3:.0f}",
        )
    if info["shards"]:
        f = info["shards"][0]["fields"]
        t.caption = "per sample: " + ", ".join(f"{k} {tuple(shape[1:])} {dt}" for k, (shape, dt) in f.items())
    console.print(t)
    if verify:
        try:
            problems = lib.verify(path)
        except ShardError as e:
            raise _fail(e) from None
        if problems:
            for p in problems:
                console.print(f"[red]CORRUPT[/red] {p}")
            raise click.ClickException(f"{len(problems)} problem(s) found in {path}.")
        console.print(f"[green]verified[/green]: {len(info['shards'])} shards match their checksums")
    if digest:
        from rich.progress import Progress

        try:
            with Progress(transient=True) as bar:
                task = bar.add_task("hashing arrays", total=len(info["shards"]))
                whole, rows = lib.content_digest(path, on_shard=lambda _: bar.advance(task))
        except ShardError as e:
            raise _fail(e) from None
        for file, d in rows if len(rows) > 1 else ():
            click.echo(f"{d}  {file}")
        click.echo(f"{whole}  content sha256 of {path} ({len(rows)} shard{'s' if len(rows) != 1 else ''})")
    if preview:
        out = lib.preview(path, preview, k=k)
        console.print(f"preview written to {out}")


@main.command()
@click.option("--n", type=click.IntRange(1, 100000), required=True, help="Number of phantom scans.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="Output folder for PNGs.")
@click.option("--size", "size_px", type=click.IntRange(32, 4096), default=512, help="Image side in pixels.")
@click.option("--seed", type=int, default=0, help="Phantom k uses SeedSequence([seed, k]).")
@click.option(
    "--chrome/--no-chrome", default=False, show_default=True,
    help="Draw the scanner's own text, logos, depth digits and cine bar (as `synth build --phantom-chrome`).",
)
@click.option(
    "--reflectors/--no-reflectors", default=False, show_default=True,
    help="Add specular reflections and point echoes (as `synth build --phantom-reflectors`).",
)
@click.option("--annotate", type=click.Choice(KINDS), default=None,
              help="Paste one annotation of this kind onto each phantom (needs --truth).")
@click.option("--truth", type=click.Path(path_type=Path), default=None,
              help="With --annotate: folder for the truth masks (PNG, class ids, same names).")
def phantom(n, out, size_px, seed, chrome, reflectors, annotate, truth) -> None:
    """Export procedural B-mode phantom scans as PNG files (optionally annotated, with truth masks)."""
    from synth.phantom import export_phantoms

    if (annotate is None) != (truth is None):
        raise click.UsageError("--annotate and --truth go together: give both (or neither).")
    paths = export_phantoms(n, out, size_px=size_px, seed=seed, chrome=chrome, reflectors=reflectors)
    if annotate:
        from synth.annotate import annotate_folder

        annotate_folder(paths, annotate, out, truth, seed=seed)
        click.echo(f"wrote {len(paths)} phantom scans with a {annotate} annotation each to {out}, truth masks "
                   f"to {truth}")
    else:
        click.echo(f"wrote {len(paths)} phantom scans to {out}")


@main.command("draw-icons")
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder for the icon set. Default: the shipped assets/annotation_icons.",
)
def draw_icons(out) -> None:
    """(Re)draw the shipped procedural icon set (body markers, caliper glyphs)."""
    from synth.draw_icons import draw_default_icons
    from synth.icons import DEFAULT_ICON_DIR

    index = draw_default_icons(Path(out) if out else DEFAULT_ICON_DIR)
    click.echo(f"wrote {index}")


@main.command("extract-icons")
@click.option("--from", "src", type=click.Path(path_type=Path), required=True, help="Folder of annotated scans.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="New folder for the icon set.")
@click.option(
    "--kind",
    type=click.Choice(["body_marker", "radial_line", "vascular_flow", "text"]),
    default=None,
    help="Keep only this kind (and label un-classified overlays as it).",
)
@click.option(
    "--reference",
    type=click.Path(path_type=Path),
    default=None,
    help="Folder of clean twins (same file names): overlay = difference to the twin.",
)
@click.option("--roi", default=None, help="x,y,w,h: cut this box from every scan.")
@click.option("--skip-bad", is_flag=True, help="Go on past unreadable files (counted).")
def extract_icons(src, out, kind, reference, roi, skip_bad) -> None:
    """Find burned-in overlays in real scans and write them as an RGBA icon set."""
    from rich.progress import Progress

    from synth.extract import ExtractError
    from synth.extract import extract_icons as run

    box = None
    if roi:
        try:
            box = tuple(int(v) for v in roi.split(","))
            assert len(box) == 4 and box[2] > 0 and box[3] > 0
        except (ValueError, AssertionError):
            raise click.ClickException(f"--roi {roi!r}: write it as x,y,w,h with positive w and h.") from None
    with Progress(transient=True) as bar:
        task = bar.add_task("extracting", total=None)
        try:
            summary = run(
                src,
                out,
                kind=kind,
                reference=reference,
                roi=box,
                skip_bad=skip_bad,
                progress=lambda k, total: bar.update(task, completed=k, total=total),
            )
        except ExtractError as e:
            raise _fail(e) from None
    click.echo(
        f"scanned {summary['files']} files, found {summary['found']} overlays, wrote {summary['written']} "
        f"icons ({summary['duplicates']} duplicates merged) to {out}"
    )
    for k, v in sorted(summary.get("by_kind", {}).items()):
        click.echo(f"  {k}: {v}")
    if summary.get("bad_files"):
        click.echo(f"skipped {len(summary['bad_files'])} unreadable files: {', '.join(summary['bad_files'][:5])}")


if __name__ == "__main__":
    sys.exit(main())
