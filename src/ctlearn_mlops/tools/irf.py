"""IRFs and point-source sensitivity of every reconstruction in an event DL2 file, the CNN next to the classical.

Reads the array events of event DL2 files (``scripts/predict_events.py``:
point-like gammas and diffuse protons, e.g. ``data/default/irf/``) and, for
each reconstruction (``CNN``: the mono networks combined over telescopes, the
direction the networks' image positions fitted with the image axes of all
telescopes where the file has it; ``CNN, mean direction``: the same with the
mean of the telescopes' directions; ``CNN stereo``: the stereo networks where
the file has them; ``CNN, stereo
direction``: the mono gammaness and energy with a stereo network's direction;
``classical``: the Hillas BDTs combined over telescopes, with ctapipe's
HillasReconstructor for the direction of events with two or more images;
``CNN, classical direction``: the networks' gammaness and energy with the
classical direction, a diagnostic), computes with pyirf the
event weights, the cuts, effective area, energy migration, PSF, background
rate, angular and energy resolution and the point-source sensitivity.
Writes ``<reports_root>/irf/<name>/``: ``irf_<reconstruction>.fits.gz`` (GADF;
``irf.fits.gz`` is the CNN's), ``sensitivity.csv``, ``metrics.json``, the
figures and ``report.html``.
"""

from pathlib import Path as PathlibPath

import astropy.units as u
import numpy as np
from astropy.table import vstack
from ctapipe.core.traits import Bool, Float, List, Path, Unicode

from ..exceptions import ConfigError, RunExistsError
from ..io import dl2
from ..io.dl1 import hdf5_problem
from ..output import show
from ..physics.irf import (
    GAMMA_ID,
    PROTON_ID,
    RECONSTRUCTIONS,
    IRFOptions,
    compute_irfs,
    direction_coverage,
    energy_coverage,
    gadf_hdus,
    irf_events,
    irf_file_name,
    same_event_angular_resolution,
    simulation_info,
)
from ..progress import Progress
from ..reporting.document import Report, atomic_directory
from ..reporting.irf_figures import (
    COVERAGE_TOLERANCE,
    MIN_COVERAGE_EVENTS,
    coverage_summary,
    irf_figures,
    resolution_summary,
    sensitivity_records,
    sensitivity_summary,
)
from ..reporting.plots import plot_coverage
from ..rundir import check_output_name
from .base import MLOpsTool
from .io_checks import check_writable

__all__ = ["IRFTool", "main"]

#: the columns of /configuration/simulation/run that the IRFs read (physics.irf.simulation_info)
_RUN_COLUMNS = ("obs_id", "particle_id", "n_showers", "shower_reuse", "energy_range_min", "energy_range_max",
                "spectral_index", "min_viewcone_radius", "max_viewcone_radius", "max_scatter_range")


class IRFTool(MLOpsTool):
    """Compute IRFs and sensitivity of the reconstructions of event DL2 files."""

    name = "ctlearn-mlops-irf"
    description = __doc__
    examples = """
    python scripts/compute_irf.py --input data/dl2/irf.dl2.h5 --name default
    python scripts/compute_irf.py --input data/dl2/irf.dl2.h5 --name optimised --optimise-cuts --obs-time 5
    """

    inputs = List(Path(exists=True, directory_ok=False), default_value=[],
                  help="Event DL2 files (repeatable; their events are taken together).").tag(config=True)
    irf_name = Unicode("", help="Name of the output: <reports_root>/irf/<name>/ (default: the first input's name).").tag(
        config=True)
    reports_root = Path("reports", directory_ok=True, file_ok=False, help="IRFs go to <reports_root>/irf/<name>/.").tag(
        config=True)
    gamma_efficiency = Float(0.7, min=0.05, max=0.99, help="Gamma efficiency of the gammaness cut per energy bin.").tag(
        config=True)
    theta_containment = Float(0.68, min=0.1, max=0.99, help="Containment of the theta cut per energy bin.").tag(
        config=True)
    optimise = Bool(False, help="Gammaness cuts of best sensitivity per bin (pyirf) instead of a fixed efficiency.").tag(
        config=True)
    obs_time = Float(50.0, min=0.001, help="Observation time of the sensitivity (hours).").tag(config=True)
    alpha = Float(0.2, min=0.01, max=1.0, help="Size of the on region relative to the off region.").tag(config=True)
    fov_offset_max = Float(1.0, min=0.1, help="Outer radius (deg) of the ring of protons the background is "
                           "estimated from.").tag(config=True)
    overwrite = Bool(False, help="Replace an existing output directory.").tag(config=True)

    aliases = {
        ("i", "input"): "IRFTool.inputs",
        "name": "IRFTool.irf_name",
        "reports-root": "IRFTool.reports_root",
        "gamma-efficiency": "IRFTool.gamma_efficiency",
        "theta-containment": "IRFTool.theta_containment",
        "obs-time": "IRFTool.obs_time",
        "alpha": "IRFTool.alpha",
        "fov-offset-max": "IRFTool.fov_offset_max",
    }
    renamed_options = {"--output-root": "--reports-root", "-o": "--reports-root"}
    flags = {
        "optimise-cuts": ({"IRFTool": {"optimise": True}}, "Gammaness cuts of best sensitivity per energy bin."),
        "overwrite": ({"IRFTool": {"overwrite": True}}, "Replace an existing output directory."),
    }

    def _check_input(self, path):
        problem = hdf5_problem(path)
        if problem is not None:
            raise ConfigError(f"{path} {problem}", key="--input")
        if not any(dl2.prefixes_in(path, role) for role in dl2.ROLES):
            raise ConfigError(f"{path} is not an event DL2 file (nothing under /dl2/event/subarray): write one from "
                              "DL1 files with scripts/predict_events.py", key="--input")
        runs = dl2.read_simulation_runs(path)
        if runs is None or len(runs) == 0:
            raise ConfigError(f"{path} has no simulation configuration (/configuration/simulation/run): "
                              "IRFs need the thrown showers", key="--input")
        particles, unknown = dl2.simulation_run_particles(path, runs)
        if unknown:
            listed = ", ".join(map(str, unknown[:5])) + (f" and {len(unknown) - 5} more" if len(unknown) > 5 else "")
            raise ConfigError(f"{path}: which particle the simulation runs {listed} threw is "
                              "not known (they have no simulated shower, and the file holds several particles): "
                              "give gammas and protons in separate event files (predict_events.py records it for "
                              "the files it writes)", key="--input")
        runs["particle_id"] = [particles[int(obs_id)] for obs_id in runs["obs_id"]]
        # what the IRFs read of a run (data models differ elsewhere: v6's "diffuse" is an integer, v7's a bool)
        runs = runs[[c for c in _RUN_COLUMNS if c in runs.colnames]]
        return dl2.read_subarray_events(path), runs

    def _files(self):
        """The input file(s), as a message names them."""
        return str(self.inputs[0]) if len(self.inputs) == 1 else "the inputs " + ", ".join(map(str, self.inputs))

    def setup(self):
        if not self.inputs:
            raise ConfigError("give the event DL2 file(s): --input data/dl2/<name>.dl2.h5", key="--input")
        given = [PathlibPath(p).resolve() for p in self.inputs]
        if len(set(given)) != len(given):
            twice = next(p for p in self.inputs if given.count(PathlibPath(p).resolve()) > 1)
            raise ConfigError(f"{twice} is given twice: its showers would count twice", key="--input")
        # where the output goes, checked before the inputs are read
        name = check_output_name(self.irf_name) if self.irf_name else \
            PathlibPath(self.inputs[0]).name.removesuffix(".h5").removesuffix(".dl2")
        self.output_dir = self.reports_root / "irf" / name
        if self.output_dir.exists() and not self.overwrite:
            raise RunExistsError(f"{self.output_dir} exists; pass --overwrite or choose --name", key="--name")
        check_writable(self.output_dir.parent, "--reports-root")
        self.provenance_log = self.output_dir.with_name(f"{name}.provenance.log")
        loaded = [self._check_input(p) for p in self.inputs]
        # gammas and protons may come in separate files: what counts is what the inputs hold together
        particles = set().union(*(np.unique(np.asarray(events["true_shower_primary_id"])) for events, _ in loaded))
        for particle, name in ((GAMMA_ID, "gammas"), (PROTON_ID, "protons")):
            if particle not in particles:
                raise ConfigError(f"no {name} in {self._files()}: IRFs need gammas and protons", key="--input")
        self.reconstructions = {}
        for label, wanted in RECONSTRUCTIONS.items():
            chosen = {}
            for role, candidates in wanted.items():
                found = [p for p in candidates if all(p in dl2.prefixes_in(path, role) for path in self.inputs)]
                if found:
                    chosen[role] = found[0]
            if len(chosen) == 3:
                self.reconstructions[label] = chosen
        for label in ("CNN", "classical"):
            if label not in self.reconstructions:
                lacking = next(path for path in self.inputs if any(
                    not set(p) & set(dl2.prefixes_in(path, r)) for r, p in RECONSTRUCTIONS[label].items()))
                missing = [f"{dl2.KIND_OF_ROLE[r]}/{p[-1]}" for r, p in RECONSTRUCTIONS[label].items()
                           if not set(p) & set(dl2.prefixes_in(lacking, r))]
                raise ConfigError(f"{lacking} lacks the {label} reconstruction ({', '.join(missing)} under "
                                  "/dl2/event/subarray): write it with scripts/predict_events.py and a run per role",
                                  key="--input")
        # the CNN's energy_uncert is a calibrated 68 % interval where every input with gammas (its coverage is
        # judged on them) holds the energy error model
        self.energy_calibrated = all(dl2.energy_uncertainty_calibrated(path) for path, (events, _) in
                                     zip(self.inputs, loaded)
                                     if np.any(np.asarray(events["true_shower_primary_id"]) == GAMMA_ID))
        self.events = vstack([events for events, _ in loaded])
        self.runs = vstack([runs for _, runs in loaded])
        self.options = IRFOptions(
            gamma_efficiency=self.gamma_efficiency, theta_containment=self.theta_containment, optimise=self.optimise,
            obs_time=self.obs_time * u.h, alpha=self.alpha, fov_offset_max=self.fov_offset_max * u.deg,
        )
        self.gamma_info, self.proton_info = (self._simulation(particle) for particle in (GAMMA_ID, PROTON_ID))

    def _simulation(self, particle):
        # every simulation run of the particle, from each file on its own: the thrown showers of runs none of
        # whose showers triggered count, and separate files may number their runs alike
        runs = self.runs[np.asarray(self.runs["particle_id"]) == particle]
        try:
            info = simulation_info(runs)
        except ValueError as err:
            raise ConfigError(f"{self._files()}: the {'gamma' if particle == GAMMA_ID else 'proton'} runs cannot be "
                              f"taken together: {err}", key="--input") from None
        if particle == GAMMA_ID and info.viewcone_max > info.viewcone_min:
            raise ConfigError(f"{self._files()}: the gammas are diffuse (view cone up to {info.viewcone_max}); "
                              "point-source IRFs need point-like gammas, as in the irf/ sample of "
                              "make_default_dataset.py", key="--input")
        if particle == PROTON_ID and info.viewcone_max <= self.fov_offset_max * u.deg:
            raise ConfigError(f"{self._files()}: the protons come from within {info.viewcone_max} only; the "
                              f"background ring reaches {self.fov_offset_max} deg (--fov-offset-max)", key="--input")
        return info

    def output_location(self):
        return getattr(self, "output_dir", None)

    def start(self):
        progress = Progress(len(self.reconstructions) + 1, "IRFs", self.log, unit="reconstruction")
        self.results = {}
        all_gammas = {}
        for label, prefixes in self.reconstructions.items():
            events = irf_events(self.events, prefixes)
            gammas = events[events["particle_id"] == GAMMA_ID]
            protons = events[events["particle_id"] == PROTON_ID]
            all_gammas[label] = gammas
            self.results[label] = compute_irfs(gammas, protons, self.gamma_info, self.proton_info, self.options)
            progress.update(note=f"{label}: {len(gammas)} gammas, {len(protons)} protons")
        self.summary = sensitivity_summary(self.results)
        true_energy_bins = next(iter(self.results.values())).bins["true_energy"]
        same_events = {label: same_event_angular_resolution(gammas, all_gammas["classical"], true_energy_bins)
                       for label, gammas in all_gammas.items() if label != "classical"}
        self.resolution = resolution_summary(self.results, same_events=same_events)
        # the axis fit states a calibrated 68 % radius; the other directions' _uncert columns are the telescopes'
        # spread (StereoMeanCombiner's), even where the classical direction is HillasReconstructor's
        coverage = {label: direction_coverage(gammas, true_energy_bins) for label, gammas in all_gammas.items()
                    if self.reconstructions[label]["geometry"] == dl2.AXIS_FIT_PREFIX}
        coverage = {label: table for label, table in coverage.items() if table is not None}
        self.coverage = coverage_summary(coverage)
        # the CNN pipelines differ in their direction only: the CNN's energy is judged once, on the CNN pipeline's
        # gammas (the classical energy_uncert is the telescopes' spread)
        energy = {"CNN": energy_coverage(all_gammas["CNN"], true_energy_bins)} if self.energy_calibrated else {}
        energy = {label: table for label, table in energy.items() if table is not None}
        self.energy_coverage = coverage_summary(energy)
        report = Report(f"IRFs and sensitivity - {self.output_dir.name}")
        report.text("Verdict", self.summary["verdict"])
        for label, measures in self.resolution.items():
            rows = []
            for name, compared in measures.items():
                rows += [[name, f"{b['true_energy_low_tev']:.3g}-{b['true_energy_high_tev']:.3g}", b["network"],
                          b["classical"], b["ratio"]] for b in compared["bins"]]
            fractions = ", ".join(f"{name}: {'n/a' if c['fraction_at_or_below'] is None else format(c['fraction_at_or_below'], '.0%')}"
                                  for name, c in measures.items())
            report.table(f"Array-level resolution, {label} against classical (after each one's gammaness cut, and "
                         f"the direction on the same gammas before any cut; at or below the classical in {fractions} "
                         "of the bins)",
                         ["measure", "E_true / TeV", label, "classical", "ratio"], rows)
        for what, column, summary in (("direction radius", "ang_distance_uncert", self.coverage),
                                      ("energy interval", "energy_uncert", self.energy_coverage)):
            for label, stated in summary.items():
                report.table(f"Coverage of the stated 68 % {what}, {label} ({label}'s <prefix>_{column}; point-like "
                             f"gammas before any cut; bins with {MIN_COVERAGE_EVENTS} or more: within "
                             f"{COVERAGE_TOLERANCE} of 0.68 in {stated['within_tolerance']} of {stated['n_bins']})",
                             ["E_true / TeV", "gammas", "coverage", "+-"],
                             [[f"{b['true_energy_low_tev']:.3g}-{b['true_energy_high_tev']:.3g}", b["n_events"],
                               b["coverage"], b["coverage_error"]] for b in stated["bins"]])
        report.table("Sensitivity per bin of reconstructed energy (relative to the Crab, lower is better)",
                     *self.summary["table"])
        for name, fig, caption in irf_figures(self.results):
            report.figure(name, fig, caption)
        if coverage:
            report.figure("direction_coverage", plot_coverage(coverage, min_events=MIN_COVERAGE_EVENTS,
                                                              tolerance=COVERAGE_TOLERANCE),
                          "Fraction of the point-like gammas whose true direction lies within the event's stated 68 % "
                          "radius (the axis fit's, calibrated on the direction run's validation events), per bin of true "
                          f"energy (bins with {MIN_COVERAGE_EVENTS} or more gammas); the band: 0.68 +- "
                          f"{COVERAGE_TOLERANCE}.")
        if energy:
            report.figure("energy_coverage", plot_coverage(energy, min_events=MIN_COVERAGE_EVENTS,
                                                           tolerance=COVERAGE_TOLERANCE, quantity="energy"),
                          "Fraction of the point-like gammas whose true energy lies within the event's stated 68 % "
                          "interval (a factor 1 + energy_uncert / energy either way, calibrated on the energy run's "
                          f"validation events), per bin of true energy (bins with {MIN_COVERAGE_EVENTS} or more "
                          f"gammas); the band: 0.68 +- {COVERAGE_TOLERANCE}.")
        report.preformatted("Inputs and options", "\n".join([
            *(f"input: {p}" for p in self.inputs),
            f"reconstructions: {self.reconstructions}",
            f"gammas: {self.gamma_info}", f"protons: {self.proton_info}",
            f"gamma efficiency {self.gamma_efficiency}, theta containment {self.theta_containment}, "
            f"optimised cuts {self.optimise}, observation time {self.obs_time} h, alpha {self.alpha}, "
            f"background ring 0-{self.fov_offset_max} deg",
        ]))
        self.report = report
        progress.update(note="figures")
        progress.close()

    def finish(self):
        made_with = [dl2.read_runs(path) for path in self.inputs]
        metrics = {
            "inputs": [str(p) for p in self.inputs],
            "reconstructions": self.reconstructions,
            # the runs behind each reconstruction (the inputs' CTLEARN_MLOPS_RUNS): DL3 takes events of the same
            "made_with": made_with[0] if all(m == made_with[0] for m in made_with) else None,
            "options": {"gamma_efficiency": self.gamma_efficiency, "theta_containment": self.theta_containment,
                        "optimise_cuts": self.optimise, "obs_time_h": self.obs_time, "alpha": self.alpha,
                        "fov_offset_max_deg": self.fov_offset_max},
            "simulation": {"gamma": str(self.gamma_info), "proton": str(self.proton_info)},
            **{k: v for k, v in self.summary.items() if k != "table"},
            "resolution": self.resolution,
            "direction_coverage": self.coverage,
            "energy_coverage": self.energy_coverage,
        }
        with atomic_directory(self.output_dir, overwrite=self.overwrite) as tmp:
            self.report.write(tmp, metrics)
            sensitivity_records(self.results).write(tmp / "sensitivity.csv", format="ascii.csv")
            for label, result in self.results.items():
                hdus = gadf_hdus(result, TELESCOP="CTA-N LST", INSTRUME="ctlearn-mlops toy",
                                 HDUDOC=f"reconstruction {label}")
                hdus.writeto(tmp / irf_file_name(label))
                if label == "CNN":
                    hdus.writeto(tmp / "irf.fits.gz")
        self.log.info("IRFs written to %s", self.output_dir)
        show(self.summary["verdict"], f"IRFs: {self.output_dir / 'report.html'}")


def main():
    IRFTool().run()
