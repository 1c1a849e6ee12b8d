"""Predict with a trained run on test data and write a DL2 table into the run directory.

Targets ctlearn 0.10.2 ``PredictCTLearnModel``: its options (batch size,
reader type, Keras verbosity) are kept; the prediction itself is patched:

* every event is predicted, the last incomplete batch included (the stock
  mono tool writes 0.0 for that batch of a type model);
* ``gammaness`` is the gamma-class probability (the stock tool writes the
  proton probability: training labels gamma as class 1);
* mono sky direction works (the stock mono tool ignores it);
* the output is one table of predictions next to the true values, the image
  parameters and the event/telescope ids, in ``<run>/dl2/<name>.dl2.h5``;
  next to it, the true values and image parameters of the run's training
  images, on which the reports fit the classical baselines.
"""

import math
import os
import sys

import astropy.units as u
import keras
import numpy as np
import tables
from astropy.coordinates import AltAz, SkyCoord
from astropy.table import join, vstack
from ctapipe.coordinates import NominalFrame
from ctapipe.core.traits import List, Path, Unicode
from ctapipe.io import read_table, write_table
from ctlearn.core.loader import DLDataLoader
from ctlearn.tools.predict_model import PredictCTLearnModel
from dl1_data_handler.reader import DLDataReader
from traitlets import default
from traitlets.config import Config

from .._compat import n_examples
from ..config import Project, read_yaml
from ..exceptions import ConfigError, InputDataError, RunExistsError
from ..loading.loader import FastLoader, FastPath
from ..rundir import CONFIG_FILE, MODEL_DIR, read_run_info, resolve_run, write_run_info
from .taskconfig import TaskConfigTool

__all__ = ["BASELINE_TRAINING_TABLE", "DL2_TABLE", "PREDICTION_COLUMNS", "PredictModel", "main"]

DL2_TABLE = "/dl2/event/telescope/predictions"
#: truth and image parameters of the images of the run's training files (no predictions)
BASELINE_TRAINING_TABLE = "/dl2/event/telescope/baseline_training"
#: the columns each task's prediction adds to the DL2 table
PREDICTION_COLUMNS = {
    "energy": ["reco_energy"],
    "type": ["gammaness"],
    "cameradirection": ["reco_cam_coord_offset_x", "reco_cam_coord_offset_y"],
    "skydirection": ["reco_fov_lon", "reco_fov_lat", "reco_alt", "reco_az"],
}

#: truth and identifiers kept from the reader's example table
_TRUTH_COLUMNS = [
    "obs_id", "event_id", "tel_id", "true_energy", "true_alt", "true_az", "true_core_x", "true_core_y",
    "true_x_max", "true_shower_primary_id", "cam_coord_offset_x", "cam_coord_offset_y",
    "fov_lon", "fov_lat", "pointing_altitude", "pointing_azimuth", "impact_radius",
]
#: image parameters kept for the classical baselines of the reports
_PARAMETER_COLUMNS = [
    "hillas_intensity", "hillas_fov_lon", "hillas_fov_lat", "hillas_r", "hillas_phi", "hillas_psi",
    "hillas_width", "hillas_length", "hillas_skewness", "leakage_intensity_width_2",
    "morphology_n_pixels", "timing_slope",
]


class CompleteDLDataLoader(DLDataLoader):
    """Patched from ctlearn 0.10.2 ``DLDataLoader.__len__``: count the last incomplete batch.

    The stock loader floors the number of batches, which is right for training
    and drops events in prediction.
    """

    def __len__(self):
        return math.ceil(len(self.indices) / self.batch_size)


class PredictModel(TaskConfigTool, PredictCTLearnModel):
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

    aliases = {
        "config": "Tool.config_files",
        "set": "TaskConfigTool.overrides",
        "run": "PredictModel.trained_run",
        ("i", "input"): "PredictModel.inputs",
        "name": "PredictModel.output_name",
        "batch-size": "PredictCTLearnModel.batch_size",
    }
    flags = {
        "overwrite": ({"TaskConfigTool": {"overwrite": True}}, "Replace an existing DL2 output of this name."),
        "skip-existing": ({"TaskConfigTool": {"skip_existing": True}}, "Do nothing if the DL2 output exists."),
    }
    classes = [Project, FastLoader, *PredictCTLearnModel.classes]

    @default("keras_verbose")
    def _keras_verbose_default(self):
        # a progress bar on a terminal; one line per call in batch logs (no carriage returns)
        return 1 if sys.stderr.isatty() else 2

    def setup(self):
        project = self.setup_project()
        source = self.task_config_source
        self.run_dir = resolve_run(self.trained_run, project.output_root, project.task, source)
        info = read_run_info(self.run_dir)
        if info.get("task") != project.task:
            raise ConfigError(
                f"run {self.run_dir} was trained for task '{info.get('task')}', but the config is for "
                f"task '{project.task}'", source=source, key="Project.task",
            )
        if info.get("status") != "finished":
            raise ConfigError(
                f"run {self.run_dir} has status '{info.get('status')}', not 'finished'", source=source, key="--run",
            )
        self.model_path = self.run_dir / MODEL_DIR
        if not self.model_path.exists():
            raise InputDataError(f"no trained model in {self.run_dir} ({MODEL_DIR} missing)", source=source, key="--run")
        self.output_path = self.run_dir / "dl2" / f"{self.output_name}.dl2.h5"
        self.skipped = self.skip_existing and self.output_path.exists() and not self.overwrite
        if self.skipped:
            self.log.info("%s exists: skipped", self.output_path)
            return
        if self.output_path.exists() and not self.overwrite:
            raise RunExistsError(
                f"{self.output_path} exists; pass --overwrite to replace it or --name to write another",
                source=source, key="PredictModel.output_name",
            )
        if self.inputs:
            self.signal_files, self.background_files = list(self.inputs), []
        else:
            self.signal_files, self.background_files = self.split_inputs(project, "test")
        self.task = project.task

        # the reader must see the images exactly as in training: take its settings from the run
        trained = read_yaml(self.run_dir / CONFIG_FILE)
        self.reader_config = Config({
            k: v for k, v in trained.items()
            if k not in ("Project", "TrainCTLearnModel", "PredictModel") and v
        })
        self.reader_type = trained.get("TrainCTLearnModel", {}).get("dl1dh_reader_type", "DLImageReader")
        try:
            self.training_files = self.split_inputs(project, "train")
        except ConfigError as err:
            self.log.warning("no training files (%s): the reports will cross-fit the baselines on the test data", err)
            self.training_files = None
        try:
            self.dl1dh_reader = self._reader(self.signal_files, self.background_files)
        except (ValueError, OSError, KeyError, tables.NoSuchNodeError) as err:
            raise InputDataError(f"the test data cannot be used: {type(err).__name__}: {err}", source=source) from None
        n = n_examples(self.dl1dh_reader)
        if n == 0:
            raise InputDataError("no test image passes the quality cuts", source=source)
        self.provenance_log = self.run_dir / f"{self.name}.provenance.log"
        self.log.info("predicting %d images with %s", n, self.model_path)

    def _reader(self, signal_files, background_files):
        return DLDataReader.from_name(
            self.reader_type,
            input_url_signal=[str(p) for p in signal_files],
            input_url_background=[str(p) for p in background_files],
            config=self.reader_config,
        )

    def _predict(self):
        indices = list(range(n_examples(self.dl1dh_reader)))
        fast = FastLoader(parent=self)
        fast_path = None
        if fast.enabled:
            if self.inputs:  # the cache is made of the config's test files
                fast.cache_dir = None
            fast_path = FastPath(fast, self.dl1dh_reader, "test", self.task_config_source)
            loader = fast_path.loader(indices, [], self.batch_size, complete=True)
            self.log.info(fast_path.describe())
        else:
            loader = CompleteDLDataLoader(self.dl1dh_reader, indices, tasks=[], batch_size=self.batch_size)
        model = keras.saving.load_model(self.model_path)
        try:
            output = model.predict(loader, verbose=self.keras_verbose)
        finally:
            if fast_path is not None:
                fast_path.close()
        if isinstance(output, dict):
            output = output[self.task]
        return np.asarray(output)

    def start(self):
        if self.skipped:
            return
        output = self._predict()
        table = _truth_table(self.dl1dh_reader)
        # the camera-plane truth and prediction are in metres; the focal length turns them into angles
        subarray = self.dl1dh_reader.subarray
        focal = {t: subarray.tel[t].camera.geometry.frame.focal_length.to_value(u.m) for t in subarray.tel_ids}
        table["focal_length"] = u.Quantity([focal[t] for t in table["tel_id"]], u.m)
        if self.task == "type":
            # training labels: signal (gamma) = class 1
            table["gammaness"] = output[:, 1].astype(np.float32)
        elif self.task == "energy":
            table["reco_energy"] = u.Quantity(10 ** output.reshape(-1).astype(np.float64), u.TeV)
        elif self.task == "cameradirection":
            table["reco_cam_coord_offset_x"] = u.Quantity(output[:, 0], u.m)
            table["reco_cam_coord_offset_y"] = u.Quantity(output[:, 1], u.m)
        elif self.task == "skydirection":
            table["reco_fov_lon"] = u.Quantity(output[:, 0], u.deg)
            table["reco_fov_lat"] = u.Quantity(output[:, 1], u.deg)
            table["reco_alt"], table["reco_az"] = _fov_to_altaz(table)
        table["is_valid"] = np.all(np.isfinite(output.reshape(len(table), -1)), axis=1)
        self.dl2 = _add_image_parameters(table, self.dl1dh_reader.files)
        self.dl2.meta["CTLEARN_MLOPS_TASK"] = self.task
        self.dl2.meta["CTLEARN_MLOPS_RUN"] = str(self.run_dir)
        self.baseline_training = self._baseline_training_table()

    def _baseline_training_table(self):
        """Truth and image parameters of the images of the config's training files, after the same cuts."""
        if self.training_files is None:
            return None
        try:
            reader = self._reader(*self.training_files)
        except (ValueError, OSError, KeyError, tables.NoSuchNodeError) as err:
            self.log.warning(
                "the training data cannot be read (%s: %s): the reports will cross-fit the baselines on the test data",
                type(err).__name__, err,
            )
            return None
        table = _truth_table(reader)
        self.log.info("baseline training table: %d images of the training files", len(table))
        return _add_image_parameters(table, reader.files)

    def finish(self):
        if self.skipped:
            print(f"DL2 table: {self.output_path} (exists, skipped)")
            return
        self.output_path.parent.mkdir(parents=True, exist_ok=True)
        partial = self.output_path.with_name(f".{self.output_path.name}.partial")
        partial.unlink(missing_ok=True)
        write_table(self.dl2, partial, DL2_TABLE, overwrite=True)
        if self.baseline_training is not None:
            write_table(self.baseline_training, partial, BASELINE_TRAINING_TABLE)
        os.replace(partial, self.output_path)
        write_run_info(self.run_dir, **{f"dl2_{self.output_name}": str(self.output_path)})
        self.log.info("DL2 table: %s (%d images)", self.output_path, len(self.dl2))
        print(f"DL2 table: {self.output_path} ({len(self.dl2)} images)")


def _truth_table(reader):
    """True values and ids of every image the reader selects, with the index of its file."""
    ids = reader.example_identifiers
    table = ids[[c for c in _TRUTH_COLUMNS if c in ids.colnames]]
    table["file_index"] = ids["file_index"]
    return table


def _add_image_parameters(table, files):
    """Join the image parameters of each (file, obs, event, tel) row from the DL1 files it came from."""
    parts = []
    for file_index, filename in enumerate(list(files)):
        rows = table[table["file_index"] == file_index]
        if len(rows) == 0:
            continue
        params = []
        for tel_id in np.unique(rows["tel_id"]):
            p = read_table(filename, f"/dl1/event/telescope/parameters/tel_{tel_id:03d}")
            params.append(p[["obs_id", "event_id", "tel_id", *[c for c in _PARAMETER_COLUMNS if c in p.colnames]]])
        parts.append(join(rows, vstack(params), keys=["obs_id", "event_id", "tel_id"], join_type="left"))
    result = vstack(parts)
    result.sort(["file_index", "obs_id", "event_id", "tel_id"])
    result.meta.update(table.meta)
    return result


def _fov_to_altaz(table):
    """Reconstructed (alt, az) from field-of-view offsets around the array pointing."""
    pointing = SkyCoord(
        alt=u.Quantity(table["pointing_altitude"]), az=u.Quantity(table["pointing_azimuth"]), frame=AltAz(),
    )
    nominal = SkyCoord(
        fov_lon=u.Quantity(table["reco_fov_lon"]), fov_lat=u.Quantity(table["reco_fov_lat"]),
        frame=NominalFrame(origin=pointing),
    )
    altaz = nominal.transform_to(AltAz())
    return altaz.alt.to(u.deg), altaz.az.wrap_at(360 * u.deg).to(u.deg)


def main():
    PredictModel().run()
