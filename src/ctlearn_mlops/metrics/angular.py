"""Angular resolution (68% containment), pyirf's definition."""

import astropy.units as u
import numpy as np
from astropy.table import QTable
from pyirf.benchmarks import angular_resolution as _pyirf_angular_resolution

__all__ = ["angular_resolution", "containment"]


def angular_resolution(true_energy, theta, energy_bins, quantile=0.6826894921370859):
    """Containment radius of ``theta`` per bin of true energy (pyirf ``angular_resolution``)."""
    events = QTable({"true_energy": u.Quantity(true_energy, u.TeV), "theta": u.Quantity(theta, u.deg)})
    return _pyirf_angular_resolution(events, u.Quantity(energy_bins, u.TeV), quantile=quantile)


def containment(theta, quantile=0.6826894921370859):
    """Containment radius of all ``theta`` (deg); NaN for no events."""
    theta = u.Quantity(theta, u.deg).to_value(u.deg)
    theta = theta[np.isfinite(theta)]
    return float(np.quantile(theta, quantile)) if len(theta) else np.nan
