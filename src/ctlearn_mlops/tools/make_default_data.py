"""Generate the embedded default dataset: toy gamma and proton showers seen by the LSTs.

``train/`` and ``test/`` hold diffuse gammas and protons (the tasks' data);
``irf/`` holds point-like gammas (0.4 deg off the pointing) and protons
diffuse over 2.5 deg, the sample IRFs and sensitivity are computed on.

Images come from ctapipe.image.toymodel shapes placed with the real LSTCam
geometry (read from a real simtel file of the eventio sdist on PyPI), cleaned
and parametrised by ctapipe's ImageProcessor and written by its DataWriter:
genuine DL1 HDF5 that stock dl1-data-handler readers open.
"""

from ctapipe.core.traits import Bool, Float, Int, Path

from ..exceptions import ConfigError
from ..output import show
from ..toysim.dataset import (
    default_dataset_plan,
    flat_gamma_plan,
    irf_dataset_plan,
    lst_subarray,
    write_in_pool,
    write_toy_file,
)
from .base import MLOpsTool

__all__ = ["DefaultDataTool", "main"]


def _write(spec):
    return spec, write_toy_file(spec, overwrite=True)


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
    n_flat_gamma = Int(0, min=0, help="Extra training gammas flat in log E (train/gamma-flat_*; 0: none): more "
                       "showers above a few TeV for the energy network.").tag(config=True)
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
        "n-flat-gamma": "DefaultDataTool.n_flat_gamma",
        "seed": "DefaultDataTool.seed",
        "showers-per-file": "DefaultDataTool.showers_per_file",
        ("j", "jobs"): "DefaultDataTool.jobs",
    }
    renamed_options = {"-o": "--output-dir"}
    flags = {"overwrite": ({"DefaultDataTool": {"overwrite": True}}, "Regenerate existing files.")}


    def setup(self):
        self.provenance_log = self.output_dir / f"{self.name}.provenance.log"
        try:
            irf_plan = irf_dataset_plan(self.output_dir, self.n_irf_gamma, self.n_irf_proton, self.seed,
                                        self.showers_per_file)
        except ValueError as err:
            raise ConfigError(str(err), key="--n-irf-proton") from None
        self.plan = default_dataset_plan(
            self.output_dir, self.n_gamma, self.n_proton, self.test_fraction, self.seed, self.showers_per_file,
        ) + flat_gamma_plan(self.output_dir, self.n_flat_gamma, self.seed, self.showers_per_file) + irf_plan
        # each file's obs_id block holds 1000 files: more would give two files one obs_id (refused by the merger)
        obs_ids = [spec.obs_id for spec in self.plan]
        if len(set(obs_ids)) != len(obs_ids):
            raise ConfigError(f"{len(obs_ids) - len(set(obs_ids))} files of this production would share an obs_id "
                              "(more than 1000 files of one kind): raise --showers-per-file", key="--showers-per-file")
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
