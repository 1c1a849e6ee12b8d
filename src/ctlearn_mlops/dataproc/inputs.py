"""Input file lists: files, directories or globs; shards for SLURM job arrays."""

import glob
import os
from pathlib import Path

from ..exceptions import ConfigError

__all__ = ["SIMTEL_SUFFIXES", "expand_inputs", "output_name", "select_shard", "shard_from_environment"]

SIMTEL_SUFFIXES = (".simtel.gz", ".simtel.zst", ".simtel")


def _matches(path, suffixes):
    return path.is_file() and any(path.name.endswith(s) for s in suffixes)


def expand_inputs(items, suffixes, key="--input"):
    """Unique files from files, directories (searched recursively) and glob patterns.

    Files keep the order in which they are named; what a directory or a
    pattern expands to is sorted.
    """
    files = {}
    for item in items:
        item = os.path.expandvars(str(item))
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if _matches(p, suffixes))
        elif path.is_file():
            found = [path]
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(item, recursive=True) if _matches(Path(p), suffixes))
        else:
            raise ConfigError(f"no such file or directory: {item}", key=key)
        files.update((p.absolute(), None) for p in found)
    if not files:
        raise ConfigError(f"no input files ({', '.join(suffixes)}) in {list(map(str, items))}", key=key)
    return list(files)


def shard_from_environment():
    """(index, count) of a SLURM job array element, or None outside an array."""
    task_id = os.environ.get("SLURM_ARRAY_TASK_ID")
    if task_id is None:
        return None
    count = os.environ.get("SLURM_ARRAY_TASK_COUNT")
    minimum = int(os.environ.get("SLURM_ARRAY_TASK_MIN", "0"))
    if count is None:
        raise ConfigError("SLURM_ARRAY_TASK_ID is set but SLURM_ARRAY_TASK_COUNT is not", key="--shard")
    return int(task_id) - minimum, int(count)


def parse_shard(text):
    """'i/n' -> (i, n) with 0 <= i < n."""
    try:
        index, count = (int(x) for x in text.split("/"))
    except ValueError:
        raise ConfigError(f"expected i/n (e.g. 0/10), got {text!r}", key="--shard") from None
    if not 0 <= index < count:
        raise ConfigError(f"shard index must be in 0..{count - 1}, got {index}", key="--shard")
    return index, count


def select_shard(files, index, count):
    """Every ``count``-th file starting at ``index``: shards are disjoint and cover all files."""
    return files[index::count]


def output_name(path):
    """``run1.simtel.zst`` -> ``run1.dl1.h5``."""
    name = Path(path).name
    for suffix in SIMTEL_SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)] + ".dl1.h5"
    return Path(name).stem + ".dl1.h5"
