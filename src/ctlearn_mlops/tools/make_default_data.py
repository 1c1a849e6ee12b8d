"""Generate the embedded default dataset: toy gamma and proton showers seen by the LSTs.

``train/`` and ``test/`` hold diffuse gammas and protons (the tasks' data);
``irf/`` holds point-like gammas (0.4 deg off the pointing) and protons
diffuse over 2.5 deg, the sample IRFs and sensitivity are computed on.

Images come from ctapipe.image.toymodel shapes placed with the real LSTCam
geometry (read from a real simtel file of the eventio sdist on PyPI), cleaned
and parametrised by ctapipe's ImageProcessor and written by its DataWriter:
genuine DL1 HDF5 that stock dl1-data-handler readers open.
"""

import time
from concurrent.futures import ProcessPoolExecutor, as_completed

from ctapipe.core.traits import Bool, Float, Int, Path

from ..output import show
from ..toysim.dataset import default_dataset_plan, irf_dataset_plan, lst_subarray, write_toy_file
from .base import MLOpsTool

__all__ = ["DefaultDataTool", "main", "write_in_pool"]


def _write(spec):
    return spec, write_toy_file(spec, overwrite=True)


def write_in_pool(todo, write, jobs, log):
    """Run ``write(spec) -> (spec, n events)`` for every spec in ``jobs`` processes, logging each file with the
    elapsed time and an ETA; return the number of events written."""
    t0 = time.monotonic()
    n_events = 0
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures = [pool.submit(write, spec) for spec in todo]
        for done, future in enumerate(as_completed(futures), 1):
            spec, n = future.result()
            n_events += n
            elapsed = time.monotonic() - t0
            eta = elapsed / done * (len(todo) - done)
            log.info("[%d/%d] %s: %d events (elapsed %.0f s, ETA %.0f s)", done, len(todo), spec.path.name, n,
                     elapsed, eta)
    return n_events


class DefaultDataTool(MLOpsTool):
    """Write data/default/{train,test}/{gamma,proton}_*.dl1.h5 and irf/ (skips files already complete)."""

    name = "ctlearn-mlops-make-default-data"
    description = __doc__

    output_dir = Path("data/default", directory_ok=True, file_ok=False, help="Output directory.").tag(config=True)
    n_gamma = Int(3000, min=10, help="Gamma showers thrown (training + test).").tag(config=True)
    n_proton = Int(8000, min=10, help="Proton showers thrown (training + test).").tag(config=True)
    test_fraction = Float(0.25, min=0.05, max=0.5, help="Fraction of showers in the test split.").tag(config=True)
    n_irf_gamma = Int(2000, min=0, help="Point-like gamma showers of the IRF sample (0: none).").tag(config=True)
    n_irf_proton = Int(8000, min=0, help="Diffuse proton showers of the IRF sample (0: none).").tag(config=True)
    seed = Int(1, help="Seed of the production.").tag(config=True)
    showers_per_file = Int(1000, min=10, help="Showers per output file.").tag(config=True)
    jobs = Int(2, min=1, help="Parallel worker processes.").tag(config=True)
    overwrite = Bool(False, help="Regenerate files that exist.").tag(config=True)

    aliases = {
        "output-dir": "DefaultDataTool.output_dir",
        "n-gamma": "DefaultDataTool.n_gamma",
        "n-proton": "DefaultDataTool.n_proton",
        "test-fraction": "DefaultDataTool.test_fraction",
        "n-irf-gamma": "DefaultDataTool.n_irf_gamma",
        "n-irf-proton": "DefaultDataTool.n_irf_proton",
        "seed": "DefaultDataTool.seed",
        "showers-per-file": "DefaultDataTool.showers_per_file",
        ("j", "jobs"): "DefaultDataTool.jobs",
    }
    renamed_options = {"-o": "--output-dir"}
    flags = {"overwrite": ({"DefaultDataTool": {"overwrite": True}}, "Regenerate existing files.")}


    def setup(self):
        self.provenance_log = self.output_dir / f"{self.name}.provenance.log"
        self.plan = default_dataset_plan(
            self.output_dir, self.n_gamma, self.n_proton, self.test_fraction, self.seed, self.showers_per_file,
        ) + irf_dataset_plan(self.output_dir, self.n_irf_gamma, self.n_irf_proton, self.seed, self.showers_per_file)
        # fetch the geometry once, before the workers need it
        lst_subarray()

    def start(self):
        todo = [spec for spec in self.plan if self.overwrite or not spec.path.exists()]
        skipped = len(self.plan) - len(todo)
        if skipped:
            self.log.info("%d of %d files already complete, skipped", skipped, len(self.plan))
        n_events = write_in_pool(todo, _write, self.jobs, self.log)
        self.summary = f"{len(todo)} files written ({n_events} events), {skipped} skipped, in {self.output_dir}"

    def finish(self):
        show(self.summary)


def main():
    DefaultDataTool().run()
