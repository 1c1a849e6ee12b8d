"""The event DL2 file: one schema, in ctapipe's data model, for prediction, evaluation, reports and IRFs.

A DL2 file holds the DL1 tables the analysis needs (triggers, image
parameters, simulation truth and configuration, pointing, the subarray),
copied from the input DL1 files by ctapipe's ``HDF5Merger``, and ctapipe's
DL2 groups, one per reconstruction (*prefix*) and kind::

    /dl2/event/telescope/{particle_type,energy,geometry}/<prefix>/tel_NNN
    /dl2/event/subarray/{particle_type,energy,geometry}/<prefix>

with ctapipe's column names: ``<prefix>_tel_prediction`` (gammaness: the
gamma-class probability), ``<prefix>_tel_energy``, ``<prefix>_tel_alt`` /
``_tel_az`` and ``<prefix>_tel_is_valid`` per telescope;
``<prefix>_prediction``, ``<prefix>_energy``, ``<prefix>_alt`` / ``_az``,
``<prefix>_is_valid`` and ``<prefix>_telescopes`` (a mask over the
subarray's telescopes) per array event.  Every telescope table has one row
per row of that telescope's DL1 parameter table, every subarray table one
row per array event, in the trigger table's order: ctapipe's ``TableLoader``
joins them, ``ctapipe-merge`` merges such files.  (Files written with
ctapipe 0.23, data model v6, named the gammaness group ``classification``;
they are still read.)

Reconstructions (prefixes):

* ``CTLearn``: the CNNs of mono runs, per telescope and combined over the
  telescopes of an event (ctapipe's ``StereoMeanCombiner``);
* ``CTLearnStereo``: the CNNs of stereo runs (one prediction per event);
* ``HillasBDT``: the classical reconstruction, boosted trees on the image
  parameters fitted on the runs' training images, per telescope and
  combined the same way; its subarray direction is ctapipe's
  ``HillasReconstructor`` where two or more telescopes have a valid image;
* ``HillasReconstructor``: ctapipe's ``HillasReconstructor`` alone.

Next to ctapipe's groups, ``/ctlearn_mlops/training_images`` holds the truth
and image parameters of the runs' training images (the baselines of the
reports are fitted on them) and the file attribute ``CTLEARN_MLOPS_RUNS`` the
runs behind each reconstruction.  Nothing here imports TensorFlow.
"""

import contextlib
import errno
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
import tables
from astropy.table import QTable, Table, join
from ctapipe.io import read_table

from .dl1 import array_pointing

__all__ = [
    "AXIS_FIT_PREFIX",
    "CLASSICAL_PREFIX",
    "CNN_PREFIX",
    "DIRECTION_ERROR_MODEL_TABLE",
    "ENERGY_ERROR_MODEL_TABLE",
    "energy_uncertainty_calibrated",
    "HILLAS_RECONSTRUCTOR_PREFIX",
    "KIND_OF_ROLE",
    "ROLES",
    "ROLE_OF_TASK",
    "RUNS_ATTRIBUTE",
    "STEREO_PREFIX",
    "check_written",
    "writing",
    "TRAINING_IMAGES_TABLE",
    "Reconstruction",
    "prefixes_in",
    "RUN_PARTICLE_TABLE",
    "observation_ids",
    "read_runs",
    "read_simulation_runs",
    "simulation_run_particles",
    "read_subarray",
    "read_subarray_events",
    "read_telescope_events",
    "read_training_images",
    "subarray_table_path",
    "telescope_table_path",
]

CNN_PREFIX = "CTLearn"
STEREO_PREFIX = "CTLearnStereo"
CLASSICAL_PREFIX = "HillasBDT"
HILLAS_RECONSTRUCTOR_PREFIX = "HillasReconstructor"
#: the mono direction network's positions fitted with the image axes of all telescopes (physics/axis_fit.py)
AXIS_FIT_PREFIX = "CTLearnAxisFit"

#: what a run predicts, by its task: the role it plays in an event file
ROLE_OF_TASK = {"type": "type", "energy": "energy", "cameradirection": "geometry", "skydirection": "geometry"}
ROLES = ("type", "energy", "geometry")
#: ctapipe's name of the DL2 group of each role (``ReconstructionProperty``; data model v7.2+: particle_type)
KIND_OF_ROLE = {"type": "particle_type", "energy": "energy", "geometry": "geometry"}
#: the names event files of ctapipe 0.23 (data model v6) used instead, still read
LEGACY_KIND_OF_ROLE = {"type": "classification"}

TRAINING_IMAGES_TABLE = "/ctlearn_mlops/training_images"
#: the primary thrown in each simulation run, as predict_events.py found it in its inputs (obs_id, particle_id)
RUN_PARTICLE_TABLE = "/ctlearn_mlops/simulation_run_particle"
RUNS_ATTRIBUTE = "CTLEARN_MLOPS_RUNS"
#: the errors of the direction network's images the axis fit weighs them with (by intensity)
DIRECTION_ERROR_MODEL_TABLE = "/ctlearn_mlops/direction_error_model"
#: the energy network's EnergyErrorModel: where present, the CNN's array-level energy_uncert is calibrated
ENERGY_ERROR_MODEL_TABLE = "/ctlearn_mlops/energy_error_model"

TRIGGER_TABLE = "/dl1/event/subarray/trigger"
TELESCOPE_TRIGGER_TABLE = "/dl1/event/telescope/trigger"
SHOWER_TABLE = "/simulation/event/subarray/shower"
SIMULATION_RUN_TABLE = "/configuration/simulation/run"
OBSERVATION_BLOCK_TABLE = "/configuration/observation/observation_block"
PARAMETERS_GROUP = "/dl1/event/telescope/parameters"
POINTING_GROUP = "/configuration/telescope/pointing"


def telescope_table_path(role, prefix, tel_id):
    return f"/dl2/event/telescope/{KIND_OF_ROLE[role]}/{prefix}/tel_{int(tel_id):03d}"


def subarray_table_path(role, prefix):
    return f"/dl2/event/subarray/{KIND_OF_ROLE[role]}/{prefix}"


@dataclass(frozen=True)
class Reconstruction:
    """The columns of one reconstruction of one role, at telescope or array-event level."""

    role: str
    prefix: str
    telescope: bool = True

    @property
    def stem(self):
        return f"{self.prefix}_tel" if self.telescope else self.prefix

    @property
    def valid(self):
        return f"{self.stem}_is_valid"

    @property
    def values(self):
        """Column names of the reconstructed values."""
        if self.role == "type":
            return [f"{self.stem}_prediction"]
        if self.role == "energy":
            return [f"{self.stem}_energy"]
        return [f"{self.stem}_alt", f"{self.stem}_az"]


def prefixes_in(path, role, telescope=False):
    """The prefixes with a DL2 group of ``role`` in ``path`` (subarray level, or telescope level)."""
    level = "telescope" if telescope else "subarray"
    kinds = [KIND_OF_ROLE[role]] + ([LEGACY_KIND_OF_ROLE[role]] if role in LEGACY_KIND_OF_ROLE else [])
    found = set()
    with tables.open_file(str(path), mode="r") as h5:
        for kind in kinds:
            group = f"/dl2/event/{level}/{kind}"
            if group in h5:
                found.update(h5.get_node(group)._v_children)
    return sorted(found)


def energy_uncertainty_calibrated(path):
    """Whether the CNN's array-level ``energy_uncert`` in ``path`` is calibrated (the file holds the
    EnergyErrorModel it was made with; else it is StereoMeanCombiner's spread of the telescopes)."""
    with tables.open_file(str(path), mode="r") as h5:
        return ENERGY_ERROR_MODEL_TABLE in h5


def read_runs(path):
    """{role or "role/prefix": run description} recorded by the writer, or {}."""
    with tables.open_file(str(path), mode="r") as h5:
        attrs = h5.root._v_attrs
        return json.loads(attrs[RUNS_ATTRIBUTE]) if RUNS_ATTRIBUTE in attrs._v_attrnames else {}


def read_simulation_runs(path):
    """The simulation configuration of every run (``/configuration/simulation/run``), or None."""
    with tables.open_file(str(path), mode="r") as h5:
        if SIMULATION_RUN_TABLE not in h5:
            return None
    return read_table(path, SIMULATION_RUN_TABLE)


def observation_ids(path):
    """The obs_ids of a file: its observation blocks and simulation runs (what ctapipe's merger keys files by)."""
    found = set()
    with tables.open_file(str(path), mode="r") as h5:
        for table in (OBSERVATION_BLOCK_TABLE, SIMULATION_RUN_TABLE):
            if table in h5:
                found.update(int(i) for i in h5.get_node(table).col("obs_id"))
    return found


def simulation_run_particles(path, runs=None):
    """The primary thrown in each simulation run of a file: ({obs_id: particle id}, [obs_ids of unknown primary]).

    ctapipe's simulation configuration does not say which particle a run
    threw.  It is taken from, in this order: the table predict_events.py
    records from its inputs (``RUN_PARTICLE_TABLE``); the file's simulated
    showers when they are all of one particle (a file of one particle: every
    run of it, also a run none of whose showers triggered); the simulated
    showers of each run.  A run without showers in a file of several
    particles stays unknown.  ``runs``: the file's simulation runs, if already read.
    """
    runs = read_simulation_runs(path) if runs is None else runs
    obs_ids = [] if runs is None else [int(i) for i in runs["obs_id"]]
    particles = {}
    with tables.open_file(str(path), mode="r") as h5:
        if RUN_PARTICLE_TABLE in h5:
            recorded = h5.get_node(RUN_PARTICLE_TABLE).read()
            particles.update(zip(recorded["obs_id"].tolist(), recorded["particle_id"].tolist()))
        if SHOWER_TABLE in h5:
            node = h5.get_node(SHOWER_TABLE)
            showers = {"obs_id": node.col("obs_id"), "true_shower_primary_id": node.col("true_shower_primary_id")}
        else:
            showers = None
    if showers is not None and len(showers["obs_id"]):
        primaries = np.unique(showers["true_shower_primary_id"])
        for obs_id in obs_ids:
            if obs_id in particles:
                continue
            if len(primaries) == 1:
                particles[obs_id] = int(primaries[0])
                continue
            of_run = np.unique(showers["true_shower_primary_id"][showers["obs_id"] == obs_id])
            if len(of_run) == 1:
                particles[obs_id] = int(of_run[0])
    return {i: particles[i] for i in obs_ids if i in particles}, [i for i in obs_ids if i not in particles]


def read_subarray(path):
    """The subarray of an event file (with the equivalent focal length: the toy files and LST files lack the
    effective one)."""
    from ctapipe.instrument import FocalLengthKind, SubarrayDescription

    return SubarrayDescription.from_hdf(path, focal_length_choice=FocalLengthKind.EQUIVALENT)


def read_training_images(path):
    """Truth and image parameters of the runs' training images (the baselines are fitted on them), or None."""
    with tables.open_file(str(path), mode="r") as h5:
        if TRAINING_IMAGES_TABLE not in h5:
            return None
    return QTable(read_table(path, TRAINING_IMAGES_TABLE))


def _shower_truth(path):
    """The simulated showers (obs_id, event_id, true_*), or None for observed runs."""
    with tables.open_file(str(path), mode="r") as h5:
        if SHOWER_TABLE not in h5:
            return None
    showers = read_table(path, SHOWER_TABLE)
    truth = Table({"obs_id": showers["obs_id"], "event_id": showers["event_id"]})
    for name in ("true_energy", "true_alt", "true_az", "true_core_x", "true_core_y", "true_x_max",
                 "true_shower_primary_id", "true_h_first_int"):
        if name in showers.colnames:
            truth[name] = showers[name]
    return truth


def _array_pointing(path):
    """(table, keys): the array pointing per obs_id from the simulation configuration (as dl1-data-handler takes
    it), or for observed runs per array event at its time (the first telescope's, interpolated), with the time."""
    with tables.open_file(str(path), mode="r") as h5:
        simulated = SIMULATION_RUN_TABLE in h5
    if not simulated:
        events = read_table(path, TRIGGER_TABLE)[["obs_id", "event_id", "time"]]
        events["pointing_altitude"], events["pointing_azimuth"] = array_pointing(path, events["time"])
        return events, ["obs_id", "event_id"]
    runs = read_table(path, SIMULATION_RUN_TABLE)
    return Table({
        "obs_id": runs["obs_id"],
        "pointing_altitude": u.Quantity(runs["min_alt"]).to(u.deg),
        "pointing_azimuth": u.Quantity(runs["min_az"]).to(u.deg),
        "shower_reuse": np.asarray(runs["shower_reuse"], dtype=np.int64) if "shower_reuse" in runs.colnames
        else np.ones(len(runs), dtype=np.int64),
    }), ["obs_id"]


def _left_join(table, other, keys):
    """Left join keeping ``table``'s row order (astropy sorts by the keys)."""
    table = table.copy(copy_data=False)
    table["__row__"] = np.arange(len(table))
    # the key columns carry different descriptions in different tables (obs_id: observation block, simulation run)
    joined = join(table, other, keys=keys, join_type="left", metadata_conflicts="silent")
    joined.sort("__row__")
    joined.remove_column("__row__")
    return joined


def _with_truth_and_pointing(path, events):
    truth = _shower_truth(path)
    if truth is not None:
        events = _left_join(events, truth, ["obs_id", "event_id"])
    pointing, keys = _array_pointing(path)
    return _left_join(events, pointing, keys)


def read_telescope_events(path, tel_ids=None):
    """Every telescope event with truth, image parameters, pointing and all telescope-level reconstructions.

    One row per (obs_id, event_id, tel_id) of the parameter tables, in the
    file's order; reconstructions add their ``<prefix>_tel_*`` columns.
    """
    with tables.open_file(str(path), mode="r") as h5:
        available = sorted(int(n.removeprefix("tel_")) for n in h5.get_node(PARAMETERS_GROUP)._v_children)
        dl2_tables = []
        if "/dl2/event/telescope" in h5:
            for kind_node in h5.get_node("/dl2/event/telescope")._v_children.values():
                for prefix_node in kind_node._v_children.values():
                    dl2_tables.append(prefix_node._v_pathname)
    tel_ids = available if tel_ids is None else [t for t in available if t in set(int(t) for t in tel_ids)]
    parts = []
    for tel_id in tel_ids:
        table = read_table(path, f"{PARAMETERS_GROUP}/tel_{tel_id:03d}")
        for group in dl2_tables:
            try:
                dl2 = read_table(path, f"{group}/tel_{tel_id:03d}")
            except tables.NoSuchNodeError:
                continue
            for name in dl2.colnames:
                if name not in ("obs_id", "event_id", "tel_id"):
                    table[name] = dl2[name]
        parts.append(table)
    from astropy.table import vstack

    events = vstack(parts) if parts else Table()
    if len(events) == 0:
        return QTable(events)
    events = _with_truth_and_pointing(path, events)
    events.sort(["obs_id", "event_id", "tel_id"])
    return QTable(events)


def read_subarray_events(path):
    """Every array event with truth, pointing and all subarray-level reconstructions (trigger table order)."""
    events = read_table(path, TRIGGER_TABLE)[["obs_id", "event_id"]]
    with tables.open_file(str(path), mode="r") as h5:
        groups = []
        if "/dl2/event/subarray" in h5:
            for kind_node in h5.get_node("/dl2/event/subarray")._v_children.values():
                groups += [n._v_pathname for n in kind_node._v_children.values()]
    for group in groups:
        dl2 = read_table(path, group)
        if len(dl2) != len(events) or not (np.array_equal(dl2["obs_id"], events["obs_id"])
                                          and np.array_equal(dl2["event_id"], events["event_id"])):
            raise ValueError(f"{path}: {group} does not have one row per array event in trigger order")
        for name in dl2.colnames:
            if name not in ("obs_id", "event_id"):
                events[name] = dl2[name]
    return QTable(_with_truth_and_pointing(path, events))


#: free space under which an event file that cannot be read back whole is taken for a full disk
_NEARLY_FULL = 64 * 2**20


def _nearly_full(path):
    return shutil.disk_usage(Path(path).parent).free < _NEARLY_FULL


@contextlib.contextmanager
def writing(path):
    """While writing the HDF5 file ``path``: an HDF5 error on a nearly full file system is the full disk's.

    HDF5 reports a write that did not fit as whatever failed next ("Problems
    closing the Group", a bad node): raised here as ``OSError(ENOSPC)``
    naming the directory, which the tools turn into one message.
    """
    try:
        yield
    except (tables.HDF5ExtError, tables.NoSuchNodeError, OSError) as err:
        # (a merge that ran out of room can leave a file without the tables it was to copy)
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT) or not _nearly_full(path):
            raise
        raise OSError(errno.ENOSPC, f"No space left on device while writing {path}", str(Path(path).parent)) from None


def check_written(path, n_events):
    """Read back the event DL2 file ``path`` just written: synced, every table readable to its last row, every
    subarray DL2 table with ``n_events`` rows and the runs attribute (written last) there.

    Raises OSError naming the file (ENOSPC when its file system is nearly full: HDF5 may report a write that
    did not fit only as a file it cannot read back).
    """
    path = Path(path)
    problem = None
    try:
        with open(path, "rb+") as f:
            os.fsync(f.fileno())
        with tables.open_file(str(path), mode="r") as h5:
            if RUNS_ATTRIBUTE not in h5.root._v_attrs._f_list():
                problem = "its last attribute is missing"
            for node in h5.walk_nodes("/", classname="Table"):
                if node.nrows:
                    node.read(node.nrows - 1, node.nrows)
                if problem is None and node._v_pathname.startswith("/dl2/event/subarray/") and node.nrows != n_events:
                    problem = f"{node._v_pathname} has {node.nrows} rows, not {n_events}"
    except (OSError, tables.HDF5ExtError, tables.NoSuchNodeError, ValueError) as err:
        if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
            raise
        problem = f"it cannot be read back ({type(err).__name__}: {str(err).splitlines()[0] if str(err) else ''})"
    if problem is None:
        return
    if _nearly_full(path):
        raise OSError(errno.ENOSPC, f"No space left on device: {path} is incomplete ({problem})", str(path.parent))
    raise OSError(errno.EIO, f"{path} is incomplete after writing: {problem}")
