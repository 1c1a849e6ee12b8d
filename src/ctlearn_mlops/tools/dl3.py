"""GADF DL3 of observed runs: the event DL2 of predict_events.py with the IRFs of compute_irf.py, per reconstruction.

For each reconstruction (``CNN`` and ``classical`` by default: the labels of
the IRF directory's ``metrics.json``), takes the array events of the runs
that are valid in every role and pass the gammaness cut of that
reconstruction's IRFs, and writes one file per run (obs_id) with ``EVENTS``,
``GTI``, ``POINTING`` and the point-like IRFs (``RAD_MAX`` holds their theta
cut), plus ``hdu-index.fits.gz`` and ``obs-index.fits.gz``::

    <output-dir>/<set>/dl3_obs<obs_id>.fits.gz

(``<set>``: the reconstruction's label as a name: ``cnn``, ``classical``, ...);
gammapy's ``DataStore.from_dir`` opens each set.
The event files must have been written with the runs the IRFs were made
with (same models, cuts and telescopes: the files record them).
"""

import json
from pathlib import Path as PathlibPath

import astropy.units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from ctapipe.core.traits import Bool, Float, List, Path, Unicode

from .. import __version__
from ..exceptions import ConfigError, InputDataError, RunExistsError
from ..io import dl2
from ..io.dl1 import check_observed_files, hdf5_problem, is_observed
from ..output import show
from ..physics.dl3 import IRF_EXTENSIONS, gh_cuts_of, hdu_index, obs_index, observed_runs, run_events, run_hdus
from ..physics.irf import GH_CUTS_EXTENSION, irf_file_name, reconstruction_slug
from ..progress import Progress
from ..reporting.document import atomic_directory
from ..sky import CRAB_NEBULA
from .base import MLOpsTool
from .io_checks import check_writable

__all__ = ["DL3Tool", "main"]


class DL3Tool(MLOpsTool):
    """Write GADF DL3 of observed runs with the IRFs of compute_irf.py, one set per reconstruction."""

    name = "ctlearn-mlops-dl3"
    description = __doc__
    examples = """
    python scripts/create_dl3.py --input data/dl2/mock-crab.dl2.h5 --irf reports/irf/reference --output-dir data/dl3/mock-crab
    """

    inputs = List(Path(exists=True, directory_ok=False), default_value=[],
                  help="Event DL2 files of observed runs (repeatable).").tag(config=True)
    irf_dir = Path(None, allow_none=True, exists=True, directory_ok=True, file_ok=False,
                   help="Output directory of compute_irf.py (reports/irf/<name>).").tag(config=True)
    output_dir = Path(None, allow_none=True, directory_ok=True, file_ok=False,
                      help="Where the DL3 sets go (one directory per reconstruction).").tag(config=True)
    reconstructions = List(Unicode(), default_value=["CNN", "classical"],
                           help="Reconstructions (labels of the IRFs' metrics.json) to write DL3 for.").tag(config=True)
    target_ra = Float(CRAB_NEBULA.ra.deg, min=0, max=360, help="RA (deg, ICRS) of the observed source (RA_OBJ).").tag(
        config=True)
    target_dec = Float(CRAB_NEBULA.dec.deg, min=-90, max=90,
                       help="Dec (deg, ICRS) of the observed source (DEC_OBJ).").tag(config=True)
    target_name = Unicode("Crab Nebula", help="Name of the observed source (OBJECT).").tag(config=True)
    overwrite = Bool(False, help="Replace an existing output directory.").tag(config=True)

    aliases = {
        ("i", "input"): "DL3Tool.inputs",
        "irf": "DL3Tool.irf_dir",
        "output-dir": "DL3Tool.output_dir",
        "reconstruction": "DL3Tool.reconstructions",
        "target-ra": "DL3Tool.target_ra",
        "target-dec": "DL3Tool.target_dec",
        "target-name": "DL3Tool.target_name",
    }
    flags = {"overwrite": ({"DL3Tool": {"overwrite": True}}, "Replace an existing output directory.")}

    def output_location(self):
        return self.output_dir

    def _read_irfs(self):
        """{label: (prefixes, HDUList)} of the asked reconstructions, and what made the IRFs."""
        metrics_file = PathlibPath(self.irf_dir) / "metrics.json"
        try:
            metrics = json.loads(metrics_file.read_text())
            known = metrics["reconstructions"]
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise ConfigError(f"{metrics_file} cannot be read ({type(err).__name__}: {err}): give an output "
                              "directory of compute_irf.py", key="--irf") from None
        irfs = {}
        for label in self.reconstructions:
            if label not in known:
                raise ConfigError(f"{self.irf_dir} has no IRFs of the reconstruction '{label}' (it has "
                                  f"{', '.join(known)})", key="--reconstruction")
            path = PathlibPath(self.irf_dir) / irf_file_name(label)
            try:
                with fits.open(path) as opened:
                    hdus = fits.HDUList([hdu.copy() for hdu in opened])
            except (OSError, ValueError) as err:
                raise ConfigError(f"{path} cannot be read ({type(err).__name__}: {err})", key="--irf") from None
            missing = [name for name in (*IRF_EXTENSIONS, GH_CUTS_EXTENSION) if name not in hdus]
            if missing:
                raise ConfigError(f"{path} lacks the {missing[0]} extension (IRFs written before DL3 existed): "
                                  "run compute_irf.py again", key="--irf")
            irfs[label] = (known[label], hdus)
        made_with = metrics.get("made_with")
        if not made_with:
            raise ConfigError(f"{metrics_file} does not say which runs the IRFs were made with (made_with: "
                              f"{made_with}; its inputs were written with different runs, or before compute_irf.py "
                              "recorded them): make the IRFs of one event file set again", key="--irf")
        return irfs, made_with

    def _check_input(self, path, irfs, made_with):
        problem = hdf5_problem(path)
        if problem is not None:
            raise InputDataError(f"{path} {problem}", key="--input")
        try:
            recorded = dl2.read_runs(path)
            observed = is_observed(path)
        except (OSError, ValueError) as err:
            raise InputDataError(f"{path} is not an event DL2 file of predict_events.py ({err})", key="--input") \
                from None
        if not recorded:
            raise InputDataError(f"{path} is not an event DL2 file of predict_events.py (no {dl2.RUNS_ATTRIBUTE})",
                                 key="--input")
        if not observed:
            raise InputDataError(f"{path} holds simulations: DL3 is made of observed runs (IRFs come from "
                                 "simulations, through compute_irf.py)", key="--input")
        check_observed_files([path], key="--input")
        for label, (prefixes, _) in irfs.items():
            for role, prefix in prefixes.items():
                if prefix not in dl2.prefixes_in(path, role):
                    raise InputDataError(f"{path} lacks the reconstruction the '{label}' IRFs were made for "
                                         f"({dl2.subarray_table_path(role, prefix)})", key="--input")
        # every reconstruction of a role rests on that role's runs (the classical one on their training images)
        for role in dl2.ROLES:
            ours, theirs = _runs_of_role(recorded, role), _runs_of_role(made_with, role)
            for item in ("run", "cuts", "telescopes"):
                here = {_comparable(item, entry.get(item)) for entry in ours if item in entry}
                there = {_comparable(item, entry.get(item)) for entry in theirs if item in entry}
                if here and there and here != there:
                    raise InputDataError(
                        f"{path} was made with other {role} events than the IRFs of {self.irf_dir}: {item} "
                        f"{_listed(here)} here, {_listed(there)} for the IRFs (write the event DL2 file with the runs "
                        "the IRFs were made with)", key="--input")

    def setup(self):
        if not self.inputs:
            raise ConfigError("give the event DL2 file(s) of the observed runs: --input data/dl2/<name>.dl2.h5",
                              key="--input")
        if self.irf_dir is None:
            raise ConfigError("give the IRFs: --irf reports/irf/<name> (an output directory of compute_irf.py)",
                              key="--irf")
        if not self.reconstructions:
            raise ConfigError("give at least one --reconstruction", key="--reconstruction")
        if self.output_dir is None:
            self.output_dir = PathlibPath("data/dl3") / PathlibPath(self.inputs[0]).name.removesuffix(".h5") \
                .removesuffix(".dl2")
        self.output_dir = PathlibPath(self.output_dir)
        if self.output_dir.exists() and not self.overwrite:
            raise RunExistsError(f"{self.output_dir} exists; pass --overwrite or choose --output-dir",
                                 key="--output-dir")
        check_writable(self.output_dir.parent, "--output-dir")
        self.provenance_log = self.output_dir.with_name(f"{self.output_dir.name}.provenance.log")
        self.irfs, made_with = self._read_irfs()
        for path in self.inputs:
            self._check_input(path, self.irfs, made_with)
        self.target = SkyCoord(ra=self.target_ra * u.deg, dec=self.target_dec * u.deg, frame="icrs")

    def start(self):
        progress = Progress(len(self.inputs) * len(self.irfs), "DL3", self.log, unit="set")
        self.sets = {label: {} for label in self.irfs}
        for path in self.inputs:
            events = dl2.read_subarray_events(path)
            observed = observed_runs(events, dl2.read_subarray(path))  # the same for every reconstruction
            for label, (prefixes, hdus) in self.irfs.items():
                runs = run_events(events, prefixes, gh_cuts_of(hdus), observed)
                for obs_id in [i for i, run in runs.items() if len(run.events) == 0]:
                    self.log.warning("%s: run %d has no event after the '%s' cuts: left out of its DL3 set", path,
                                     obs_id, label)
                    del runs[obs_id]
                overlap = set(runs) & set(self.sets[label])
                if overlap:
                    raise InputDataError(f"{path} holds obs_id {min(overlap)}, which another input holds too",
                                         key="--input")
                self.sets[label].update(runs)
                progress.update(note=f"{PathlibPath(path).name}: {label}")
        progress.close()
        for label, runs in self.sets.items():
            if not runs:
                raise InputDataError(f"no event of {', '.join(map(str, self.inputs))} passes the '{label}' cuts of "
                                     f"{self.irf_dir}: no DL3 to write", key="--input")

    def finish(self):
        creator = f"ctlearn-mlops {__version__}"
        with atomic_directory(self.output_dir, overwrite=self.overwrite) as tmp:
            for label, runs in self.sets.items():
                directory = tmp / reconstruction_slug(label)
                directory.mkdir()
                files = {}
                for obs_id, run in runs.items():
                    files[obs_id] = f"dl3_obs{obs_id}.fits.gz"
                    run_hdus(run, self.irfs[label][1], self.target, self.target_name, creator).writeto(
                        directory / files[obs_id])
                hdu_index(files).writeto(directory / "hdu-index.fits.gz")
                obs_index(runs).writeto(directory / "obs-index.fits.gz")
        counts = ", ".join(f"{label}: {sum(len(r.events) for r in runs.values())} events in {len(runs)} runs"
                           for label, runs in self.sets.items())
        show(f"DL3: {self.output_dir} ({counts})")


def _runs_of_role(recorded, role):
    """The run descriptions a ``CTLEARN_MLOPS_RUNS`` record holds for ``role`` (any prefix)."""
    return [entry for key, entry in recorded.items() if key.split("/")[0] == role and isinstance(entry, dict)]


def _comparable(item, value):
    """A recorded value in a form that compares: run directories resolved, lists as tuples, dicts as JSON."""
    if item == "run" and value is not None:
        return str(PathlibPath(value).resolve())
    return json.dumps(value, sort_keys=True)


def _listed(values):
    return " and ".join(sorted(values))


def main():
    DL3Tool().run()
