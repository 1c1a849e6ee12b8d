"""Checks on output locations, made before any work starts."""

import tempfile
from pathlib import Path

from ..exceptions import ConfigError

__all__ = ["require_writable_directory"]


def require_writable_directory(path, key):
    """Create ``path`` if needed and prove that files can be written in it."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as err:
        raise ConfigError(f"cannot write to {path}: {err.strerror or err}", key=key) from None
    return path
