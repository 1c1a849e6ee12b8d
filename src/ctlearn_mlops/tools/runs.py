"""Runs of a task: their state, progress, key settings and headline metrics; resuming one.

States: finished; running (its process or SLURM job is alive); resumable
(stopped by a signal, a time limit, a kill or a node failure: resume it);
failed (stopped by an error, see events.jsonl).
"""

import csv
import io
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import yaml
from ctapipe.core.traits import Bool, Unicode
from ctapipe.core.traits import Path as PathTrait

from .. import TASKS
from ..exceptions import ConfigError
from ..rundir import CONFIG_FILE, RUN_FILE, TRAINING_LOG, read_run_info, run_directories
from .base import MLOpsTool

__all__ = ["ListRuns", "resume_main", "run_state", "list_main"]

_KEY_SETTINGS = (
    ("TrainCTLearnModel", "model_type"), ("TrainCTLearnModel", "n_epochs"), ("TrainCTLearnModel", "batch_size"),
    ("TrainCTLearnModel", "random_seed"),
)


def _pid_alive(pid):
    try:
        os.kill(int(pid), 0)
    except (OSError, ValueError, TypeError):
        return False
    return True


def _slurm_job_active(job_id):
    try:
        result = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return result.returncode == 0 and result.stdout.strip() in {"RUNNING", "PENDING", "REQUEUED", "CONFIGURING", "COMPLETING"}


def run_state(run_dir):
    info = read_run_info(run_dir)
    status = info.get("status")
    if status == "finished":
        return "finished"
    if status == "running":
        if info.get("host") == socket.gethostname() and _pid_alive(info.get("pid")):
            return "running"
        if info.get("slurm_job_id") and _slurm_job_active(info["slurm_job_id"]):
            return "running"
        return "resumable"
    if status == "interrupted":
        return "resumable"
    return "failed"


def _epochs_done(run_dir):
    path = Path(run_dir) / TRAINING_LOG
    if not path.exists() or path.stat().st_size == 0:
        return 0, None
    with open(path) as f:
        rows = list(csv.DictReader(f))
    return len(rows), (float(rows[-1]["val_loss"]) if rows and rows[-1].get("val_loss") else None)


def describe(run_dir, reports_root):
    info = read_run_info(run_dir)
    config = yaml.safe_load((run_dir / CONFIG_FILE).read_text()) if (run_dir / CONFIG_FILE).exists() else {}
    done, val_loss = _epochs_done(run_dir)
    row = {
        "task": info.get("task"), "run": run_dir.name, "state": run_state(run_dir),
        "epochs": f"{done}/{info.get('n_epochs', '?')}", "last_val_loss": "" if val_loss is None else f"{val_loss:.4g}",
    }
    for section, key in _KEY_SETTINGS:
        row[key] = (config.get(section) or {}).get(key, "")
    metrics_file = Path(reports_root) / str(info.get("task")) / run_dir.name / "metrics.json"
    if metrics_file.exists():
        headline = json.loads(metrics_file.read_text())["headline"]
        for metric, values in headline.items():
            if "CNN" in values and not metric.startswith("bias_"):
                row[metric] = f"{values['CNN']:.4g}"
    row["updated"] = info.get("finished") or info.get("ended") or info.get("created", "")
    return row


class ListRuns(MLOpsTool):
    """List the runs of a task (or of all tasks): state, epochs, key settings, headline metrics."""

    name = "ctlearn-mlops-runs"
    description = __doc__
    examples = """
    python scripts/rerun/status.py --task energy
    python scripts/list_runs.py --csv > runs.csv
    """

    task = Unicode("", help="Only runs of this task (default: all tasks).").tag(config=True)
    models_root = PathTrait("models", directory_ok=True, file_ok=False, help="Where runs live.").tag(config=True)
    reports_root = PathTrait("reports", directory_ok=True, file_ok=False, help="Where reports live.").tag(config=True)
    as_csv = Bool(False, help="Write CSV to stdout instead of a table.").tag(config=True)

    aliases = {"task": "ListRuns.task", "models-root": "ListRuns.models_root", "reports-root": "ListRuns.reports_root"}
    flags = {"csv": ({"ListRuns": {"as_csv": True}}, "CSV output.")}


    def setup(self):
        if self.task and self.task not in TASKS:
            raise ConfigError(f"unknown task {self.task!r}; tasks: {', '.join(TASKS)}", key="--task")
        tasks = [self.task] if self.task else list(TASKS)
        self.run_dirs = sorted(
            (d for t in tasks for d in run_directories(self.models_root / t)),
            key=lambda d: (read_run_info(d).get("task", ""), read_run_info(d).get("created", "")),
        )

    def start(self):
        rows = [describe(d, self.reports_root) for d in self.run_dirs]
        columns = list(dict.fromkeys(k for row in rows for k in row))
        if self.as_csv:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
            sys.stdout.write(buffer.getvalue())
            return
        if not rows:
            print(f"no runs under {self.models_root}" + (f"/{self.task}" if self.task else ""))
            return
        widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
        print("  ".join(c.ljust(widths[c]) for c in columns))
        for row in rows:
            print("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns))


def list_main():
    ListRuns().run()


def resume_main(argv=None):
    """``resume.py --run <run directory> [train options]``: continue an unfinished run."""
    from .train import run_training

    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in ("-h", "--help"):
        print(
            "Resume an unfinished run from its last finished epoch.\n\n"
            "Usage: python scripts/rerun/resume.py --run models/<task>/<run> [train options]\n\n"
            "Options:\n  --run DIR   the run directory (its config.yaml is used)\n"
            "  any option of scripts/train_model.py (see its --help-all), e.g. --log-level WARN"
        )
        return 0
    if "--run" not in argv or argv.index("--run") + 1 >= len(argv):
        print("resume.py: --run <run directory> is required", file=sys.stderr)
        sys.exit(2)
    i = argv.index("--run")
    run_dir = Path(argv[i + 1])
    rest = argv[:i] + argv[i + 2:]
    if not (run_dir / CONFIG_FILE).exists() or not (run_dir / RUN_FILE).exists():
        print(f"resume.py: {run_dir} is not a run directory", file=sys.stderr)
        sys.exit(2)
    run_training([
        "--config", str(run_dir / CONFIG_FILE), "--resume", "--run-name", run_dir.name,
        "--set", f"Project.output_root={run_dir.absolute().parents[1]}", *rest,
    ])
