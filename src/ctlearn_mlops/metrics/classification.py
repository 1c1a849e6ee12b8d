"""ROC, AUC and background rejection for gamma/hadron separation (not in pyirf)."""

import astropy.units as u
import numpy as np
from astropy.table import QTable
from pyirf.binning import calculate_bin_indices
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as _sk_roc_curve

__all__ = ["auc", "auc_per_energy_bin", "background_rejection_at", "roc_curve"]


def _clean(is_gamma, score):
    is_gamma = np.asarray(is_gamma, dtype=bool)
    score = np.asarray(score, dtype=float)
    finite = np.isfinite(score)
    return is_gamma[finite], score[finite]


def roc_curve(is_gamma, score):
    """(gamma efficiency, background efficiency) for every threshold on ``score``."""
    is_gamma, score = _clean(is_gamma, score)
    background_eff, gamma_eff, _ = _sk_roc_curve(is_gamma, score)
    return gamma_eff, background_eff


def auc(is_gamma, score):
    """Area under the ROC curve; NaN unless both classes are present."""
    is_gamma, score = _clean(is_gamma, score)
    if is_gamma.all() or not is_gamma.any():
        return np.nan
    return float(roc_auc_score(is_gamma, score))


def background_rejection_at(is_gamma, score, gamma_efficiencies):
    """1 - background efficiency at the cut keeping each requested gamma efficiency."""
    is_gamma, score = _clean(is_gamma, score)
    result = {}
    gamma_scores = score[is_gamma]
    background_scores = score[~is_gamma]
    for efficiency in gamma_efficiencies:
        if len(gamma_scores) == 0 or len(background_scores) == 0:
            result[efficiency] = np.nan
            continue
        cut = np.quantile(gamma_scores, 1 - efficiency)
        result[efficiency] = float(np.mean(background_scores < cut))
    return result


def auc_per_energy_bin(true_energy, is_gamma, score, energy_bins):
    """AUC in bins of true energy, as a QTable like pyirf's benchmarks."""
    energy_bins = u.Quantity(energy_bins, u.TeV)
    bin_index, valid = calculate_bin_indices(u.Quantity(true_energy, u.TeV), energy_bins)
    is_gamma = np.asarray(is_gamma, dtype=bool)
    score = np.asarray(score, dtype=float)
    table = QTable()
    table["true_energy_low"] = energy_bins[:-1]
    table["true_energy_high"] = energy_bins[1:]
    table["true_energy_center"] = 0.5 * (energy_bins[:-1] + energy_bins[1:])
    table["n_gamma"] = [int(np.sum(valid & (bin_index == i) & is_gamma)) for i in range(len(energy_bins) - 1)]
    table["n_background"] = [int(np.sum(valid & (bin_index == i) & ~is_gamma)) for i in range(len(energy_bins) - 1)]
    table["auc"] = [
        auc(is_gamma[valid & (bin_index == i)], score[valid & (bin_index == i)]) for i in range(len(energy_bins) - 1)
    ]
    return table
