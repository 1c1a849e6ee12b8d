"""Per-task performance of a DL2 table: the network and its classical baselines, same events."""

from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
import tables
from astropy.table import QTable
from ctapipe.io import read_table

from .. import metrics
from ..showers import shower_groups
from . import baselines

__all__ = ["ENERGY_BINS", "LOWER_IS_BETTER", "NETWORK", "best_baseline", "TaskEvaluation", "evaluate", "read_baseline_training", "read_dl2"]

NETWORK = "CNN"
#: 4 bins per decade of true energy
ENERGY_BINS = 10 ** np.arange(-1.5, 1.76, 0.25) * u.TeV
REJECTION_EFFICIENCIES = (0.5, 0.7, 0.9)
#: headline metrics where lower is better
LOWER_IS_BETTER = {"resolution", "containment_68_deg"}


def read_dl2(path):
    from ..tools.predict import DL2_TABLE

    return QTable(read_table(path, DL2_TABLE))


def read_baseline_training(path):
    """The run's training images (truth and image parameters) stored next to the DL2 table, or None."""
    from ..tools.predict import BASELINE_TRAINING_TABLE

    with tables.open_file(path) as h5:
        if BASELINE_TRAINING_TABLE not in h5:
            return None
    return QTable(read_table(path, BASELINE_TRAINING_TABLE))


@dataclass
class TaskEvaluation:
    """What the reports plot and print for one task."""

    task: str
    n_events: int
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

    @property
    def methods(self):
        return list(self.binned)


def _energy(dl2, training):
    true_energy = u.Quantity(dl2["true_energy"], u.TeV)
    estimates = {
        NETWORK: u.Quantity(dl2["reco_energy"], u.TeV).to_value(u.TeV),
        "median predictor": baselines.median_energy(dl2, training),
        "intensity fit": baselines.intensity_fit_energy(dl2, training),
        "Hillas BDT": baselines.bdt_energy(dl2, training),
    }
    result = TaskEvaluation("energy", len(dl2), headline={"resolution": {}, "bias": {}})
    for method, reco in estimates.items():
        bias, resolution, _ = metrics.overall_energy_bias_resolution(true_energy, reco * u.TeV)
        result.headline["resolution"][method] = resolution
        result.headline["bias"][method] = bias
        result.binned[method] = metrics.energy_bias_resolution(true_energy, reco * u.TeV, ENERGY_BINS)
    result.arrays = {"true_energy": true_energy.to_value(u.TeV), "reco_energy": estimates[NETWORK]}
    result.statistics = {"resolution": {
        method: (lambda idx, reco=reco: metrics.overall_energy_bias_resolution(true_energy[idx], reco[idx] * u.TeV)[1])
        for method, reco in estimates.items()
    }}
    return result


def _direction(dl2, task, training):
    true_energy = u.Quantity(dl2["true_energy"], u.TeV)
    if task == "cameradirection":
        dx = u.Quantity(dl2["reco_cam_coord_offset_x"] - dl2["cam_coord_offset_x"], u.m)
        dy = u.Quantity(dl2["reco_cam_coord_offset_y"] - dl2["cam_coord_offset_y"], u.m)
        focal = u.Quantity(dl2["focal_length"], u.m)
        network_theta = np.rad2deg(np.hypot(dx, dy).to_value(u.m) / focal.to_value(u.m))
        residuals = {"x": np.rad2deg((dx / focal).to_value(u.one)), "y": np.rad2deg((dy / focal).to_value(u.one))}
    else:
        dlon = u.Quantity(dl2["reco_fov_lon"] - dl2["fov_lon"], u.deg).to_value(u.deg)
        dlat = u.Quantity(dl2["reco_fov_lat"] - dl2["fov_lat"], u.deg).to_value(u.deg)
        network_theta = np.hypot(dlon, dlat)
        residuals = {"fov_lon": dlon, "fov_lat": dlat}
    thetas = {
        NETWORK: network_theta,
        "Hillas centroid": baselines.centroid_theta(dl2),
        "disp": baselines.disp_theta(dl2, training),
        "Hillas BDT disp": baselines.bdt_disp_theta(dl2, training),
    }
    result = TaskEvaluation(task, len(dl2), headline={"containment_68_deg": {}})
    for method, theta in thetas.items():
        result.headline["containment_68_deg"][method] = metrics.containment(theta)
        result.binned[method] = metrics.angular_resolution(true_energy, theta * u.deg, ENERGY_BINS)
    result.arrays = {"theta": thetas, "residuals": residuals}
    result.statistics = {"containment_68_deg": {
        method: (lambda idx, theta=theta: metrics.containment(theta[idx])) for method, theta in thetas.items()
    }}
    if task == "skydirection":
        d_alt = u.Quantity(dl2["reco_alt"] - dl2["true_alt"], u.deg).to_value(u.deg)
        d_az = (u.Quantity(dl2["reco_az"] - dl2["true_az"], u.deg).to_value(u.deg) + 180) % 360 - 180
        d_az *= np.cos(u.Quantity(dl2["true_alt"]).to_value(u.rad))
        result.headline["bias_alt_deg"] = {NETWORK: float(np.nanmedian(d_alt))}
        result.headline["bias_az_cos_alt_deg"] = {NETWORK: float(np.nanmedian(d_az))}
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


def _type(dl2, training):
    is_gamma = np.asarray(dl2["true_shower_primary_id"]) == 0
    true_energy = u.Quantity(dl2["true_energy"], u.TeV)
    scores = {
        NETWORK: np.asarray(dl2["gammaness"], dtype=float),
        "Hillas width cut": baselines.width_score(dl2),
        "Hillas logistic regression": baselines.hillas_logistic_score(dl2, training),
        "Hillas BDT": baselines.bdt_gamma_score(dl2, training),
    }
    result = TaskEvaluation("type", len(dl2), headline={"auc": {}})
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


def shower_labels(dl2):
    """One label per image: images of the same shower (and reuses of one CORSIKA shower) share it."""
    reuse = np.asarray(dl2["shower_reuse"]) if "shower_reuse" in dl2.colnames else 1
    return shower_groups(dl2["obs_id"], dl2["event_id"], reuse)


def best_baseline(values, metric):
    """The baseline with the best finite value of ``metric`` in ``values`` ({method: value}), or None."""
    finite = {m: v for m, v in values.items() if m != NETWORK and np.isfinite(v)}
    if not finite:
        return None
    pick = min if metric in LOWER_IS_BETTER else max
    return pick(finite, key=finite.get)


def _margins(result, showers):
    margins = {}
    for metric, by_method in result.statistics.items():
        best = best_baseline(result.headline[metric], metric)
        if NETWORK not in by_method or best is None:
            continue
        difference, uncertainty = metrics.paired_bootstrap_difference(by_method[NETWORK], by_method[best], showers)
        margins[metric] = {"baseline": best, "difference": difference, "uncertainty": uncertainty}
    return margins


def evaluate(task, dl2, training=None) -> TaskEvaluation:
    """Network and baselines of ``task`` on the events of ``dl2`` (a QTable from ``read_dl2``).

    ``training`` (from ``read_baseline_training``): the images the baselines are
    fitted on; without it they are cross-fitted over the test showers.
    """
    if task == "energy":
        result = _energy(dl2, training)
    elif task == "type":
        result = _type(dl2, training)
    elif task in ("cameradirection", "skydirection"):
        result = _direction(dl2, task, training)
    else:
        raise ValueError(f"unknown task {task!r}")
    result.margins = _margins(result, shower_labels(dl2))
    result.baselines_fitted_on = (
        f"the run's {len(training)} training images" if baselines.has_training(training)
        else "the other half of the test showers (two-fold cross-fitting)"
    )
    return result
