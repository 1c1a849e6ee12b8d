"""Checks on output locations, made before any work starts."""

import tempfile
from pathlib import Path

from ..exceptions import ConfigError

__all__ = ["check_writable", "require_writable_directory"]


def _nearest_existing(path):
    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(path, key, source=None):
    """Prove that ``path`` (a directory, existing or not) can be created and written, creating nothing.

    A temporary file is made (and removed at once) in ``path`` or in its
    nearest existing ancestor; as root this still fails on read-only file
    systems and where a path component is a file.
    """
    path = Path(path)
    existing = _nearest_existing(path)
    if not existing.is_dir():
        raise ConfigError(f"cannot write to {path}: {existing} is not a directory", source=source, key=key)
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as err:
        raise ConfigError(f"cannot write to {path}: {err.strerror or err} ({existing})", source=source,
                          key=key) from None
    return path


def require_writable_directory(path, key, source=None):
    """Create ``path`` if needed and prove that files can be written in it."""
    check_writable(path, key, source)
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ConfigError(f"cannot write to {path}: {err.strerror or err}", source=source, key=key) from None
    return path
