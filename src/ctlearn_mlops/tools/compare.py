"""Compare runs of one task: summary.csv, overlaid curves, report.html and report.pdf.

With ``--irf``, overlay instead the sensitivity curves of outputs of
``scripts/compute_irf.py`` (several DL2 files, or the same file with other
options); with ``--irf NEW --irf REFERENCE --gate``, also a physics gate:
exit 3 naming every bin where NEW's sensitivity is more than
``--gate-tolerance`` (10 %) worse than REFERENCE's.

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
from astropy.coordinates import AltAz, SkyCoord
from astropy.table import QTable, Table, join
from astropy.utils.metadata import MergeConflictWarning
from ctapipe.core.traits import Bool, CaselessStrEnum, Float, List, Path, Unicode

from .. import TASKS
from ..exceptions import ConfigError, GateFailed, RunExistsError
from ..io import dl2
from ..io.dl1 import hdf5_problem
from ..output import show
from ..physics.evaluation import evaluate, network_prefix, read_events
from ..reporting import plots
from ..reporting.document import Report, atomic_directory
from ..reporting.irf_figures import GATE_TOLERANCE, plot_sensitivity, sensitivity_gate
from ..reporting.task_figures import BINNED_CURVES
from ..rundir import CONFIG_FILE, RUN_FILE, TRAINING_LOG, check_output_name, read_run_info, run_directories
from .base import MLOpsTool
from .io_checks import check_writable

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
    network = evaluation.network
    return {f"{metric} ({network})": values.get(network, np.nan) for metric, values in evaluation.headline.items()}


def ensemble_events(task, tables):
    """The mean network reconstruction of several runs on their common events (energy: mean of log10,
    direction: mean of the unit vectors); the rest of the first table's columns."""
    role = dl2.ROLE_OF_TASK[task]
    keys = [k for k in _KEYS if k in tables[0].colnames]
    columns = []
    common = tables[0]
    for i, table in enumerate(tables):
        reco = dl2.Reconstruction(role, table.meta["network_prefix"], telescope="tel_id" in keys)
        part = table[keys + reco.values]
        names = [f"__{i}_{column.rsplit('_', 1)[1]}" for column in reco.values]
        for column, name in zip(reco.values, names):
            part.rename_column(column, name)
        columns.append(dict(zip([c.rsplit("_", 1)[1] for c in reco.values], names)))
        common = join(common, part, keys=keys, join_type="inner")
    first = dl2.Reconstruction(role, tables[0].meta["network_prefix"], telescope="tel_id" in keys)
    values = {stem: [u.Quantity(common[c[stem]]) for c in columns] for stem in columns[0]}
    if role == "energy":
        mean = {"energy": 10 ** np.mean([np.log10(v.to_value(u.TeV)) for v in values["energy"]], axis=0) * u.TeV}
    elif role == "type":
        mean = {"prediction": np.mean([np.asarray(v) for v in values["prediction"]], axis=0)}
    else:
        directions = [SkyCoord(alt=alt, az=az, frame=AltAz()).cartesian for alt, az in zip(values["alt"], values["az"])]
        average = SkyCoord(sum(directions[1:], directions[0]) / len(directions), frame=AltAz())
        mean = {"alt": average.alt.to(u.deg), "az": average.az.wrap_at(360 * u.deg).to(u.deg)}
    for column in first.values:
        common[column] = mean[column.rsplit("_", 1)[1]]
    common.remove_columns([name for c in columns for name in c.values()])
    common.meta["network_prefix"] = first.prefix
    return common


class CompareTool(MLOpsTool):
    """Compare runs of one task into reports/compare/<name>/."""

    name = "ctlearn-mlops-compare"
    description = __doc__
    examples = """
    python scripts/compare_models.py --task energy --all
    python scripts/compare_models.py --task type --run baseline --run lr3 --run wide --name lr-scan --ensemble
    python scripts/compare_models.py --run models/energy/a --run models/energy/b
    python scripts/compare_models.py --irf reports/irf/default --irf reports/irf/quality --name sensitivities
    python scripts/compare_models.py --irf reports/irf/mine --irf docs/results/quality-irf --gate
    """

    runs = List(Unicode(), default_value=[], help="Runs: directories, or names under <models_root>/<task>/.").tag(config=True)
    task = CaselessStrEnum(["", *TASKS], default_value="", help="Task of the runs given by name, or with --all.").tag(
        config=True)
    all_runs = Bool(False, help="Compare every finished run of --task.").tag(config=True)
    models_root = Path("models", directory_ok=True, file_ok=False, help="Where runs live.").tag(config=True)
    reports_root = Path("reports", directory_ok=True, file_ok=False, help="Comparisons go to <reports_root>/compare/<name>/.").tag(config=True)
    comparison_name = Unicode("", help="Name of the comparison (default: task and time stamp).").tag(config=True)
    dl2_name = Unicode("test", help="Which DL2 output of each run to compare.").tag(config=True)
    ensemble = Bool(False, help="Add the mean of the runs' predictions as an extra row.").tag(config=True)
    overwrite = Bool(False, help="Replace an existing comparison of the same name.").tag(config=True)
    irf_dirs = List(Path(exists=True, directory_ok=True, file_ok=False), default_value=[], help=(
        "IRF outputs of scripts/compute_irf.py (repeatable): overlay their sensitivity curves instead of comparing runs."
    )).tag(config=True)
    gate = Bool(False, help=(
        "With two --irf outputs, NEW then REFERENCE: exit 3 naming every bin of reconstructed energy counted in "
        "REFERENCE where NEW's sensitivity is more than --gate-tolerance worse (or not measured)."
    )).tag(config=True)
    gate_tolerance = Float(GATE_TOLERANCE, min=0.0, help="The gate's tolerance: a fraction (0.1: 10 % worse).").tag(
        config=True)
    gate_reconstruction = Unicode("CNN", help="The reconstruction the gate compares (a label of compute_irf.py).").tag(
        config=True)

    aliases = {
        ("r", "run"): "CompareTool.runs",
        "task": "CompareTool.task",
        "models-root": "CompareTool.models_root",
        "reports-root": "CompareTool.reports_root",
        "name": "CompareTool.comparison_name",
        "dl2": "CompareTool.dl2_name",
        "irf": "CompareTool.irf_dirs",
        "gate-tolerance": "CompareTool.gate_tolerance",
        "gate-reconstruction": "CompareTool.gate_reconstruction",
    }
    renamed_options = {"--output-root": "--reports-root", "-o": "--reports-root"}
    flags = {
        "all": ({"CompareTool": {"all_runs": True}}, "Compare every finished run of --task."),
        "ensemble": ({"CompareTool": {"ensemble": True}}, "Add the ensemble mean as a row."),
        "overwrite": ({"CompareTool": {"overwrite": True}}, "Replace an existing comparison."),
        "gate": ({"CompareTool": {"gate": True}}, "Fail (exit 3) where the first --irf is worse than the second."),
    }



    def setup(self):
        if self.gate and len(self.irf_dirs) != 2:
            raise ConfigError(f"--gate compares two IRF outputs (--irf NEW --irf REFERENCE), got {len(self.irf_dirs)}",
                              key="--gate")
        self.comparison = (SensitivityOverlay if self.irf_dirs else RunComparison)(self)
        name = check_output_name(self.comparison_name) if self.comparison_name else \
            f"{self.comparison.default_name()}-{datetime.datetime.now():%Y%m%d-%H%M%S}"
        self.output_dir = self.reports_root / "compare" / name
        if self.output_dir.exists() and not self.overwrite:
            raise RunExistsError(f"comparison {self.output_dir} exists; pass --overwrite or choose --name")
        check_writable(self.output_dir.parent, "--reports-root")

    def start(self):
        self.report, self.metrics, self.rows = self.comparison.build()

    def finish(self):
        with atomic_directory(self.output_dir, overwrite=self.overwrite) as tmp:
            self.report.write(tmp, self.metrics)
            buffer = io.StringIO()
            writer = csv.DictWriter(buffer, fieldnames=list(self.rows[0]))
            writer.writeheader()
            writer.writerows(self.rows)
            (tmp / "summary.csv").write_text(buffer.getvalue())
        show(f"Comparison: {self.output_dir / 'report.html'}")
        failed = [b for b in self.metrics.get("gate", {}).get("bins", []) if b["failed"]]
        if failed:
            raise GateFailed(self.metrics["gate"]["verdict"])


def main():
    CompareTool().run()


class RunComparison:
    """Runs of one task on their test events: headline metrics, config values that differ, curves per run."""

    def __init__(self, tool):
        self.tool = tool
        warnings.filterwarnings("ignore", category=MergeConflictWarning)
        self.run_dirs = self._run_dirs()
        tasks = {d: read_run_info(d).get("task") for d in self.run_dirs}
        if len(set(tasks.values())) > 1:
            listing = ", ".join(f"{d} ({t})" for d, t in tasks.items())
            raise ConfigError(f"runs of different tasks cannot be compared: {listing}", key="--run")
        self.task = next(iter(tasks.values()))
        if tool.task and tool.task != self.task:
            raise ConfigError(f"the runs are '{self.task}' runs, not '{tool.task}'", key="--task")
        self.paths = [d / "dl2" / f"{tool.dl2_name}.dl2.h5" for d in self.run_dirs]
        missing = [d for d, path in zip(self.run_dirs, self.paths) if not path.exists()]
        if missing:
            raise ConfigError(
                "runs without predictions (run scripts/test_model.py first): " + ", ".join(str(d) for d in missing),
                key="--run",
            )
        problems = {path: hdf5_problem(path) for path in self.paths}
        broken = [f"{path} {problem}" for path, problem in problems.items() if problem is not None]
        if broken:
            raise ConfigError("runs whose DL2 file cannot be read (predict again with scripts/test_model.py "
                              "--overwrite): " + "; ".join(broken), key="--run")
        stale = [d for d, path in zip(self.run_dirs, self.paths)
                 if not any(network_prefix(path, self.task, level) for level in ("telescope", "subarray"))]
        if stale:
            raise ConfigError("runs whose DL2 file holds no network reconstruction (predict again with "
                              "scripts/test_model.py --overwrite): " + ", ".join(str(d) for d in stale), key="--run")

    def default_name(self):
        return self.task

    def _run_dirs(self):
        tool = self.tool
        dirs = []
        if tool.all_runs:
            if not tool.task:
                raise ConfigError("--all needs --task", key="--task")
            dirs += [d for d in run_directories(tool.models_root / tool.task)
                     if read_run_info(d).get("status") == "finished"]
        for run in tool.runs:
            path = PathlibPath(run)
            if not path.is_dir():
                if not tool.task:
                    raise ConfigError(f"run '{run}' is not a directory; give --task to look it up by name", key="--run")
                path = tool.models_root / tool.task / run
            if not (path / RUN_FILE).exists():
                raise ConfigError(f"{path} is not a run directory", key="--run")
            dirs.append(path)
        dirs = list(dict.fromkeys(d.absolute() for d in dirs))
        if len(dirs) < 2:
            raise ConfigError(f"need at least two runs to compare, got {len(dirs)}", key="--run")
        return dirs

    def _labels(self):
        names = [d.name for d in self.run_dirs]
        if len(set(names)) == len(names):
            return names
        return [f"{d.parent.name}/{d.name}" for d in self.run_dirs]

    def build(self):
        """(report, metrics, summary rows)."""
        task = self.task
        labels = self._labels()
        paths = dict(zip(labels, self.paths))
        # per image for mono runs; per array event as soon as one run is stereo
        level = "telescope" if all(network_prefix(p, task, "telescope") for p in paths.values()) else "subarray"
        events = {label: read_events(path, task, level) for label, path in paths.items()}
        training = {label: dl2.read_training_images(path) if level == "telescope" else None
                    for label, path in paths.items()}
        evaluations = {label: evaluate(task, events[label], training[label], level, margins=False) for label in labels}
        if self.tool.ensemble:
            # the ensemble's baselines are the first run's
            evaluations[ENSEMBLE] = evaluate(task, ensemble_events(task, list(events.values())), training[labels[0]],
                                             level, margins=False)

        configs = {label: _flatten(yaml.safe_load((d / CONFIG_FILE).read_text())) for label, d in zip(labels, self.run_dirs)}
        keys = sorted({k for c in configs.values() for k in c})
        differing = [k for k in keys if len({c.get(k) for c in configs.values()}) > 1 and k != "Project.run_name"]
        rows = []
        for label, evaluation in evaluations.items():
            row = {"run": label, "n_test_images": evaluation.n_events}
            row.update({k: configs.get(label, {}).get(k, "(ensemble)" if label == ENSEMBLE else "") for k in differing})
            row.update(_headline_values(evaluation))
            rows.append(row)

        report = Report(f"Comparison of {len(self.run_dirs)} {task} runs")
        header = list(rows[0])
        report.table("Summary (config values that differ, headline metrics of the network)", header,
                     [[row.get(h, "") for h in header] for row in rows])
        baselines = next(iter(evaluations.values())).headline
        first = next(iter(evaluations.values()))
        report.table("Baselines on the first run's test events", ["metric", *[m for m in first.methods if m != first.network]],
                     [[metric] + [v for m, v in values.items() if m != first.network] for metric, values in baselines.items()])
        logs = {label: pd.read_csv(d / TRAINING_LOG) for label, d in zip(labels, self.run_dirs)
                if (d / TRAINING_LOG).exists() and (d / TRAINING_LOG).stat().st_size}
        if logs:
            report.figure("training_curves", plots.plot_training_curves(logs, "Training of each run"),
                          "Loss per epoch of each run: training (solid), validation (dashed).")
        for column, ylabel, title, log_y in BINNED_CURVES[task]:
            tables = {label: ev.binned[ev.network] for label, ev in evaluations.items()}
            report.figure(f"{task}_{column}_vs_energy", plots.plot_binned(tables, column, ylabel, f"{title}: runs", log_y),
                          f"{title} of each run's network per bin of true energy.")
        if task == "type":
            curves = {label: (ev.arrays["is_gamma"], ev.arrays["scores"][ev.network]) for label, ev in evaluations.items()}
            report.figure("type_roc", plots.plot_roc(curves, "ROC of each run"), "Background rejection vs gamma efficiency.")
        if task in ("cameradirection", "skydirection"):
            thetas = {label: ev.arrays["theta"][ev.network] for label, ev in evaluations.items()}
            report.figure(f"{task}_theta2", plots.plot_theta2(thetas, "theta^2 of each run"), "Squared angular distance.")
        metrics = {
            "task": task, "level": level, "runs": [str(d) for d in self.run_dirs], "ensemble": self.tool.ensemble,
            "headline": {label: ev.headline for label, ev in evaluations.items()},
        }
        return report, metrics, rows


class SensitivityOverlay:
    """The sensitivity curves of several outputs of compute_irf.py in one figure."""

    def __init__(self, tool):
        self.irf_dirs = tool.irf_dirs
        self.gate = (tool.gate_reconstruction, tool.gate_tolerance) if tool.gate else None
        for directory in self.irf_dirs:
            if not (directory / "sensitivity.csv").exists():
                raise ConfigError(f"{directory} is not an output of scripts/compute_irf.py (no sensitivity.csv)",
                                  key="--irf")
        if len(self.irf_dirs) < 2:
            raise ConfigError(f"need at least two IRF outputs to overlay, got {len(self.irf_dirs)}", key="--irf")

    def default_name(self):
        return "irf"

    def build(self):
        """(report, metrics, summary rows)."""
        curves = {}
        for directory in self.irf_dirs:
            table = Table.read(directory / "sensitivity.csv", format="ascii.csv")
            for label in dict.fromkeys(table["reconstruction"]):
                rows = table[table["reconstruction"] == label]
                curves[f"{directory.name}: {label}"] = QTable({
                    "reco_energy_low": rows["reco_energy_low_tev"] * u.TeV,
                    "reco_energy_high": rows["reco_energy_high_tev"] * u.TeV,
                    "relative_sensitivity": np.asarray(rows["relative_sensitivity"], dtype=float),
                    "e2_flux_sensitivity": np.asarray(rows["e2_flux_sensitivity_erg_per_cm2_s"], dtype=float)
                    * u.erg / (u.cm ** 2 * u.s),
                })
        report = Report(f"Sensitivity of {len(self.irf_dirs)} IRF outputs")
        report.figure("sensitivity", plot_sensitivity(curves, "Point-source sensitivity"),
                      "E² F of each reconstruction of each IRF output per bin of reconstructed energy.")
        header = ["curve", "best relative sensitivity", "at E_reco / TeV"]
        rows = []
        for label, curve in curves.items():
            finite = np.isfinite(curve["relative_sensitivity"])
            best = int(np.argmin(np.where(finite, curve["relative_sensitivity"], np.inf))) if finite.any() else None
            rows.append([label, float(curve["relative_sensitivity"][best]) if best is not None else float("nan"),
                         f"{curve['reco_energy_low'][best].value:.3g}-{curve['reco_energy_high'][best].value:.3g}"
                         if best is not None else ""])
        report.table("Best point of each curve", header, rows)
        metrics = {"irf": [str(d) for d in self.irf_dirs], "curves": list(curves)}
        if self.gate is not None:
            metrics["gate"] = self._gate(report, *self.gate)
        return report, metrics, [dict(zip(header, row)) for row in rows]

    def _gate(self, report, reconstruction, tolerance):
        """Check the first output against the second (sensitivity_gate); the verdict goes into the report."""
        new, reference = (Table.read(d / "sensitivity.csv", format="ascii.csv") for d in self.irf_dirs)
        try:
            bins = sensitivity_gate(new, reference, reconstruction, tolerance)
        except ValueError as err:
            raise ConfigError(str(err), key="--gate-reconstruction") from None
        if not bins:
            raise ConfigError(f"{self.irf_dirs[1]} has no counted bin of {reconstruction!r} to gate against",
                              key="--irf")
        failed = [b for b in bins if b["failed"]]
        where = ", ".join(f"{b['reco_energy_low_tev']:.3g}-{b['reco_energy_high_tev']:.3g} TeV "
                          f"({b['new'] / b['reference']:.2f}x)" if np.isfinite(b["ratio"]) else
                          f"{b['reco_energy_low_tev']:.3g}-{b['reco_energy_high_tev']:.3g} TeV (not measured)"
                          for b in failed)
        verdict = (f"gate failed: {reconstruction} of {self.irf_dirs[0]} is more than {tolerance:.0%} worse than "
                   f"{self.irf_dirs[1]} in {len(failed)} of {len(bins)} bins: {where}" if failed else
                   f"gate passed: {reconstruction} of {self.irf_dirs[0]} is within {tolerance:.0%} of "
                   f"{self.irf_dirs[1]} or better in all {len(bins)} bins")
        report.text("Gate", verdict)
        report.table("Gate, per bin counted in the reference", ["E_reco / TeV", "reference", "new", "new / reference"],
                     [[f"{b['reco_energy_low_tev']:.3g}-{b['reco_energy_high_tev']:.3g}", b["reference"], b["new"],
                       b["ratio"]] for b in bins])
        return {"reconstruction": reconstruction, "tolerance": tolerance, "bins": bins, "verdict": verdict}

