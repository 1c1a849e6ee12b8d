"""Real simulation files shipped in the eventio source distribution on PyPI.

sim_telarray test files are not on any data server we can reach, but the
eventio sdist carries several (``eventio/resources/``).  They are fetched with
``pip download`` (PyPI only), unpacked once into a cache directory and reused.
"""

import logging
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

__all__ = [
    "EVENTIO_SDIST_VERSION",
    "cache_dir",
    "eventio_resource",
]

log = logging.getLogger(__name__)

EVENTIO_SDIST_VERSION = "0.11.0"
_SDIST_NAME = f"eventio-{EVENTIO_SDIST_VERSION}.tar.gz"
_RESOURCE_PREFIX = f"eventio-{EVENTIO_SDIST_VERSION}/eventio/resources/"


def cache_dir() -> Path:
    """Where fetched resources live: ``$CTLEARN_MLOPS_CACHE`` or ``~/.cache/ctlearn-mlops``."""
    env = os.environ.get("CTLEARN_MLOPS_CACHE")
    path = Path(env) if env else Path.home() / ".cache" / "ctlearn-mlops"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _download_sdist(destination: Path) -> Path:
    sdist = destination / _SDIST_NAME
    if sdist.exists():
        return sdist
    with tempfile.TemporaryDirectory(dir=destination) as tmp:
        cmd = [
            sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", "eventio",
            "--disable-pip-version-check", "-q", "-d", tmp, f"eventio=={EVENTIO_SDIST_VERSION}",
        ]
        log.info("Fetching eventio %s sdist from PyPI for its simtel test files", EVENTIO_SDIST_VERSION)
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise RuntimeError(
                f"could not download the eventio {EVENTIO_SDIST_VERSION} sdist with pip "
                f"(needed for real simtel files):\n{result.stderr.strip()}"
            )
        os.replace(Path(tmp) / _SDIST_NAME, sdist)
    return sdist


def eventio_resource(name: str) -> Path:
    """Return the local path of ``eventio/resources/<name>``, fetching it once.

    Extraction goes to a temporary name and is renamed at the end, so a killed
    fetch never leaves a truncated file behind that looks complete.
    """
    root = cache_dir() / f"eventio-{EVENTIO_SDIST_VERSION}"
    target = root / name
    if target.exists():
        return target
    root.mkdir(parents=True, exist_ok=True)
    sdist = _download_sdist(cache_dir())
    with tarfile.open(sdist) as tar:
        try:
            member = tar.getmember(_RESOURCE_PREFIX + name)
        except KeyError:
            raise FileNotFoundError(f"{name} is not in the eventio {EVENTIO_SDIST_VERSION} sdist") from None
        source = tar.extractfile(member)
        with tempfile.NamedTemporaryFile(dir=root, delete=False, suffix=".part") as out:
            shutil.copyfileobj(source, out)
        os.replace(out.name, target)
    return target
