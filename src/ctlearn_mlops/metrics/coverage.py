"""Coverage of per-event uncertainties: how often the truth lies within an event's stated 68 % radius (a
direction) or interval (an energy)."""

import astropy.units as u
import numpy as np
from astropy.table import QTable
from scipy.stats import norm

__all__ = ["COVERAGE_LEVEL", "RELIABILITY_LEVELS", "coverage", "coverage_per_energy_bin", "reliability"]

#: the containment the uncertainty columns state
COVERAGE_LEVEL = 0.68


def coverage(error, uncertainty):
    """Fraction of events whose ``error`` is within their ``uncertainty`` (both finite); NaN for none."""
    error, uncertainty = np.asarray(error, dtype=float), np.asarray(uncertainty, dtype=float)
    finite = np.isfinite(error) & np.isfinite(uncertainty)
    return float(np.mean(error[finite] <= uncertainty[finite])) if finite.any() else np.nan


def coverage_per_energy_bin(true_energy, error, uncertainty, energy_bins):
    """Coverage, its binomial standard error and the event count per bin of true energy."""
    energy = u.Quantity(true_energy, u.TeV).to_value(u.TeV)
    edges = u.Quantity(energy_bins, u.TeV).to_value(u.TeV)
    index = np.digitize(energy, edges) - 1
    rows = []
    for i in range(len(edges) - 1):
        here = index == i
        n = int(np.sum(here & np.isfinite(error) & np.isfinite(uncertainty)))
        value = coverage(np.asarray(error)[here], np.asarray(uncertainty)[here]) if n else np.nan
        rows.append((n, value, np.sqrt(value * (1 - value) / n) if n else np.nan))
    n_events, values, errors = (np.array(column) for column in zip(*rows))
    return QTable({"true_energy_low": edges[:-1] * u.TeV, "true_energy_high": edges[1:] * u.TeV,
                   "true_energy_center": np.sqrt(edges[:-1] * edges[1:]) * u.TeV, "n_events": n_events,
                   "coverage": values, "coverage_error": errors})


#: the containment levels of a reliability curve
RELIABILITY_LEVELS = np.linspace(0.1, 0.95, 18)


def reliability(error, uncertainty, levels=RELIABILITY_LEVELS, dimensions=2):
    """(expected, observed) containment: the stated 68 % radius scaled to each level as for a Gaussian.

    ``dimensions``: 2 for a direction (radius of a circular 2-d Gaussian), 1
    for an interval (|x| of a 1-d Gaussian, e.g. log energy).  A calibrated
    uncertainty gives observed = expected at 0.68; the rest of the curve says
    how Gaussian the errors' distribution is.
    """
    error, uncertainty = np.asarray(error, dtype=float), np.asarray(uncertainty, dtype=float)
    if dimensions == 1:
        scale = norm.ppf((1 + levels) / 2) / norm.ppf((1 + COVERAGE_LEVEL) / 2)
    elif dimensions == 2:
        scale = np.sqrt(-2 * np.log(1 - levels)) / np.sqrt(-2 * np.log(1 - COVERAGE_LEVEL))
    else:
        raise ValueError(f"dimensions must be 1 or 2, not {dimensions!r}")
    return levels, np.array([coverage(error, uncertainty * s) for s in scale])
