"""Per-task performance from an event DL2 file: the network and the classical reconstructions on the same events.

Two levels: ``telescope`` (every test image the network saw: the mono
metrics of the reports) and ``subarray`` (every array event, reconstructions
combined over telescopes or made by a stereo network).  For energy and the
direction tasks only gammas count.  At telescope level the classical
methods are the Hillas BDT written in the file and the simple baselines
(``baselines``) fitted on the training images it holds; at array-event level
they are the combined Hillas BDT (with ctapipe's HillasReconstructor for the
direction of events with two or more images), and the network's array
direction is the axis fit (``axis_fit``) where the file has it, next to the
plain mean of the telescopes.
"""

from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.coordinates import AltAz, SkyCoord, angular_separation
from astropy.table import QTable
from ctapipe.coordinates import TelescopeFrame

from .. import metrics
from ..io import dl2
from ..showers import shower_groups
from . import baselines
from .energy_uncertainty import energy_error_dex, stated_dex

__all__ = [
    "CLASSICAL",
    "ENERGY_BINS",
    "LEVELS",
    "LOWER_IS_BETTER",
    "NETWORK",
    "NETWORK_AXIS_FIT",
    "NETWORK_STEREO",
    "TaskEvaluation",
    "best_baseline",
    "evaluate",
    "evaluate_file",
    "read_events",
]

NETWORK = "CNN"
NETWORK_STEREO = "CNN stereo"
#: the mono direction network's image positions fitted with the image axes (array-event level)
NETWORK_AXIS_FIT = "CNN axis fit"
CLASSICAL = "Hillas BDT"
LEVELS = ("telescope", "subarray")
#: 4 bins per decade of true energy
ENERGY_BINS = 10 ** np.arange(-1.5, 1.76, 0.25) * u.TeV
REJECTION_EFFICIENCIES = (0.5, 0.7, 0.9)
#: headline metrics where lower is better
LOWER_IS_BETTER = {"resolution", "containment_68_deg"}
_NETWORK_PREFIXES = {dl2.CNN_PREFIX: NETWORK, dl2.STEREO_PREFIX: NETWORK_STEREO}


@dataclass
class TaskEvaluation:
    """What the reports plot and print for one task at one level."""

    task: str
    n_events: int
    level: str = "telescope"
    #: headline[metric][method] -> float; the first method is the network
    headline: dict = field(default_factory=dict)
    #: binned[method] -> QTable per bin of true energy
    binned: dict = field(default_factory=dict)
    #: per-event arrays the figures need, by name
    arrays: dict = field(default_factory=dict)
    #: which images the baselines' free parameters were fitted on
    baselines_fitted_on: str = ""
    #: statistics[metric][method]: the headline metric on a subset of the events (an index array)
    statistics: dict = field(default_factory=dict, repr=False)
    #: margins[metric] -> {"baseline", "difference", "uncertainty"}: network minus the best baseline,
    #: with the standard deviation of a paired bootstrap over the test showers
    margins: dict = field(default_factory=dict)
    #: the network of this evaluation (NETWORK, or NETWORK_STEREO for a stereo run)
    network: str = NETWORK

    @property
    def methods(self):
        return list(self.binned)


def network_prefix(path, task, level):
    """The network reconstruction to evaluate: mono CNN if the file has it at this level, else the stereo one."""
    role = dl2.ROLE_OF_TASK[task]
    present = dl2.prefixes_in(path, role, telescope=level == "telescope")
    for prefix in (dl2.CNN_PREFIX, dl2.STEREO_PREFIX):
        if prefix in present:
            return prefix
    return None


def read_events(path, task, level="telescope", prefix=None):
    """The events of ``task`` the network reconstructed: test images or array events (gammas only for energy and
    direction), with truth, pointing, image parameters (telescope level) and every reconstruction's columns."""
    role = dl2.ROLE_OF_TASK[task]
    prefix = prefix or network_prefix(path, task, level)
    if prefix is None:
        raise ValueError(f"{path} has no network {dl2.KIND_OF_ROLE[role]} reconstruction at {level} level")
    table = dl2.read_telescope_events(path) if level == "telescope" else dl2.read_subarray_events(path)
    valid = np.asarray(table[dl2.Reconstruction(role, prefix, telescope=level == "telescope").valid], dtype=bool)
    if task != "type":
        valid &= np.asarray(table["true_shower_primary_id"]) == 0
    table = table[valid]
    table.meta["network_prefix"] = prefix
    # the CNN's array energy_uncert states a 68 % interval only where the file holds its energy error model
    table.meta["energy_uncertainty_calibrated"] = level == "subarray" and dl2.energy_uncertainty_calibrated(path)
    return table


def _stored(table, role, prefix, level):
    """The values of a reconstruction stored in the file, NaN where it is not valid; None if absent."""
    reco = dl2.Reconstruction(role, prefix, telescope=level == "telescope")
    if reco.valid not in table.colnames:
        return None
    valid = np.asarray(table[reco.valid], dtype=bool)
    values = {}
    for column in reco.values:
        name = column.rsplit("_", 1)[1]
        quantity = table[column]
        data = u.Quantity(quantity).to_value({"energy": u.TeV, "alt": u.deg, "az": u.deg}.get(name, u.one)) \
            if hasattr(quantity, "unit") and quantity.unit is not None else np.asarray(quantity, dtype=float)
        values[name] = np.where(valid, np.asarray(data, dtype=float), np.nan)
    stated_energy = f"{reco.stem}_energy_uncert"
    if role == "energy" and prefix == dl2.CNN_PREFIX and table.meta.get("energy_uncertainty_calibrated") \
            and stated_energy in table.colnames:
        # the calibrated 68 % interval, in dex (energy_uncertainty)
        stated = stated_dex(values["energy"], u.Quantity(table[stated_energy], u.TeV).to_value(u.TeV))
        values["uncertainty"] = np.where(valid, stated, np.nan)
    uncertainty = f"{reco.stem}_ang_distance_uncert"
    # only the axis fit states a 68 % radius there (StereoMeanCombiner writes the telescopes' spread)
    if prefix == dl2.AXIS_FIT_PREFIX and uncertainty in table.colnames:
        data = u.Quantity(table[uncertainty], u.deg).to_value(u.deg)
        if np.isfinite(np.asarray(data, dtype=float)[valid]).any():  # ctapipe's default is NaN: nothing stated
            values["uncertainty"] = np.where(valid, np.asarray(data, dtype=float), np.nan)
    return values


def _estimates(task, table, level, training):
    """{method: values} of every method on ``table``'s events; the network first."""
    role = dl2.ROLE_OF_TASK[task]
    prefix = table.meta["network_prefix"]
    found = {}
    if level == "subarray" and prefix == dl2.CNN_PREFIX and role == "geometry":
        # where the file has it, the axis fit is the network's array direction; the plain mean follows it
        axis_fit = _stored(table, role, dl2.AXIS_FIT_PREFIX, level)
        if axis_fit is not None:
            found[NETWORK_AXIS_FIT] = axis_fit
    found[_NETWORK_PREFIXES[prefix]] = _stored(table, role, prefix, level)
    classical = _stored(table, role, dl2.CLASSICAL_PREFIX, level)
    if level == "telescope":
        found.update(_simple_baselines(task, table, training))
    if classical is not None:
        found[CLASSICAL if role != "geometry" or level == "subarray" else f"{CLASSICAL} disp"] = classical
    return found


def _simple_baselines(task, table, training):
    if task == "energy":
        return {"median predictor": {"energy": baselines.median_energy(table, training)},
                "intensity fit": {"energy": baselines.intensity_fit_energy(table, training)}}
    if task == "type":
        return {"Hillas width cut": {"prediction": baselines.width_score(table)},
                "Hillas logistic regression": {"prediction": baselines.hillas_logistic_score(table, training)}}
    return {"Hillas centroid": {"theta": baselines.centroid_theta(table)},
            "disp": {"theta": baselines.disp_theta(table, training)}}


def _energy(table, estimates):
    true_energy = u.Quantity(table["true_energy"], u.TeV)
    result = TaskEvaluation("energy", len(table), headline={"resolution": {}, "bias": {}})
    energies = {method: values["energy"] for method, values in estimates.items()}
    for method, reco in energies.items():
        bias, resolution, _ = metrics.overall_energy_bias_resolution(true_energy, reco * u.TeV)
        result.headline["resolution"][method] = resolution
        result.headline["bias"][method] = bias
        result.binned[method] = metrics.energy_bias_resolution(true_energy, reco * u.TeV, ENERGY_BINS)
    network = next(iter(energies))
    result.arrays = {"true_energy": true_energy.to_value(u.TeV), "reco_energy": energies[network]}
    stated = {method: values["uncertainty"] for method, values in estimates.items() if "uncertainty" in values}
    if stated:
        # how often the true energy lies within the event's stated 68 % interval (energy_uncert)
        errors = {m: energy_error_dex(energies[m], true_energy.to_value(u.TeV)) for m in stated}
        result.headline["coverage_68"] = {m: metrics.coverage(errors[m], s) for m, s in stated.items()}
        result.arrays["coverage"] = {m: metrics.coverage_per_energy_bin(true_energy, errors[m], s, ENERGY_BINS)
                                     for m, s in stated.items()}
        result.arrays["reliability"] = {m: metrics.reliability(errors[m], s, dimensions=1) for m, s in stated.items()}
    result.statistics = {"resolution": {
        method: (lambda idx, reco=reco: metrics.overall_energy_bias_resolution(true_energy[idx], reco[idx] * u.TeV)[1])
        for method, reco in energies.items()
    }}
    return result


def _true_and_pointing(table):
    true = SkyCoord(alt=u.Quantity(table["true_alt"], u.deg), az=u.Quantity(table["true_az"], u.deg), frame=AltAz())
    pointing = SkyCoord(alt=u.Quantity(table["pointing_altitude"], u.deg),
                        az=u.Quantity(table["pointing_azimuth"], u.deg), frame=AltAz())
    return true, pointing


def _theta(table, values):
    return np.rad2deg(angular_separation(
        np.deg2rad(values["az"]), np.deg2rad(values["alt"]),
        u.Quantity(table["true_az"]).to_value(u.rad), u.Quantity(table["true_alt"]).to_value(u.rad),
    ))


def _residuals(table, values):
    """(reconstructed - true) field-of-view offsets (deg) around the array pointing."""
    true, pointing = _true_and_pointing(table)
    frame = TelescopeFrame(telescope_pointing=pointing)
    reco = SkyCoord(alt=values["alt"] * u.deg, az=values["az"] * u.deg, frame=AltAz())
    true_fov, reco_fov = true.transform_to(frame), reco.transform_to(frame)
    return {"fov_lon": (reco_fov.fov_lon - true_fov.fov_lon).to_value(u.deg),
            "fov_lat": (reco_fov.fov_lat - true_fov.fov_lat).to_value(u.deg)}


def _direction(table, task, estimates):
    true_energy = u.Quantity(table["true_energy"], u.TeV)
    thetas = {method: values["theta"] if "theta" in values else _theta(table, values)
              for method, values in estimates.items()}
    network = next(iter(estimates))
    result = TaskEvaluation(task, len(table), headline={"containment_68_deg": {}})
    for method, theta in thetas.items():
        result.headline["containment_68_deg"][method] = metrics.containment(theta)
        result.binned[method] = metrics.angular_resolution(true_energy, theta * u.deg, ENERGY_BINS)
    result.arrays = {"theta": thetas, "residuals": _residuals(table, estimates[network])}
    stated = {method: values["uncertainty"] for method, values in estimates.items() if "uncertainty" in values}
    if stated:
        # how often the true direction lies within the event's stated 68 % radius (ang_distance_uncert)
        result.headline["coverage_68"] = {m: metrics.coverage(thetas[m], r) for m, r in stated.items()}
        result.arrays["coverage"] = {m: metrics.coverage_per_energy_bin(true_energy, thetas[m], r, ENERGY_BINS)
                                     for m, r in stated.items()}
        result.arrays["reliability"] = {m: metrics.reliability(thetas[m], r) for m, r in stated.items()}
    result.statistics = {"containment_68_deg": {
        method: (lambda idx, theta=theta: metrics.containment(theta[idx])) for method, theta in thetas.items()
    }}
    d_alt = estimates[network]["alt"] - u.Quantity(table["true_alt"], u.deg).to_value(u.deg)
    d_az = (estimates[network]["az"] - u.Quantity(table["true_az"], u.deg).to_value(u.deg) + 180) % 360 - 180
    d_az *= np.cos(u.Quantity(table["true_alt"]).to_value(u.rad))
    result.headline["bias_alt_deg"] = {network: float(np.nanmedian(d_alt))}
    result.headline["bias_az_cos_alt_deg"] = {network: float(np.nanmedian(d_az))}
    result.arrays["bias"] = _binned_median(true_energy, {"alt": d_alt, "az cos(alt)": d_az})
    return result


def _binned_median(true_energy, values):
    index = np.digitize(true_energy.to_value(u.TeV), ENERGY_BINS.to_value(u.TeV)) - 1
    table = QTable({"true_energy_center": np.sqrt(ENERGY_BINS[:-1] * ENERGY_BINS[1:])})
    for name, value in values.items():
        table[name] = [
            np.nanmedian(value[index == i]) if np.any(index == i) else np.nan for i in range(len(ENERGY_BINS) - 1)
        ]
    return table


def _type(table, estimates):
    is_gamma = np.asarray(table["true_shower_primary_id"]) == 0
    true_energy = u.Quantity(table["true_energy"], u.TeV)
    scores = {method: np.asarray(values["prediction"], dtype=float) for method, values in estimates.items()}
    result = TaskEvaluation("type", len(table), headline={"auc": {}})
    for efficiency in REJECTION_EFFICIENCIES:
        result.headline[f"background_rejection_at_{efficiency:.0%}_gamma_efficiency"] = {}
    for method, score in scores.items():
        result.headline["auc"][method] = metrics.auc(is_gamma, score)
        for efficiency, rejection in metrics.background_rejection_at(is_gamma, score, REJECTION_EFFICIENCIES).items():
            result.headline[f"background_rejection_at_{efficiency:.0%}_gamma_efficiency"][method] = rejection
        result.binned[method] = metrics.auc_per_energy_bin(true_energy, is_gamma, score, ENERGY_BINS)
    result.arrays = {"is_gamma": is_gamma, "scores": scores}
    result.statistics = {"auc": {
        method: (lambda idx, score=score: metrics.auc(is_gamma[idx], score[idx])) for method, score in scores.items()
    }}
    return result


def shower_labels(table):
    """One label per row: rows of the same shower (and reuses of one CORSIKA shower) share it."""
    reuse = np.asarray(table["shower_reuse"]) if "shower_reuse" in table.colnames else 1
    return shower_groups(table["obs_id"], table["event_id"], reuse)


def best_baseline(values, metric, network=NETWORK):
    """The baseline with the best finite value of ``metric`` in ``values`` ({method: value}), or None."""
    finite = {m: v for m, v in values.items()
              if m not in (NETWORK, NETWORK_STEREO, NETWORK_AXIS_FIT, network) and np.isfinite(v)}
    if not finite:
        return None
    pick = min if metric in LOWER_IS_BETTER else max
    return pick(finite, key=finite.get)


def _margins(result, showers):
    margins = {}
    for metric, by_method in result.statistics.items():
        best = best_baseline(result.headline[metric], metric, result.network)
        if result.network not in by_method or best is None:
            continue
        difference, uncertainty = metrics.paired_bootstrap_difference(by_method[result.network], by_method[best],
                                                                      showers)
        margins[metric] = {"baseline": best, "difference": difference, "uncertainty": uncertainty}
    return margins


def evaluate(task, table, training=None, level="telescope", margins=True) -> TaskEvaluation:
    """Network and classical methods of ``task`` on the events of ``table`` (from ``read_events``).

    ``training``: the images the simple baselines are fitted on (telescope
    level); without them they are cross-fitted over the test showers.
    ``margins``: compute the bootstrap margin to the best baseline.
    """
    estimates = _estimates(task, table, level, training)
    if task == "energy":
        result = _energy(table, estimates)
    elif task == "type":
        result = _type(table, estimates)
    elif task in ("cameradirection", "skydirection"):
        result = _direction(table, task, estimates)
    else:
        raise ValueError(f"unknown task {task!r}")
    result.level = level
    result.network = next(iter(estimates))
    if margins:
        result.margins = _margins(result, shower_labels(table))
    if level == "telescope":
        result.baselines_fitted_on = (
            f"the run's {len(training)} training images" if baselines.has_training(training)
            else "the other half of the test showers (two-fold cross-fitting)"
        )
    else:
        result.baselines_fitted_on = "the runs' training images (the Hillas BDT written in the DL2 file)"
    return result


def evaluate_file(path, task, level="telescope", margins=True):
    """``evaluate`` on the events of a DL2 file, with the training images it holds."""
    table = read_events(path, task, level)
    training = dl2.read_training_images(path) if level == "telescope" else None
    return evaluate(task, table, training, level, margins)
