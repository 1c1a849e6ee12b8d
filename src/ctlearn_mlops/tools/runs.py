"""Runs of a task: their state, progress, key settings and headline metrics; resuming one.

States: finished; running (its process or SLURM job is alive); resumable
(stopped by a signal, a time limit, a kill or a node failure: resume it);
failed (stopped by an error, see events.jsonl).
"""

import csv
import io
import json
import sys
from pathlib import Path

import yaml
from ctapipe.core.traits import Bool, CaselessStrEnum
from ctapipe.core.traits import Path as PathTrait

from .. import TASKS
from ..exceptions import ConfigError
from ..output import refuse, show
from ..rundir import (
    CONFIG_FILE,
    LEGACY_MODEL_DIR,
    MODEL_DIR,
    RUN_FILE,
    TRAINING_LOG,
    WORST_EPOCH_MESSAGE,
    kept_worst_epoch,
    read_run_info,
    readable_run_info,
    resolve_run,
    run_directories,
)
from ..runlock import RunLock, stale_reason
from .base import MLOpsTool

__all__ = ["RunsTool", "resume_main", "run_state", "list_main"]

_KEY_SETTINGS = (
    ("TrainCTLearnModel", "model_type"), ("TrainCTLearnModel", "n_epochs"), ("TrainCTLearnModel", "batch_size"),
    ("TrainCTLearnModel", "random_seed"),
)


def _in_use(run_dir):
    """A living process holds the run's lock (``runlock``'s rule of who is alive: the one rule)."""
    holder = RunLock(run_dir, "list").read()
    return bool(holder) and stale_reason(holder) is None


def run_state(run_dir, info=None):
    """finished, running, resumable or failed (``info``: the run record, if already read)."""
    info = read_run_info(run_dir) if info is None else info
    status = info.get("status")
    if status == "finished":
        return "finished"
    if status == "running":
        return "running" if _in_use(run_dir) else "resumable"
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
    info = readable_run_info(run_dir)
    if info is None:
        return {"task": run_dir.parent.name, "run": run_dir.name, "state": "damaged",
                "note": f"{RUN_FILE} cannot be read: move the run aside or remove it"}
    config = yaml.safe_load((run_dir / CONFIG_FILE).read_text()) if (run_dir / CONFIG_FILE).exists() else {}
    done, val_loss = _epochs_done(run_dir)
    row = {
        "task": info.get("task"), "run": run_dir.name, "state": run_state(run_dir, info),
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
    if (run_dir / LEGACY_MODEL_DIR).is_dir() and not (run_dir / MODEL_DIR).exists():
        # trained before the move to Keras 3: its SavedModel cannot be loaded any more (tools.event_dl2.load_run)
        row["note"] = f"Keras 2 model ({LEGACY_MODEL_DIR}/): train it again to predict"
    elif kept_worst_epoch(run_dir):
        row["note"] = WORST_EPOCH_MESSAGE
    return row


class RunsTool(MLOpsTool):
    """List the runs of a task (or of all tasks): state, epochs, key settings, headline metrics."""

    name = "ctlearn-mlops-runs"
    description = __doc__
    examples = """
    python scripts/list_runs.py --task energy
    python scripts/list_runs.py --csv > runs.csv
    """

    task = CaselessStrEnum(["", *TASKS], default_value="", help="Only runs of this task (default: all tasks).").tag(
        config=True)
    models_root = PathTrait("models", directory_ok=True, file_ok=False, help="Where runs live.").tag(config=True)
    reports_root = PathTrait("reports", directory_ok=True, file_ok=False, help="Where reports live.").tag(config=True)
    as_csv = Bool(False, help="Write CSV to stdout instead of a table.").tag(config=True)

    aliases = {"task": "RunsTool.task", "models-root": "RunsTool.models_root", "reports-root": "RunsTool.reports_root"}
    flags = {"csv": ({"RunsTool": {"as_csv": True}}, "CSV output.")}


    def setup(self):
        tasks = [self.task] if self.task else list(TASKS)
        self.run_dirs = sorted(
            (d for t in tasks for d in run_directories(self.models_root / t)),
            key=lambda d: (d.parent.name, (readable_run_info(d) or {}).get("created", "")),
        )

    def start(self):
        rows = [describe(d, self.reports_root) for d in self.run_dirs]
        columns = list(dict.fromkeys(k for row in rows for k in row))
        if self.as_csv:
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=columns, restval="")
            writer.writeheader()
            writer.writerows(rows)
            show(buffer.getvalue().rstrip("\n"))
            return
        if not rows:
            show(f"no runs under {self.models_root}" + (f"/{self.task}" if self.task else ""))
            return
        widths = {c: max(len(c), *(len(str(r.get(c, ""))) for r in rows)) for c in columns}
        show("  ".join(c.ljust(widths[c]) for c in columns),
             *("  ".join(str(row.get(c, "")).ljust(widths[c]) for c in columns) for row in rows))


def list_main():
    RunsTool().run()


def resume_main(argv=None):
    """``resume.py --run RUN [--task TASK] [train options]``: continue an unfinished run."""
    import argparse

    parser = argparse.ArgumentParser(
        prog="resume.py", description="Resume an unfinished run from its last finished epoch.",
        epilog="Any further option goes to scripts/train_model.py (see its --help-all), e.g. --log-level WARN.\n"
               "Example: python scripts/rerun/resume.py --task energy --run slurm-1234",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-r", "--run", required=True,
                        help="the run: its directory, or its name under <models-root>/<task>/ (with --task)")
    parser.add_argument("--task", choices=TASKS, help="the task of a run given by name")
    parser.add_argument("--models-root", type=Path, default=Path("models"), help="where runs live (default: models)")
    args, rest = parser.parse_known_args(argv)
    try:
        if not Path(args.run).is_dir() and args.task is None:
            raise ConfigError(f"run '{args.run}' is not a directory: give its task (--task) or its directory",
                              key="--run")
        run_dir = resolve_run(args.run, args.models_root, args.task, None)
        if not (run_dir / CONFIG_FILE).exists():
            raise ConfigError(f"{run_dir} has no {CONFIG_FILE}: not a run directory", key="--run")
    except ConfigError as err:
        refuse("resume.py", err)
        sys.exit(err.exit_code)

    from .train import run_training

    run_training([
        "--config", str(run_dir / CONFIG_FILE), "--resume", "--run-name", run_dir.name,
        "--set", f"Project.output_root={run_dir.absolute().parents[1]}", *rest,
    ])
