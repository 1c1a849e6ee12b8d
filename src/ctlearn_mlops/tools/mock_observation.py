"""Make a mock observation of the Crab Nebula: observed-like DL1 runs in wobble mode from the toy production.

Each run tracks a position 0.4 deg from the Crab Nebula from CTA North,
while the Crab is ~70 deg high, and holds the showers of that time: gammas
from the Crab's spectrum at the source (full rate) and cosmic-ray protons
within 2.5 deg of the pointing at a stated fraction of their rate (the
toy triggers on ~6,900 protons a second; 1 % by default), at Poisson
times, each rendered for the pointing at its time.  The files hold what
``ctapipe-process`` writes for observed data plus the telescopes' pointing
over time, and no simulation tables; the truth goes to ``truth/``.
Writes ``<output-dir>/dl1/crab_wobble_obs<obs_id>.dl1.h5`` and
``<output-dir>/truth/``; complete files are kept unless ``--overwrite``.
"""

import json
import os

from ctapipe.core.traits import Bool, Float, Int, Path

from ..exceptions import RunExistsError
from ..output import show
from ..toysim.dataset import write_in_pool
from ..toysim.observation import mock_observation_plan, observation_subarray, thrown_rate, write_mock_run
from .base import MLOpsTool

__all__ = ["MockObservationTool", "main"]


def _write(run):
    return run, write_mock_run(run, overwrite=True)


class MockObservationTool(MLOpsTool):
    """Write a mock Crab observation: data/mock_crab/dl1/*.dl1.h5 and its truth (skips runs already complete)."""

    name = "ctlearn-mlops-mock-observation"
    description = __doc__
    examples = """
    python scripts/data_processing/make_mock_observation.py
    python scripts/data_processing/make_mock_observation.py --output-dir data/mock_small --n-runs 2 --run-minutes 1
    """

    output_dir = Path("data/mock_crab", directory_ok=True, file_ok=False, help="Output directory.").tag(config=True)
    n_runs = Int(4, min=1, max=40, help="Wobble runs (0, 180, 90, 270 deg around the source, in turn).").tag(
        config=True)
    run_minutes = Float(7.5, min=0.05, max=60, help="Duration of each run (minutes).").tag(config=True)
    proton_fraction = Float(0.01, min=1e-4, max=1.0, help="Fraction of the cosmic-ray proton rate thrown.").tag(
        config=True)
    seed = Int(1, min=0, help="Seed of the observation.").tag(config=True)
    jobs = Int(2, min=1, help="Parallel worker processes.").tag(config=True)
    overwrite = Bool(False, help="Regenerate runs that exist.").tag(config=True)

    aliases = {
        "output-dir": "MockObservationTool.output_dir",
        "n-runs": "MockObservationTool.n_runs",
        "run-minutes": "MockObservationTool.run_minutes",
        "proton-fraction": "MockObservationTool.proton_fraction",
        "seed": "MockObservationTool.seed",
        ("j", "jobs"): "MockObservationTool.jobs",
    }
    flags = {"overwrite": ({"MockObservationTool": {"overwrite": True}}, "Regenerate existing runs.")}

    def setup(self):
        self.provenance_log = self.output_dir / f"{self.name}.provenance.log"
        self.plan = mock_observation_plan(self.output_dir, self.n_runs, self.run_minutes, self.proton_fraction,
                                          self.seed)
        observation_subarray()  # the geometry, once, before the workers need it

    def output_location(self):
        return self.output_dir

    def start(self):
        todo = [run for run in self.plan if self.overwrite or not run.is_complete()]
        if not self.overwrite:
            for run in todo:
                recorded = [r for r in run.recorded() if r is not None]
                planned = run.describe()
                if recorded and {k: recorded[0].get(k) for k in planned} != planned:
                    raise RunExistsError(f"{run.path} was written for another plan ({recorded[0]}, not {planned}): "
                                         "pass --overwrite or choose --output-dir", key="--output-dir")
        skipped = len(self.plan) - len(todo)
        if skipped:
            self.log.info("%d of %d runs already complete, skipped", skipped, len(self.plan))
        gamma, proton = thrown_rate("gamma").value, thrown_rate("proton").value
        self.log.info("throwing %.1f gammas/s and %.1f protons/s (%.2g of %.0f/s) for %d x %.3g min",
                      gamma, proton * self.proton_fraction, self.proton_fraction, proton, self.n_runs,
                      self.run_minutes)
        n_events = write_in_pool(todo, _write, self.jobs, self.log)
        summary = {"runs": [run.path.name for run in self.plan], "run_minutes": self.run_minutes,
                   "proton_fraction": self.proton_fraction, "gamma_rate_hz": gamma,
                   "proton_rate_hz": proton, "seed": self.seed}
        plan_file = self.output_dir / "mock_observation.json"
        partial = plan_file.with_name(f".{plan_file.name}.partial")
        partial.write_text(json.dumps(summary, indent=2) + "\n")
        os.replace(partial, plan_file)
        self.summary = (f"{len(todo)} runs written ({n_events} events), {skipped} skipped: "
                        f"{self.output_dir / 'dl1'} (truth in {self.output_dir / 'truth'})")

    def finish(self):
        show(self.summary)


def main():
    MockObservationTool().run()
