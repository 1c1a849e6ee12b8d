"""Test a trained run: predict its config's test data and write the event DL2 file into the run directory.

Targets ctlearn 0.10.4 ``PredictCTLearnModel`` (its batch size and options
are kept); the output is the event DL2 file of ``io.dl2`` in ctapipe's data
model, ``<run>/dl2/<name>.dl2.h5``, holding this run's reconstruction
(``CTLearn``, per telescope and combined over the telescopes of each event,
or ``CTLearnStereo`` for a stereo run), the classical one of the same images
(``HillasBDT``, and ctapipe's ``HillasReconstructor`` for directions) and
the training images the report's baselines are fitted on.  Compared with the
stock tools:

* mono sky direction works (the stock mono tool has no sky-direction
  branch);
* the same file holds the classical reconstruction of the same images and
  the combination over telescopes chosen by the run (intensity-weighted
  mean of the log energies), next to the network's per-telescope values;
* the stock mono tool gives the same per-telescope values from our model
  (tests/tools/test_ctlearn_compat.py).

``scripts/predict_events.py`` writes the same file from several runs.
"""

import contextlib
import sys

from ctapipe.core.traits import List, Path, Unicode
from ctlearn.tools.predict_model import PredictCTLearnModel
from traitlets import default

from ..config import Project, overridden_keys
from ..exceptions import ConfigError, RunExistsError
from ..io.dl1 import check_dl1_files, check_observed_files
from ..loading.index import ExampleIndex
from ..loading.loader import FastLoader
from ..output import show
from ..physics.reconstruction import WEIGHTS, combiner_weights
from ..rundir import check_output_name, resolve_run, write_run_info
from ..runlock import RunLock
from .event_dl2 import check_distinct_obs_ids, load_run, write_event_dl2
from .io_checks import check_writable
from .taskconfig import DataConfigTool

__all__ = ["PredictTool", "main"]

#: what test_model.py takes from its --set; the rest (reader, cuts, index, network, how images are stacked) comes
#: from the run's own config.  "Section.*": every option of the section
_SETTABLE_AT_TEST = (
    "Project.test_signal_dir", "Project.test_signal_patterns", "Project.test_background_dir",
    "Project.test_background_patterns", "Project.output_root", "Project.task",
    "PredictTool.trained_run", "PredictTool.inputs", "PredictTool.output_name", "PredictTool.weights",
    "PredictTool.batch_size", "PredictCTLearnModel.batch_size", "PredictTool.keras_verbose",
    "TaskConfigTool.overwrite", "TaskConfigTool.skip_existing", "FastLoader.*",
)


class PredictTool(DataConfigTool, PredictCTLearnModel):
    """Predict a run of the config's task on its test data; writes <run>/dl2/<name>.dl2.h5."""

    name = "ctlearn-mlops-predict"
    description = __doc__
    examples = """
    python scripts/test_model.py --config configs/energy.yaml --run latest
    python scripts/test_model.py --config configs/type.yaml --run my-run --input other.dl1.h5 --name other
    """

    trained_run = Unicode("latest", help="Run to test: a name under <output_root>/<task>/, a directory, or 'latest'.").tag(
        config=True
    )
    inputs = List(
        Path(exists=True, directory_ok=False, file_ok=True), default_value=[],
        help="DL1 files to predict instead of the config's test data (repeatable).",
    ).tag(config=True)
    output_name = Unicode("test", help="Name of the DL2 output: <run>/dl2/<name>.dl2.h5.").tag(config=True)
    weights = Unicode("intensity", help=f"Telescope weights when combining over telescopes: {', '.join(WEIGHTS)} "
                      "(ctapipe's StereoMeanCombiner).").tag(config=True)

    aliases = {
        "config": "Tool.config_files",
        "set": "TaskConfigTool.overrides",
        ("r", "run"): "PredictTool.trained_run",
        ("i", "input"): "PredictTool.inputs",
        "name": "PredictTool.output_name",
        "batch-size": "PredictCTLearnModel.batch_size",
        "weights": "PredictTool.weights",
    }
    flags = {
        "overwrite": ({"TaskConfigTool": {"overwrite": True}}, "Replace an existing DL2 output of this name."),
        "skip-existing": ({"TaskConfigTool": {"skip_existing": True}}, "Do nothing if the DL2 output exists."),
    }
    classes = [Project, FastLoader, ExampleIndex, *PredictCTLearnModel.classes]

    @default("keras_verbose")
    def _keras_verbose_default(self):
        # a progress bar on a terminal; one line per call in batch logs (no carriage returns)
        return 1 if sys.stderr.isatty() else 2

    def setup(self):
        project = self.setup_project()
        source = self.task_config_source
        if self.batch_size < 1:  # ctlearn's trait (PredictCTLearnModel.batch_size) has no lower bound
            raise ConfigError(f"batch size {self.batch_size}: must be 1 or more", source=source,
                              key="PredictCTLearnModel.batch_size")
        try:
            self.weights = combiner_weights(self.weights)
        except ValueError as err:
            raise ConfigError(str(err), source=source, key="PredictTool.weights") from None
        self._refuse_ignored_overrides(source)
        self.run_dir = resolve_run(self.trained_run, project.output_root, project.task, source)
        self.run = load_run(self.run_dir, source)
        if self.run.task != project.task:
            raise ConfigError(
                f"run {self.run_dir} was trained for task '{self.run.task}', but the config is for "
                f"task '{project.task}'", source=source, key="Project.task",
            )
        self.output_path = self.run_dir / "dl2" / f"{check_output_name(self.output_name, source, 'PredictTool.output_name')}.dl2.h5"
        self.skipped = self.skip_existing and self.output_path.exists() and not self.overwrite
        if self.skipped:
            self.log.info("%s exists: skipped", self.output_path)
            return
        if self.output_path.exists() and not self.overwrite:
            raise RunExistsError(
                f"{self.output_path} exists; pass --overwrite to replace it or --name to write another",
                source=source, key="PredictTool.output_name",
            )
        if self.inputs:
            self.files = sorted(self.inputs)
        else:
            signal, background = self.split_inputs(project, "test")
            self.files = sorted([*signal, *background])
        check_dl1_files(self.files, source, key="Project.test_signal_dir")
        # observed runs (--input) give an event DL2 file without truth (generate_report.py reads the run's
        # test file, of simulations)
        check_observed_files(self.files, source, key="--input" if self.inputs else "Project.test_signal_dir")
        check_distinct_obs_ids(self.files, source, key="--input" if self.inputs else "Project.test_signal_dir")
        self.fast = FastLoader(parent=self)
        if self.inputs:  # the image cache is made of the config's test files
            self.fast.cache_dir = None
        check_writable(self.output_path.parent, "--run", source)
        lock = RunLock(self.run_dir, self.name).acquire(source)
        self.enter_context(contextlib.ExitStack()).callback(lock.release)
        self.provenance_log = self.run_dir / f"{self.name}.provenance.log"

    def _refuse_ignored_overrides(self, source):
        """A ``--set`` of what the run fixed (the reader, the cuts, the index, the network) would be ignored: the
        images are read as the run was trained, from its own config.yaml."""
        for key in overridden_keys(self.overrides):
            if key not in _SETTABLE_AT_TEST and f"{key.split('.')[0]}.*" not in _SETTABLE_AT_TEST:
                raise ConfigError(
                    f"test_model.py reads the images as the run was trained (its config.yaml), so this --set would "
                    f"be ignored; settable here: {', '.join(_SETTABLE_AT_TEST)}", source=f"{source} (--set)",
                    key=key)

    def output_location(self):
        return getattr(self, "run_dir", None)

    def start(self):
        if self.skipped:
            return
        self.n_events, self.n_images = write_event_dl2(
            self.output_path, [self.run], self.files, fast=self.fast, batch_size=self.batch_size,
            weights=self.weights, log=self.log, source=self.task_config_source,
        )

    def finish(self):
        if self.skipped:
            show(f"DL2 file: {self.output_path} (exists, skipped)")
            return
        write_run_info(self.run_dir, **{f"dl2_{self.output_name}": str(self.output_path)})
        show(f"DL2 file: {self.output_path} ({self.n_events} array events, {self.n_images} telescope events)")


def main():
    PredictTool().run()
