"""Point-like IRFs and point-source sensitivity of a reconstruction, with pyirf (0.14).

Functions of tables, no I/O: ``simulation_info`` reads what pyirf needs
from the simulation configuration rows, ``irf_events`` turns the array events
of a DL2 file into pyirf's event columns for one reconstruction (which
prefix gives the gammaness, the energy, the direction), ``compute_irfs`` runs
pyirf's chain (weights, cuts, effective area, energy migration, PSF,
background, resolutions, sensitivity) and ``gadf_hdus`` writes the GADF HDUs
with pyirf's writers.

The cuts: gammaness per bin of reconstructed energy at a fixed gamma
efficiency (default 70%) and theta at 68% containment of the selected
gammas, or (``optimise``) the gammaness cut of best sensitivity per bin
(pyirf's ``optimize_gh_cut``).  Background: protons weighted to pyirf's
cosmic-ray proton spectrum, counted in a ring of field-of-view offsets around
the pointing and scaled to the on region (``estimate_background``).
Sensitivity: pyirf's criteria (5 sigma Li & Ma, at least 10 excess events,
excess at least 5% of the background), relative to the Crab (HEGRA).
"""

import operator
import re
from dataclasses import dataclass, field

import astropy.units as u
import numpy as np
from astropy.coordinates import angular_separation, position_angle
from astropy.io import fits
from astropy.table import QTable, join
from pyirf.benchmarks import angular_resolution, energy_bias_resolution
from pyirf.binning import bin_center, create_bins_per_decade, create_histogram_table
from pyirf.cut_optimization import optimize_gh_cut
from pyirf.cuts import calculate_percentile_cut, evaluate_binned_cut
from pyirf.io import (
    create_aeff2d_hdu,
    create_background_2d_hdu,
    create_energy_dispersion_hdu,
    create_psf_table_hdu,
    create_rad_max_hdu,
)
from pyirf.irf import background_2d, effective_area_per_energy, energy_dispersion, psf_table
from pyirf.sensitivity import calculate_sensitivity, estimate_background
from pyirf.simulations import SimulatedEventsInfo
from pyirf.spectral import PowerLaw, calculate_event_weights
from pyirf.utils import calculate_source_fov_offset, calculate_theta

from ..io.dl2 import AXIS_FIT_PREFIX, CLASSICAL_PREFIX, CNN_PREFIX, STEREO_PREFIX, Reconstruction
from ..metrics.coverage import coverage_per_energy_bin
from ..sky import CRAB_SPECTRUM, PROTON_SPECTRUM
from .energy_uncertainty import energy_error_dex, stated_dex

__all__ = [
    "GAMMA_ID",
    "IRFOptions",
    "IRFResult",
    "PROTON_ID",
    "background_offset_bins",
    "compute_irfs",
    "default_bins",
    "direction_coverage",
    "energy_coverage",
    "GH_CUTS_EXTENSION",
    "RECONSTRUCTIONS",
    "irf_file_name",
    "reconstruction_slug",
    "gadf_hdus",
    "irf_events",
    "offset_position",
    "same_event_angular_resolution",
    "simulation_info",
]

GAMMA_ID, PROTON_ID = 0, 101

#: the reconstructions compared: {label: {role: prefixes to try, in order}}
RECONSTRUCTIONS = {
    # the CNN pipeline: the mono networks, the direction fitted with the image axes where the file has it
    "CNN": {"type": [CNN_PREFIX], "energy": [CNN_PREFIX], "geometry": [AXIS_FIT_PREFIX, CNN_PREFIX]},
    # the same with the plain mean of the telescopes' directions (StereoMeanCombiner)
    "CNN, mean direction": {"type": [CNN_PREFIX], "energy": [CNN_PREFIX], "geometry": [CNN_PREFIX]},
    "CNN stereo": {"type": [STEREO_PREFIX], "energy": [STEREO_PREFIX],
                   "geometry": [STEREO_PREFIX, CNN_PREFIX]},
    # the mono networks' gammaness and energy with a stereo network's direction (a file with a stereo geometry run)
    "CNN, stereo direction": {"type": [CNN_PREFIX], "energy": [CNN_PREFIX], "geometry": [STEREO_PREFIX]},
    "classical": {"type": [CLASSICAL_PREFIX], "energy": [CLASSICAL_PREFIX],
                  "geometry": [CLASSICAL_PREFIX]},
    # a diagnostic mix: what the networks' gammaness and energy give with the classical direction
    "CNN, classical direction": {"type": [CNN_PREFIX], "energy": [CNN_PREFIX],
                                 "geometry": [CLASSICAL_PREFIX]},
}



def reconstruction_slug(label):
    """A reconstruction's label as a file name part: "CNN, mean direction" -> "cnn_mean_direction"."""
    return re.sub(r"[^a-z0-9]+", "_", label.lower()).strip("_")


def irf_file_name(label):
    """The GADF file of a reconstruction's IRFs in an output directory, e.g. ``irf_cnn.fits.gz``."""
    return f"irf_{reconstruction_slug(label)}.fits.gz"



@dataclass
class IRFOptions:
    """The choices of the IRF chain (the defaults of ``scripts/compute_irf.py``)."""

    gamma_efficiency: float = 0.7
    theta_containment: float = 0.68
    optimise: bool = False
    obs_time: u.Quantity = 50 * u.h
    alpha: float = 0.2
    fov_offset_min: u.Quantity = 0 * u.deg
    fov_offset_max: u.Quantity = 1 * u.deg
    theta_min: u.Quantity = 0.02 * u.deg
    theta_max: u.Quantity = 0.32 * u.deg
    min_events: int = 10
    gamma_spectrum: object = CRAB_SPECTRUM
    proton_spectrum: object = PROTON_SPECTRUM


def default_bins():
    """Finite bin edges (no overflow bins: the GADF axes and the background interpolation need finite edges)."""
    return dict(
        reco_energy=create_bins_per_decade(10 ** -1.9 * u.TeV, 10 ** 2.3 * u.TeV, 5),
        true_energy=create_bins_per_decade(10 ** -1.9 * u.TeV, 10 ** 2.3 * u.TeV, 10),
        migration=np.geomspace(0.2, 5, 61),
        source_offset=np.linspace(0, 1.0, 101) * u.deg,
    )


def background_offset_bins(viewcone_max, width=0.5 * u.deg):
    """Field-of-view offset bins of the background rate: ``width`` wide, as many as fit in the protons' view cone
    (2.7 deg: up to 2.5 deg); a view cone narrower than one bin gives the single bin [0, view cone]."""
    viewcone, width = u.Quantity(viewcone_max, u.deg).value, u.Quantity(width, u.deg).value
    if viewcone < width:
        return u.Quantity([0, viewcone], u.deg)
    return np.arange(int(np.floor(viewcone / width + 1e-9)) + 1) * width * u.deg


def simulation_info(runs):
    """pyirf's SimulatedEventsInfo of the runs of one particle (rows of ``/configuration/simulation/run``).

    The thrown showers are ``n_showers x shower_reuse`` summed over the runs;
    energy range, spectral index, view cone and scatter radius must agree.
    """
    if len(runs) == 0:
        raise ValueError("no simulation runs")
    for column in ("energy_range_min", "energy_range_max", "spectral_index", "min_viewcone_radius",
                   "max_viewcone_radius", "max_scatter_range"):
        values = np.unique(np.round(u.Quantity(runs[column]).value, 9))
        if len(values) > 1:
            raise ValueError(f"the runs differ in {column}: {list(values)}")
    reuse = np.asarray(runs["shower_reuse"], dtype=np.int64) if "shower_reuse" in runs.colnames else 1
    return SimulatedEventsInfo(
        n_showers=int(np.sum(np.asarray(runs["n_showers"], dtype=np.int64) * reuse)),
        energy_min=u.Quantity(runs["energy_range_min"][0], u.TeV),
        energy_max=u.Quantity(runs["energy_range_max"][0], u.TeV),
        max_impact=u.Quantity(runs["max_scatter_range"][0], u.m),
        spectral_index=float(runs["spectral_index"][0]),
        viewcone_min=u.Quantity(runs["min_viewcone_radius"][0], u.deg),
        viewcone_max=u.Quantity(runs["max_viewcone_radius"][0], u.deg),
    )


def irf_events(events, prefixes):
    """pyirf's event columns for a reconstruction of the array events of a DL2 file.

    ``prefixes``: {"type": prefix, "energy": prefix, "geometry": prefix}.  An
    event counts if all three are valid.
    """
    columns = {}
    valid = np.ones(len(events), dtype=bool)
    for role in ("type", "energy", "geometry"):
        reco = Reconstruction(role, prefixes[role], telescope=False)
        valid &= np.asarray(events[reco.valid], dtype=bool)
        if role == "type":
            columns["gh_score"] = np.asarray(events[reco.values[0]], dtype=np.float64)
        elif role == "energy":
            columns["reco_energy"] = u.Quantity(events[reco.values[0]], u.TeV)
            # the stated 68 % interval (``energy_uncertainty``), for the coverage, not for pyirf
            stated = f"{prefixes[role]}_energy_uncert"
            columns["energy_uncert"] = u.Quantity(events[stated], u.TeV) if stated in events.colnames \
                else np.full(len(events), np.nan) * u.TeV
        else:
            columns["reco_alt"] = u.Quantity(events[reco.values[0]], u.deg)
            columns["reco_az"] = u.Quantity(events[reco.values[1]], u.deg)
            # the stated 68 % radius, where the reconstruction states one (for the coverage, not for pyirf)
            stated = f"{prefixes[role]}_ang_distance_uncert"
            columns["ang_distance_uncert"] = u.Quantity(events[stated], u.deg) if stated in events.colnames \
                else np.full(len(events), np.nan) * u.deg
    table = QTable({
        "obs_id": np.asarray(events["obs_id"]), "event_id": np.asarray(events["event_id"]),
        "true_energy": u.Quantity(events["true_energy"], u.TeV),
        "true_alt": u.Quantity(events["true_alt"], u.deg), "true_az": u.Quantity(events["true_az"], u.deg),
        "pointing_alt": u.Quantity(events["pointing_altitude"], u.deg),
        "pointing_az": u.Quantity(events["pointing_azimuth"], u.deg),
        "particle_id": np.asarray(events["true_shower_primary_id"]),
        **columns,
    })
    return table[valid]


def same_event_angular_resolution(network, classical, true_energy_bins):
    """68 % containment per bin of true energy of two reconstructions on the same gammas, before any cut.

    ``network``/``classical``: ``irf_events`` tables of gammas; only the
    events both reconstruct count.  Returns (network table, classical table)
    of pyirf's ``angular_resolution``.
    """
    keys = ["obs_id", "event_id"]
    both = join(QTable(network[[*keys, "true_energy", "true_alt", "true_az", "reco_alt", "reco_az"]]),
                QTable(classical[[*keys, "reco_alt", "reco_az"]]), keys=keys, table_names=["network", "classical"])
    tables = []
    for side in ("network", "classical"):
        theta = angular_separation(both[f"reco_az_{side}"], both[f"reco_alt_{side}"], both["true_az"], both["true_alt"])
        tables.append(angular_resolution(QTable({"true_energy": both["true_energy"], "theta": theta.to(u.deg)}),
                                         true_energy_bins, energy_type="true"))
    return tuple(tables)


def direction_coverage(gammas, true_energy_bins):
    """Coverage of the stated 68 % direction radius (``ang_distance_uncert``) per bin of true energy.

    ``gammas``: an ``irf_events`` table of gammas, before any cut.  Returns
    ``metrics.coverage_per_energy_bin``'s table, or None when the
    reconstruction states no radius (none finite and positive).
    """
    stated = u.Quantity(gammas["ang_distance_uncert"], u.deg).to_value(u.deg)
    if not np.any(np.isfinite(stated) & (stated > 0)):
        return None
    theta = angular_separation(gammas["reco_az"], gammas["reco_alt"], gammas["true_az"], gammas["true_alt"])
    return coverage_per_energy_bin(gammas["true_energy"], theta.to_value(u.deg), stated, true_energy_bins)


def energy_coverage(gammas, true_energy_bins):
    """Coverage of the stated 68 % energy interval (``energy_uncert``, a factor 1 + energy_uncert / energy either
    way: ``energy_uncertainty.stated_dex``) per bin of true energy, or None when none is stated.

    ``gammas``: an ``irf_events`` table of gammas, before any cut.
    """
    reco = u.Quantity(gammas["reco_energy"], u.TeV).to_value(u.TeV)
    stated = u.Quantity(gammas["energy_uncert"], u.TeV).to_value(u.TeV)
    if not np.any(np.isfinite(stated) & (stated > 0)):
        return None
    error = energy_error_dex(reco, u.Quantity(gammas["true_energy"], u.TeV).to_value(u.TeV))
    return coverage_per_energy_bin(gammas["true_energy"], error, stated_dex(reco, stated), true_energy_bins)


def offset_position(lon, lat, separation, angle):
    """(lon, lat) moved by ``separation`` along position angle ``angle`` (the inverse of astropy's
    angular_separation and position_angle), exact on the sphere."""
    lon, lat = u.Quantity(lon, u.rad).value, u.Quantity(lat, u.rad).value
    d, pa = u.Quantity(separation, u.rad).value, u.Quantity(angle, u.rad).value
    lat2 = np.arcsin(np.sin(lat) * np.cos(d) + np.cos(lat) * np.sin(d) * np.cos(pa))
    lon2 = lon + np.arctan2(np.sin(pa) * np.sin(d) * np.cos(lat), np.cos(d) - np.sin(lat) * np.sin(lat2))
    return (np.rad2deg(lon2) % 360) * u.deg, np.rad2deg(lat2) * u.deg


def _source_position(gammas, protons):
    """Where the point source would be for each proton: the gammas' offset and position angle, at its pointing."""
    angles = position_angle(gammas["pointing_az"], gammas["pointing_alt"], gammas["true_az"], gammas["true_alt"])
    angle = np.arctan2(np.mean(np.sin(angles.to_value(u.rad))), np.mean(np.cos(angles.to_value(u.rad)))) * u.rad
    offset = np.median(gammas["true_source_fov_offset"])
    return offset_position(protons["pointing_az"], protons["pointing_alt"], offset, angle)


@dataclass
class IRFResult:
    """What ``compute_irfs`` gives: cuts, IRFs, benchmarks and sensitivity (QTables and arrays with units)."""

    sensitivity: QTable
    gh_cuts: QTable
    theta_cuts: QTable
    effective_area: u.Quantity
    effective_area_no_cuts: u.Quantity
    energy_dispersion: np.ndarray
    psf: u.Quantity
    background: u.Quantity
    angular_resolution: QTable
    energy_bias_resolution: QTable
    bins: dict
    n_gammas: int
    n_protons: int
    source_fov_offset: u.Quantity
    extras: dict = field(default_factory=dict)


def compute_irfs(gammas, protons, gamma_info, proton_info, options=None, bins=None):
    """pyirf's point-like chain for one reconstruction; see the module docstring."""
    options = options or IRFOptions()
    bins = {**default_bins(), **(bins or {})}
    e_true = bins["true_energy"]
    gammas, protons = QTable(gammas, copy=True), QTable(protons, copy=True)
    if gamma_info.viewcone_max > gamma_info.viewcone_min:
        raise ValueError("the gammas are diffuse: point-source IRFs need gammas from a point source")
    if proton_info.viewcone_max <= options.fov_offset_max:
        raise ValueError(f"the protons come from within {proton_info.viewcone_max} only: the background ring "
                         f"reaches {options.fov_offset_max}")
    _weigh_and_place(gammas, protons, gamma_info, proton_info, options)
    gh_cuts, theta_cuts = _select(gammas, protons, bins["reco_energy"], options)
    signal = gammas[gammas["selected"]]
    background = protons[protons["selected_gh"]]
    sensitivity, signal_hist, background_hist = _sensitivity(signal, background, gh_cuts, theta_cuts,
                                                             bins["reco_energy"], options)

    # IRFs (one field-of-view bin around the source offset)
    fov_bins = u.Quantity([0, options.fov_offset_max.to_value(u.deg)], u.deg)
    background_fov_bins = background_offset_bins(proton_info.viewcone_max)
    # true-energy bins outside the simulated range have no thrown shower: 0/0, an effective area of 0
    with np.errstate(invalid="ignore", divide="ignore"):
        effective_area = np.nan_to_num(effective_area_per_energy(signal, gamma_info, true_energy_bins=e_true))
        effective_area_no_cuts = np.nan_to_num(effective_area_per_energy(gammas, gamma_info, true_energy_bins=e_true))
    edisp = energy_dispersion(signal, true_energy_bins=e_true, fov_offset_bins=fov_bins,
                              migration_bins=bins["migration"])
    psf = psf_table(gammas[gammas["selected_gh"]], e_true, source_offset_bins=bins["source_offset"],
                    fov_offset_bins=fov_bins)
    background_rate = background_2d(background, reco_energy_bins=bins["reco_energy"],
                                    fov_offset_bins=background_fov_bins, t_obs=u.Quantity(options.obs_time, u.h))
    return IRFResult(
        sensitivity=sensitivity, gh_cuts=gh_cuts, theta_cuts=theta_cuts,
        effective_area=effective_area, effective_area_no_cuts=effective_area_no_cuts, energy_dispersion=edisp,
        psf=psf, background=background_rate,
        angular_resolution=angular_resolution(gammas[gammas["selected_gh"]], e_true, energy_type="true"),
        energy_bias_resolution=energy_bias_resolution(signal, e_true, energy_type="true"),
        bins={**bins, "fov_offset": fov_bins, "background_fov_offset": background_fov_bins},
        n_gammas=len(gammas), n_protons=len(protons), source_fov_offset=np.median(gammas["true_source_fov_offset"]),
        extras={"gammas": gammas, "protons": protons, "signal_hist": signal_hist, "background_hist": background_hist},
    )


def _weigh_and_place(gammas, protons, gamma_info, proton_info, options):
    """Event weights (point-like gammas to the Crab, diffuse protons per sr to the cosmic-ray protons), offsets
    from the pointing and theta to the source (for protons: where the source would be at their pointing)."""
    obs_time = u.Quantity(options.obs_time, u.h)
    gammas["weight"] = calculate_event_weights(
        gammas["true_energy"], options.gamma_spectrum, PowerLaw.from_simulation(gamma_info, obstime=obs_time))
    protons["weight"] = calculate_event_weights(
        protons["true_energy"], options.proton_spectrum, PowerLaw.from_simulation(proton_info, obstime=obs_time))
    for table in (gammas, protons):
        for prefix in ("true", "reco"):
            table[f"{prefix}_source_fov_offset"] = calculate_source_fov_offset(table, prefix=prefix)
    gammas["theta"] = calculate_theta(gammas, assumed_source_az=gammas["true_az"], assumed_source_alt=gammas["true_alt"])
    source_az, source_alt = _source_position(gammas, protons)
    protons["theta"] = calculate_theta(protons, assumed_source_az=source_az, assumed_source_alt=source_alt)


def _select(gammas, protons, e_reco, options):
    """The gammaness cut per reco-energy bin (fixed efficiency, or of best sensitivity) and the theta cut at the
    asked containment; marks ``selected_gh``, ``selected_theta`` and ``selected`` on both tables."""
    # too few gammas in a bin: nothing passes there
    gh_fill = float(np.max(gammas["gh_score"])) if len(gammas) else 1.0
    gh_cuts = calculate_percentile_cut(
        gammas["gh_score"], gammas["reco_energy"], bins=e_reco, fill_value=gh_fill,
        percentile=100 * (1 - options.gamma_efficiency), min_events=options.min_events,
    )
    gammas["selected_gh"] = evaluate_binned_cut(gammas["gh_score"], gammas["reco_energy"], gh_cuts, operator.ge)
    theta_cuts = calculate_percentile_cut(
        gammas["theta"][gammas["selected_gh"]], gammas["reco_energy"][gammas["selected_gh"]], bins=e_reco,
        fill_value=options.theta_max, percentile=100 * options.theta_containment, min_value=options.theta_min,
        max_value=options.theta_max, min_events=options.min_events,
    )
    if options.optimise:
        _, gh_cuts = optimize_gh_cut(
            gammas, protons, reco_energy_bins=e_reco, gh_cut_efficiencies=np.round(np.arange(0.1, 0.951, 0.05), 3),
            theta_cuts=theta_cuts, op=operator.ge, fov_offset_min=options.fov_offset_min,
            fov_offset_max=options.fov_offset_max, alpha=options.alpha, progress=False,
        )
        gammas["selected_gh"] = evaluate_binned_cut(gammas["gh_score"], gammas["reco_energy"], gh_cuts, operator.ge)
    protons["selected_gh"] = evaluate_binned_cut(protons["gh_score"], protons["reco_energy"], gh_cuts, operator.ge)
    for table in (gammas, protons):
        table["selected_theta"] = evaluate_binned_cut(table["theta"], table["reco_energy"], theta_cuts, operator.le)
        table["selected"] = table["selected_gh"] & table["selected_theta"]
    return gh_cuts, theta_cuts


def _sensitivity(signal, background, gh_cuts, theta_cuts, e_reco, options):
    """pyirf's sensitivity: the signal in the theta cut, the background from the ring scaled to the off region;
    with the counts as simulated next to it."""
    signal_hist = create_histogram_table(signal, e_reco, key="reco_energy")
    background_hist = estimate_background(
        background, reco_energy_bins=e_reco, theta_cuts=theta_cuts, alpha=options.alpha,
        fov_offset_min=options.fov_offset_min, fov_offset_max=options.fov_offset_max,
    )
    sensitivity = calculate_sensitivity(signal_hist, background_hist, alpha=options.alpha)
    center = np.sqrt(sensitivity["reco_energy_low"] * sensitivity["reco_energy_high"])
    sensitivity["reco_energy_log_center"] = center
    sensitivity["flux_sensitivity"] = sensitivity["relative_sensitivity"] * options.gamma_spectrum(center)
    sensitivity["e2_flux_sensitivity"] = (sensitivity["flux_sensitivity"] * center ** 2).to(u.erg / (u.cm ** 2 * u.s))
    # counts as simulated (pyirf scales its n_signal to the sensitivity flux and the background to the off region)
    sensitivity["n_gamma_events"] = signal_hist["n"]
    sensitivity["n_gamma_weighted"] = signal_hist["n_weighted"]
    in_ring = (background["reco_source_fov_offset"] >= options.fov_offset_min) & (
        background["reco_source_fov_offset"] < options.fov_offset_max)
    sensitivity["n_proton_events_in_ring"] = np.histogram(
        background["reco_energy"][in_ring].to_value(u.TeV), e_reco.to_value(u.TeV))[0]
    sensitivity["n_background_on_weighted"] = options.alpha * background_hist["n_weighted"]
    sensitivity["theta_cut"] = u.Quantity(np.interp(bin_center(e_reco), theta_cuts["center"], theta_cuts["cut"]))
    sensitivity["gh_cut"] = gh_cuts["cut"]
    return sensitivity, signal_hist, background_hist


#: the extension holding the gammaness cut per bin of reconstructed energy (as lstchain's and pyirf's examples)
GH_CUTS_EXTENSION = "GH_CUTS"


def gadf_hdus(result, **header_cards):
    """The GADF HDUs of ``result`` (pyirf's writers): effective area, energy dispersion, PSF, background, RAD_MAX;
    and ``GH_CUTS``, the gammaness cut per bin of reconstructed energy the IRFs were made with (DL3 applies it)."""
    bins = result.bins
    gh_cuts = fits.BinTableHDU(QTable({name: result.gh_cuts[name] for name in ("low", "high", "center", "cut")}),
                               name=GH_CUTS_EXTENSION)
    gh_cuts.header.update(header_cards)
    n_fov = len(bins["fov_offset"]) - 1
    return fits.HDUList([
        fits.PrimaryHDU(),
        create_aeff2d_hdu(result.effective_area[:, np.newaxis] * np.ones(n_fov), bins["true_energy"],
                          bins["fov_offset"], point_like=True, extname="EFFECTIVE AREA", **header_cards),
        create_energy_dispersion_hdu(result.energy_dispersion, bins["true_energy"], bins["migration"],
                                     bins["fov_offset"], point_like=True, extname="ENERGY DISPERSION",
                                     **header_cards),
        create_psf_table_hdu(result.psf, bins["true_energy"], bins["source_offset"], bins["fov_offset"],
                             extname="PSF", **header_cards),
        create_background_2d_hdu(result.background, bins["reco_energy"], bins["background_fov_offset"],
                                 extname="BACKGROUND", **header_cards),
        create_rad_max_hdu(result.theta_cuts["cut"][:, np.newaxis] * np.ones(n_fov), bins["reco_energy"],
                           bins["fov_offset"], point_like=True, extname="RAD_MAX", **header_cards),
        gh_cuts,
    ])
