"""A persistent example index: the reader's example table, kept between runs of the same config.

dl1-data-handler 0.14.6 builds its example table (which image of which file
passes the cuts, its labels and camera/sky offsets) by reading every file's
tables and transforming coordinates, at every start: training, every resume
and requeue, prediction, the image cache.  The index stores that table (and
the simulation configuration) once; the next reader of the same files with
the same settings reads one table instead.

An index is keyed like the image cache: the files (path, size, modification
time, which are signal and which background) and the reader settings (class,
mode, channels, telescopes, cuts, image mappers).  A changed file or setting
gives another key: that index is built anew (the log says why the old one
does not serve), and indexes of files that have changed since are removed
when a new index is written.  Files are ``<directory>/<files key>-<settings key>.examples.h5``;
the directory is ``ExampleIndex.directory`` or ``$CTLEARN_MLOPS_CACHE/index``
(default ``~/.cache/ctlearn-mlops/index``).
"""

import hashlib
import json
import logging
import os
from pathlib import Path as PathlibPath

from astropy.table import Table
from ctapipe.core import Component
from ctapipe.core.traits import Bool, Path

from .._compat import set_example_table
from ..resources import cache_dir
from .keys import example_settings, source_fingerprints

__all__ = ["ExampleIndex", "files_key", "index_directory"]

log = logging.getLogger(__name__)

INDEX_VERSION = 1
INDEX_SUFFIX = ".examples.h5"


def _digest(value):
    return hashlib.sha256(json.dumps(value, sort_keys=True, default=str).encode()).hexdigest()[:20]


def files_key(signal, background):
    """What identifies the input files: paths, sizes, modification times, and which are background."""
    return {
        "signal": source_fingerprints(sorted(map(str, signal))),
        "background": source_fingerprints(sorted(map(str, background))),
    }


def index_directory(configured=None):
    return PathlibPath(configured) if configured else cache_dir() / "index"


def known_file_set(directory, signal, background):
    """True if some index of these exact files exists (they passed the reader's subarray check before)."""
    directory = index_directory(directory)
    return directory.is_dir() and any(directory.glob(f"{_digest(files_key(signal, background))}-*{INDEX_SUFFIX}"))


class ExampleIndex(Component):
    """Where and whether the readers keep their example tables between runs."""

    enabled = Bool(True, help="Keep the readers' example tables between runs (false: read every file at every "
                              "start, as the stock reader does).").tag(config=True)
    directory = Path(default_value=None, allow_none=True, directory_ok=True, file_ok=False,
                     help="Where the indexes go (default: $CTLEARN_MLOPS_CACHE/index, else "
                          "~/.cache/ctlearn-mlops/index).").tag(config=True)

    def _path(self, reader):
        files = files_key(reader.input_url_signal, reader.input_url_background)
        settings = example_settings(reader)
        name = f"{_digest(files)}-{_digest(settings)}{INDEX_SUFFIX}"
        return index_directory(self.directory) / name, {"files": files, "settings": settings, "version": INDEX_VERSION}

    def restore(self, reader):
        """Set the reader's example table from its index; False if there is none for these files and settings."""
        if not self.enabled:
            return False
        path, key = self._path(reader)
        if not path.exists():
            log.info("no example index serves these files and settings (%s): reading every file", _why_not(path, key))
            return False
        try:
            stored_key = json.loads(Table.read(path, format="hdf5", path="key")["json"][0])
            examples = Table.read(path, format="hdf5", path="examples")
            simulation = Table.read(path, format="hdf5", path="simulation") if _has(path, "simulation") else None
        except Exception as err:  # noqa: BLE001 (whatever makes an index unreadable, it is built anew)
            log.warning("example index %s cannot be read (%s): building it anew", path, type(err).__name__)
            return False
        if stored_key != key:
            log.warning("example index %s does not match the files and settings: building it anew", path)
            return False
        set_example_table(reader, examples, simulation)
        log.info("examples of %d files read from the index %s", len(reader.files), path)
        return True

    def store(self, reader):
        """Write the reader's example table to its index (through a temporary file)."""
        if not self.enabled:
            return
        path, key = self._path(reader)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            examples = reader.example_identifiers.copy(copy_data=False)
            if "index" in examples.colnames:
                examples.remove_indices("index")
            examples.write(partial, format="hdf5", path="examples", serialize_meta=True, overwrite=True)
            Table({"json": [json.dumps(key, sort_keys=True, default=str)]}).write(partial, format="hdf5", path="key", append=True)
            if getattr(reader, "simulation_info", None) is not None:
                reader.simulation_info.write(partial, format="hdf5", path="simulation", append=True, serialize_meta=True)
            os.replace(partial, path)
            log.info("example index written: %s", path)
        except OSError as err:
            log.warning("could not write the example index %s (%s); the next start reads every file again", path, err)
        finally:
            partial.unlink(missing_ok=True)
        for stale in _stale_indexes(path.parent):
            try:
                stale.unlink()
                log.info("removed the example index %s: a file it indexes has changed", stale.name)
            except OSError as err:  # another user's index in a shared cache: left to its owner
                log.debug("could not remove the stale example index %s: %s", stale, err)


def _stored_keys(directory, skip=None):
    """(path, stored key) of every readable index in ``directory`` but ``skip``."""
    for path in sorted(directory.glob(f"*{INDEX_SUFFIX}")):
        if path == skip:
            continue
        try:
            yield path, json.loads(Table.read(path, format="hdf5", path="key")["json"][0])
        except Exception:  # noqa: BLE001, S112 (an unreadable index is rebuilt when its key is asked for)
            continue


def _paths(files):
    return [entry["path"] for entry in files]


def _changed(files):
    """True if a file of the recorded ``files`` exists with another size or modification time.

    A file that is gone may live on another node's disk (a shared cache): its index is left alone.
    """
    for recorded in files:
        try:
            (now,) = source_fingerprints([recorded["path"]])
        except OSError:
            continue
        if now != recorded:
            return True
    return False


def _why_not(path, key):
    """Why no index serves ``key``: the same files changed, or their reader settings differ, or none was made."""
    for _other, stored in _stored_keys(path.parent, skip=path):
        if not _well_formed(stored):
            continue
        same_paths = all(_paths(stored["files"][part]) == _paths(key["files"][part]) for part in ("signal", "background"))
        if not same_paths:
            continue
        if stored["files"] != key["files"]:
            changed = [now["path"] for part in ("signal", "background")
                       for was, now in zip(stored["files"][part], key["files"][part]) if was != now]
            return f"{len(changed)} of its files changed since it was indexed, e.g. {changed[0]}"
        if stored.get("version") != key["version"]:
            return "the index format changed"
        options = sorted({*stored["settings"].get("options", {}), *key["settings"].get("options", {})})
        differing = [name for name in options
                     if stored["settings"].get("options", {}).get(name) != key["settings"]["options"].get(name)]
        if stored["settings"].get("quality_criteria") != key["settings"].get("quality_criteria"):
            differing.append("quality_criteria")
        if stored["settings"].get("reader") != key["settings"].get("reader"):
            differing.append("reader")
        return f"an index of the same files has other reader settings: {', '.join(differing) or 'its key'}"
    return "none of these files was indexed yet"


def _well_formed(stored):
    """A stored key of this format (an index of another version is never served and never judged)."""
    return (isinstance(stored, dict) and stored.get("version") == INDEX_VERSION
            and all(isinstance(stored.get("files", {}).get(part), list) for part in ("signal", "background")))


def _stale_indexes(directory):
    """Indexes that can never serve again: a file they index has changed since."""
    return [path for path, stored in _stored_keys(directory)
            if _well_formed(stored) and any(_changed(stored["files"][part]) for part in ("signal", "background"))]


def _has(path, name):
    import h5py

    with h5py.File(path, "r") as f:
        return name in f
