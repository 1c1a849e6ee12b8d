"""Compare runs of one task: summary.csv, overlaid curves, report.html and report.pdf.

Runs are given by name (with --task), by directory, or all finished runs of
a task (--task energy --all).  The summary has one row per run: the config
values that differ between the runs and the headline metrics.  --ensemble
adds the mean of the runs' predictions on their common test events.
"""

import csv
import datetime
import io
import warnings
from pathlib import Path as PathlibPath

import astropy.units as u
import numpy as np
import pandas as pd
import yaml
from astropy.table import join
from astropy.utils.metadata import MergeConflictWarning
from ctapipe.core.traits import Bool, List, Path, Unicode

from ..exceptions import ConfigError, RunExistsError
from ..physics.evaluation import NETWORK, evaluate, read_baseline_training, read_dl2
from ..reporting import plots
from ..reporting.document import Report, atomic_directory
from ..reporting.task_figures import BINNED_CURVES
from ..rundir import CONFIG_FILE, RUN_FILE, TRAINING_LOG, read_run_info, run_directories
from .base import MLOpsTool
from .predict import PREDICTION_COLUMNS

__all__ = ["CompareTool", "main", "ENSEMBLE"]

ENSEMBLE = "ensemble"
_KEYS = ["obs_id", "event_id", "tel_id"]


def _flatten(config, prefix=""):
    flat = {}
    for key, value in (config or {}).items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(_flatten(value, name + "."))
        else:
            flat[name] = yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()
    return flat


def _headline_values(evaluation):
    return {f"{metric} ({NETWORK})": values.get(NETWORK, np.nan) for metric, values in evaluation.headline.items()}


def ensemble_dl2(task, tables):
    """Mean prediction of several DL2 tables on their common images (energy: mean of log10)."""
    common = tables[0]
    keep = [c for c in common.colnames if c not in PREDICTION_COLUMNS[task]]
    common = common[keep]
    for i, table in enumerate(tables):
        part = table[_KEYS + PREDICTION_COLUMNS[task]]
        for c in PREDICTION_COLUMNS[task]:
            part.rename_column(c, f"{c}_{i}")
        common = join(common, part, keys=_KEYS, join_type="inner")
    for c in PREDICTION_COLUMNS[task]:
        columns = [u.Quantity(common[f"{c}_{i}"]) for i in range(len(tables))]
        if c == "reco_energy":
            common[c] = 10 ** np.mean([np.log10(col.to_value(u.TeV)) for col in columns], axis=0) * u.TeV
        elif c == "reco_az":
            unit = columns[0].unit
            rad = [col.to_value(u.rad) for col in columns]
            common[c] = (np.arctan2(np.mean(np.sin(rad), 0), np.mean(np.cos(rad), 0)) * u.rad).to(unit) % (360 * u.deg)
        else:
            common[c] = np.mean(u.Quantity(columns), axis=0)
        for i in range(len(tables)):
            common.remove_column(f"{c}_{i}")
    return common


class CompareTool(MLOpsTool):
    """Compare runs of one task into reports/compare/<name>/."""

    name = "ctlearn-mlops-compare"
    description = __doc__
    examples = """
    python scripts/compare_models.py --task energy --all
    python scripts/compare_models.py --task type --run baseline --run lr3 --run wide --name lr-scan --ensemble
    python scripts/compare_models.py --run models/energy/a --run models/energy/b
    """

    runs = List(Unicode(), default_value=[], help="Runs: directories, or names under <models_root>/<task>/.").tag(config=True)
    task = Unicode("", help="Task of the runs given by name, or with --all.").tag(config=True)
    all_runs = Bool(False, help="Compare every finished run of --task.").tag(config=True)
    models_root = Path("models", directory_ok=True, file_ok=False, help="Where runs live.").tag(config=True)
    reports_root = Path("reports", directory_ok=True, file_ok=False, help="Comparisons go to <reports_root>/compare/<name>/.").tag(config=True)
    comparison_name = Unicode("", help="Name of the comparison (default: task and time stamp).").tag(config=True)
    dl2_name = Unicode("test", help="Which DL2 output of each run to compare.").tag(config=True)
    ensemble = Bool(False, help="Add the mean of the runs' predictions as an extra row.").tag(config=True)
    overwrite = Bool(False, help="Replace an existing comparison of the same name.").tag(config=True)

    aliases = {
        ("r", "run"): "CompareTool.runs",
        "task": "CompareTool.task",
        "models-root": "CompareTool.models_root",
        ("o", "output-root"): "CompareTool.reports_root",
        "name": "CompareTool.comparison_name",
        "dl2": "CompareTool.dl2_name",
    }
    flags = {
        "all": ({"CompareTool": {"all_runs": True}}, "Compare every finished run of --task."),
        "ensemble": ({"CompareTool": {"ensemble": True}}, "Add the ensemble mean as a row."),
        "overwrite": ({"CompareTool": {"overwrite": True}}, "Replace an existing comparison."),
    }



    def _run_dirs(self):
        dirs = []
        if self.all_runs:
            if not self.task:
                raise ConfigError("--all needs --task", key="--task")
            dirs += [d for d in run_directories(self.models_root / self.task) if read_run_info(d).get("status") == "finished"]
        for run in self.runs:
            path = PathlibPath(run)
            if not path.is_dir():
                if not self.task:
                    raise ConfigError(f"run '{run}' is not a directory; give --task to look it up by name", key="--run")
                path = self.models_root / self.task / run
            if not (path / RUN_FILE).exists():
                raise ConfigError(f"{path} is not a run directory", key="--run")
            dirs.append(path)
        dirs = list(dict.fromkeys(d.absolute() for d in dirs))
        if len(dirs) < 2:
            raise ConfigError(f"need at least two runs to compare, got {len(dirs)}", key="--run")
        return dirs

    def setup(self):
        warnings.filterwarnings("ignore", category=MergeConflictWarning)
        self.run_dirs = self._run_dirs()
        tasks = {d: read_run_info(d).get("task") for d in self.run_dirs}
        if len(set(tasks.values())) > 1:
            listing = ", ".join(f"{d} ({t})" for d, t in tasks.items())
            raise ConfigError(f"runs of different tasks cannot be compared: {listing}", key="--run")
        self.compared_task = next(iter(tasks.values()))
        if self.task and self.task != self.compared_task:
            raise ConfigError(f"the runs are '{self.compared_task}' runs, not '{self.task}'", key="--task")
        missing = [d for d in self.run_dirs if not (d / "dl2" / f"{self.dl2_name}.dl2.h5").exists()]
        if missing:
            raise ConfigError(
                "runs without predictions (run scripts/test_model.py first): " + ", ".join(str(d) for d in missing),
                key="--run",
            )
        name = self.comparison_name or f"{self.compared_task}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
        self.output_dir = self.reports_root / "compare" / name
        if self.output_dir.exists() and not self.overwrite:
            raise RunExistsError(f"comparison {self.output_dir} exists; pass --overwrite or choose --name")

    def _labels(self):
        names = [d.name for d in self.run_dirs]
        if len(set(names)) == len(names):
            return names
        return [f"{d.parent.name}/{d.name}" for d in self.run_dirs]

    def start(self):
        task = self.compared_task
        labels = self._labels()
        paths = {label: d / "dl2" / f"{self.dl2_name}.dl2.h5" for label, d in zip(labels, self.run_dirs)}
        dl2 = {label: read_dl2(path) for label, path in paths.items()}
        training = {label: read_baseline_training(path) for label, path in paths.items()}
        evaluations = {label: evaluate(task, dl2[label], training[label]) for label in labels}
        if self.ensemble:
            # the ensemble's baselines are the first run's
            evaluations[ENSEMBLE] = evaluate(task, ensemble_dl2(task, list(dl2.values())), training[labels[0]])

        configs = {label: _flatten(yaml.safe_load((d / CONFIG_FILE).read_text())) for label, d in zip(labels, self.run_dirs)}
        keys = sorted({k for c in configs.values() for k in c})
        differing = [k for k in keys if len({c.get(k) for c in configs.values()}) > 1 and k != "Project.run_name"]
        self.rows = []
        for label, evaluation in evaluations.items():
            row = {"run": label, "n_test_images": evaluation.n_events}
            row.update({k: configs.get(label, {}).get(k, "(ensemble)" if label == ENSEMBLE else "") for k in differing})
            row.update(_headline_values(evaluation))
            self.rows.append(row)

        report = Report(f"Comparison of {len(self.run_dirs)} {task} runs")
        header = list(self.rows[0])
        report.table("Summary (config values that differ, headline metrics of the network)", header,
                     [[row.get(h, "") for h in header] for row in self.rows])
        baselines = next(iter(evaluations.values())).headline
        report.table("Baselines on the first run's test images", ["metric", *[m for m in next(iter(evaluations.values())).methods if m != NETWORK]],
                     [[metric] + [v for m, v in values.items() if m != NETWORK] for metric, values in baselines.items()])
        logs = {label: pd.read_csv(d / TRAINING_LOG) for label, d in zip(labels, self.run_dirs)
                if (d / TRAINING_LOG).exists() and (d / TRAINING_LOG).stat().st_size}
        if logs:
            report.figure("training_curves", plots.plot_training_curves(logs, "Training of each run"),
                          "Loss per epoch of each run: training (solid), validation (dashed).")
        for column, ylabel, title, log_y in BINNED_CURVES[task]:
            tables = {label: ev.binned[NETWORK] for label, ev in evaluations.items()}
            report.figure(f"{task}_{column}_vs_energy", plots.plot_binned(tables, column, ylabel, f"{title}: runs", log_y),
                          f"{title} of each run's network per bin of true energy.")
        if task == "type":
            curves = {label: (ev.arrays["is_gamma"], ev.arrays["scores"][NETWORK]) for label, ev in evaluations.items()}
            report.figure("type_roc", plots.plot_roc(curves, "ROC of each run"), "Background rejection vs gamma efficiency.")
        if task in ("cameradirection", "skydirection"):
            thetas = {label: ev.arrays["theta"][NETWORK] for label, ev in evaluations.items()}
            report.figure(f"{task}_theta2", plots.plot_theta2(thetas, "theta^2 of each run"), "Squared angular distance.")
        self.report = report
        self.metrics = {
            "task": task, "runs": [str(d) for d in self.run_dirs], "ensemble": self.ensemble,
            "headline": {label: ev.headline for label, ev in evaluations.items()},
        }

    def finish(self):
        with atomic_directory(self.output_dir, overwrite=self.overwrite) as tmp:
            self.report.write(tmp, self.metrics)
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
            (tmp / "summary.csv").write_text(buffer.getvalue())
        print(f"Comparison: {self.output_dir / 'report.html'}")


def main():
    CompareTool().run()
