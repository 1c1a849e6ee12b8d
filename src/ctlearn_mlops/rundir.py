"""Run directories: ``<output_root>/<task>/<run_name>/`` and what they hold.

Every file is written atomically (a temporary file in the same directory, then
``os.replace``), so a reader never sees half a file.
"""

import datetime
import hashlib
import json
import os
import platform
import re
import socket
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from .exceptions import ConfigError

__all__ = [
    "CONFIG_FILE",
    "MODEL_DIR",
    "PROVENANCE_FILE",
    "RUN_FILE",
    "atomic_write_text",
    "collect_provenance",
    "read_run_info",
    "resolve_run",
    "utc_now",
    "write_run_info",
]

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
PROVENANCE_FILE = "provenance.json"
MODEL_DIR = "ctlearn_model.cpk"  # the name CTLearn 0.10's checkpoint callback uses with Keras 2
TRAINING_LOG = "training_log.csv"

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_PACKAGES = (
    "ctlearn-mlops", "ctlearn", "dl1-data-handler", "ctapipe", "tensorflow", "keras",
    "numpy", "astropy", "tables", "h5py", "pyirf", "eventio",
)


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def default_run_name() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


def check_run_name(name, source):
    if not _RUN_NAME.match(name):
        raise ConfigError(
            f"invalid run name {name!r}: use letters, digits and . _ + - (no slashes or spaces)",
            source=source, key="Project.run_name",
        )
    return name


def atomic_write_text(path, text):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", delete=False) as tmp:
        tmp.write(text)
        tmp.flush()
        os.fsync(tmp.fileno())
    os.replace(tmp.name, path)


def atomic_write_json(path, data):
    atomic_write_text(path, json.dumps(data, indent=2, default=str) + "\n")


def atomic_write_yaml(path, data):
    atomic_write_text(path, yaml.safe_dump(data, sort_keys=False, default_flow_style=None))


def write_run_info(run_dir, **fields):
    """Update ``run.json`` with ``fields`` (merged into what is there)."""
    info = read_run_info(run_dir) if (Path(run_dir) / RUN_FILE).exists() else {}
    info.update(fields)
    atomic_write_json(Path(run_dir) / RUN_FILE, info)
    return info


def read_run_info(run_dir) -> dict:
    with open(Path(run_dir) / RUN_FILE) as f:
        return json.load(f)


def resolve_run(run, output_root, task, source) -> Path:
    """A run given as a directory or as a name under ``<output_root>/<task>/``.

    ``latest`` picks the most recently created finished run of the task.
    """
    candidate = Path(run)
    if candidate.is_dir():
        run_dir = candidate
    elif run == "latest":
        task_dir = Path(output_root) / task
        finished = [
            d for d in task_dir.glob("*")
            if (d / RUN_FILE).exists() and read_run_info(d).get("status") == "finished"
        ]
        if not finished:
            raise ConfigError(f"no finished run of task '{task}' in {task_dir}", source=source, key="--run")
        run_dir = max(finished, key=lambda d: read_run_info(d).get("finished", ""))
    else:
        run_dir = Path(output_root) / task / run
        if not run_dir.is_dir():
            raise ConfigError(f"run '{run}' not found (looked for directory {run_dir})", source=source, key="--run")
    if not (run_dir / RUN_FILE).exists():
        raise ConfigError(f"{run_dir} is not a run directory (no {RUN_FILE})", source=source, key="--run")
    return run_dir


def sha256sum(path, chunk=1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def _git_commit():
    here = Path(__file__).resolve().parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=10,
        )
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"], cwd=here,
            capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
    if commit.returncode != 0:
        return {"commit": None, "dirty": None}
    return {"commit": commit.stdout.strip(), "dirty": bool(dirty.stdout.strip())}


def _package_versions():
    versions = {}
    for name in _PACKAGES:
        try:
            versions[name] = version(name)
        except PackageNotFoundError:
            versions[name] = None
    return versions


def collect_provenance(inputs, started, finished):
    """Facts that make a run traceable: code, environment, host and input files.

    ``inputs`` is a list of ``(path, role)`` pairs.
    """
    return {
        "started": started,
        "finished": finished,
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "command": sys.argv,
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "git": _git_commit(),
        "packages": _package_versions(),
        "inputs": [
            {"path": str(Path(p).resolve()), "role": role, "size": Path(p).stat().st_size, "sha256": sha256sum(p)}
            for p, role in inputs
        ],
    }
