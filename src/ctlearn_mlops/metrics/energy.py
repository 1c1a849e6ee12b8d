"""Energy bias and resolution, pyirf's definition."""

import astropy.units as u
import numpy as np
from astropy.table import QTable
from pyirf.benchmarks import energy_bias_resolution as _pyirf_energy_bias_resolution
from pyirf.benchmarks.energy_bias_resolution import energy_resolution_absolute_68

__all__ = ["energy_bias_resolution", "overall_energy_bias_resolution", "resolution_after_bias"]


def resolution_after_bias(rel_error):
    """68% containment of |E_reco/E_true - 1| after removing the bias (the median)."""
    rel_error = np.asarray(rel_error, dtype=float)
    return energy_resolution_absolute_68(rel_error - np.nanmedian(rel_error))


def energy_bias_resolution(true_energy, reco_energy, energy_bins):
    """Bias (median of E_reco/E_true - 1) and resolution per bin of true energy.

    Returns pyirf's table: ``true_energy_low/high/center``, ``n_events``,
    ``bias``, ``resolution``.  NaN predictions are ignored; events outside
    the bins are dropped; empty bins hold NaN.
    """
    events = QTable({"true_energy": u.Quantity(true_energy, u.TeV), "reco_energy": u.Quantity(reco_energy, u.TeV)})
    return _pyirf_energy_bias_resolution(
        events, u.Quantity(energy_bins, u.TeV), resolution_function=resolution_after_bias,
    )


def overall_energy_bias_resolution(true_energy, reco_energy):
    """(bias, resolution, n_events) over all events, same definition as per bin."""
    true_energy = u.Quantity(true_energy, u.TeV)
    if len(true_energy) == 0:
        return np.nan, np.nan, 0
    edges = u.Quantity([true_energy.min().value * 0.999, true_energy.max().value * 1.001], u.TeV)
    row = energy_bias_resolution(true_energy, reco_energy, edges)[0]
    return float(row["bias"]), float(row["resolution"]), int(row["n_events"])
