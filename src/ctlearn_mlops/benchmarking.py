"""Helpers for the benchmark scripts: machine description and docs/benchmarks.md sections."""

import datetime
import os
import platform
import re
from pathlib import Path

__all__ = ["machine_description", "write_section"]


def machine_description():
    cpu = platform.processor() or "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:
        cores = os.cpu_count()
    return f"{platform.node()}: {cores} cores ({cpu}), Python {platform.python_version()}, {platform.system()}"


def write_section(path, name, body):
    """Replace (or append) the section ``name`` of ``path``, delimited by HTML comments."""
    path = Path(path)
    text = path.read_text() if path.exists() else "# Benchmarks\n\nFigures written by the scripts in `benchmarks/`.\n"
    start, end = f"<!-- {name}:start -->", f"<!-- {name}:end -->"
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC")
    block = f"{start}\n_Measured {stamp} on {machine_description()}._\n\n{body.strip()}\n{end}"
    if start in text:
        text = re.sub(re.escape(start) + ".*?" + re.escape(end), lambda _: block, text, flags=re.S)
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    path.write_text(text)
