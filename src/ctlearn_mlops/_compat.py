"""The one place that relies on upstream internals.

Every shim names the upstream version it was written for; importing this
module checks those versions and fails loudly on any other (a shim written
for one release may silently do the wrong thing on the next).  Each shim has
a test (tests/test_compat.py).
"""

import contextlib
import re
from importlib.metadata import version
from types import SimpleNamespace

import numpy as np

__all__ = [
    "ReaderHooks",
    "configure_coordination_service",
    "build_for_training",
    "fit_replaced",
    "hillas_camera_radii_deg",
    "strategy_for_ctlearn_setup",
    "subarray_read_once",
    "mono_item_of_columns",
    "stereo_batch_with_images",
    "stereo_item",
    "TARGETS",
    "list_trait_parts",
    "camera_type",
    "check_versions",
    "n_examples",
    "parse_command_line",
    "seeded_timing_fit",
    "set_example_table",
    "tolerate_missing_telescopes",
    "validate_trait",
]

#: the upstream releases the shims below were written for
TARGETS = {
    "dl1-data-handler": "0.14.9",
    "ctlearn": "0.10.4",
    "ctapipe": "0.32.0",
    "keras": "3.15.1",
    "tensorflow": "2.21.0",
    "traitlets": "5.16.1",
}


def check_versions():
    """Raise ImportError naming every package whose installed version is not the one the shims target (``TARGETS``, e.g. ctlearn 0.10.4)."""
    wrong = {name: version(name) for name, wanted in TARGETS.items() if version(name) != wanted}
    if wrong:
        listing = ", ".join(f"{name} {found} (shims written for {TARGETS[name]})" for name, found in wrong.items())
        raise ImportError(f"ctlearn_mlops._compat: installed {listing}; install with -c constraints.txt")


check_versions()


# --- traitlets 5.16 / ctapipe 0.32 -----------------------------------------------------------------------------


@contextlib.contextmanager
def seeded_timing_fit(seed):
    """Timing parameters that depend on ``seed`` only, not on what the process computed before (ctapipe 0.32.0).

    ctapipe's ``timing_parameters`` fits with a least-trimmed-squares regression that draws its random subsets
    from one process-wide generator, ``ctapipe.fitting.FIT_RNG`` (seeded 0 at import, the default argument of
    ``lts_linear_regression``): a file's timing parameters then depend on which files the same worker process
    wrote before it, i.e. on a pool's scheduling.  Within the block that generator starts from ``seed``; its state
    is put back after.
    """
    from ctapipe import fitting

    rng = getattr(fitting, "FIT_RNG", None)
    if not isinstance(rng, np.random.Generator):
        raise ImportError("ctapipe.fitting.FIT_RNG is no longer a numpy Generator: seeded_timing_fit (written for "
                          "ctapipe 0.32.0) must be revised")
    saved = rng.bit_generator.state
    rng.bit_generator.state = np.random.default_rng(seed).bit_generator.state
    try:
        yield
    finally:
        rng.bit_generator.state = saved


def hillas_camera_radii_deg(reconstructor):
    """{tel_id: camera radius in deg} of a ctapipe 0.32 ``HillasReconstructor`` (its ``_cam_radius_deg``).

    Its direction puts the second point of each image axis a tenth of this
    radius from the centroid; the vectorized direction must use the same.
    """
    return reconstructor._cam_radius_deg


def validate_trait(trait, owner, value):
    """Validate ``value`` for ``trait`` as if assigned to ``owner`` (traitlets 5.16 ``TraitType._validate``)."""
    return trait._validate(owner, value)


def list_trait_parts(trait):
    """(item trait, minimum length, maximum length) of a ``traitlets.List`` (traitlets 5.14: private attributes)."""
    return trait._trait, trait._minlen, trait._maxlen


def parse_command_line(application, argv):
    """traitlets 5.16 ``Application.parse_command_line`` without its ``catch_config_error`` wrapper.

    The wrapper exits with code 1 on a bad option; unwrapped, the TraitError
    or ArgumentError reaches the caller, which exits with the config-error code.
    """
    from traitlets.config import Application

    return Application.parse_command_line.__wrapped__(application, argv)



# --- keras 3.15 / tensorflow 2.21 -------------------------------------------------------------------------------


def configure_coordination_service(n_tasks, heartbeat_seconds):
    """TensorFlow 2.21's coordination service for a multi-worker cluster, with a heartbeat.

    MultiWorkerMirroredStrategy starts one with defaults only if none is
    configured; configured here (``context.configure_coordination_service``,
    not public API), a task that dies makes the others fail after about
    ``heartbeat_seconds`` instead of waiting in a collective operation.
    Must run before the strategy is created.
    """
    from tensorflow.compiler.xla.tsl.protobuf import coordination_config_pb2
    from tensorflow.python.eager import context

    milliseconds = int(heartbeat_seconds * 1000)
    context.context().configure_coordination_service(
        service_type="standalone", service_leader="/job:worker/replica:0/task:0",
        heartbeat_timeout_in_ms=milliseconds, cluster_register_timeout_in_ms=300_000,
        shutdown_barrier_timeout_in_ms=milliseconds,
        coordinated_jobs=[coordination_config_pb2.CoordinatedJob(name="worker", num_tasks=n_tasks)],
    )


def build_for_training(model, batch):
    """Build what Keras 3.15's ``fit`` builds before its first step (optimizer, loss and metric variables).

    ``Trainer._symbolic_build`` (keras/src/trainers/trainer.py) from one local
    batch: ``fit`` reaches it through a reduce of the first distributed batch
    that a MultiWorkerMirroredStrategy cannot do (keras-team/keras#20585);
    our multi-worker loop calls it with a batch of this task.  Must run in the
    strategy's scope.
    """
    model._symbolic_build(data_batch=batch)


@contextlib.contextmanager
def strategy_for_ctlearn_setup(strategy):
    """ctlearn 0.10.4's ``TrainCTLearnModel.setup`` builds a ``tf.distribute.MirroredStrategy()``: give it ``strategy``.

    While active (the upstream setup), the name it calls returns the given
    strategy (a MultiWorkerMirroredStrategy, or TensorFlow's default strategy
    on one device: ``distributed.one_task_strategy``).  The setup then
    registers ``strategy._extended._collective_ops._lock.locked`` at exit, an
    attribute MirroredStrategy has and the others lack: they get a lock of
    their own to point at (on the default strategy, a process-wide object,
    once; in TensorFlow 2.21 only MirroredStrategy reads the attribute).
    """
    if strategy is None:
        yield
        return
    import threading
    import types

    from ctlearn.tools import train_model

    if not hasattr(strategy._extended, "_collective_ops"):
        strategy._extended._collective_ops = types.SimpleNamespace(_lock=threading.Lock())

    original = train_model.tf.distribute.MirroredStrategy
    train_model.tf.distribute.MirroredStrategy = lambda *args, **kwargs: strategy
    try:
        yield
    finally:
        train_model.tf.distribute.MirroredStrategy = original


@contextlib.contextmanager
def fit_replaced(replacement):
    """While active, ``keras.Model.fit(model, *args, **kwargs)`` calls ``replacement(fit, model, args, kwargs)``.

    ctlearn 0.10.4's ``TrainCTLearnModel.start`` builds, compiles and fits the
    model in one method (Keras 3.15); its one ``fit`` call is handed to
    ``replacement`` with Keras' own ``fit`` (to call with changed arguments:
    ``shuffle=False`` for the read-ahead loaders, the resume epoch; or not at
    all: the multi-worker loop).  Scoped to the ``with`` block: the class
    attribute is put back however the block ends (tested).
    """
    import keras

    original = keras.Model.fit

    def fit(model, *args, **kwargs):
        return replacement(original, model, args, kwargs)

    keras.Model.fit = fit
    try:
        yield
    finally:
        keras.Model.fit = original


# --- dl1-data-handler 0.14.9 ------------------------------------------------------------------------------------


def mono_item_of_columns(loader, columns):
    """(features, labels) of a mono batch given as {column name: array}, ctlearn 0.10.4 ``_get_mono_item``.

    ctlearn 0.10.4's ``_get_mono_item`` reads only ``batch[name].data``: a dict
    of namespaces serves it without building an astropy Table (0.19 ms a
    batch here, a third of the time the image cache takes to gather its images).
    """
    return loader._get_mono_item({name: SimpleNamespace(data=values) for name, values in columns.items()})


def stereo_item(loader, batch):
    """(features, labels) of a stereo batch table, ctlearn 0.10.4 ``DLDataLoader._get_stereo_item``."""
    return loader._get_stereo_item(batch)


_FEATURES_LOCK = __import__("threading").Lock()


def stereo_batch_with_images(reader, event_indices, images):
    """dl1-data-handler 0.14.9 ``generate_stereo_batch`` with the images already read.

    The stock batch (its rows, the blank images it adds for the telescopes an
    event lacks, its order) is built by the reader itself; only its
    ``_append_features`` is replaced, for this call, by attaching ``images``
    (one per example row of the events, in the order of the reader's grouped
    example table).
    """
    def attach(batch):
        if len(batch) != len(images):
            raise ValueError(f"{len(images)} images for a batch of {len(batch)} rows")
        batch.add_column(np.asarray(images), name="features", index=7)
        return batch

    with _FEATURES_LOCK:
        reader._append_features = attach
        try:
            return reader.generate_stereo_batch(list(event_indices))
        finally:
            del reader._append_features


def n_examples(reader):
    """Examples of a reader: images in mono mode, array events in stereo mode (dl1-data-handler 0.14.9
    ``DLDataReader._get_n_events``)."""
    return reader._get_n_events()


def camera_type(reader, tel_type):
    """Camera name of a telescope type string, as the reader keys its image mappers (dl1-data-handler 0.14.9
    ``DLDataReader._get_camera_type``)."""
    return reader._get_camera_type(tel_type)


_TELESCOPE_NODE = re.compile(r"^(/dl1/event/telescope/(?:parameters|images)|/configuration/telescope/pointing)/tel_\d{3}$")


def _template_node(h5file, path):
    """Another telescope's node in the same group of ``h5file`` (same camera type: same columns), or None."""
    group_path = path.rsplit("/", 1)[0]
    if group_path not in h5file:
        return None
    children = sorted(h5file.get_node(group_path)._v_children)
    return h5file.get_node(f"{group_path}/{children[0]}") if children else None


@contextlib.contextmanager
def tolerate_missing_telescopes(missing):
    """While a dl1-data-handler 0.14.9 reader is built, a telescope without tables in a file has empty ones.

    ctapipe writes no tables for a telescope that never triggered in a file;
    the reader reads every selected telescope of every file.  Here its reads
    of such a telescope's parameter, image and pointing tables
    (``dl1_data_handler.reader.read_table`` and, for the image table of the
    first file, PyTables' ``Group._f_get_child``) get a zero-row table with the
    columns of another telescope of the same file.  Each file and telescope
    met this way is added to ``missing`` (a set of (file name, tel_id)).
    """
    import tables
    from ctapipe.io import read_table as ctapipe_read_table
    from dl1_data_handler import reader as reader_module

    original_get_child = tables.Group._f_get_child

    def read_table(h5file, path, *args, **kwargs):
        if isinstance(h5file, tables.File) and _TELESCOPE_NODE.match(path) and path not in h5file:
            template = _template_node(h5file, path)
            if template is not None:
                missing.add((h5file.filename, int(path.rsplit("_", 1)[1])))
                table = ctapipe_read_table(h5file, template._v_pathname, *args, **kwargs)
                return table[:0]
        return ctapipe_read_table(h5file, path, *args, **kwargs)

    def get_child(group, name):
        path = f"{group._v_pathname}/{name}"
        if name not in group._v_children and _TELESCOPE_NODE.match(path):
            template = _template_node(group._v_file, path)
            if template is not None:
                missing.add((group._v_file.filename, int(name.removeprefix("tel_"))))
                return template
        return original_get_child(group, name)

    reader_module.read_table = read_table
    tables.Group._f_get_child = get_child
    try:
        yield missing
    finally:
        reader_module.read_table = ctapipe_read_table
        tables.Group._f_get_child = original_get_child


@contextlib.contextmanager
def subarray_read_once(active=True):
    """While a dl1-data-handler 0.14.9 reader is built, read the subarray of its first file only.

    The reader reads every file's subarray to check that they agree (about a
    tenth of a second per file); for files an example index already saw
    together, that check passed before.  ``SubarrayDescription`` in the
    reader's module is replaced, for the duration, by one that reads a file's
    subarray once and gives it for every file.
    """
    if not active:
        yield
        return
    from dl1_data_handler import reader as reader_module

    original = reader_module.SubarrayDescription
    read = {}

    class SubarrayOfTheFirstFile:
        @staticmethod
        def from_hdf(path, focal_length_choice=None, **kwargs):
            if focal_length_choice not in read:
                read[focal_length_choice] = original.from_hdf(path, focal_length_choice=focal_length_choice, **kwargs)
            return read[focal_length_choice]

    reader_module.SubarrayDescription = SubarrayOfTheFirstFile
    try:
        yield
    finally:
        reader_module.SubarrayDescription = original


def set_example_table(reader, examples, simulation_info=None):
    """Give a dl1-data-handler 0.14.9 reader its example table, as its ``_construct_*_example_identifiers`` would.

    ``examples``: the table of example rows (mono: with its ``index`` column;
    stereo: one row per telescope of each array event), sorted as upstream
    sorts it.
    """
    from astropy.table import unique

    if simulation_info is not None:
        reader.simulation_info = simulation_info
    if reader.mode == "stereo":
        reader.example_identifiers = examples
        reader.example_identifiers_grouped = examples.group_by(["obs_id", "event_id"])
        reader.unique_example_identifiers = unique(examples, keys=["obs_id", "event_id"])
        # 0.14.9 keeps only the event's columns in the table of array events
        reader.unique_example_identifiers.remove_columns(
            [c for c in ("table_index", "tel_type_id", "tel_id", "hillas_intensity")
             if c in reader.unique_example_identifiers.colnames])
        counted = reader.unique_example_identifiers
    else:
        examples.add_index("index")
        reader.example_identifiers = counted = examples
    if "true_shower_primary_class" in counted.colnames:
        reader.n_signal_events = np.count_nonzero(counted["true_shower_primary_class"] == 1)
        if reader.input_url_background:
            reader.n_bkg_events = np.count_nonzero(counted["true_shower_primary_class"] == 0)


#: what dl1-data-handler 0.14.9 takes from the trigger table into the examples of observed runs
_TRIGGER_COLUMNS = ("time", "event_type")


def _rows_of(table, examples):
    """Row of ``table`` holding each example's (obs_id, event_id)."""
    def key(t):
        return np.asarray(t["obs_id"], dtype=np.int64) * 2**32 + np.asarray(t["event_id"], dtype=np.int64)

    keys = key(table)
    order = np.argsort(keys, kind="stable")
    return order[np.searchsorted(keys, key(examples), sorter=order)]


class ReaderHooks:
    """Mixin for a dl1-data-handler 0.14.9 ``DLImageReader``: hooks around how it builds its example table.

    * ``restore_examples()`` may set the example table (and return True)
      instead of the reader reading every file; ``examples_built()`` is called
      after the reader built it.
    * ``telescopes_in(filename)`` says which telescopes have tables in a file;
      where a selected telescope has none, the example table is built file by
      file with the telescopes each file has (the stock code reads every
      selected telescope of every file, and astropy cannot join the empty
      table of a telescope that never triggered there).  The result is the
      stock reader's for the telescopes with data (tested).
    """

    def restore_examples(self):
        return False

    def examples_built(self):
        pass

    def telescopes_in(self, filename):
        return None  # unknown: every selected telescope

    def _construct_mono_example_identifiers(self):
        self._build_examples(super()._construct_mono_example_identifiers, stereo=False)

    def _construct_stereo_example_identifiers(self):
        self._build_examples(super()._construct_stereo_example_identifiers, stereo=True)

    def _build_examples(self, upstream, stereo):
        if self.restore_examples():
            return
        if not stereo and str(getattr(self.process_type, "value", self.process_type)) == "Observation":
            upstream = self._observed_examples(upstream)
        available = self.telescopes_available = {name: self.telescopes_in(name) for name in self.files}
        selected = self.selected_telescopes
        if all(tels is None or all(np.isin(ids, list(tels)).all() for ids in selected.values())
               for tels in available.values()):
            upstream()
        else:
            self._build_examples_per_file(upstream, stereo, available)
        self.examples_built()

    def _observed_examples(self, upstream):
        """``upstream`` building the examples of an observed run, with the trigger table's columns joined."""
        from ctapipe.io import read_table

        def build():
            keep = list(self.example_ids_keep_columns)
            self.example_ids_keep_columns = [c for c in keep if c not in _TRIGGER_COLUMNS]
            try:
                upstream()
            finally:
                self.example_ids_keep_columns = keep
            (handle,) = self.files.values()  # dl1-data-handler takes one observed file per reader
            trigger = read_table(handle, "/dl1/event/subarray/trigger")
            examples = self.example_identifiers
            rows = _rows_of(trigger, examples)
            examples["time"] = trigger["time"][rows]
            # the plain number: the column's enum type does not go into the example index's metadata
            examples["event_type"] = np.asarray(trigger["event_type"], dtype=np.int64)[rows]

        return build

    def _build_examples_per_file(self, upstream, stereo, available):
        from collections import OrderedDict

        from astropy.table import vstack
        from ctapipe.io import read_table

        files, selected, keep = self.files, self.selected_telescopes, list(self.example_ids_keep_columns)
        parts, simulation_info = [], []
        try:
            for file_index, (name, handle) in enumerate(files.items()):
                here = {t: ids[np.isin(ids, list(available[name]))] for t, ids in selected.items()}
                if not any(len(ids) for ids in here.values()):
                    if "/configuration/simulation/run" in handle:
                        simulation_info.append(read_table(handle, "/configuration/simulation/run"))
                    continue
                self.files, self.selected_telescopes = OrderedDict([(name, handle)]), here
                self.example_ids_keep_columns = list(keep)
                upstream()
                part = self.example_identifiers
                if "index" in part.colnames:
                    part.remove_indices("index")
                    part.remove_column("index")
                part["file_index"] = file_index
                parts.append(part)
                if hasattr(self, "simulation_info"):
                    simulation_info.append(self.simulation_info)
        finally:
            self.files, self.selected_telescopes = files, selected
        examples = vstack(parts)
        examples.sort(["obs_id", "event_id", "tel_id", "tel_type_id"])
        if not stereo:
            examples.add_column(np.arange(len(examples)), name="index", index=0)
        set_example_table(self, examples, vstack(simulation_info) if simulation_info else None)
