"""Write the event DL2 file of one or several trained runs (``io.dl2`` describes the file).

The shared engine of ``scripts/test_model.py`` (one run, into its run
directory) and ``scripts/predict_events.py`` (a run per role into one file):
read each run's model and reader settings, predict every image (mono) or
event (stereo) of the input DL1 files, reconstruct the same images the
classical way, combine over telescopes and write everything atomically.
"""

import hashlib
import io
import json
import os
import sys
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import astropy.units as u
import keras
import numpy as np
import tables
from astropy.table import Table, join, vstack
from ctapipe.core import Provenance
from ctapipe.io import HDF5Merger, read_table, write_table
from ctlearn.core.loader import DLDataLoader
from dl1_data_handler.reader import DLDataReader, TableQualityQuery
from traitlets.config import Config

from .. import __version__
from .._compat import n_examples
from ..callbacks import PredictionProgress
from ..config import import_custom_model_file, read_yaml
from ..exceptions import ConfigError, InputDataError
from ..io import dl2
from ..io.dl1 import array_pointing, check_dl1_files, is_observed, telescope_pointing
from ..loading.loader import FastPath
from ..loading.reader import reader_type_for
from ..physics import reconstruction
from ..physics.axis_fit import MIN_IMAGES_PER_BIN, ImageErrorModel, measure_error_model
from ..physics.energy_uncertainty import EnergyErrorModel, energy_error_dex, image_log_intensity_and_leakage
from ..progress import Progress
from ..rundir import (
    CONFIG_FILE,
    LEGACY_MODEL_DIR,
    MODEL_DIR,
    PROVENANCE_FILE,
    SHIPPED_ENERGY_ERROR_MODEL,
    SHIPPED_ERROR_MODEL,
    SHIPPED_TRAINING_IMAGES,
    VALIDATION_PREDICTIONS,
    WORST_EPOCH_MESSAGE,
    atomic_write_text,
    kept_worst_epoch,
    read_run_info,
    sha256sum,
)
from .taskconfig import glob_inputs

__all__ = ["CompleteDLDataLoader", "PredictedRun", "check_compatible", "check_distinct_obs_ids",
           "direction_error_model", "energy_error_model", "load_run", "training_images", "training_images_of_runs",
           "write_event_dl2"]

#: the reader settings two runs must share to be predicted on the same events
_SHARED_READER_KEYS = ("allowed_tels", "allowed_tel_types", "focal_length_choice")


class CompleteDLDataLoader(DLDataLoader):
    """Patched from ctlearn 0.10.4 ``DLDataLoader.__len__``: count the last incomplete batch.

    The stock loader floors the number of batches, which is right for training
    and drops events in prediction.
    """

    def __len__(self):
        return int(np.ceil(len(self.indices) / self.batch_size))


@dataclass
class PredictedRun:
    """A finished run and what its prediction needs: task, role, mode, reader settings (the one view of a run's
    config.yaml that prediction reads)."""

    run_dir: Path
    task: str
    config: dict
    role: str = field(init=False)
    stereo: bool = field(init=False)

    def __post_init__(self):
        self.role = dl2.ROLE_OF_TASK[self.task]
        self.stereo = self.reader_section.get("mode", "mono") == "stereo"

    @property
    def prefix(self):
        return dl2.STEREO_PREFIX if self.stereo else dl2.CNN_PREFIX

    @property
    def reader_type(self):
        return (self.config.get("TrainCTLearnModel") or {}).get("dl1dh_reader_type", "DLImageReader")

    @property
    def reader_section(self):
        return self.config.get(self.reader_type) or self.config.get("DLImageReader") or {}

    @property
    def model_type(self):
        return (self.config.get("TrainCTLearnModel") or {}).get("model_type")

    @property
    def custom_model_file(self):
        return (self.config.get("Project") or {}).get("custom_model_file")

    @property
    def stacks_telescope_images(self):
        return bool((self.config.get("TrainCTLearnModel") or {}).get("stack_telescope_images", False))

    @property
    def cuts(self):
        return (self.config.get("TableQualityQuery") or {}).get("quality_criteria")

    def reader_config(self):
        """The config sections that make the reader see the images as in training."""
        return Config({k: v for k, v in self.config.items()
                       if k not in ("Project", "TrainCTLearnModel", "PredictTool", "MLflowTracking") and v})

    def files(self, split):
        """(signal, background) DL1 files of the run's ``train`` or ``test`` split, from its config."""
        project = self.config.get("Project") or {}
        prefix = "" if split == "train" else "test_"
        found = []
        for kind in ("signal", "background"):
            directory = project.get(f"{prefix}{kind}_dir")
            if not directory or (kind == "background" and self.task != "type"):
                found.append([])
                continue
            patterns = project.get(f"{prefix}{kind}_patterns", ["*.h5"])
            found.append(glob_inputs(directory, patterns, f"Project.{prefix}{kind}_dir", self.run_dir / CONFIG_FILE))
        return tuple(found)

    def describe(self):
        """What the event DL2 file records of the run (and IRFs and DL3 compare): which model saw which images."""
        return {"run": str(self.run_dir), "task": self.task, "mode": "stereo" if self.stereo else "mono",
                "model_type": self.model_type, "cuts": self.cuts,
                "telescopes": self.reader_section.get("allowed_tels")}


def load_run(run_dir, source=None, key="--run"):
    """A finished run with a model, as PredictedRun; ConfigError naming it otherwise."""
    run_dir = Path(run_dir)
    info = read_run_info(run_dir)
    if info.get("status") != "finished":
        raise ConfigError(f"run {run_dir} has status '{info.get('status')}', not 'finished'", source=source, key=key)
    if not (run_dir / MODEL_DIR).exists():
        if (run_dir / LEGACY_MODEL_DIR).is_dir():
            raise InputDataError(legacy_run_message(run_dir), source=source, key=key)
        raise InputDataError(f"no trained model in {run_dir} ({MODEL_DIR} missing)", source=source, key=key)
    if not zipfile.is_zipfile(run_dir / MODEL_DIR):  # a Keras 3 model file is a zip archive
        raise InputDataError(f"{run_dir / MODEL_DIR} is not a Keras model file (empty or damaged): train the run "
                             "again", source=source, key=key)
    if kept_worst_epoch(run_dir):
        raise InputDataError(f"run {run_dir} {WORST_EPOCH_MESSAGE}", source=source, key=key)
    return PredictedRun(run_dir, info["task"], read_yaml(run_dir / CONFIG_FILE))


def legacy_run_message(run_dir):
    """Why a run trained before the move to Keras 3 (a SavedModel directory, no ``.keras`` file) cannot be used.

    Keras 3 loads no SavedModel directory (``keras.saving.load_model`` refuses it, and so does ctlearn
    0.10.4's own predict tool); the run is left as it is and is trained again under another name.
    """
    run_dir = Path(run_dir)
    made_with = "ctlearn 0.10.2"
    try:  # the versions the run recorded when it finished
        packages = json.loads((run_dir / PROVENANCE_FILE).read_text()).get("packages") or {}
        if packages.get("ctlearn"):
            made_with = f"ctlearn {packages['ctlearn']}"
    except (OSError, ValueError, AttributeError):
        pass
    return (f"{run_dir} was trained with {made_with} / Keras 2 ({LEGACY_MODEL_DIR}/), which today's stack "
            f"(Keras {keras.__version__}) cannot load: train it again, e.g. python scripts/train_model.py "
            f"--config {run_dir / CONFIG_FILE} --run-name {run_dir.name}-keras3; the old run is kept as it is")


def check_compatible(runs, own_inputs, source=None):
    """Refuse runs whose events differ: other cuts, telescopes, or (without ``own_inputs``) other test data."""
    reference = runs[0]
    for other in runs[1:]:
        problems = []
        if other.cuts != reference.cuts:
            problems.append(f"cuts (TableQualityQuery.quality_criteria) {other.cuts} vs {reference.cuts}")
        for name in _SHARED_READER_KEYS:
            if other.reader_section.get(name) != reference.reader_section.get(name):
                problems.append(f"DLImageReader.{name} {other.reader_section.get(name)} vs "
                                f"{reference.reader_section.get(name)}")
        if not own_inputs:
            ours, theirs = reference.files("test"), other.files("test")
            if set(ours[0]) != set(theirs[0]) or (ours[1] and theirs[1] and set(ours[1]) != set(theirs[1])):
                problems.append("test data (Project.test_signal_dir / test_background_dir and their patterns)")
        if problems:
            raise ConfigError(
                f"runs {reference.run_dir} and {other.run_dir} were not made for the same events: "
                + "; ".join(problems), source=source, key="--run",
            )


def _quality_mask(run, table):
    query = TableQualityQuery(config=Config({"TableQualityQuery": {"quality_criteria": run.cuts}})) \
        if run.cuts is not None else TableQualityQuery()
    return np.asarray(query.get_table_mask(Table(table)), dtype=bool)


def _selected_telescopes(run, telescope_events):
    allowed = run.reader_section.get("allowed_tels")
    if allowed is None:
        return np.ones(len(telescope_events), dtype=bool)
    return np.isin(np.asarray(telescope_events["tel_id"]), list(allowed))


def _predict(run, files, fast, batch_size, log, only=None, split="test"):
    """(keys, values, valid) of ``run``'s network on every example of ``files`` (all given as signal).

    ``only``: a set of (obs_id, event_id, tel_id) of mono examples, the only ones predicted (None if the files
    hold none of them); ``split``: which of the run's image caches may serve the files (``test`` or ``train``).
    Observed runs are read one by one (dl1-data-handler reads one observed file at a time), with the pointing of
    each example at its time.
    """
    if len(files) > 1 and is_observed(files[0]):
        model = _load_model(run)  # once for all the runs' files
        parts = [_predict_reader(run, [path], fast, batch_size, log, only, split, allow_empty=True, model=model)
                 for path in files]
        parts = [part for part in parts if part is not None]
        if not parts:
            if only is not None:
                return None
            raise InputDataError(f"no image of the DL1 files passes the cuts of run {run.run_dir}", key="--input")
        return (vstack([keys for keys, _, _ in parts]),
                {name: np.concatenate([values[name] for _, values, _ in parts]) for name in parts[0][1]},
                np.concatenate([valid for _, _, valid in parts]))
    return _predict_reader(run, files, fast, batch_size, log, only, split)


def _with_observed_pointing(examples, path):
    """``examples`` of an observed run with the pointing of the telescope (for an array event the array's) at
    each one's time, in the columns the simulation examples carry."""
    if "tel_id" in examples.colnames:
        alt, az = telescope_pointing(path, examples["tel_id"], examples["time"])
    else:
        alt, az = array_pointing(path, examples["time"])
    examples = examples.copy(copy_data=False)
    for prefix in ("telescope_pointing", "pointing"):
        examples[f"{prefix}_altitude"], examples[f"{prefix}_azimuth"] = alt, az
    return examples


def _load_model(run):
    if run.custom_model_file:
        import_custom_model_file(run.custom_model_file)
    return keras.saving.load_model(run.run_dir / MODEL_DIR)


def _predict_reader(run, files, fast, batch_size, log, only, split, allow_empty=False, model=None):
    from ..loading.reader import ImageReader  # noqa: F401  (registers the reader type)

    try:
        reader = DLDataReader.from_name(reader_type_for(run.reader_type), input_url_signal=[str(p) for p in files],
                                        config=run.reader_config())
    except (ValueError, OSError, KeyError, tables.NoSuchNodeError) as err:
        raise InputDataError(f"the DL1 files cannot be read with the settings of run {run.run_dir}: "
                             f"{type(err).__name__}: {err}", key="--input") from None
    n = n_examples(reader)
    if n == 0:
        if allow_empty:
            return None  # one observed run of several whose images all fail the cuts
        raise InputDataError(f"no image of the DL1 files passes the cuts of run {run.run_dir}", key="--input")
    examples = reader.unique_example_identifiers if run.stereo else reader.example_identifiers
    if "time" in examples.colnames:  # an observed run
        examples = _with_observed_pointing(examples, files[0])
    if only is not None:
        indices = [i for i, key in enumerate(zip(examples["obs_id"], examples["event_id"], examples["tel_id"]))
                   if (int(key[0]), int(key[1]), int(key[2])) in only]
        examples = examples[indices]
        n = len(indices)
        if n == 0:
            return None
    else:
        indices = list(range(n))
    stacking = run.stacks_telescope_images
    fast_path = None
    if fast.enabled:
        fast_path = FastPath(fast, reader, split, str(run.run_dir / CONFIG_FILE))
        loader = fast_path.loader(indices, [], batch_size, complete=True, stack_telescope_images=stacking)
        log.info(fast_path.describe())
    else:
        loader = CompleteDLDataLoader(reader, indices, tasks=[], batch_size=batch_size,
                                      stack_telescope_images=stacking)
    log.info("%s: predicting %d %s with %s", run.task, n, "events" if run.stereo else "images", run.run_dir)
    model = model if model is not None else _load_model(run)
    try:
        # a bar on a terminal; in batch logs a line every 30 s (Keras' bar there is one line at the end)
        terminal = sys.stderr.isatty()
        output = model.predict(loader, verbose=1 if terminal else 0,
                               callbacks=[] if terminal else [PredictionProgress(log, f"{run.task}: predicting")])
    finally:
        if fast_path is not None:
            fast_path.close()
    if isinstance(output, dict):
        output = output[run.task]
    output = np.asarray(output)
    keys = Table({"obs_id": np.asarray(examples["obs_id"]), "event_id": np.asarray(examples["event_id"])})
    if not run.stereo:
        keys["tel_id"] = np.asarray(examples["tel_id"])
        values = reconstruction.network_telescope_values(run.task, output, examples, reader.subarray,
                                                         reader.pix_rotation)
    else:
        values = reconstruction.network_event_values(run.task, output, examples, reader.subarray)
    valid = np.all(np.isfinite(output.reshape(len(keys), -1)), axis=1)
    return keys, values, valid


def training_images(runs, log):
    """Truth and image parameters of the runs' training images after their cuts, each image once (the error
    models join a run's validation images to it); None if no run has any."""
    return _each_image_once(training_images_of_runs(runs, log).values())


def _each_image_once(tables):
    own = [table for table in tables if table is not None]
    if not own:
        return None
    # the largest first: a run's images in the order of its files, the others' images it lacks after them (the
    # type run's gammas and protons hold the energy and direction runs' gammas: the same table, in the same
    # order, as read from the files); productions may share obs_ids between particles
    table = vstack(sorted(own, key=len, reverse=True))
    keys = np.stack([np.asarray(table[c], np.int64) for c in
                     ("obs_id", "event_id", "tel_id", "true_shower_primary_id")], axis=1)
    return table[np.sort(np.unique(keys, axis=0, return_index=True)[1])]


def training_images_of_runs(runs, log):
    """{run directory: its training images after its cuts} (None for a run without any): the ones a reference
    model carries (``SHIPPED_TRAINING_IMAGES``), else those of its training files (each file read once)."""
    read = {}

    def images_of(path, run):
        if path not in read:
            read[path] = dl2.read_telescope_events(path)
        images = read[path]
        return images[_selected_telescopes(run, images) & _quality_mask(run, images)] if len(images) else None

    own = {}
    for run in runs:
        shipped = run.run_dir / SHIPPED_TRAINING_IMAGES
        if shipped.exists():
            own[run.run_dir] = Table(dl2.read_training_images(shipped))
            log.info("%s: the %d training images it carries", run.run_dir, len(own[run.run_dir]))
            continue
        # one name per file: a reference run's config names them relative to the repository, a local run's
        # absolute
        files = sorted({Path(p).resolve() for side in run.files("train") for p in side})
        check_dl1_files(files, key="Project.signal_dir")
        parts = [part for part in (images_of(path, run) for path in files) if part is not None]
        # a plain Table, as the carried ones are read: one run's may be stacked with another's
        own[run.run_dir] = Table(vstack(parts)) if parts else None
        log.info("%s: %d training images of %d files", run.run_dir, sum(len(p) for p in parts), len(files))
    return own


def check_distinct_obs_ids(files, source=None, key="--input"):
    """Refuse inputs that share an obs_id before predicting: ctapipe's merger cannot put them in one file.

    Real productions number the runs of each particle independently, so a
    gamma file and a proton file may both hold obs_id 1.
    """
    seen = {}
    for path in files:
        for obs_id in sorted(dl2.observation_ids(path)):
            if obs_id in seen:
                raise ConfigError(
                    f"{seen[obs_id]} and {path} both hold obs_id {obs_id}: one event DL2 file cannot hold two "
                    "runs of the same obs_id (ctapipe's merger refuses them). Write one file per group of "
                    "distinct obs_ids, e.g. one per particle (predict_events.py --input <gamma files> --output "
                    "gammas.dl2.h5, then the protons), and give compute_irf.py all of them", source=source, key=key)
            seen[obs_id] = path


def _merge_inputs(files, output):
    with HDF5Merger(output, overwrite=True, dl1_images=False, true_images=False, true_parameters=False,
                    r0_waveforms=False, r1_waveforms=False, dl1_muon=False, dl2_subarray=False,
                    dl2_telescope=False, processing_statistics=False) as merger:
        for path in files:
            merger(str(path))


def write_event_dl2(output, runs, files, *, fast, batch_size=128, weights="intensity", log, source=None):
    """Write the event DL2 file of ``runs`` over ``files`` to ``output`` (through a temporary file)."""
    output = Path(output)
    partial = output.with_name(f".{output.name}.partial")
    partial.unlink(missing_ok=True)
    output.parent.mkdir(parents=True, exist_ok=True)
    roles = sorted({run.role for run in runs}, key=dl2.ROLES.index)
    progress = Progress(len(runs) + 3, "event DL2", log, unit="step")
    try:
        # before any prediction: a run whose training files are gone or damaged stops the file here
        own_training = training_images_of_runs(runs, log)
        training = _each_image_once(own_training.values())
        # the classical reconstruction of a role is fitted on its run's training images (its mono run's if it
        # has two), as the run's report fits its Hillas BDT: a run trained on more images gives its baseline the
        # same ones, no other; a run without any leaves its role the other runs' images
        classical_training = {}
        for run in sorted(runs, key=lambda r: r.stereo):
            if own_training[run.run_dir] is not None and len(own_training[run.run_dir]):
                classical_training.setdefault(run.role, own_training[run.run_dir])
        classical_training = {role: classical_training.get(role, training) for role in roles}
        predictions = {}
        for run in runs:
            predictions[(run.role, run.stereo)] = (run, *_predict(run, files, fast, batch_size, log))
            progress.update(note=f"{run.task} predicted")
        # a network's errors are measured on its own run's validation images, joined to that run's images
        geometry = predictions.get(("geometry", False))
        error_model = direction_error_model(geometry[0] if geometry else None,
                                            own_training[geometry[0].run_dir] if geometry else None, fast,
                                            batch_size, log)
        energy = predictions.get(("energy", False))
        energy_model = energy_error_model(energy[0] if energy else None,
                                          own_training[energy[0].run_dir] if energy else None, fast, batch_size,
                                          log, weights)
        with dl2.writing(partial):
            _merge_inputs(files, partial)
            subarray = dl2.read_subarray(partial)
            observed = is_observed(partial)
            events = read_table(partial, dl2.TRIGGER_TABLE)[["obs_id", "event_id", "tels_with_trigger"]
                                                            + (["time"] if observed else [])]
            if len(np.unique(np.stack([events["obs_id"], events["event_id"]], axis=1), axis=0)) != len(events):
                raise InputDataError("two input files hold the same array events (obs_id, event_id)", key="--input")
            images = dl2.read_telescope_events(partial)
            selected = _selected_telescopes(runs[0], images) & _quality_mask(runs[0], images)
            progress.update(note="inputs merged")
            written = _write_reconstructions(partial, predictions, roles, images, selected, classical_training,
                                             events, subarray, weights, error_model, energy_model)
            progress.update(note="classical reconstruction")
            if training is not None:
                write_table(Table(training), partial, dl2.TRAINING_IMAGES_TABLE, overwrite=True)
            if not observed:
                write_table(_run_particles(files), partial, dl2.RUN_PARTICLE_TABLE, overwrite=True)
            with tables.open_file(partial, mode="r+") as h5:
                made_by = {f"{run.role}/{run.prefix}": run.describe() for run in runs}
                if f"geometry/{dl2.AXIS_FIT_PREFIX}" in written:
                    made_by[f"geometry/{dl2.AXIS_FIT_PREFIX}"] = predictions[("geometry", False)][0].describe()
                h5.root._v_attrs[dl2.RUNS_ATTRIBUTE] = json.dumps(made_by)
            dl2.check_written(partial, len(events))
        os.replace(partial, output)
        progress.update(note="written")
    finally:
        partial.unlink(missing_ok=True)
        progress.close()
    Provenance().add_output_file(str(output), role="DL2 events")
    log.info("%s: %d array events, %d telescope events; %s", output, len(events), len(images), ", ".join(written))
    return len(events), len(images)


def _run_particles(files):
    """The primary of each simulation run as each input file tells it (a merged file may no longer tell it)."""
    particles = {}
    for path in files:
        particles.update(dl2.simulation_run_particles(path)[0])
    return Table({"obs_id": np.array(sorted(particles), dtype=np.int32),
                  "particle_id": np.array([particles[i] for i in sorted(particles)], dtype=np.int32)})


def _carried_or_measured(run, training, carried, model_class, measure):
    """A run's error model: the one it carries in ``carried`` (a reference model), else ``measure()`` on its
    validation images; None without a run or training images (or, said why, if it cannot be measured)."""
    if run is None or training is None:
        return None
    if (run.run_dir / carried).exists():
        return model_class.from_table(Table.read(run.run_dir / carried, format="ascii.ecsv"))
    return measure()


def direction_error_model(run, training, fast, batch_size, log):
    """The ImageErrorModel of a mono direction run: the one it carries (a reference model), else measured on its
    validation images; None (said why) otherwise."""
    return _carried_or_measured(run, training, SHIPPED_ERROR_MODEL, ImageErrorModel,
                                lambda: measure_direction_error_model(run, training, fast, batch_size, log))


def _validation_predictions(run, fast, batch_size, log, without):
    """(keys, values, valid) of ``run``'s network on its validation images; None (said why, ``without`` what) if
    they cannot be predicted.

    The first call predicts them and keeps them in the run directory (``VALIDATION_PREDICTIONS``, stamped with
    everything they depend on: ``_validation_stamp``); later calls with the same stamp read them back.
    """
    split_file = run.run_dir / "split.csv"
    if not split_file.exists():
        log.warning("%s has no split.csv: %s", run.run_dir, without)
        return None
    try:
        files = run.files("train")[0]
        stamp = _validation_stamp(run, files)
        stored = _stored_validation_predictions(run.run_dir / VALIDATION_PREDICTIONS, stamp)
        if stored is not None:
            log.info("%s: the network's predictions of its %d validation images, kept in %s", run.task,
                     len(stored[0]), run.run_dir / VALIDATION_PREDICTIONS)
            return stored
        # parsed only when they are predicted (the stamp covers split.csv)
        split = Table.read(split_file, format="ascii.csv")
        validation = {(int(o), int(e), int(t)) for o, e, t, s in
                      split.iterrows("obs_id", "event_id", "tel_id", "split") if s == "validation"}
        if len(validation) < MIN_IMAGES_PER_BIN:
            log.warning("%s: fewer than %d validation images: %s", run.run_dir, MIN_IMAGES_PER_BIN, without)
            return None
        log.info("%s: measuring the errors of its images on its %d validation images", run.task, len(validation))
        predicted = _predict(run, files, fast, batch_size, log, only=validation, split="train")
    except (ConfigError, OSError) as err:  # e.g. its training files are gone, or their image cache is stale
        log.warning("%s: %s: its validation images cannot be read: %s", run.run_dir, without, err)
        return None
    if predicted is None:
        log.warning("%s: none of its %d validation images passes its cuts in its training files: %s", run.run_dir,
                    len(validation), without)
        return None
    _keep_validation_predictions(run.run_dir / VALIDATION_PREDICTIONS, stamp, predicted, log)
    return predicted


def _validation_stamp(run, files):
    """What a run's validation predictions depend on: this package's version (the code that turns network
    outputs into energies and directions), the model (and custom model file), the split, the reader settings,
    and the training files (path, size, modification time)."""
    digest = hashlib.sha256(__version__.encode())
    custom = [Path(run.custom_model_file)] if run.custom_model_file else []
    for path in (run.run_dir / MODEL_DIR, run.run_dir / "split.csv", *custom):
        digest.update(sha256sum(path).encode())
    digest.update(json.dumps(run.reader_config(), sort_keys=True, default=str).encode())
    for path in sorted(Path(p).resolve() for p in files):
        stat = path.stat()
        digest.update(f"{path}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()


def _stored_validation_predictions(path, stamp):
    """(keys, values, valid) kept in ``path`` if stamped with ``stamp``; None otherwise (also if unreadable)."""
    if not path.exists():
        return None
    try:
        table = Table.read(path, format="ascii.ecsv")
    except Exception:  # noqa: BLE001 - a damaged copy is predicted again and replaced
        return None
    keys = ["obs_id", "event_id", "tel_id"]
    if table.meta.get("stamp") != stamp or not {*keys, "valid"} <= set(table.colnames):
        return None
    values = {c: np.asarray(table[c]) for c in table.colnames if c not in (*keys, "valid")}
    return Table({k: np.asarray(table[k]) for k in keys}), values, np.asarray(table["valid"], dtype=bool)


def _keep_validation_predictions(path, stamp, predicted, log):
    """Write ``predicted`` to ``path`` atomically (a read-only or full run directory only loses the shortcut)."""
    keys, values, valid = predicted
    table = Table({**{c: keys[c] for c in keys.colnames}, **values, "valid": np.asarray(valid, dtype=bool)})
    table.meta.update(stamp=stamp, description="the network's values of each validation image (event DL2 keeps "
                                               "them to measure the run's error model without predicting again)")
    text = io.StringIO()
    try:
        table.write(text, format="ascii.ecsv")
        atomic_write_text(path, text.getvalue())
    except (OSError, ValueError) as err:
        log.info("%s: not kept (%s): the next event DL2 file predicts them again", path, err)


def _validation_gammas(training, predicted, columns):
    """The training gamma images of the validation images ``predicted``, with the network's ``columns``."""
    keys, values, valid = predicted
    found = Table({"obs_id": keys["obs_id"], "event_id": keys["event_id"], "tel_id": keys["tel_id"],
                   **{f"__{c}__": values[c] for c in columns}})[np.asarray(valid, dtype=bool)]
    gammas = training[np.asarray(training["true_shower_primary_id"]) == 0]
    # an energy or direction run trains on gammas: its validation images are gamma images (obs_ids may repeat
    # across particles)
    return join(Table(gammas), found, keys=["obs_id", "event_id", "tel_id"], join_type="inner"), gammas


def measure_direction_error_model(run, training, fast, batch_size, log):
    """The ImageErrorModel of a mono direction run measured on its validation images; None (said why) if it
    cannot be."""
    without = f"no axis-fit direction ({dl2.AXIS_FIT_PREFIX})"
    predicted = _validation_predictions(run, fast, batch_size, log, without)
    if predicted is None:
        return None
    rows, gammas = _validation_gammas(training, predicted, ("alt", "az"))
    try:
        model = measure_error_model(rows, np.asarray(rows["__alt__"]), np.asarray(rows["__az__"]), gammas)
    except ValueError as err:
        log.warning("%s: %s: %s", run.run_dir, without, err)
        return None
    log.info("%s: image errors along / across the axis %s / %s deg (by intensity)", run.task,
             np.round(model.network_along, 3), np.round(model.network_across, 3))
    return model


def energy_error_model(run, training, fast, batch_size, log, weights):
    """The EnergyErrorModel of a mono energy run: the one it carries (a reference model), else measured on its
    validation images; None (said why) otherwise, and then the energy uncertainty stays the telescopes' spread."""
    model = _carried_or_measured(run, training, SHIPPED_ENERGY_ERROR_MODEL, EnergyErrorModel,
                                 lambda: measure_energy_error_model(run, training, fast, batch_size, log, weights))
    if model is not None and model.weights != weights:
        log.warning("%s: its energy uncertainty was calibrated with %s weights, not %s: the energy uncertainty "
                    "stays the telescopes' spread", run.run_dir, model.weights, weights)
        return None
    return model


def measure_energy_error_model(run, training, fast, batch_size, log, weights="intensity"):
    """The EnergyErrorModel of a mono energy run measured on its validation images and calibrated on their events
    combined with ``weights``; None (said why) if it cannot be."""
    without = "no calibrated energy uncertainty"
    predicted = _validation_predictions(run, fast, batch_size, log, without)
    if predicted is None:
        return None
    rows, _ = _validation_gammas(training, predicted, ("energy",))
    log_intensity, leakage = image_log_intensity_and_leakage(rows)
    try:
        model = EnergyErrorModel.fit(log_intensity, leakage,
                                     energy_error_dex(rows["__energy__"], u.Quantity(rows["true_energy"], u.TeV).value))
        model.weights = weights
        subarray = dl2.read_subarray(run.files("train")[0][0])
        events, telescope_tables = reconstruction.validation_energy_tables(rows, "__energy__", subarray,
                                                                           dl2.CNN_PREFIX)
        stereo = reconstruction.combine("energy", dl2.CNN_PREFIX, telescope_tables, rows, events, subarray, weights)
        event_index, log_intensity, leakage = reconstruction.energy_images_of_events(stereo, telescope_tables, rows,
                                                                                     dl2.CNN_PREFIX)
        energy = u.Quantity(stereo[f"{dl2.CNN_PREFIX}_energy"], u.TeV).value
        model.calibrate(event_index, log_intensity, leakage, np.log10(energy),
                        energy_error_dex(energy, u.Quantity(events["true_energy"], u.TeV).value))
    except ValueError as err:
        log.warning("%s: %s: %s", run.run_dir, without, err)
        return None
    log.info("%s: image energy errors %s dex (by intensity), event scales %s", run.task,
             np.round(model.image_error, 3), np.round(model.uncertainty_scale, 2).tolist())
    return model


def _write_reconstructions(path, predictions, roles, images, selected, classical_training, events, subarray,
                           weights, error_model, energy_model):
    """Write every DL2 table; return a description of each reconstruction written.

    ``classical_training``: {role: the training images its classical reconstruction is fitted on}.

    ``error_model``: the direction network's ImageErrorModel (the axis fit), ``energy_model`` the energy
    network's EnergyErrorModel (its calibrated energy uncertainty); either may be None.

    The array-event directions of observed runs (``events`` with a ``time``) get their ICRS coordinates.
    """
    written = []

    def write_dl2(table, path, table_path, overwrite):
        if "time" in events.colnames and table_path.startswith(dl2.subarray_table_path("geometry", "")):
            prefix = table_path.rsplit("/", 1)[-1]
            table = reconstruction.with_sky_coordinates(table, prefix, events["time"], subarray.reference_location)
        write_table(table, path, table_path, overwrite=overwrite)

    tel_ids = sorted(np.unique(np.asarray(images["tel_id"])))
    parameters = Table(images[["obs_id", "event_id", "tel_id", "hillas_intensity", "hillas_length", "hillas_width"]])
    for role in roles:
        sources = []
        mono = predictions.get((role, False))
        if mono is not None:
            _run, keys, values, valid = mono
            sources.append((dl2.CNN_PREFIX, keys, values, valid))
        classical_values = reconstruction.classical_telescope_values(role, images[selected], classical_training[role])
        sources.append((dl2.CLASSICAL_PREFIX, images[selected][["obs_id", "event_id", "tel_id"]], classical_values,
                        np.ones(np.count_nonzero(selected), dtype=bool)))
        for prefix, keys, values, valid in sources:
            telescope_tables = []
            for tel_id in tel_ids:
                here = np.asarray(keys["tel_id"]) == tel_id
                # one row per row of the telescope's parameter table, in its order (what TableLoader joins)
                rows = read_table(path, f"{dl2.PARAMETERS_GROUP}/tel_{tel_id:03d}")[["obs_id", "event_id", "tel_id"]]
                table = reconstruction.telescope_table(role, prefix, rows, keys[here],
                                                       {k: np.asarray(v)[here] for k, v in values.items()},
                                                       np.asarray(valid)[here])
                write_dl2(table, path, dl2.telescope_table_path(role, prefix, tel_id), overwrite=True)
                telescope_tables.append(table)
            stereo = reconstruction.combine(role, prefix, telescope_tables, parameters, events, subarray, weights)
            if role == "energy" and prefix == dl2.CNN_PREFIX and energy_model is not None:
                stereo = reconstruction.with_energy_uncertainty(stereo, telescope_tables, images, energy_model, prefix)
                write_dl2(energy_model.to_table(), path, dl2.ENERGY_ERROR_MODEL_TABLE, overwrite=True)
            if role == "geometry" and prefix == dl2.CLASSICAL_PREFIX:
                hillas = reconstruction.hillas_reconstructor_table(images, selected, events, subarray,
                                                                   prefix=dl2.HILLAS_RECONSTRUCTOR_PREFIX)
                write_dl2(hillas, path, dl2.subarray_table_path(role, dl2.HILLAS_RECONSTRUCTOR_PREFIX),
                            overwrite=True)
                written.append(f"{role}/{dl2.HILLAS_RECONSTRUCTOR_PREFIX}")
                stereo = _prefer_stereo_geometry(stereo, hillas)
            write_dl2(stereo, path, dl2.subarray_table_path(role, prefix), overwrite=True)
            written.append(f"{role}/{prefix}")
        if role == "geometry" and mono is not None and error_model is not None:
            _run, keys, values, valid = mono
            table = reconstruction.axis_fit_table(images[selected], keys, values, valid, error_model, events, subarray,
                                                  dl2.AXIS_FIT_PREFIX)
            write_dl2(table, path, dl2.subarray_table_path(role, dl2.AXIS_FIT_PREFIX), overwrite=True)
            write_dl2(error_model.to_table(), path, dl2.DIRECTION_ERROR_MODEL_TABLE, overwrite=True)
            written.append(f"{role}/{dl2.AXIS_FIT_PREFIX}")
        stereo_run = predictions.get((role, True))
        if stereo_run is not None:
            _run, keys, values, valid = stereo_run
            table = reconstruction.event_table(role, dl2.STEREO_PREFIX, keys, values, valid, events, subarray)
            write_dl2(table, path, dl2.subarray_table_path(role, dl2.STEREO_PREFIX), overwrite=True)
            written.append(f"{role}/{dl2.STEREO_PREFIX}")
    return written


def _prefer_stereo_geometry(mean, hillas):
    """The classical array direction: HillasReconstructor where it is valid, else the mean of the BDT disps."""
    prefix, other = dl2.CLASSICAL_PREFIX, dl2.HILLAS_RECONSTRUCTOR_PREFIX
    use = np.asarray(hillas[f"{other}_is_valid"], dtype=bool)
    for stem in ("alt", "az"):
        mean[f"{prefix}_{stem}"][use] = hillas[f"{other}_{stem}"][use]
    mean[f"{prefix}_telescopes"][use] = hillas[f"{other}_telescopes"][use]
    mean[f"{prefix}_is_valid"] |= use
    return mean
