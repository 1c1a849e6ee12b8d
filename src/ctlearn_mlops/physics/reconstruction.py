"""From network outputs and image parameters to ctapipe DL2 tables: per telescope and per array event.

No TensorFlow here: the networks' raw outputs come in as arrays.

* ``network_telescope_values``: a mono network's output as ctapipe's
  telescope-level values (gammaness, energy, AltAz direction).  Camera
  offsets go back through the same rotated ``CameraFrame`` (the camera
  frame's focal length) and sky offsets through the same ``NominalFrame``
  (origin: the array pointing) that dl1-data-handler 0.14.6 used to make the
  labels, to AltAz (ctlearn 0.10.2 took the nominal frame's coordinates for
  alt/az).
* ``classical_telescope_values``: the Hillas BDT reconstruction of the same
  images (``baselines``), fitted on the training images.
* ``telescope_table`` / ``combine``: the DL2 tables, one row per telescope
  event and one per array event (ctapipe's ``StereoMeanCombiner``); an event
  without a valid telescope keeps its row, marked invalid.
* ``with_energy_uncertainty``: the array energy's calibrated 68 %
  uncertainty (``energy_uncertainty``) in place of the combiner's spread.
* ``axis_fit_table``: one direction per array event from a mono network's
  positions and the image axes of all its telescopes (``axis_fit``).
* ``hillas_reconstructor_table``: ctapipe's ``HillasReconstructor`` direction
  of the events with two or more valid images, all at once
  (``hillas_intersection``); ``hillas_reconstructor_per_event`` is ctapipe's
  own per-event path it is tested against.
"""

import warnings

import astropy.units as u
import numpy as np
from astropy.coordinates import AltAz, SkyCoord
from astropy.table import Table, join, vstack
from astropy.time import Time
from ctapipe.containers import (
    ArrayEventContainer,
    ArrayPointingContainer,
    DL1CameraContainer,
    HillasParametersContainer,
    ImageParametersContainer,
    MorphologyContainer,
    ParticleClassificationContainer,
    ReconstructedEnergyContainer,
    ReconstructedGeometryContainer,
    TelescopePointingContainer,
)
from ctapipe.coordinates import CameraFrame, NominalFrame, TelescopeFrame
from ctapipe.io.tableio import TelListToMaskTransform
from ctapipe.reco import HillasReconstructor, StereoMeanCombiner
from ctapipe.reco.reconstructor import ReconstructionProperty
from ctapipe.reco.utils import add_defaults_and_meta

from ..io.dl2 import Reconstruction
from . import baselines
from .axis_fit import (
    LEAKAGE_COLUMN,
    axis_fit_directions,
    event_index_of,
    from_nominal,
    has_axis,
    image_axes,
    to_nominal,
)
from .energy_uncertainty import image_log_intensity_and_leakage, uncertainty_from_dex
from .hillas_intersection import TableHillasReconstructor, image_groups

__all__ = [
    "CONTAINERS",
    "LABEL_EPOCH",
    "WEIGHTS",
    "combiner_weights",
    "axis_fit_table",
    "classical_telescope_values",
    "combine",
    "hillas_reconstructor_per_event",
    "hillas_reconstructor_table",
    "network_event_values",
    "network_telescope_values",
    "energy_images_of_events",
    "telescope_table",
    "validation_energy_tables",
    "with_energy_uncertainty",
    "with_sky_coordinates",
]

#: the reference time dl1-data-handler 0.14.6 makes its direction labels with (``LST_EPOCH``)
LABEL_EPOCH = Time("2018-10-01T00:00:00", scale="utc")
#: ctapipe's container of each role
CONTAINERS = {
    "type": ParticleClassificationContainer,
    "energy": ReconstructedEnergyContainer,
    "geometry": ReconstructedGeometryContainer,
}
_PROPERTY = {
    "type": ReconstructionProperty.PARTICLE_TYPE,
    "energy": ReconstructionProperty.ENERGY,
    "geometry": ReconstructionProperty.GEOMETRY,
}
#: the telescope weights of ctapipe 0.32's StereoMeanCombiner this module gives it the image parameters for
WEIGHTS = ("none", "intensity", "aspect-weighted-intensity")
#: names ctapipe used before 0.32 (still taken): "konrad" is now "aspect-weighted-intensity"
OLD_WEIGHT_NAMES = {"konrad": "aspect-weighted-intensity"}


def combiner_weights(name):
    """ctapipe's name of the telescope weights ``name`` (an old name taken); ValueError naming the choices."""
    name = OLD_WEIGHT_NAMES.get(name, name)
    if name not in WEIGHTS:
        raise ValueError(f"unknown weights {name!r}; choose one of {', '.join(WEIGHTS)}")
    return name


def _camera_offsets_to_altaz(x, y, tel_ids, pointing_alt, pointing_az, subarray, rotations):
    """AltAz of camera-plane offsets (m), through the rotated camera frame dl1-data-handler labels with.

    ``rotations``: the pixel rotation of each telescope's camera as the reader
    took it before its image mapper derotated the geometry (``pix_rotation``).
    """
    alt = np.full(len(x), np.nan)
    az = np.full(len(x), np.nan)
    for tel_id in np.unique(tel_ids):
        rows = np.flatnonzero(tel_ids == tel_id)
        telescope = subarray.tel[int(tel_id)]
        location = subarray.tel_coords[subarray.tel_ids_to_indices(int(tel_id))].to_earth_location()
        altaz = AltAz(location=location, obstime=LABEL_EPOCH)
        pointing = SkyCoord(az=pointing_az[rows], alt=pointing_alt[rows], frame=altaz)
        frame = CameraFrame(
            focal_length=telescope.camera.geometry.frame.focal_length,
            rotation=rotations[int(tel_id)], telescope_pointing=pointing,
        )
        direction = SkyCoord(x=x[rows] * u.m, y=y[rows] * u.m, frame=frame).transform_to(altaz)
        alt[rows], az[rows] = direction.alt.to_value(u.deg), direction.az.wrap_at(360 * u.deg).to_value(u.deg)
    return alt, az


def _nominal_offsets_to_altaz(fov_lon, fov_lat, pointing_alt, pointing_az, subarray):
    """AltAz of offsets in the nominal frame around the array pointing, as dl1-data-handler labels them."""
    location = subarray.reference_location
    altaz = AltAz(location=location, obstime=LABEL_EPOCH)
    origin = SkyCoord(az=pointing_az, alt=pointing_alt, frame=altaz)
    nominal = NominalFrame(origin=origin, location=location, obstime=LABEL_EPOCH)
    direction = SkyCoord(fov_lon=fov_lon * u.deg, fov_lat=fov_lat * u.deg, frame=nominal).transform_to(altaz)
    return direction.alt.to_value(u.deg), direction.az.wrap_at(360 * u.deg).to_value(u.deg)


def _pointing(examples, telescope):
    """(alt, az) Quantities of the pointing for each example: the telescope's, else the array's."""
    if telescope and "telescope_pointing_altitude" in examples.colnames:
        return (u.Quantity(examples["telescope_pointing_altitude"], u.deg),
                u.Quantity(examples["telescope_pointing_azimuth"], u.deg))
    return u.Quantity(examples["pointing_altitude"], u.deg), u.Quantity(examples["pointing_azimuth"], u.deg)


def network_telescope_values(task, output, examples, subarray, rotations=None):
    """{column stem: values} of a mono network's output for the examples (one row each).

    ``examples`` has ``tel_id`` and the pointing columns of the reader's
    example table; ``rotations`` the reader's camera rotations (``pix_rotation``,
    needed for camera offsets).  Keys are ``prediction``, ``energy`` (TeV) or
    ``alt``/``az`` (deg).
    """
    output = np.asarray(output)
    if task == "type":
        return {"prediction": output[:, 1].astype(np.float64)}  # training labels gamma as class 1
    if task == "energy":
        return {"energy": 10 ** output.reshape(-1).astype(np.float64)}
    if task == "cameradirection":
        alt, az = _pointing(examples, telescope=True)
        if rotations is None:
            raise ValueError("camera offsets need the reader's camera rotations")
        alt, az = _camera_offsets_to_altaz(output[:, 0].astype(np.float64), output[:, 1].astype(np.float64),
                                           np.asarray(examples["tel_id"]), alt, az, subarray, rotations)
        return {"alt": alt, "az": az}
    if task == "skydirection":
        alt, az = _pointing(examples, telescope=False)
        alt, az = _nominal_offsets_to_altaz(output[:, 0].astype(np.float64), output[:, 1].astype(np.float64),
                                            alt, az, subarray)
        return {"alt": alt, "az": az}
    raise ValueError(f"unknown task {task!r}")


def network_event_values(task, output, events, subarray):
    """{column stem: values} of a stereo network's output for array events (sky direction and type, energy)."""
    if task == "cameradirection":
        raise ValueError("a stereo network has no single camera: use skydirection")
    return network_telescope_values(task, output, events, subarray)


def classical_telescope_values(role, images, training):
    """{column stem: values} of the Hillas BDT reconstruction of ``images`` (telescope events with parameters)."""
    if role == "type":
        return {"prediction": baselines.bdt_gamma_score(images, training)}
    if role == "energy":
        return {"energy": baselines.bdt_energy(images, training)}
    lon, lat = baselines.bdt_disp_direction(images, training)
    pointing = SkyCoord(alt=u.Quantity(images["pointing_altitude"], u.deg),
                        az=u.Quantity(images["pointing_azimuth"], u.deg), frame=AltAz())
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # frames without obstime: a pure rotation, nothing to miss
        direction = SkyCoord(fov_lon=lon * u.deg, fov_lat=lat * u.deg,
                             frame=TelescopeFrame(telescope_pointing=pointing)).transform_to(AltAz())
    return {"alt": direction.alt.to_value(u.deg), "az": direction.az.wrap_at(360 * u.deg).to_value(u.deg)}


_UNITS = {"energy": u.TeV, "alt": u.deg, "az": u.deg}


def telescope_table(role, prefix, telescope_events, keys, values, valid):
    """The DL2 table of one telescope: one row per row of ``telescope_events`` (its parameter table).

    ``keys`` (obs_id, event_id) of the reconstructed rows, ``values`` their
    columns by stem, ``valid`` which of them count; rows without a
    reconstruction are invalid with NaN values.
    """
    reco = Reconstruction(role, prefix, telescope=True)
    table = Table({"obs_id": telescope_events["obs_id"], "event_id": telescope_events["event_id"],
                   "tel_id": telescope_events["tel_id"]})
    predicted = Table({"obs_id": np.asarray(keys["obs_id"]), "event_id": np.asarray(keys["event_id"]),
                       "__valid__": np.asarray(valid, dtype=bool)})
    for stem, column in values.items():
        predicted[stem] = np.asarray(column, dtype=np.float64)
    table["__row__"] = np.arange(len(table))
    joined = join(table, predicted, keys=["obs_id", "event_id"], join_type="left") if len(predicted) else table
    joined.sort("__row__")
    for stem in values:
        column = np.ma.filled(np.ma.asarray(joined[stem], dtype=np.float64), np.nan) if stem in joined.colnames \
            else np.full(len(table), np.nan)
        table[f"{reco.stem}_{stem}"] = u.Quantity(column, _UNITS[stem]) if stem in _UNITS else column
    is_valid = np.ma.filled(np.ma.asarray(joined["__valid__"]), False) if "__valid__" in joined.colnames \
        else np.zeros(len(table), dtype=bool)
    finite = np.all([np.isfinite(np.asarray(table[c], dtype=float)) for c in reco.values], axis=0)
    table[reco.valid] = np.asarray(is_valid, dtype=bool) & finite
    table.remove_column("__row__")
    add_defaults_and_meta(table, CONTAINERS[role], prefix=prefix, add_tel_prefix=True)
    return table


def _event_rows(events, subarray, table, reco):
    """``table`` (obs_id, event_id + reco columns) on every array event of ``events``; missing ones invalid."""
    base = Table({"obs_id": events["obs_id"], "event_id": events["event_id"], "__row__": np.arange(len(events))})
    joined = join(base, table, keys=["obs_id", "event_id"], join_type="left") if len(table) else base
    joined.sort("__row__")
    out = Table({"obs_id": events["obs_id"], "event_id": events["event_id"]})
    n_tel = len(subarray.tel_ids)
    for name in table.colnames:
        if name in ("obs_id", "event_id"):
            continue
        column = joined[name] if name in joined.colnames else None
        if name.endswith("_telescopes"):
            filled = np.zeros((len(out), n_tel), dtype=bool)
            if column is not None:
                present = ~np.ma.getmaskarray(column)[:, 0] if column.ndim == 2 else ~np.ma.getmaskarray(column)
                filled[present] = np.asarray(np.ma.getdata(column))[present]
            out[name] = filled
        elif name.endswith("_is_valid"):
            out[name] = np.ma.filled(np.ma.asarray(column), False).astype(bool) if column is not None \
                else np.zeros(len(out), bool)
        else:
            unit = getattr(table[name], "unit", None)
            data = np.ma.filled(np.ma.asarray(column, dtype=np.float64), np.nan) if column is not None \
                else np.full(len(out), np.nan)
            out[name] = u.Quantity(data, unit) if unit is not None else data
    telescopes = f"{reco.prefix}_telescopes"
    if telescopes not in out.colnames:
        # a stereo network sees the event's triggered telescopes (ctapipe 0.32 describes the column, it does not
        # fill it: its default is None)
        out[telescopes] = np.asarray(events["tels_with_trigger"], dtype=bool) if "tels_with_trigger" in \
            events.colnames else np.zeros((len(out), n_tel), dtype=bool)
    add_defaults_and_meta(out, CONTAINERS[reco.role], prefix=reco.prefix)
    return out


def combine(role, prefix, telescope_tables, parameters, events, subarray, weights="intensity"):
    """The array-event DL2 table of ``prefix``: ctapipe's StereoMeanCombiner over the valid telescopes.

    Parameters
    ----------
    telescope_tables : list of Table
        The telescope DL2 tables of the prefix (``telescope_table``).
    parameters : Table
        obs_id, event_id, tel_id and the image parameters the weights need
        (``hillas_intensity``, ``hillas_length``, ``hillas_width``).
    events : Table
        Every array event (obs_id, event_id), in the order of the output.
    weights : str
        StereoMeanCombiner's weights (``WEIGHTS``, or an old name).  Energy is
        combined as the mean of its logarithm.
    """
    reco = Reconstruction(role, prefix, telescope=False)
    mono = vstack([t for t in telescope_tables if len(t)]) if any(len(t) for t in telescope_tables) else Table()
    if len(mono):
        weight_columns = parameters[["obs_id", "event_id", "tel_id", "hillas_intensity", "hillas_length",
                                     "hillas_width"]]
        mono = join(mono, weight_columns, keys=["obs_id", "event_id", "tel_id"], join_type="left")
        mono.sort(["obs_id", "event_id", "tel_id"])  # the combiner needs each event's telescopes together
        combiner = StereoMeanCombiner(prefix=prefix, property=_PROPERTY[role], weights=combiner_weights(weights),
                                      log_target=role == "energy")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # events whose telescopes are all invalid: NaN, marked so
            stereo = combiner.predict_table(mono)
        mask = TelListToMaskTransform(subarray)
        telescopes = f"{prefix}_telescopes"
        stereo[telescopes] = np.array([mask(list(t)) for t in stereo[telescopes]]).reshape(len(stereo), -1) \
            if len(stereo) else np.zeros((0, len(subarray.tel_ids)), dtype=bool)
    else:
        stereo = Table({"obs_id": np.zeros(0, np.int64), "event_id": np.zeros(0, np.int64)})
        for stem in reco.values:
            stereo[stem] = np.zeros(0)
        stereo[reco.valid] = np.zeros(0, bool)
    return _event_rows(events, subarray, stereo, reco)


def energy_images_of_events(stereo, telescope_tables, images, prefix):
    """(event index, log10 intensity, leakage) of the images the combiner took for each row of ``stereo``.

    ``stereo``: ``combine``'s energy table of ``prefix``; ``telescope_tables``
    its telescope tables (the valid rows are the images it combined);
    ``images``: their image parameters (obs_id, event_id, tel_id,
    ``hillas_intensity`` and, where known, the leakage).
    """
    reco = Reconstruction("energy", prefix, telescope=True)
    used = [t[["obs_id", "event_id", "tel_id"]][np.asarray(t[reco.valid], dtype=bool)] for t in telescope_tables]
    used = vstack([t for t in used if len(t)]) if any(len(t) for t in used) else Table(
        {"obs_id": np.zeros(0, np.int64), "event_id": np.zeros(0, np.int64), "tel_id": np.zeros(0, np.int64)})
    if not (len(used) and len(images) and len(stereo)):  # astropy cannot join an empty table
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    parameters = [c for c in ("obs_id", "event_id", "tel_id", "hillas_intensity", LEAKAGE_COLUMN) if c in images.colnames]
    rows = join(used, Table(images[parameters]), keys=["obs_id", "event_id", "tel_id"], join_type="inner")
    if not len(rows):
        return np.zeros(0, np.int64), np.zeros(0), np.zeros(0)
    rows = join(rows, Table({"obs_id": np.asarray(stereo["obs_id"]), "event_id": np.asarray(stereo["event_id"]),
                             "__event__": np.arange(len(stereo))}), keys=["obs_id", "event_id"], join_type="inner")
    log_intensity, leakage = image_log_intensity_and_leakage(rows)
    return np.asarray(rows["__event__"], dtype=np.int64), log_intensity, leakage


def with_energy_uncertainty(stereo, telescope_tables, images, model, prefix):
    """``stereo`` (``combine``'s energy table) with ``<prefix>_energy_uncert`` of ``model`` (an
    ``EnergyErrorModel``): the calibrated 68 % uncertainty, NaN where the energy is not valid."""
    event_index, log_intensity, leakage = energy_images_of_events(stereo, telescope_tables, images, prefix)
    energy = u.Quantity(stereo[f"{prefix}_energy"], u.TeV).to_value(u.TeV)
    with np.errstate(divide="ignore", invalid="ignore"):
        sigma = model.event_errors(event_index, log_intensity, leakage, np.log10(energy))
    valid = np.asarray(stereo[f"{prefix}_is_valid"], dtype=bool)
    stereo[f"{prefix}_energy_uncert"] = u.Quantity(np.where(valid, uncertainty_from_dex(energy, sigma), np.nan),
                                                   u.TeV)
    return stereo


def validation_energy_tables(images, column, subarray, prefix):
    """(events, telescope tables) of an energy network's validation images, as ``combine`` takes them.

    ``images``: the images with their truth and the network's energy (TeV) in ``column``; ``events``: one row
    per array event (obs_id, event_id, true_energy).
    """
    images = Table(images)
    images.sort(["obs_id", "event_id", "tel_id"])
    events = images[["obs_id", "event_id", "true_energy"]][event_index_of(images)[1]]
    tables = []
    for tel_id in subarray.tel_ids:
        here = images[np.asarray(images["tel_id"]) == tel_id]
        if len(here):
            tables.append(telescope_table("energy", prefix, here[["obs_id", "event_id", "tel_id"]],
                                          here[["obs_id", "event_id"]], {"energy": np.asarray(here[column])},
                                          np.ones(len(here), dtype=bool)))
    return events, tables


def with_sky_coordinates(table, prefix, times, location):
    """``table`` (an array-event geometry table of an observed run) with ``<prefix>_ra`` / ``<prefix>_dec``: its
    AltAz direction at each event's time, seen from ``location``, in ICRS (NaN where the direction is invalid)."""
    alt = u.Quantity(table[f"{prefix}_alt"], u.deg).value
    az = u.Quantity(table[f"{prefix}_az"], u.deg).value
    usable = np.isfinite(alt) & np.isfinite(az)
    ra, dec = np.full(len(table), np.nan), np.full(len(table), np.nan)
    if usable.any():
        sky = SkyCoord(alt=alt[usable] * u.deg, az=az[usable] * u.deg,
                       frame=AltAz(obstime=times[usable], location=location)).icrs
        ra[usable], dec[usable] = sky.ra.deg, sky.dec.deg
    table[f"{prefix}_ra"], table[f"{prefix}_dec"] = ra * u.deg, dec * u.deg
    return table


def event_table(role, prefix, keys, values, valid, events, subarray):
    """The array-event DL2 table of a stereo network: one prediction per event, the others invalid."""
    reco = Reconstruction(role, prefix, telescope=False)
    table = Table({"obs_id": np.asarray(keys["obs_id"]), "event_id": np.asarray(keys["event_id"])})
    for stem, column in values.items():
        column = np.asarray(column, dtype=np.float64)
        table[f"{prefix}_{stem}"] = u.Quantity(column, _UNITS[stem]) if stem in _UNITS else column
    finite = np.all([np.isfinite(np.asarray(table[c], dtype=float)) for c in reco.values], axis=0)
    table[reco.valid] = np.asarray(valid, dtype=bool) & finite
    return _event_rows(events, subarray, table, reco)


def axis_fit_table(images, keys, values, valid, model, events, subarray, prefix):
    """The array-event geometry table of the axis fit (``axis_fit``) of a mono direction network.

    ``images``: the telescope events that take part (those that pass the
    runs' cuts: Hillas parameters in the telescope frame, pointing);
    ``keys``/``values``/``valid``: the network's telescope-level directions
    (obs_id, event_id, tel_id; ``alt``/``az`` in deg); ``model``: the
    network's ``ImageErrorModel``.  ``<prefix>_ang_distance_uncert``: the
    fit's 68 % containment radius.
    """
    reco = Reconstruction("geometry", prefix, telescope=False)
    alt, az = np.asarray(values["alt"], np.float64), np.asarray(values["az"], np.float64)
    good = np.asarray(valid, dtype=bool) & np.isfinite(alt) & np.isfinite(az)
    predicted = Table({"obs_id": np.asarray(keys["obs_id"])[good], "event_id": np.asarray(keys["event_id"])[good],
                       "tel_id": np.asarray(keys["tel_id"])[good], "__alt__": alt[good], "__az__": az[good]})
    needed = ["obs_id", "event_id", "tel_id", "hillas_fov_lon", "hillas_fov_lat", "hillas_psi", "hillas_intensity",
              "pointing_altitude", "pointing_azimuth", "telescope_pointing_altitude", "telescope_pointing_azimuth",
              LEAKAGE_COLUMN]
    usable = images[has_axis(images)]  # an image without a Hillas axis cannot take part
    rows = join(Table(usable[[c for c in needed if c in usable.colnames]]), predicted,
                keys=["obs_id", "event_id", "tel_id"], join_type="inner") if len(predicted) else Table()
    table = Table({"obs_id": np.zeros(0, np.int64), "event_id": np.zeros(0, np.int64)})
    if len(rows):
        rows.sort(["obs_id", "event_id", "tel_id"])
        event_index, first = event_index_of(rows)
        lon, lat = to_nominal(rows, rows["__alt__"], rows["__az__"])
        fov_lon, fov_lat, r68 = axis_fit_directions(event_index, image_axes(rows), lon, lat, model)
        fit_alt, fit_az = from_nominal(fov_lon, fov_lat, rows["pointing_altitude"][first],
                                       rows["pointing_azimuth"][first])
        telescopes = np.zeros((len(first), len(subarray.tel_ids)), dtype=bool)
        telescopes[event_index, subarray.tel_ids_to_indices(np.asarray(rows["tel_id"]))] = True
        table = Table({"obs_id": np.asarray(rows["obs_id"])[first], "event_id": np.asarray(rows["event_id"])[first]})
        table[f"{prefix}_alt"] = u.Quantity(fit_alt, u.deg)
        table[f"{prefix}_az"] = u.Quantity(fit_az, u.deg)
        table[f"{prefix}_ang_distance_uncert"] = u.Quantity(r68, u.deg)
        table[reco.valid] = np.isfinite(fit_alt) & np.isfinite(fit_az)
        table[f"{prefix}_telescopes"] = telescopes
    else:
        for column, unit in ((f"{prefix}_alt", u.deg), (f"{prefix}_az", u.deg),
                             (f"{prefix}_ang_distance_uncert", u.deg)):
            table[column] = u.Quantity(np.zeros(0), unit)
        table[reco.valid] = np.zeros(0, bool)
    return _event_rows(events, subarray, table, reco)


def hillas_reconstructor_table(images, valid, events, subarray, prefix="HillasReconstructor"):
    """ctapipe's HillasReconstructor direction of every array event with two or more valid images.

    ``images``: telescope events with their Hillas parameters in the
    telescope frame and their pointing; ``valid``: which images take part
    (those that pass the runs' cuts). Computed for all events at once
    (``TableHillasReconstructor``: ctapipe's arithmetic with numpy; equal to
    ``hillas_reconstructor_per_event`` within 1e-6 deg, tested).
    """
    directions = TableHillasReconstructor(subarray).directions(images[np.asarray(valid, dtype=bool)])
    return _hillas_table(directions, events, subarray, prefix)


def hillas_reconstructor_per_event(images, subarray, config=None):
    """ctapipe's own HillasReconstructor, one ArrayEventContainer per event (the reference; milliseconds an event).

    Returns what ``TableHillasReconstructor.directions`` returns, for the same
    events in the same order; ``config``: the reconstructor's traitlets config.
    """
    reconstructor = HillasReconstructor(subarray, config=config)
    order, starts, _ = image_groups(images)
    images = images[order]
    mask = TelListToMaskTransform(subarray)
    out = {"obs_id": np.asarray(images["obs_id"], np.int64)[starts],
           "event_id": np.asarray(images["event_id"], np.int64)[starts],
           "alt": np.full(len(starts), np.nan), "az": np.full(len(starts), np.nan),
           "is_valid": np.zeros(len(starts), bool), "telescopes": np.zeros((len(starts), len(subarray.tel_ids)), bool)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i, (start, stop) in enumerate(zip(starts, np.r_[starts[1:], len(images)])):
            event = _array_event(images[start:stop])
            reconstructor(event)
            geometry = event.dl2.stereo.geometry[type(reconstructor).__name__]
            out["alt"][i], out["az"][i] = geometry.alt.to_value(u.deg), geometry.az.to_value(u.deg)
            out["is_valid"][i] = bool(geometry.is_valid) and np.isfinite(out["alt"][i])
            out["telescopes"][i] = mask(list(geometry.telescopes or []))
    return out


def _hillas_table(directions, events, subarray, prefix):
    reco = Reconstruction("geometry", prefix, telescope=False)
    table = Table({"obs_id": directions["obs_id"], "event_id": directions["event_id"]})
    table[f"{prefix}_alt"] = u.Quantity(directions["alt"], u.deg)
    table[f"{prefix}_az"] = u.Quantity(directions["az"], u.deg)
    table[reco.valid] = directions["is_valid"]
    table[f"{prefix}_telescopes"] = directions["telescopes"]
    return _event_rows(events, subarray, table, reco)


def _array_event(images):
    """An ArrayEventContainer with the Hillas parameters and pointing of one event's images."""
    event = ArrayEventContainer()
    first = images[0]
    # ctapipe 0.32 keeps the pointing with the monitoring data (event.monitoring.pointing / .tel[i].pointing)
    event.monitoring.pointing = ArrayPointingContainer(
        array_altitude=u.Quantity(first["pointing_altitude"], u.deg).to(u.rad),
        array_azimuth=u.Quantity(first["pointing_azimuth"], u.deg).to(u.rad),
    )
    for row in images:
        tel_id = int(row["tel_id"])
        hillas = HillasParametersContainer(
            fov_lon=u.Quantity(row["hillas_fov_lon"], u.deg), fov_lat=u.Quantity(row["hillas_fov_lat"], u.deg),
            r=u.Quantity(row["hillas_r"], u.deg), phi=u.Quantity(row["hillas_phi"], u.deg),
            intensity=float(row["hillas_intensity"]), length=u.Quantity(row["hillas_length"], u.deg),
            width=u.Quantity(row["hillas_width"], u.deg), psi=u.Quantity(row["hillas_psi"], u.deg),
            skewness=float(row["hillas_skewness"]),
        )
        morphology = MorphologyContainer(n_pixels=int(row["morphology_n_pixels"]))
        event.dl1.tel[tel_id] = DL1CameraContainer(
            parameters=ImageParametersContainer(hillas=hillas, morphology=morphology))
        pointing_alt = row["telescope_pointing_altitude"] if "telescope_pointing_altitude" in images.colnames \
            else row["pointing_altitude"]
        pointing_az = row["telescope_pointing_azimuth"] if "telescope_pointing_azimuth" in images.colnames \
            else row["pointing_azimuth"]
        event.monitoring.tel[tel_id].pointing = TelescopePointingContainer(
            altitude=u.Quantity(pointing_alt, u.deg).to(u.rad), azimuth=u.Quantity(pointing_az, u.deg).to(u.rad))
    event.trigger.tels_with_trigger = sorted(event.dl1.tel)
    return event
