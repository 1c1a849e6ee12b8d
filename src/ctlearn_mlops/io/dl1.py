"""Checks of DL1 input files, made before a reader touches them.

A zero-byte file, a text file named ``.dl1.h5`` or a truncated copy makes
HDF5 fail with a back trace of dozens of lines (PyTables 3.11 no longer
prints them by default); here each becomes one sentence naming the file.  Telescopes that never triggered in a file have no tables
there (ctapipe writes none): ``available_telescopes`` says which have.
"""

from pathlib import Path

import tables

from ..exceptions import InputDataError

__all__ = ["DL1_IMAGE_NODES", "OBSERVED_POINTING_GROUP", "array_pointing", "available_telescopes", "check_dl1_files",
           "check_observed_files", "hdf5_problem", "is_observed", "telescope_pointing"]

#: where observed runs carry their telescopes' pointing over time (ctapipe's ``PointingInterpolator`` reads it)
OBSERVED_POINTING_GROUP = "/dl0/monitoring/telescope/pointing"

#: what a DL1 file must hold for the image readers (dl1-data-handler 0.14) and our DL2 writer
DL1_IMAGE_NODES = (
    "/configuration/instrument/subarray/layout",
    "/dl1/event/subarray/trigger",
    "/dl1/event/telescope/parameters",
    "/dl1/event/telescope/images",
)


def hdf5_problem(path):
    """Why ``path`` is not a readable HDF5 file (a short phrase), or None."""
    path = Path(path)
    try:
        size = path.stat().st_size
    except OSError as err:
        return f"cannot be read ({err.strerror})"
    if size == 0:
        return "is empty (0 bytes)"
    try:
        if not tables.is_hdf5_file(str(path)):
            return "is not an HDF5 file"
        with tables.open_file(str(path), mode="r"):
            pass
    except (tables.HDF5ExtError, OSError, ValueError) as err:
        text = str(err)
        if "truncated file" in text:
            detail = next((line.strip() for line in text.splitlines() if "truncated file" in line), "")
            return f"is truncated ({detail})" if detail else "is truncated"
        lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("File ")]
        return f"is not a readable HDF5 file ({lines[-1] if lines else type(err).__name__})"
    return None


#: the oldest ctapipe data model dl1-data-handler 0.14.9 reads, per kind of data (it checks the first file only)
_OLDEST_DATA_MODEL = {"Simulation": 6, "Observation": 5}


def _data_model_problem(h5):
    """Why the data model of an open DL1 file is too old for the readers (a short phrase), or None."""
    attrs = h5.root._v_attrs
    names = attrs._f_list()
    if "CTA PRODUCT DATA MODEL VERSION" not in names:
        return "has no data model version (CTA PRODUCT DATA MODEL VERSION): not written by ctapipe"
    found = str(attrs["CTA PRODUCT DATA MODEL VERSION"])
    kind = str(attrs["CTA PROCESS TYPE"]) if "CTA PROCESS TYPE" in names else "Simulation"
    try:
        major = int(found.split(".")[0].removeprefix("v"))
    except ValueError:
        return f"has an unreadable data model version {found!r}"
    oldest = _OLDEST_DATA_MODEL.get(kind, 6)
    if major < oldest:
        return (f"is ctapipe data model {found}; {kind.lower()} files must be v{oldest} or newer: process it again "
                "with python scripts/data_processing/convert_data.py (docs/data_processing.md)")
    return None


def check_dl1_files(files, source=None, key="Project.signal_dir", nodes=DL1_IMAGE_NODES):
    """Raise InputDataError naming the first file that is not a readable DL1 file with ``nodes`` of a data model
    the readers take (every file: the readers check the first one only)."""
    for path in files:
        problem = hdf5_problem(path)
        if problem is None:
            with tables.open_file(str(path), mode="r") as h5:
                missing = [node for node in nodes if node not in h5]
                problem = _data_model_problem(h5)
            if missing:
                problem = f"is not a ctapipe DL1 file with images and parameters (no {missing[0]})"
        if problem is not None:
            raise InputDataError(f"{path} {problem}", source=source, key=key)


def is_observed(path):
    """True for a file of observed data (``CTA PROCESS TYPE`` Observation: no simulation truth)."""
    with tables.open_file(str(path), mode="r") as h5:
        attrs = h5.root._v_attrs
        return "CTA PROCESS TYPE" in attrs._f_list() and str(attrs["CTA PROCESS TYPE"]) == "Observation"


def check_observed_files(files, source=None, key="--input"):
    """Whether ``files`` are observed runs (True) or simulations (False); InputDataError for a mix, or observed
    runs without what placing their events on the sky needs (event times, the telescopes' pointing)."""
    kinds = {Path(path): is_observed(path) for path in files}
    if len(set(kinds.values())) > 1:
        observed = next(p for p, o in kinds.items() if o)
        simulated = next(p for p, o in kinds.items() if not o)
        raise InputDataError(f"{observed} is an observed run and {simulated} a simulation: give them separately "
                             "(one event DL2 file holds one kind)", source=source, key=key)
    if not any(kinds.values()):
        return False
    from ctapipe.io import read_table

    for path in files:
        with tables.open_file(str(path), mode="r") as h5:
            trigger = h5.get_node("/dl1/event/subarray/trigger")
            if "time" not in trigger.colnames:
                raise InputDataError(f"{path} is an observed run without event times (time in "
                                     "/dl1/event/subarray/trigger)", source=source, key=key)
            missing = sorted(available_telescopes(h5) - _telescopes_with_rows(h5, OBSERVED_POINTING_GROUP))
        if missing:
            raise InputDataError(f"{path} is an observed run without the pointing of telescope {missing[0]} "
                                 f"({OBSERVED_POINTING_GROUP}/tel_{missing[0]:03d}: time, azimuth, altitude): its "
                                 "events cannot be placed on the sky", source=source, key=key)
        times = read_table(str(path), "/dl1/event/subarray/trigger")["time"]
        for tel_id in sorted(available_telescopes(path)):
            pointing = read_table(str(path), f"{OBSERVED_POINTING_GROUP}/tel_{tel_id:03d}")
            if not ({"time", "azimuth", "altitude"} <= set(pointing.colnames)):
                raise InputDataError(f"{path}: {OBSERVED_POINTING_GROUP}/tel_{tel_id:03d} lacks time, azimuth or "
                                     "altitude", source=source, key=key)
            if len(times) and (times.min() < pointing["time"].min() or times.max() > pointing["time"].max()):
                raise InputDataError(
                    f"{path}: events from {times.min().isot} to {times.max().isot}, but the pointing of telescope "
                    f"{tel_id} covers {pointing['time'].min().isot} to {pointing['time'].max().isot} only: events "
                    "outside it cannot be placed on the sky", source=source, key=key)
    return True


def array_pointing(path, times):
    """(altitude, azimuth) of the array of an observed run at ``times``: the pointing of its first telescope with
    a pointing table (the telescopes track together); ValueError if it has none."""
    import numpy as np

    with tables.open_file(str(path), mode="r") as h5:
        tel_ids = _telescopes_with_rows(h5, OBSERVED_POINTING_GROUP)
    if not tel_ids:
        raise ValueError(f"{path} has no pointing of an observed run ({OBSERVED_POINTING_GROUP})")
    return telescope_pointing(path, np.full(len(times), min(tel_ids)), times)


def telescope_pointing(path, tel_ids, times):
    """(altitude, azimuth) Quantities of telescope ``tel_ids[i]`` at ``times[i]``, interpolated in the pointing
    tables of an observed run with ctapipe's ``PointingInterpolator``."""
    import astropy.units as u
    import numpy as np
    from ctapipe.io import read_table
    from ctapipe.monitoring.interpolation import PointingInterpolator

    tel_ids = np.asarray(tel_ids)
    interpolator = PointingInterpolator()
    alt, az = np.full(len(tel_ids), np.nan), np.full(len(tel_ids), np.nan)
    for tel_id in np.unique(tel_ids):
        interpolator.add_table(int(tel_id), read_table(str(path), f"{OBSERVED_POINTING_GROUP}/tel_{int(tel_id):03d}"))
        rows = tel_ids == tel_id
        tel_alt, tel_az = interpolator(int(tel_id), times[rows])
        alt[rows], az[rows] = tel_alt.to_value(u.deg), tel_az.to_value(u.deg) % 360
    return alt * u.deg, az * u.deg


def available_telescopes(path, group="/dl1/event/telescope/parameters"):
    """Ids of the telescopes with a non-empty table under ``group`` in ``path`` (a path or an open file)."""
    if isinstance(path, tables.File):
        return _telescopes_with_rows(path, group)
    with tables.open_file(str(path), mode="r") as h5:
        return _telescopes_with_rows(h5, group)


def _telescopes_with_rows(h5, group):
    if group not in h5:
        return set()
    return {
        int(name.removeprefix("tel_")) for name, node in h5.get_node(group)._v_children.items()
        if name.startswith("tel_") and node.nrows > 0
    }
