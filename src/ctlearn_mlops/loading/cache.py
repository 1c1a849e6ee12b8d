"""Image cache: the mapped images and identifiers of a reader's examples, in a chunked HDF5 file.

Layout (one file per split, ``<cache_dir>/<split>.images.h5``):

* ``images``: float32 ``(n_examples, height, width, channels)``; by default
  uncompressed and contiguous, so that readers memory-map it and gather a
  random batch in one NumPy operation (the fastest batch read); with
  ``compression="lzf"`` one LZF chunk per image (cleaned images shrink ~40x,
  a random batch reads only its own chunks, ~20x slower than the map);
* ``keys``: ``file_index, obs_id, event_id, tel_id`` of every row, in the
  reader's example order (row i is example i);
* attributes ``sources`` (path, size and modification time of each DL1 file)
  and ``settings`` (reader class, channels, cuts, image mappers, transforms),
  as JSON.  A cache whose sources or settings differ from the reader's is
  refused, naming what changed.
"""

import json
import os
from pathlib import Path

import h5py
import numpy as np

from .keys import reader_settings, source_fingerprints
from .sources import DL1ImageSource

__all__ = ["CACHE_SUFFIX", "COMPRESSIONS", "StaleCacheError", "cache_path", "check_cache", "reader_settings", "write_image_cache"]

CACHE_SUFFIX = ".images.h5"
CACHE_VERSION = 1
_BLOCK = 256


class StaleCacheError(ValueError):
    """The cache was made from other files or other reader settings."""


def cache_path(cache_dir, split):
    return Path(cache_dir) / f"{split}{CACHE_SUFFIX}"


def _keys(reader):
    ids = reader.example_identifiers
    keys = np.empty(len(ids), dtype=[("file_index", "i4"), ("obs_id", "i8"), ("event_id", "i8"), ("tel_id", "i2")])
    for name in keys.dtype.names:
        keys[name] = np.asarray(ids[name])
    return keys


COMPRESSIONS = ("none", "lzf")


def write_image_cache(reader, path, progress=None, compression="none"):
    """Write the cache of ``reader``'s examples to ``path`` (via a temporary file)."""
    path = Path(path)
    source = DL1ImageSource.of_reader(reader)
    ids = reader.example_identifiers
    n = len(ids)
    shape = source.image_shapes[0]  # one telescope type: the shape of one mapped image
    partial = path.with_name(f".{path.name}.partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        with h5py.File(partial, "w") as f:
            images = f.create_dataset(
                "images", shape=(n, *shape), dtype="float32",
                **({} if compression == "none" else {"chunks": (1, *shape), "compression": compression}),
            )
            f.create_dataset("keys", data=_keys(reader))
            f.attrs["ctlearn_mlops_cache_version"] = CACHE_VERSION
            f.attrs["sources"] = json.dumps(source_fingerprints(reader.files))
            f.attrs["settings"] = json.dumps(reader_settings(reader))
            columns = [np.asarray(ids[c]) for c in ("file_index", "table_index", "tel_id", "tel_type_id")]
            for start in range(0, n, _BLOCK):
                rows = slice(start, min(start + _BLOCK, n))
                images[rows] = source.read(*(c[rows] for c in columns))
                if progress is not None:
                    progress.update(rows.stop - rows.start)
        os.replace(partial, path)
    finally:
        source.close()
        partial.unlink(missing_ok=True)
    return path


def check_cache(path, reader):
    """Raise StaleCacheError (what differs) unless ``path`` holds exactly ``reader``'s examples and settings."""
    path = Path(path)
    if not path.is_file():
        raise StaleCacheError(f"{path} does not exist")
    try:
        with h5py.File(path, "r") as f:
            version = f.attrs.get("ctlearn_mlops_cache_version")
            sources = json.loads(f.attrs["sources"])
            settings = json.loads(f.attrs["settings"])
            keys = f["keys"][()]
            n_images = f["images"].shape[0]
    except (OSError, KeyError, ValueError) as err:
        raise StaleCacheError(f"{path} is not an image cache ({type(err).__name__}: {err})") from None
    if version != CACHE_VERSION:
        raise StaleCacheError(f"{path} has cache version {version}, this code writes {CACHE_VERSION}")
    current = source_fingerprints(reader.files)
    if [s["path"] for s in sources] != [s["path"] for s in current]:
        raise StaleCacheError(
            f"{path} was made from other files ({len(sources)} files, first {sources[0]['path'] if sources else None})"
        )
    for old, new in zip(sources, current):
        if old != new:
            raise StaleCacheError(f"{new['path']} changed since {path} was made (size or modification time)")
    now = reader_settings(reader)
    for key in sorted(set(settings) | set(now)):
        if settings.get(key) != now.get(key):
            raise StaleCacheError(f"{path} was made with {key} = {settings.get(key)}, the config now gives {now.get(key)}")
    if n_images != len(keys) or not np.array_equal(keys, _keys(reader)):
        raise StaleCacheError(f"{path} holds other examples than the reader selects")
