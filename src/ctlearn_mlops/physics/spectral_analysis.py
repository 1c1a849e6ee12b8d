"""gammapy's 1D reflected-regions analysis of a DL3 set: counts, significance, a spectral fit and flux points.

As gammapy's tutorial for point-like IRFs with energy-dependent directional
cuts: the ON region is the source position with the ``RAD_MAX`` of each
run's IRFs, the OFF regions are the reflected positions around the pointing
(``WobbleRegionsFinder``), the counts WStat-fitted with a power law; the
counts per energy bin go next to what the fit (and a reference spectrum)
predicts.
"""

from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.table import QTable
from gammapy.data import DataStore
from gammapy.datasets import Datasets, SpectrumDataset
from gammapy.estimators import FluxPointsEstimator
from gammapy.makers import ReflectedRegionsBackgroundMaker, SafeMaskMaker, SpectrumDatasetMaker, WobbleRegionsFinder
from gammapy.maps import MapAxis, RegionGeom
from gammapy.modeling import Fit
from gammapy.modeling.models import PowerLawSpectralModel, SkyModel
from gammapy.stats import WStatCountsStatistic
from regions import PointSkyRegion

__all__ = ["SpectrumResult", "analyse", "gammapy_power_law", "model_band", "on_off_thetas", "open_observations",
           "sed_table"]

#: reconstructed-energy bins of the counts and flux points (5 per decade over the toy's range)
RECO_ENERGY = MapAxis.from_energy_bounds(0.05 * u.TeV, 20 * u.TeV, nbin=5, per_decade=True, name="energy")
TRUE_ENERGY = MapAxis.from_energy_bounds(0.02 * u.TeV, 50 * u.TeV, nbin=10, per_decade=True, name="energy_true")
FLUX_POINT_EDGES = np.geomspace(0.05, 20, 6) * u.TeV


@dataclass
class SpectrumResult:
    """What one DL3 set gives: counts and significance, the fitted power law and the flux points."""

    n_on: int
    n_off: int
    alpha: float
    excess: float
    significance: float
    livetime: u.Quantity
    index: float
    index_error: float
    amplitude: u.Quantity
    amplitude_error: u.Quantity
    reference: u.Quantity
    fit_success: bool
    flux_points: object = field(repr=False, default=None)
    model: object = field(repr=False, default=None)
    #: per bin of reconstructed energy (the runs' safe ranges summed): ON counts, alpha x OFF counts, and the
    #: signal counts the fitted power law (and a reference spectrum, if given) predict through the IRFs
    counts: QTable = field(repr=False, default=None)

    @property
    def significance_per_sqrt_hour(self):
        return self.significance / np.sqrt(self.livetime.to_value(u.h))

    def significance_with_background(self, factor):
        """Li & Ma significance of the same excess over ``factor`` times the background (e.g. the full
        cosmic-ray rate of a mock observation that threw a fraction of it); None without OFF counts to scale."""
        if self.n_off == 0 and factor != 1:
            return None
        n_off = self.n_off * factor
        return float(WStatCountsStatistic(n_on=self.excess + self.alpha * n_off, n_off=n_off,
                                          alpha=self.alpha).sqrt_ts)

    def pulls(self, spectrum):
        """(index, amplitude) deviations from a pyirf power law ``spectrum`` in units of the fit's errors (None
        where the fit has no finite error)."""
        true_amplitude = spectrum(self.reference).to(self.amplitude.unit)
        index_error, amplitude_error = float(self.index_error), float(self.amplitude_error.value)
        index_pull = (self.index - (-spectrum.index)) / index_error \
            if np.isfinite(index_error) and index_error > 0 else None
        amplitude_pull = float((self.amplitude - true_amplitude).value / amplitude_error) \
            if np.isfinite(amplitude_error) and amplitude_error > 0 else None
        return index_pull, amplitude_pull


def gammapy_power_law(spectrum):
    """gammapy's model of a pyirf power law (e.g. ``sky.CRAB_SPECTRUM``)."""
    return PowerLawSpectralModel(index=-spectrum.index, amplitude=spectrum.normalization.to("cm-2 s-1 TeV-1"),
                                 reference=spectrum.e_ref.to(u.TeV))


#: what a point-like observation of a DL3 set must hold for the analysis
_OBSERVATION_PARTS = ("events", "gti", "aeff", "edisp", "rad_max")


def open_observations(directory):
    """The point-like observations of a DL3 set (``hdu-index.fits.gz`` and ``obs-index.fits.gz``), every part
    read once to check it: gammapy reads them lazily (again when the analysis uses them) and gives None for a part
    it cannot read (e.g. a truncated file), which would fail in the middle of the analysis.

    ValueError naming the observation, the part and its file if one cannot be read.
    """
    store = DataStore.from_dir(directory)
    observations = store.get_observations(required_irf="point-like")
    for observation in observations:
        for part in _OBSERVATION_PARTS:
            try:
                value = getattr(observation, part)
            except Exception as err:  # noqa: BLE001  (astropy/gzip/zlib errors of a damaged file alike)
                value, reason = None, f"{type(err).__name__}: {err}"
            else:
                reason = "gammapy could not read it"
            if value is None:
                location = store.hdu_table.hdu_location(observation.obs_id, hdu_type=part, warn_missing=False)
                where = f" ({location.path()})" if location is not None else ""
                raise ValueError(f"observation {observation.obs_id}: its {part}{where} cannot be read ({reason}): "
                                 "make the DL3 set again")
    return observations


def _counts_per_bin(datasets, reference_spectrum=None):
    """ON, alpha x OFF and predicted signal counts per bin of reconstructed energy, summed over the runs' safe
    ranges: where the fitted spectrum, or a reference one (e.g. the spectrum a mock injected), departs from the
    data (the WStat fit itself profiles the background of each bin instead of taking alpha x OFF)."""
    edges = RECO_ENERGY.edges.to(u.TeV)
    names = ("n_on", "alpha_n_off", "npred_fit") + (("npred_reference",) if reference_spectrum is not None else ())
    columns = {name: np.zeros(RECO_ENERGY.nbin) for name in names}

    def add(column, per_run):
        for dataset in datasets:
            columns[column] += np.where(dataset.mask_safe.data.ravel(), per_run(dataset).data.ravel(), 0)

    add("n_on", lambda d: d.counts)
    add("alpha_n_off", lambda d: d.background)
    add("npred_fit", lambda d: d.npred_signal())
    if reference_spectrum is not None:
        fitted = datasets.models
        datasets.models = [SkyModel(spectral_model=reference_spectrum, name="reference")]
        add("npred_reference", lambda d: d.npred_signal())
        datasets.models = fitted
    return QTable({"energy_min": edges[:-1], "energy_max": edges[1:], **columns})


def analyse(observations, target, n_off_regions=1, aeff_percent=10, reference_spectrum=None):
    """Counts, significance, power-law fit and flux points of ``target`` in ``observations``.

    ``reference_spectrum``: a gammapy spectral model whose predicted counts go next to the fitted ones in
    ``SpectrumResult.counts`` (None: no such column).
    """
    geom = RegionGeom.create(region=PointSkyRegion(target), axes=[RECO_ENERGY])
    empty = SpectrumDataset.create(geom=geom, energy_axis_true=TRUE_ENERGY)
    dataset_maker = SpectrumDatasetMaker(containment_correction=False, selection=["counts", "exposure", "edisp"])
    background_maker = ReflectedRegionsBackgroundMaker(region_finder=WobbleRegionsFinder(n_off_regions=n_off_regions))
    safe_mask = SafeMaskMaker(methods=["aeff-max"], aeff_percent=aeff_percent)
    datasets = Datasets()
    for observation in observations:
        dataset = dataset_maker.run(empty.copy(name=str(observation.obs_id)), observation)
        datasets.append(safe_mask.run(background_maker.run(dataset, observation), observation))
    livetime = sum((dataset.gti.time_sum for dataset in datasets), 0 * u.s).to(u.s)
    # counts in each run's safe energy range; alpha from the acceptances (gammapy's info table and its stacked
    # dataset leave alpha undefined where a run has no OFF count, so the runs are fitted jointly, not stacked)
    n_on = n_off = 0.0
    alphas = []
    for dataset in datasets:
        safe = dataset.mask_safe.data.ravel()
        n_on += float(dataset.counts.data.ravel()[safe].sum())
        n_off += float(dataset.counts_off.data.ravel()[safe].sum())
        alphas.append(float(np.mean((dataset.acceptance.data / dataset.acceptance_off.data).ravel()[safe])))
    alpha = float(np.mean(alphas))
    counts = WStatCountsStatistic(n_on=n_on, n_off=n_off, alpha=alpha)
    model = SkyModel(spectral_model=PowerLawSpectralModel(index=2.5, amplitude=3e-11 * u.Unit("cm-2 s-1 TeV-1"),
                                                          reference=1 * u.TeV), name="source")
    datasets.models = [model]
    result = Fit().run(datasets=datasets)
    spectral = model.spectral_model
    flux_points = FluxPointsEstimator(energy_edges=FLUX_POINT_EDGES, source="source",
                                      selection_optional=["ul"]).run(datasets=datasets)
    return SpectrumResult(
        n_on=int(n_on), n_off=int(n_off), alpha=alpha, excess=float(counts.n_sig), significance=float(counts.sqrt_ts),
        livetime=livetime,
        index=float(spectral.index.value), index_error=float(spectral.index.error),
        amplitude=spectral.amplitude.quantity, amplitude_error=spectral.amplitude.error * spectral.amplitude.unit,
        reference=spectral.reference.quantity, fit_success=bool(result.success),
        flux_points=flux_points, model=model,
        counts=_counts_per_bin(datasets, reference_spectrum),
    )


def sed_table(result):
    """The flux points as E^2 dN/dE (erg cm-2 s-1): e_ref, e2dnde, e2dnde_err, is_ul, e2dnde_ul, ts."""
    table = result.flux_points.to_table(sed_type="e2dnde", format="gadf-sed")
    sed = QTable({"e_ref": table["e_ref"].quantity.to(u.TeV)})
    for name in ("e2dnde", "e2dnde_err", "e2dnde_ul"):
        sed[name] = table[name].quantity.to(u.Unit("erg cm-2 s-1"))
    sed["is_ul"] = np.asarray(table["is_ul"], dtype=bool)
    sed["ts"] = np.asarray(table["ts"], dtype=np.float64)
    return sed


def model_band(result, energy):
    """(E^2 dN/dE, its 1-sigma error) of the fitted power law at ``energy``, in erg cm-2 s-1 (gammapy samples
    the fitted parameters; the error is the mean of the lower and upper one)."""
    model = result.model.spectral_model
    errors = model.evaluate_error(energy)[1:]
    unit, scale = u.Unit("erg cm-2 s-1"), energy ** 2
    return (model(energy) * scale).to(unit), (0.5 * (errors[0] + errors[1]) * scale).to(unit)


def on_off_thetas(observations, target):
    """(theta to ``target``, theta to its reflection through the pointing) of every event, in deg: the ON and
    the OFF position of one reflected region."""
    on, off = [], []
    for observation in observations:
        events = observation.events.radec
        pointing = observation.get_pointing_icrs(observation.tmid)
        reflected = pointing.directional_offset_by(pointing.position_angle(target) + 180 * u.deg,
                                                   pointing.separation(target))
        on.append(events.separation(target).deg)
        off.append(events.separation(reflected).deg)
    return np.concatenate(on), np.concatenate(off)
