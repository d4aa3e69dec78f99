"""Shared bits for benchmarks: a description of the machine, markdown tables, mean ± sd over seeds, summaries."""

from __future__ import annotations

import os
import platform
import statistics
from importlib.metadata import version
from pathlib import Path


def machine() -> str:
    cpu = "?"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    libs = ", ".join(f"{p} {version(p)}" for p in ("numpy", "h5py", "zarr", "opencv-python-headless"))
    return (
        f"{cpu}, {os.cpu_count()} cores, {mem_gb:.0f} GiB RAM, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}; {libs}"
    )


def table(headers: list[str], rows: list[list]) -> str:
    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(str(c) for c in r) + " |" for r in rows]
    return "\n".join(out)


def spread(values: list[float], fmt: str, sign: bool = False) -> str:
    """mean ± sample standard deviation; sign: write the mean with its sign (a difference)."""
    mean = format(statistics.mean(values), ("+" if sign else "") + fmt)
    return mean if len(values) < 2 else f"{mean} ± {format(statistics.stdev(values), fmt)}"


def write_summary(path: Path, title: str, method: str, sections) -> None:
    """Write (and print) a seeds summary: `# title`, the method paragraph, the machine, then the sections."""
    text = "\n\n".join([f"# {title}", method, f"Machine: {machine()}.", *sections]) + "\n"
    path.write_text(text)
    print(text)
