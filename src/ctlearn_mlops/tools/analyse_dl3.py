"""gammapy's 1D analysis of DL3 sets: detection, spectrum and flux points, the CNN next to the classical.

Reads the DL3 sets of ``create_dl3.py`` (``<input>/<set>/``, e.g. ``cnn``, ``classical``, with
``hdu-index.fits.gz`` and ``obs-index.fits.gz``) and runs, for each, gammapy's
reflected-regions analysis of point-like IRFs: the ON region is the source
with each run's ``RAD_MAX``, the OFF regions its reflections around the
pointing; excess and Li & Ma significance (WStat), a power-law fit with
its errors, flux points, and the fit against the Crab Nebula's spectrum
(the one the mock observation injects).  Writes
``<reports_root>/dl3/<name>/``: ``report.html``, ``metrics.json``, the flux
points per set (``sed_<set>.ecsv``) and the figures.

``--background-fraction``: the fraction of the cosmic-ray rate the
observation holds (the mock observation's ``--proton-fraction``); the
significance is then also given for the full rate.  ``--mock``: the mock
observation's directory; the report then also counts the gammas it threw
(all, triggered or not) against the injected spectrum's mean, which tells
a pull of the realization from one of the pipelines.
"""

from pathlib import Path as PathlibPath

import astropy.units as u
import numpy as np
from astropy.coordinates import SkyCoord
from ctapipe.core.traits import Bool, Float, Int, Path, Unicode

from ..exceptions import ConfigError, InputDataError, RunExistsError
from ..output import show
from ..physics.irf import RECONSTRUCTIONS, reconstruction_slug
from ..progress import Progress
from ..reporting.document import Report, atomic_directory
from ..reporting.plots import plot_on_off_theta2, plot_spectra
from ..rundir import check_output_name
from ..sky import CRAB_NEBULA, CRAB_SPECTRUM
from .base import MLOpsTool
from .io_checks import check_writable

__all__ = ["AnalyseDL3Tool", "main"]

#: how far from the injected spectrum a fit may be, in its own errors, and still recover it
RECOVERY_SIGMA = 2.0
_INDEX_FILES = ("hdu-index.fits.gz", "obs-index.fits.gz")
#: bins of true energy of the energy bias per run (``--mock``)
_BIAS_BINS_TEV = (0.05, 0.108, 0.232, 0.5, 1.077, 2.321, 5.0)


class AnalyseDL3Tool(MLOpsTool):
    """Detect the source and fit its spectrum in every DL3 set of a create_dl3.py output."""

    name = "ctlearn-mlops-analyse-dl3"
    description = __doc__
    examples = """
    python scripts/analyse_dl3.py --input data/dl3/mock-crab --background-fraction 0.01 --mock data/mock_crab
    """

    input_dir = Path(None, allow_none=True, exists=True, directory_ok=True, file_ok=False,
                     help="Output directory of create_dl3.py (one DL3 set per reconstruction).").tag(config=True)
    analysis_name = Unicode("", help="Name of the output: <reports_root>/dl3/<name>/ (default: the input's name).").tag(
        config=True)
    reports_root = Path("reports", directory_ok=True, file_ok=False, help="Reports go to <reports_root>/dl3/<name>/.").tag(
        config=True)
    target_ra = Float(CRAB_NEBULA.ra.deg, min=0, max=360, help="RA (deg, ICRS) of the source.").tag(config=True)
    target_dec = Float(CRAB_NEBULA.dec.deg, min=-90, max=90, help="Dec (deg, ICRS) of the source.").tag(config=True)
    off_regions = Int(1, min=1, max=5, help="Reflected OFF regions per run (1: opposite the source; more may "
                      "overlap the ON region at the widest theta cuts of a 0.4-deg wobble).").tag(config=True)
    mock_dir = Path(None, allow_none=True, exists=True, directory_ok=True, file_ok=False,
                    help="The mock observation behind the DL3 (make_mock_observation.py's --output-dir): the "
                    "report then also counts the gammas it threw against the injected spectrum.").tag(config=True)
    background_fraction = Float(1.0, min=1e-4, max=1.0, help="Fraction of the cosmic-ray rate the observation "
                                "holds (a mock observation's --proton-fraction).").tag(config=True)
    overwrite = Bool(False, help="Replace an existing output directory.").tag(config=True)

    aliases = {
        ("i", "input"): "AnalyseDL3Tool.input_dir",
        "name": "AnalyseDL3Tool.analysis_name",
        "reports-root": "AnalyseDL3Tool.reports_root",
        "target-ra": "AnalyseDL3Tool.target_ra",
        "target-dec": "AnalyseDL3Tool.target_dec",
        "off-regions": "AnalyseDL3Tool.off_regions",
        "background-fraction": "AnalyseDL3Tool.background_fraction",
        "mock": "AnalyseDL3Tool.mock_dir",
    }
    flags = {"overwrite": ({"AnalyseDL3Tool": {"overwrite": True}}, "Replace an existing output directory.")}

    def output_location(self):
        return getattr(self, "output_dir", None)

    def setup(self):
        if self.input_dir is None:
            raise ConfigError("give the DL3 sets: --input data/dl3/<name> (an output directory of create_dl3.py)",
                              key="--input")
        root = PathlibPath(self.input_dir)
        # create_dl3.py names each set's directory after its reconstruction: the labels of compute_irf.py first
        labels = {reconstruction_slug(label): label for label in RECONSTRUCTIONS}
        order = list(labels)
        found = [d for d in sorted(root.iterdir(), key=lambda d: (order.index(d.name) if d.name in labels
                                                                  else len(order), d.name))
                 if d.is_dir() and not d.name.startswith(".") and all((d / n).exists() for n in _INDEX_FILES)]
        self.sets = {labels.get(d.name, d.name): d for d in found}
        if not self.sets:
            raise InputDataError(f"{root} holds no DL3 set (a directory with {' and '.join(_INDEX_FILES)}): give "
                                 "an output directory of create_dl3.py", key="--input")
        name = check_output_name(self.analysis_name) if self.analysis_name else root.name
        self.output_dir = self.reports_root / "dl3" / name
        if self.output_dir.exists() and not self.overwrite:
            raise RunExistsError(f"{self.output_dir} exists; pass --overwrite or choose --name", key="--name")
        check_writable(self.output_dir.parent, "--reports-root")
        self.provenance_log = self.output_dir.with_name(f"{name}.provenance.log")
        from ..physics.spectral_analysis import open_observations

        self.observations = {}
        for label, directory in self.sets.items():
            try:
                observations = open_observations(directory)
            except (OSError, ValueError, KeyError) as err:
                raise InputDataError(f"{directory}: gammapy cannot open the DL3 set ({type(err).__name__}: {err})",
                                     key="--input") from None
            if len(observations) == 0:
                raise InputDataError(f"{directory}: no point-like observation (events, GTI, effective area, "
                                     "energy dispersion and RAD_MAX) in the DL3 set", key="--input")
            self.observations[label] = observations
        self.target = SkyCoord(ra=self.target_ra * u.deg, dec=self.target_dec * u.deg, frame="icrs")
        self.mock_runs = None
        if self.mock_dir is not None:
            from ..toysim.observation import read_plan

            try:
                self.mock_runs = read_plan(self.mock_dir)
            except (OSError, ValueError, KeyError, TypeError) as err:
                raise InputDataError(f"{self.mock_dir}/mock_observation.json cannot be read ({type(err).__name__}: "
                                     f"{err}): give a make_mock_observation.py output directory", key="--mock") \
                    from None

    def _thrown(self):
        """The gammas the mock observation threw above some energies, against the injected spectrum's mean."""
        from ..toysim.observation import expected_thrown_gammas, thrown_gamma_energies

        energies = thrown_gamma_energies(self.mock_runs).to_value(u.TeV)
        rows = []
        for threshold in (0.0, 0.3, 1.0, 3.0):
            expected = expected_thrown_gammas(self.mock_runs, threshold * u.TeV)
            found = int(np.count_nonzero(energies > threshold))
            rows.append({"above_tev": threshold, "thrown": found, "expected": expected,
                         "deviation_sigma": (found - expected) / np.sqrt(expected)})
        return rows

    def _true_gamma_energies(self):
        """{obs_id: {event_id: true energy in TeV}} of the gammas of the mock's runs (their truth files)."""
        from ctapipe.io import read_table

        energies = {}
        for run in self.mock_runs:
            if run.truth_path.exists():
                truth = read_table(run.truth_path, "/truth")
                gammas = truth[np.asarray(truth["true_shower_primary_id"]) == 0]
                energies[run.obs_id] = dict(zip(np.asarray(gammas["event_id"]).tolist(),
                                                u.Quantity(gammas["true_energy"], u.TeV).value.tolist()))
        return energies

    def _energy_bias_by_run(self, label, true_energies):
        """Mean log10(E_reco / E_true) of the DL3 gammas of each run, per bin of true energy (the mock's truth)."""
        rows = {}
        for observation in self.observations[label]:
            true_energy = true_energies.get(int(observation.obs_id))
            if true_energy is None:
                continue
            events = observation.events.table
            found = np.array([true_energy.get(int(i), np.nan) for i in events["EVENT_ID"]])
            ratio = np.log10(u.Quantity(events["ENERGY"], u.TeV).value / found)
            rows[int(observation.obs_id)] = [
                float(np.mean(ratio[(found >= lo) & (found < hi)])) if np.any((found >= lo) & (found < hi))
                else None for lo, hi in zip(_BIAS_BINS_TEV[:-1], _BIAS_BINS_TEV[1:])]
        return rows

    def start(self):
        from ..physics.spectral_analysis import analyse, gammapy_power_law, model_band, on_off_thetas, sed_table

        progress = Progress(len(self.sets), "spectral analysis", self.log, unit="set")
        self.results, self.metrics, spectra, thetas = {}, {}, {}, {}
        energy = np.geomspace(0.05, 20, 60) * u.TeV
        largest_cut = 0.0
        for label, observations in self.observations.items():
            try:
                result = analyse(observations, self.target, n_off_regions=self.off_regions,
                                 reference_spectrum=gammapy_power_law(CRAB_SPECTRUM))
            except (ValueError, RuntimeError, IndexError) as err:
                raise InputDataError(f"{self.sets[label]}: gammapy's analysis of the DL3 set failed "
                                     f"({type(err).__name__}: {err})", key="--input") from None
            self.results[label] = result
            index_pull, amplitude_pull = result.pulls(CRAB_SPECTRUM)
            recovered = bool(result.fit_success and index_pull is not None and amplitude_pull is not None
                             and abs(index_pull) <= RECOVERY_SIGMA and abs(amplitude_pull) <= RECOVERY_SIGMA)
            full_background = result.significance_with_background(1 / self.background_fraction)
            self.metrics[label] = {
                "runs": len(observations), "livetime_h": result.livetime.to_value(u.h),
                "n_on": result.n_on, "n_off": result.n_off, "alpha": result.alpha, "excess": result.excess,
                "significance": result.significance,
                "significance_per_sqrt_hour": result.significance_per_sqrt_hour,
                "significance_per_sqrt_hour_full_background": (
                    None if full_background is None else full_background / np.sqrt(result.livetime.to_value(u.h))),
                "fit_success": result.fit_success, "index": result.index, "index_error": result.index_error,
                "amplitude_1tev": result.amplitude.to_value("cm-2 s-1 TeV-1"),
                "amplitude_1tev_error": result.amplitude_error.to_value("cm-2 s-1 TeV-1"),
                "index_pull": index_pull, "amplitude_pull": amplitude_pull, "recovers_injected": recovered,
                "counts_per_bin": [{name: float(row[name].to_value(u.TeV)) if name.startswith("energy")
                                    else float(row[name]) for name in result.counts.colnames}
                                   for row in result.counts if row["npred_fit"] > 0 or row["n_on"] > 0],
            }
            spectra[label] = (sed_table(result), (energy, *model_band(result, energy)))
            thetas[label] = on_off_thetas(observations, self.target)
            largest_cut = max(largest_cut, max(float(np.max(o.rad_max.quantity.to_value(u.deg)))
                                               for o in observations))
            progress.update(note=f"{label}: {result.excess:.0f} excess events, {result.significance:.1f} sigma")
        progress.close()
        self.spectra = spectra
        self.thrown = self._thrown() if self.mock_runs is not None else None
        self.energy_bias = None
        if self.mock_runs is not None:
            true_energies = self._true_gamma_energies()  # read once for every set
            self.energy_bias = {label: self._energy_bias_by_run(label, true_energies) for label in self.observations}
        injected = ("Crab Nebula (HEGRA; injected in the mock)", energy,
                    (CRAB_SPECTRUM(energy) * energy ** 2).to("erg cm-2 s-1"))
        self.report = self._report(spectra, injected, thetas, largest_cut)

    def _report(self, spectra, injected, thetas, largest_cut):
        report = Report(f"DL3 analysis - {self.output_dir.name}")
        verdicts = []
        for label, m in self.metrics.items():
            verdicts.append(
                f"{label}: {m['excess']:.0f} excess events, {m['significance']:.1f} sigma in {m['livetime_h']:.2f} h "
                f"({m['significance_per_sqrt_hour']:.1f} sigma/sqrt(h)); index {m['index']:.2f} +- "
                f"{m['index_error']:.2f}, flux at 1 TeV {m['amplitude_1tev']:.3g} +- {m['amplitude_1tev_error']:.2g}"
                f" cm-2 s-1 TeV-1: {'recovers' if m['recovers_injected'] else 'does not recover'} the injected Crab "
                f"(pulls {_number(m['index_pull'], 'n/a', '+.1f')}, {_number(m['amplitude_pull'], 'n/a', '+.1f')} "
                "sigma)")
        report.text("Verdict", "\n".join(verdicts))
        header = ["", *self.metrics]
        rows = [
            ["runs", *(m["runs"] for m in self.metrics.values())],
            ["livetime / h", *(m["livetime_h"] for m in self.metrics.values())],
            ["N_on", *(m["n_on"] for m in self.metrics.values())],
            ["N_off", *(m["n_off"] for m in self.metrics.values())],
            ["alpha", *(m["alpha"] for m in self.metrics.values())],
            ["excess", *(m["excess"] for m in self.metrics.values())],
            ["significance (Li & Ma) / sigma", *(m["significance"] for m in self.metrics.values())],
            ["sigma / sqrt(h)", *(m["significance_per_sqrt_hour"] for m in self.metrics.values())],
        ]
        if self.background_fraction < 1:
            rows.append([f"sigma / sqrt(h), background / {self.background_fraction:g}",
                         *(_number(m["significance_per_sqrt_hour_full_background"], "no OFF count to scale")
                           for m in self.metrics.values())])
        rows += [
            [f"index (Crab {-CRAB_SPECTRUM.index:g})",
             *(f"{m['index']:.3f} +- {m['index_error']:.3f}" for m in self.metrics.values())],
            [f"flux at 1 TeV / 1e-11 cm-2 s-1 TeV-1 (Crab {_crab_at_1tev() / 1e-11:.3g})",
             *(f"{m['amplitude_1tev'] / 1e-11:.3f} +- {m['amplitude_1tev_error'] / 1e-11:.3f}"
               for m in self.metrics.values())],
            ["pulls (index, flux) / sigma",
             *(f"{_number(m['index_pull'], 'n/a', '+.2f')}, {_number(m['amplitude_pull'], 'n/a', '+.2f')}"
               for m in self.metrics.values())],
        ]
        report.table("Detection and spectrum, per reconstruction", header, rows)
        if self.thrown is not None:
            report.table(f"The gammas the mock observation threw ({self.mock_dir}): a fit follows the realization, "
                         "which deviates from the injected spectrum's mean by Poisson chance",
                         ["energy", "thrown", "injected spectrum's mean", "deviation / sigma"],
                         [[f"> {r['above_tev']:g} TeV" if r["above_tev"] else "all", r["thrown"], f"{r['expected']:.1f}",
                           f"{r['deviation_sigma']:+.1f}"] for r in self.thrown])
            bins = [f"{lo:g}-{hi:g}" for lo, hi in zip(_BIAS_BINS_TEV[:-1], _BIAS_BINS_TEV[1:])]
            report.table("Energy bias of each run's gammas in the DL3 set: mean log10(E_reco / E_true) per bin of "
                         "true energy (TeV), from the mock's truth (the wobble puts the source at another place in the "
                         "camera in each run)",
                         ["reconstruction, run", *bins],
                         [[f"{label}, {obs_id}", *("" if v is None else f"{v:+.3f}" for v in values)]
                          for label, runs in self.energy_bias.items() for obs_id, values in runs.items()])
        for label, m in self.metrics.items():
            report.table(f"{label}: counts per bin of reconstructed energy (the runs' safe ranges) against the "
                         "signal the fitted power law and the Crab (HEGRA) predict through the IRFs; the deviation "
                         "(ON - alpha OFF - predicted) in units of its Gaussian error sqrt(predicted + alpha (1 + "
                         "alpha) OFF) shows where a spectrum departs from the data",
                         ["E_reco / TeV", "ON", "alpha x OFF", "fit", "Crab", "deviation from the fit / sigma",
                          "deviation from the Crab / sigma"],
                         [[f"{b['energy_min']:.3g}-{b['energy_max']:.3g}", f"{b['n_on']:.0f}",
                           f"{b['alpha_n_off']:.1f}", f"{b['npred_fit']:.1f}", f"{b['npred_reference']:.1f}",
                           *(f"{_deviation(b, b[name], m['alpha']):+.1f}" for name in ("npred_fit", "npred_reference"))]
                          for b in m["counts_per_bin"]])
        report.figure("spectrum", plot_spectra(spectra, injected),
                      "Fitted power laws (1-sigma band) and flux points of each reconstruction against the injected "
                      "Crab spectrum.")
        report.figure("theta2", plot_on_off_theta2(thetas, largest_cut),
                      "Squared angular distance of the events after the gammaness cuts to the source (ON) and to its "
                      "reflection through the pointing (OFF).")
        report.preformatted("Inputs and options", "\n".join([
            *(f"DL3 set {label}: {_shown(directory)}" for label, directory in self.sets.items()),
            f"source: RA {self.target_ra:.4f} deg, Dec {self.target_dec:.4f} deg; {self.off_regions} OFF region(s) "
            f"per run; background fraction {self.background_fraction:g}",
        ]))
        return report

    def finish(self):
        # paths as given, relative to the working directory where they are inside it (metrics are committed)
        metrics = {"inputs": {label: _shown(d) for label, d in self.sets.items()},
                   "background_fraction": self.background_fraction, "off_regions": self.off_regions,
                   "mock_thrown_gammas": self.thrown,
                   "mock_energy_bias_bins_tev": list(_BIAS_BINS_TEV) if self.energy_bias is not None else None,
                   "mock_energy_bias_by_run": self.energy_bias,
                   "reconstructions": self.metrics}
        with atomic_directory(self.output_dir, overwrite=self.overwrite) as tmp:
            self.report.write(tmp, _finite(metrics))
            for label, (sed, _) in self.spectra.items():
                sed.write(tmp / f"sed_{reconstruction_slug(label)}.ecsv", format="ascii.ecsv")
        lines = [f"{label}: {m['significance']:.1f} sigma, index {m['index']:.2f} +- {m['index_error']:.2f}"
                 for label, m in self.metrics.items()]
        show(*lines, f"DL3 analysis: {self.output_dir / 'report.html'}")


def _finite(value):
    """``value`` with every non-finite number as None (metrics.json stays JSON)."""
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _deviation(counts, predicted, alpha):
    """(ON - alpha OFF - predicted) of one energy bin over its Gaussian error (Poisson ON around the prediction
    plus the background, and the OFF counts' own variance)."""
    background = counts["alpha_n_off"]
    return (counts["n_on"] - background - predicted) / np.sqrt(max(predicted + background * (1 + alpha), 1.0))


def _number(value, missing, spec=".4g"):
    return missing if value is None else format(value, spec)


def _crab_at_1tev():
    return float(CRAB_SPECTRUM(1 * u.TeV).to_value("cm-2 s-1 TeV-1"))


def _shown(path):
    path = PathlibPath(path)
    return str(path.relative_to(PathlibPath.cwd())) if path.is_relative_to(PathlibPath.cwd()) else str(path)


def main():
    AnalyseDL3Tool().run()
