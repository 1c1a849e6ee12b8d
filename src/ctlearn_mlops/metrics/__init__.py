"""Pure metric functions (arrays in, numbers or QTables out; no I/O, no plots).

pyirf's implementations are used wherever pyirf has one; what it lacks
(ROC/AUC per energy bin, background rejection) is added here.
"""

from .angular import angular_resolution, containment
from .bootstrap import paired_bootstrap_difference
from .classification import auc, auc_per_energy_bin, background_rejection_at, roc_curve
from .coverage import coverage, coverage_per_energy_bin, reliability
from .energy import energy_bias_resolution, overall_energy_bias_resolution, resolution_after_bias

__all__ = [
    "angular_resolution",
    "auc",
    "auc_per_energy_bin",
    "background_rejection_at",
    "containment",
    "coverage",
    "coverage_per_energy_bin",
    "energy_bias_resolution",
    "overall_energy_bias_resolution",
    "paired_bootstrap_difference",
    "reliability",
    "resolution_after_bias",
    "roc_curve",
]
