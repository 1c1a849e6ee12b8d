"""One event DL2 file from several runs: gammaness, energy and direction of every event, CNN and classical.

Give a run per role (``type``, ``energy``, ``geometry`` from a
cameradirection or skydirection run); a role may also take a stereo run
(``DLImageReader.mode: stereo``), whose predictions go to the ``CTLearnStereo``
subarray tables next to the mono ones.  The runs must have been trained for
the same events (test data, cuts, telescopes); a role without a run is simply
absent from the file (the log says so).  The file is ctapipe's data model
(docs/dl2.md): ``ctapipe.io.TableLoader`` reads it, ``ctapipe-merge`` merges
several, ``scripts/compute_irf.py`` turns it into IRFs and sensitivity.
"""

from pathlib import Path as PathlibPath

from ctapipe.core.traits import Bool, Int, List, Path, Unicode

from .. import TASKS
from ..exceptions import ConfigError, RunExistsError
from ..io import dl2
from ..io.dl1 import check_dl1_files, check_observed_files
from ..loading.loader import FastLoader
from ..output import show
from ..physics.reconstruction import WEIGHTS, combiner_weights
from ..rundir import RUN_FILE, resolve_run
from .base import MLOpsTool
from .event_dl2 import check_compatible, check_distinct_obs_ids, load_run, write_event_dl2
from .io_checks import check_writable

__all__ = ["EventDL2Tool", "main"]

_TASKS_OF_ROLE = {"type": ("type",), "energy": ("energy",), "geometry": ("skydirection", "cameradirection")}


def _article(word):
    return "an" if word[0] in "aeiou" else "a"


class EventDL2Tool(MLOpsTool):
    """Predict with a run per role and write one event DL2 file."""

    name = "ctlearn-mlops-predict-events"
    description = __doc__
    examples = """
    python scripts/predict_events.py --run type=models/type/first --run energy=models/energy/first \\
        --run geometry=models/skydirection/first --output data/dl2/events.dl2.h5
    python scripts/predict_events.py --run type=first --run energy=first --run geometry=skydirection/first \\
        --run type=stereo-run --input data/default/test --output data/dl2/stereo.dl2.h5
    """

    runs = List(Unicode(), default_value=[], help=(
        "ROLE=RUN (repeatable): role type, energy or geometry; RUN a run directory, a run name under "
        "<models_root>/<task>/ (geometry: <task>/<name>, or a name found under skydirection or cameradirection), "
        "or latest (the newest finished run; geometry: of skydirection, else cameradirection)."
    )).tag(config=True)
    models_root = Path("models", directory_ok=True, file_ok=False, help="Where runs given by name live.").tag(config=True)
    inputs = List(Unicode(), default_value=[], help=(
        "DL1 files or directories to predict (default: the runs' common test data, gammas and protons)."
    )).tag(config=True)
    output = Path("data/dl2/events.dl2.h5", directory_ok=False, help="The event DL2 file to write.").tag(config=True)
    weights = Unicode("intensity", help=f"Telescope weights when combining: {', '.join(WEIGHTS)}.").tag(config=True)
    batch_size = Int(128, min=1, help="Images (events for stereo runs) per prediction batch.").tag(config=True)
    overwrite = Bool(False, help="Replace an existing output file.").tag(config=True)

    aliases = {
        ("r", "run"): "EventDL2Tool.runs",
        "models-root": "EventDL2Tool.models_root",
        ("i", "input"): "EventDL2Tool.inputs",
        ("o", "output"): "EventDL2Tool.output",
        "weights": "EventDL2Tool.weights",
        "batch-size": "EventDL2Tool.batch_size",
    }
    flags = {"overwrite": ({"EventDL2Tool": {"overwrite": True}}, "Replace an existing output file.")}
    classes = [FastLoader]

    def _resolve(self, role, text):
        candidate = PathlibPath(text)
        if candidate.is_dir():
            return resolve_run(candidate, self.models_root, None, None)
        tasks = _TASKS_OF_ROLE[role]
        if "/" in text:
            task, name = text.split("/", 1)
            if task not in TASKS and not candidate.exists():
                raise ConfigError(f"{text}: no such run directory (a {role} run is a directory, a run name, "
                                  f"'<task>/<name>' or 'latest')", key="--run")
            if task not in tasks:
                raise ConfigError(f"{text}: {_article(role)} {role} run must be {_article(tasks[0])} "
                                  f"{' or '.join(tasks)} run", key="--run")
            return resolve_run(name, self.models_root, task, None)
        if text == "latest":
            for task in tasks:
                try:
                    return resolve_run("latest", self.models_root, task, None)
                except ConfigError:
                    continue
            raise ConfigError(f"no finished {' or '.join(tasks)} run in {self.models_root}", key="--run")
        found = [self.models_root / task / text for task in tasks if (self.models_root / task / text / RUN_FILE).exists()]
        if len(found) != 1:
            where = " and ".join(str(self.models_root / t / text) for t in tasks)
            raise ConfigError(f"run '{text}' for {role}: {'found both' if found else 'not found'} ({where})",
                              key="--run")
        return found[0]

    def setup(self):
        if not self.runs:
            raise ConfigError("give at least one run: --run type=<run> --run energy=<run> --run geometry=<run>",
                              key="--run")
        try:
            self.weights = combiner_weights(self.weights)
        except ValueError as err:
            raise ConfigError(str(err), key="--weights") from None
        self.predicted = []
        for item in self.runs:
            role, sep, text = item.partition("=")
            if not sep or role not in dl2.ROLES or not text:
                raise ConfigError(f"--run expects ROLE=RUN with ROLE one of {', '.join(dl2.ROLES)}, got {item!r}",
                                  key="--run")
            run = load_run(self._resolve(role, text), key="--run")
            if run.role != role:
                raise ConfigError(f"run {run.run_dir} is {_article(run.task)} {run.task} run: it cannot be the {role} run "
                                  f"(--run {run.role}={text})", key="--run")
            if any(o.role == run.role and o.stereo == run.stereo for o in self.predicted):
                raise ConfigError(f"two {'stereo' if run.stereo else 'mono'} runs for {role}", key="--run")
            self.predicted.append(run)
        for role in dl2.ROLES:
            if not any(run.role == role for run in self.predicted):
                self.log.warning("no %s run given: the file has no %s reconstruction", role, dl2.KIND_OF_ROLE[role])
        check_compatible(self.predicted, own_inputs=bool(self.inputs))
        if self.inputs:
            from ..dataproc.inputs import expand_inputs

            self.files = sorted(expand_inputs(self.inputs, (".h5", ".hdf5")))
        else:
            type_runs = [r for r in self.predicted if r.role == "type"]
            signal, background = (type_runs or self.predicted)[0].files("test")
            self.files = sorted({*signal, *background})
        check_dl1_files(self.files, key="--input")
        check_observed_files(self.files, key="--input")
        check_distinct_obs_ids(self.files, key="--input")
        if self.output.exists() and not self.overwrite:
            raise RunExistsError(f"{self.output} exists; pass --overwrite to replace it", key="--output")
        check_writable(self.output.parent, "--output")
        self.fast = FastLoader(parent=self)
        self.fast.cache_dir = None  # image caches belong to one config's files
        self.provenance_log = self.output.with_name(f"{self.output.name}.provenance.log")

    def output_location(self):
        return self.output.parent

    def start(self):
        self.counts = write_event_dl2(self.output, self.predicted, self.files, fast=self.fast,
                                      batch_size=self.batch_size, weights=self.weights, log=self.log)

    def finish(self):
        n_events, n_images = self.counts
        show(f"DL2 file: {self.output} ({n_events} array events, {n_images} telescope events)")


def main():
    EventDL2Tool().run()
