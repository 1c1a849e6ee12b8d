"""Run directories: ``<output_root>/<task>/<run_name>/`` and what they hold.

Every file is written atomically (a temporary file in the same directory, then
``os.replace``), so a reader never sees half a file.
"""

import csv
import datetime
import functools
import hashlib
import json
import os
import platform
import re
import shutil
import socket
import subprocess
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import yaml

from .exceptions import ConfigError

__all__ = [
    "replaced_runs",
    "restore_replaced",
    "check_output_name",
    "run_directories",
    "set_aside_for_overwrite",
    "CONFIG_FILE",
    "LEGACY_MODEL_DIR",
    "WORST_EPOCH_MESSAGE",
    "give_back_replaced",
    "kept_worst_epoch",
    "MODEL_DIR",
    "PROVENANCE_FILE",
    "RUN_FILE",
    "SHIPPED_ENERGY_ERROR_MODEL",
    "SHIPPED_ERROR_MODEL",
    "SHIPPED_TRAINING_IMAGES",
    "VALIDATION_PREDICTIONS",
    "atomic_write_text",
    "collect_provenance",
    "read_run_info",
    "readable_run_info",
    "remove_temporaries",
    "resolve_run",
    "utc_now",
    "write_run_info",
]

CONFIG_FILE = "config.yaml"
RUN_FILE = "run.json"
PROVENANCE_FILE = "provenance.json"
MODEL_DIR = "ctlearn_model.keras"  # the name ctlearn 0.10.4 saves (Keras 3 format); its predict tools load it
#: the Keras 2 SavedModel directory of runs made before the move to Keras 3 (ctlearn 0.10.2)
LEGACY_MODEL_DIR = "ctlearn_model.cpk"
TRAINING_LOG = "training_log.csv"
#: what a shipped reference model carries instead of its training data (models/reference/, tools/reference.py):
#: its training images' parameters and truth, and the errors of a direction network's images
SHIPPED_TRAINING_IMAGES = "training_images.h5"
SHIPPED_ERROR_MODEL = "direction_error_model.ecsv"
#: a reference energy model's EnergyErrorModel (its calibrated event energy uncertainty)
SHIPPED_ENERGY_ERROR_MODEL = "energy_error_model.ecsv"
#: a mono run's network on its validation images, kept by the first event DL2 file that measured its error model
#: (stamped with what it was predicted from: a later run of the same weights reads it instead of predicting again)
VALIDATION_PREDICTIONS = "validation_predictions.ecsv"

_RUN_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._+-]*$")
_PACKAGES = (
    "ctlearn-mlops", "ctlearn", "dl1-data-handler", "ctapipe", "tensorflow", "keras",
    "numpy", "astropy", "tables", "h5py", "pyirf", "eventio",
)


def utc_now() -> str:
    return datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")


def default_run_name() -> str:
    return datetime.datetime.now().strftime("%Y%m%d-%H%M%S")


#: a run directory's name also carries suffixes (".<name>.replaced-<time>", "<name>.failed-<time>", its lock's
#: temporary name): the longest name that leaves them room under the usual 255-byte limit of a file name
MAX_RUN_NAME = 200
#: names the scripts read as a keyword in place of a run name
RESERVED_RUN_NAMES = ("latest",)


def _name_problem(name):
    """What is wrong with a name that becomes one file or directory name, or None."""
    if not _RUN_NAME.match(name):
        return "use letters, digits and . _ + - (no slashes or spaces)"
    if len(name) > MAX_RUN_NAME:
        return f"{len(name)} characters; at most {MAX_RUN_NAME}"
    return None


def _refuse_name(what, name, problem, source, key):
    raise ConfigError(f"invalid {what} {name[:60]!r}{'...' if len(name) > 60 else ''}: {problem}", source=source,
                      key=key)


def check_run_name(name, source):
    problem = _name_problem(name)
    if problem is None and name in RESERVED_RUN_NAMES:
        problem = f"'{name}' is the keyword for the newest finished run; choose another name"
    if problem is not None:
        _refuse_name("run name", name, problem, source, "Project.run_name")
    return name


def check_output_name(name, source=None, key="--name"):
    """An output's ``--name`` (a report, comparison, IRF or DL2 name): one file or directory name, by the rule of
    run names, never a path."""
    problem = _name_problem(name)
    if problem is not None:
        _refuse_name("name", name, problem, source, key)
    return name


@functools.cache
def _umask():
    """The process umask, read from /proc (setting it to read it would race other threads); once per process."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    umask = os.umask(0o022)  # no /proc: the only portable way to read it
    os.umask(umask)
    return umask


def file_mode():
    """Mode of a new file under the process umask (temporary files are created 0600)."""
    return 0o666 & ~_umask()


def directory_mode():
    """Mode of a new directory under the process umask (``tempfile.mkdtemp`` creates 0700)."""
    return 0o777 & ~_umask()


def atomic_write_text(path, text):
    """Write ``text`` to ``path`` through a temporary file in the same directory (removed if the write fails)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".partial", delete=False)
    try:
        with tmp:
            tmp.write(text)
            tmp.flush()
            os.fsync(tmp.fileno())
        os.chmod(tmp.name, file_mode())
        os.replace(tmp.name, path)
    except BaseException:
        Path(tmp.name).unlink(missing_ok=True)
        raise


def remove_temporaries(run_dir):
    """Remove what writers killed mid-write left in ``run_dir`` (hidden ``.partial`` names); return their paths.

    Only for the holder of the run's lock: no other writer can be at work.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        return []
    left = sorted((p for p in run_dir.rglob(".*") if ".partial" in p.name), key=lambda p: len(p.parts), reverse=True)
    for path in left:
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return left


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
    """The run record (``run.json``); ConfigError naming the file if it is not a JSON object (e.g. emptied)."""
    path = Path(run_dir) / RUN_FILE
    try:
        with open(path) as f:
            info = json.load(f)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ConfigError(f"the run record cannot be read ({err}): the run is damaged; move it aside or remove it",
                          source=path) from None
    if not isinstance(info, dict):
        raise ConfigError("the run record is not a JSON object: the run is damaged; move it aside or remove it",
                          source=path)
    return info


def readable_run_info(run_dir):
    """The run record, or None if it is damaged (a listing shows such a run as damaged instead of failing)."""
    try:
        return read_run_info(run_dir)
    except ConfigError:
        return None


def run_directories(task_dir):
    """The run directories of a task, sorted by name (hidden ones, being set aside or replaced, excluded)."""
    task_dir = Path(task_dir)
    if not task_dir.is_dir():
        return []
    return sorted(d for d in task_dir.iterdir() if not d.name.startswith(".") and (d / RUN_FILE).exists())


def replaced_runs(run_dir):
    """Old runs that an overwrite of ``run_dir`` set aside (deleted once the new run has finished)."""
    run_dir = Path(run_dir)
    return sorted(run_dir.parent.glob(f".{run_dir.name}.replaced-*"))


def set_aside_for_overwrite(run_dir):
    """Move ``run_dir`` to a hidden sibling; it comes back (``restore_replaced``) if the new run fails its checks."""
    run_dir = Path(run_dir)
    aside = run_dir.with_name(f".{run_dir.name}.replaced-{datetime.datetime.now():%Y%m%dT%H%M%S%f}")
    os.replace(run_dir, aside)
    return aside


def restore_replaced(run_dir):
    """Put back the newest run set aside by an overwrite if ``run_dir`` is missing (the overwrite never got going).

    Returns the restored directory, or None.
    """
    run_dir = Path(run_dir)
    aside = replaced_runs(run_dir)
    if run_dir.exists() or not aside:
        return None
    os.replace(aside[-1], run_dir)
    return aside[-1]


def kept_worst_epoch(run_dir):
    """True for a run whose model is its epoch of highest validation loss while an epoch had a lower one.

    Runs trained between the move to Keras 3 and 2026-12-06 kept their worst
    epoch (the checkpoint's direction was read before Keras 3 sets it); their
    last resume state and training log tell them apart.
    """
    run_dir = Path(run_dir)
    states = sorted((run_dir / "state").glob("epoch_*.json"))
    if not states or not (run_dir / TRAINING_LOG).exists():
        return False
    try:
        best = json.loads(states[-1].read_text())["callbacks"]["BestWeights"]["best"]
        with open(run_dir / TRAINING_LOG) as log:
            losses = [float(row["val_loss"]) for row in csv.DictReader(log)]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    return len(losses) > 1 and min(losses) < max(losses) and abs(best - max(losses)) <= 1e-6 * abs(max(losses))


#: what a run that kept its worst epoch is told
WORST_EPOCH_MESSAGE = ("kept the epoch of highest validation loss as its model (runs trained before 2026-12-06 on "
                       "Keras 3): train it again (--overwrite); its final.weights.h5 holds its last epoch")


def give_back_replaced(run_dir, replaced):
    """A replacement that failed: it moves to ``<name>.failed-<time>`` and the run it replaced is back under
    its name.  Returns where the failed run went."""
    run_dir = Path(run_dir)
    failed = run_dir.with_name(f"{run_dir.name}.failed-{datetime.datetime.now():%Y%m%dT%H%M%S%f}")
    os.replace(run_dir, failed)
    os.replace(replaced, run_dir)
    return failed


def resolve_run(run, output_root, task, source) -> Path:
    """A run given as a directory or as a name under ``<output_root>/<task>/``.

    ``latest`` picks the most recently created finished run of the task.
    """
    candidate = Path(run)
    if candidate.is_dir():
        run_dir = candidate
    elif run == "latest":
        task_dir = Path(output_root) / task
        records = {d: readable_run_info(d) for d in run_directories(task_dir)}
        finished = [d for d, info in records.items() if info and info.get("status") == "finished"]
        if not finished:
            raise ConfigError(f"no finished run of task '{task}' in {task_dir}", source=source, key="--run")
        run_dir = max(finished, key=lambda d: records[d].get("finished", ""))
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
