"""Physics report of one run: metrics.json, PNG figures, report.pdf and a self-contained report.html.

Every figure and metric puts the network next to classical baselines on the
same test events (median energy, intensity fit; Hillas centroid, disp; Hillas
width cut, logistic regression; and for each task boosted decision trees on the
Hillas parameters, the classical mono reconstruction).  A mono run is judged
per image, then combined over the telescopes of each event (against the
combined Hillas BDT, and ctapipe's HillasReconstructor for directions); a
stereo run per event.
"""

import json

import pandas as pd
from ctapipe.core.traits import Path, Unicode

from ..config import Project
from ..exceptions import ConfigError, InputDataError, RunExistsError
from ..io import dl2
from ..io.dl1 import hdf5_problem
from ..mlflow_tracking import MLflowRun
from ..output import show
from ..physics.evaluation import LOWER_IS_BETTER, evaluate_file, network_prefix
from ..progress import Progress
from ..reporting.document import Report, atomic_directory
from ..reporting.plots import plot_training_curves
from ..reporting.task_figures import headline_table, network_beats, task_figures
from ..rundir import CONFIG_FILE, PROVENANCE_FILE, TRAINING_LOG, read_run_info, resolve_run
from .ctlearn_options import option_classes
from .io_checks import check_writable
from .taskconfig import TaskConfigTool, data_classes

__all__ = ["ReportTool", "main", "split_counts"]


def split_counts(run_dir, n_test):
    """Images and showers per split, from the run's split.csv and its DL2 table."""
    counts = {"test": {"images": n_test}}
    path = run_dir / "split.csv"
    if path.exists():
        split = pd.read_csv(path)
        for name, group in split.groupby("split"):
            counts[name] = {"images": len(group), "showers": len(group.drop_duplicates(["obs_id", "event_id"]))}
    return counts


class ReportTool(TaskConfigTool):
    """Write reports/<task>/<run>/ for a tested run."""

    name = "ctlearn-mlops-report"
    description = __doc__
    examples = """
    python scripts/generate_report.py --config configs/energy.yaml --run latest
    """

    trained_run = Unicode("latest", help="Run: a name under <output_root>/<task>/, a directory, or 'latest'.").tag(
        config=True
    )
    dl2_name = Unicode("test", help="Which DL2 output of the run to evaluate (<run>/dl2/<name>.dl2.h5).").tag(config=True)
    reports_root = Path("reports", directory_ok=True, file_ok=False, help="Reports go to <reports_root>/<task>/<run>/.").tag(
        config=True
    )

    aliases = {
        "config": "Tool.config_files",
        "set": "TaskConfigTool.overrides",
        ("r", "run"): "ReportTool.trained_run",
        "dl2": "ReportTool.dl2_name",
        "reports-root": "ReportTool.reports_root",
    }
    renamed_options = {"--output-root": "--reports-root", "-o": "--reports-root"}
    flags = {
        "overwrite": ({"TaskConfigTool": {"overwrite": True}}, "Replace an existing report."),
        "skip-existing": ({"TaskConfigTool": {"skip_existing": True}}, "Do nothing if the report exists."),
    }
    classes = [Project]

    def config_classes(self):
        """Every section, as training and testing check it: CTLearn's from their description (no TensorFlow)."""
        return list(dict.fromkeys([*super().config_classes(), *data_classes(), *option_classes()]))

    def unchecked_sections(self):
        return set()

    def setup(self):
        project = self.setup_project()
        source = self.task_config_source
        self.run_dir = resolve_run(self.trained_run, project.output_root, project.task, source)
        self.info = read_run_info(self.run_dir)
        if self.info.get("task") != project.task:
            raise ConfigError(
                f"run {self.run_dir} is a '{self.info.get('task')}' run, the config is for '{project.task}'",
                source=source, key="Project.task",
            )
        self.dl2_path = self.run_dir / "dl2" / f"{self.dl2_name}.dl2.h5"
        if not self.dl2_path.exists():
            raise ConfigError(
                f"run {self.run_dir} has no predictions ({self.dl2_path.name}); run scripts/test_model.py first",
                source=source, key="--run",
            )
        problem = hdf5_problem(self.dl2_path)
        if problem is not None:
            raise InputDataError(f"{self.dl2_path} {problem}: predict again with scripts/test_model.py --overwrite",
                                 source=source, key="--run")
        if not any(network_prefix(self.dl2_path, project.task, level) for level in ("telescope", "subarray")):
            raise ConfigError(f"{self.dl2_path} holds no {dl2.KIND_OF_ROLE[dl2.ROLE_OF_TASK[project.task]]} "
                              "reconstruction of a network; predict again with scripts/test_model.py --overwrite",
                              source=source, key="--run")
        self.output_dir = self.reports_root / project.task / self.run_dir.name
        self.task = project.task
        self.skipped = self.skip_existing and self.output_dir.exists() and not self.overwrite
        if self.skipped:
            return
        if self.output_dir.exists() and not self.overwrite:
            raise RunExistsError(f"report {self.output_dir} exists; pass --overwrite to replace it", source=source)
        check_writable(self.output_dir.parent, "--reports-root")
        self.task = project.task

    def output_location(self):
        return getattr(self, "output_dir", None)

    def start(self):
        if self.skipped:
            return
        # the last step, writing HTML and PDF, happens in finish()
        levels = [level for level in ("telescope", "subarray") if network_prefix(self.dl2_path, self.task, level)]
        self.progress = progress = Progress(len(levels) + 2, "report", self.log, unit="step")
        evaluations = {}
        for level in levels:
            evaluations[level] = evaluate_file(self.dl2_path, self.task, level)
            progress.update(note=f"metrics and baselines ({level})")
        primary = evaluations[levels[0]]
        report = Report(f"{self.task} - run {self.run_dir.name}")
        for level, evaluation in evaluations.items():
            report.text(f"Verdict ({_LEVEL_NAMES[level]})", _verdict(evaluation))
        counts = split_counts(self.run_dir, primary.n_events)
        report.table(
            "Events per split", ["split", "images", "showers"],
            [[name, c.get("images", ""), c.get("showers", "")] for name, c in counts.items()],
        )
        log_path = self.run_dir / TRAINING_LOG
        if log_path.exists() and log_path.stat().st_size > 0:
            log = pd.read_csv(log_path)
            report.figure("training_curves", plot_training_curves({self.run_dir.name: log}),
                          "Loss and metrics per epoch: training (solid) and validation (dashed).")
        for level, evaluation in evaluations.items():
            header, rows = headline_table(evaluation)
            report.table(f"Headline metrics, {_LEVEL_NAMES[level]} (network first, then baselines)", header, rows)
            report.text(f"Baselines ({_LEVEL_NAMES[level]})",
                        f"Free parameters of the baselines fitted on {evaluation.baselines_fitted_on}.")
            for name, fig, caption in task_figures(evaluation, "" if level == levels[0] else "combined_"):
                report.figure(name, fig, f"{_LEVEL_NAMES[level].capitalize()}: {caption}")
        progress.update(note="figures")
        report.preformatted("Configuration", (self.run_dir / CONFIG_FILE).read_text())
        provenance = json.loads((self.run_dir / PROVENANCE_FILE).read_text()) if (self.run_dir / PROVENANCE_FILE).exists() else {}
        report.preformatted("Provenance", _provenance_summary(self.info, provenance))

        self.report = report
        self.metrics = {
            "task": self.task,
            "run": str(self.run_dir),
            "dl2": str(self.dl2_path),
            "events": counts,
            **_level_metrics(primary),
            "lower_is_better": sorted(LOWER_IS_BETTER),
        }
        if "subarray" in evaluations and levels[0] != "subarray":
            self.metrics["combined"] = _level_metrics(evaluations["subarray"])

    def finish(self):
        if self.skipped:
            show(f"Report: {self.output_dir / 'report.html'} (exists, skipped)")
            return
        with atomic_directory(self.output_dir, overwrite=self.overwrite) as tmp:
            self.report.write(tmp, self.metrics)
        self.progress.update(note="HTML and PDF written")
        self.progress.close()
        self.log.info("report written to %s", self.output_dir)
        tracked = MLflowRun.of_run_dir(self.run_dir)
        if tracked is not None:
            tracked.log_metrics({
                f"test_{metric}.{method}": value
                for metric, methods in self.metrics["headline"].items() for method, value in methods.items()
            })
            tracked.log_artifact(self.output_dir, "report")
            self.log.info("report logged to MLflow run %s", tracked.run_id)
        show(f"Report: {self.output_dir / 'report.html'}")


def _table_records(table):
    records = []
    for row in table:
        records.append({name: (float(getattr(row[name], "value", row[name]))) for name in table.colnames})
    return records


def _provenance_summary(info, provenance):
    lines = [f"{k}: {v}" for k, v in info.items()]
    if provenance:
        git = provenance.get("git", {})
        lines += [
            f"host: {provenance.get('host')}",
            f"git commit: {git.get('commit')}{' (uncommitted changes)' if git.get('dirty') else ''}",
            "packages: " + ", ".join(f"{k} {v}" for k, v in provenance.get("packages", {}).items() if v),
            "inputs:",
        ] + [f"  {i['role']}: {i['path']} ({i['size']} bytes, sha256 {i['sha256'][:12]}...)" for i in provenance.get("inputs", [])]
    return "\n".join(lines)


_LEVEL_NAMES = {"telescope": "per image", "subarray": "per array event, combined over telescopes"}


def _margin_text(evaluation, metric):
    margin = evaluation.margins.get(metric)
    if margin is None:
        return ""
    return (f" ({evaluation.network} - {margin['baseline']} = {margin['difference']:+.4f} +- "
            f"{margin['uncertainty']:.4f}, bootstrap over test showers)")


def _verdict(evaluation):
    beats = network_beats(evaluation)
    unit = "test images" if evaluation.level == "telescope" else "test array events"
    summary = ", ".join(
        f"{metric}: {evaluation.network} {'beats' if ok else 'does NOT beat'} every baseline"
        f"{_margin_text(evaluation, metric)}" for metric, ok in beats.items()
    )
    return f"{summary or 'no comparable metric'} ({evaluation.n_events} {unit})."


def _level_metrics(evaluation):
    """The metrics.json entries of one evaluation level."""
    return {
        "level": evaluation.level,
        "n_events": evaluation.n_events,
        "network": evaluation.network,
        "headline": evaluation.headline,
        "network_beats_baselines": network_beats(evaluation),
        "margin_to_best_baseline": evaluation.margins,
        "baselines_fitted_on": evaluation.baselines_fitted_on,
        "binned": {m: _table_records(t) for m, t in evaluation.binned.items()},
        **({"coverage": {m: _table_records(t) for m, t in evaluation.arrays["coverage"].items()}}
           if "coverage" in evaluation.arrays else {}),
    }


def main():
    ReportTool().run()
