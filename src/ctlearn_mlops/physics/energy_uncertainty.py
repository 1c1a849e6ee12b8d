"""A calibrated 68 % uncertainty of the array-level energy, from the energy network's errors on its validation images.

ctapipe's ``StereoMeanCombiner`` (0.32) writes the spread of the telescopes'
energies as ``<prefix>_energy_uncert``, exp of the weighted standard
deviation of ln E in TeV: 1 for a one-telescope event, and no statement of
how far the truth lies.  Here each image gets the 68 % error of
its network energy, |log10(E_image / E_true)| measured on the run's
validation images by image intensity and times a factor by the image's
leakage (as the axis fit's direction errors, ``axis_fit``); an event's
uncertainty is that of the inverse-variance mean of its images, sqrt(1 /
sum(1 / s_i^2)) in dex, times a scale measured on the validation events
themselves (combined as the event file combines them), by the event's number
of images and by its reconstructed energy: the telescopes of one shower err
together, and the network's bias moves with energy.

The stated interval is a factor either way: the truth lies within
[E / f, E * f] with f = 1 + energy_uncert / E for 68 % of the events, i.e.
|log10(E / E_true)| <= log10(1 + energy_uncert / E) (``energy_error_dex``,
``stated_dex``).

No truth is used on the events reconstructed, and no TensorFlow here.
"""

from dataclasses import dataclass

import numpy as np
from astropy.table import Table

from .axis_fit import (
    LEAKAGE_COLUMN,
    LEAKAGE_EDGES,
    MAX_IMAGES_SCALED,
    MIN_IMAGES_PER_BIN,
    bin_of,
    binned_quantile,
    cell_scales,
    leakage_factors,
)

__all__ = ["ENERGY_SCALE_BINS", "EnergyErrorModel", "energy_error_dex", "image_log_intensity_and_leakage",
           "stated_dex", "uncertainty_from_dex"]

#: bins of the event's reconstructed energy (quantiles of the validation events) with a scale of their own
ENERGY_SCALE_BINS = 4


def energy_error_dex(reco_energy, true_energy):
    """|log10(reco / true)|: the error the stated uncertainty is judged against."""
    return np.abs(np.log10(np.asarray(reco_energy, dtype=float) / np.asarray(true_energy, dtype=float)))


def uncertainty_from_dex(energy, sigma_dex):
    """``energy_uncert`` (in the unit of ``energy``) of a 68 % factor 10**sigma_dex either way."""
    return np.asarray(energy, dtype=float) * (10 ** np.asarray(sigma_dex, dtype=float) - 1)


def stated_dex(energy, energy_uncert):
    """The 68 % interval in dex that ``energy_uncert`` states (the inverse of ``uncertainty_from_dex``)."""
    return np.log10(1 + np.asarray(energy_uncert, dtype=float) / np.asarray(energy, dtype=float))


def image_log_intensity_and_leakage(images):
    """(log10 intensity, leakage) of telescope events; unknown leakage takes the top bin (the largest errors)."""
    intensity = np.asarray(images["hillas_intensity"], dtype=np.float64)
    leakage = np.ones(len(images)) if LEAKAGE_COLUMN not in images.colnames else \
        np.nan_to_num(np.asarray(images[LEAKAGE_COLUMN], dtype=np.float64), nan=1.0)
    return np.log10(np.clip(np.nan_to_num(intensity, nan=1e-3), 1e-3, None)), leakage


@dataclass
class EnergyErrorModel:
    """68 % errors (dex) of one image's network energy by log10 intensity, and the scale of an event's.

    ``edges``: log10-intensity bin edges (quantiles of the validation images;
    outside them the outer bins apply); ``image_error``: the 68 % of
    |log10(E_image / E_true)| per bin; ``leakage_factor``: per
    ``LEAKAGE_EDGES`` bin.  ``energy_edges`` (log10 TeV) and
    ``uncertainty_scale`` (energy bin, number of images 1 to
    MAX_IMAGES_SCALED or more): set by ``calibrate``.
    """

    edges: np.ndarray
    image_error: np.ndarray
    leakage_factor: np.ndarray
    energy_edges: np.ndarray = None
    uncertainty_scale: np.ndarray = None
    #: the StereoMeanCombiner weights of the events the scales were calibrated on
    weights: str = "intensity"

    def __post_init__(self):
        if self.energy_edges is None:
            self.energy_edges = np.array([-np.inf, np.inf])
        if self.uncertainty_scale is None:
            self.uncertainty_scale = np.ones((len(self.energy_edges) - 1, MAX_IMAGES_SCALED))

    @classmethod
    def fit(cls, log_intensity, leakage, error_dex, n_bins=6):
        """Measure the images' errors (``error_dex``: |log10(E_image / E_true)| of the validation images).

        The bins hold at least ``MIN_IMAGES_PER_BIN`` images; ValueError if there are fewer.
        """
        n_bins = min(n_bins, len(error_dex) // MIN_IMAGES_PER_BIN)
        if n_bins < 1:
            raise ValueError(f"{len(error_dex)} validation images, at least {MIN_IMAGES_PER_BIN} needed")
        edges = np.unique(np.quantile(log_intensity, np.linspace(0, 1, n_bins + 1)))
        if len(edges) < 2:
            raise ValueError("the validation images all have the same intensity")
        bins = bin_of(edges, log_intensity)
        image_error = binned_quantile(error_dex, bins, len(edges) - 1)
        factors = leakage_factors(error_dex / image_error[bins], bin_of(LEAKAGE_EDGES, leakage))
        return cls(edges, image_error, factors)

    def image_errors(self, log_intensity, leakage):
        """The 68 % error (dex) of each image's network energy."""
        return self.image_error[bin_of(self.edges, log_intensity)] * self.leakage_factor[bin_of(LEAKAGE_EDGES, leakage)]

    def _unscaled(self, event_index, log_intensity, leakage, n_events):
        """(sqrt(1 / sum(1 / s_i^2)) per event, number of images per event)."""
        inverse = np.bincount(event_index, weights=self.image_errors(log_intensity, leakage) ** -2.0,
                              minlength=n_events)
        with np.errstate(divide="ignore"):
            return inverse ** -0.5, np.bincount(event_index, minlength=n_events)

    def _cells(self, log_energy, n_images):
        energy_bin = bin_of(self.energy_edges, np.nan_to_num(log_energy, nan=0.0))
        return energy_bin, np.clip(n_images, 1, MAX_IMAGES_SCALED) - 1

    def event_errors(self, event_index, log_intensity, leakage, log_energy):
        """The 68 % uncertainty (dex) of each event's energy (``log_energy``: log10 of the combined energy, TeV).

        ``event_index``: each image's event (0..n-1); an event without an image gets NaN.
        """
        unscaled, n_images = self._unscaled(event_index, log_intensity, leakage, len(log_energy))
        energy_bin, group = self._cells(log_energy, n_images)
        return np.where(n_images > 0, self.uncertainty_scale[energy_bin, group] * unscaled, np.nan)

    def calibrate(self, event_index, log_intensity, leakage, log_energy, error_dex):
        """Set the scales from validation events: their combined ``log_energy`` and its ``error_dex``
        (``axis_fit.cell_scales``: by ENERGY_SCALE_BINS bins of energy and number of images, with fallbacks)."""
        log_energy = np.asarray(log_energy, dtype=float)
        unscaled, n_images = self._unscaled(event_index, log_intensity, leakage, len(log_energy))
        with np.errstate(divide="ignore", invalid="ignore"):
            ratio = np.where(n_images > 0, np.asarray(error_dex, dtype=float) / unscaled, np.nan)
        inner, self.uncertainty_scale = cell_scales(ratio, log_energy, self._cells(log_energy, n_images)[1],
                                                    ENERGY_SCALE_BINS)
        self.energy_edges = np.r_[-np.inf, inner, np.inf]

    def to_table(self):
        """The model as a table, one row per intensity bin (shipped with a reference model, written to DL2)."""
        table = Table({"log10_intensity_min": self.edges[:-1], "log10_intensity_max": self.edges[1:],
                       "image_error_dex": self.image_error})
        table.meta["leakage_edges"] = [float(v) for v in LEAKAGE_EDGES]
        table.meta["leakage_factor"] = [float(v) for v in self.leakage_factor]
        table.meta["log10_energy_edges"] = [float(v) for v in self.energy_edges]
        table.meta["uncertainty_scale"] = [[float(v) for v in row] for row in self.uncertainty_scale]
        table.meta["weights"] = self.weights
        table.meta["description"] = ("68 % errors (dex) of one image's network energy by log10 intensity; the "
                                     "scale of an event's (energy bin x number of images)")
        return table

    @classmethod
    def from_table(cls, table):
        """The model ``to_table`` wrote (ValueError if its leakage bins or scale shape are not this version's)."""
        stored = table.meta.get("leakage_edges")
        if stored is None or len(stored) != len(LEAKAGE_EDGES) or not np.allclose(stored, LEAKAGE_EDGES):
            raise ValueError(f"the energy error model's leakage_edges {stored} are not this version's "
                             f"{list(LEAKAGE_EDGES)}: measure it again")
        missing = [key for key in ("leakage_factor", "log10_energy_edges", "uncertainty_scale") if key not in table.meta]
        if missing:
            raise ValueError(f"the energy error model lacks {', '.join(missing)}: measure it again")
        edges = np.r_[np.asarray(table["log10_intensity_min"]), np.asarray(table["log10_intensity_max"])[-1]]
        energy_edges = np.asarray(table.meta["log10_energy_edges"], dtype=float)
        scale = np.asarray(table.meta["uncertainty_scale"], dtype=float)
        if scale.shape != (len(energy_edges) - 1, MAX_IMAGES_SCALED):
            raise ValueError(f"the energy error model's uncertainty_scale has shape {scale.shape}, this version "
                             f"needs ({len(energy_edges) - 1}, {MAX_IMAGES_SCALED}): measure it again")
        return cls(edges, np.asarray(table["image_error_dex"], dtype=float),
                   np.asarray(table.meta["leakage_factor"], dtype=float), energy_edges, scale,
                   table.meta.get("weights", "intensity"))
