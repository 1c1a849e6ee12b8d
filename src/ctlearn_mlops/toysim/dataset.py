"""Write toy showers as genuine ctapipe DL1 HDF5 (ImageProcessor + DataWriter)."""

import logging
import os
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
from ctapipe.core import Provenance
from ctapipe.image import ImageProcessor
from ctapipe.instrument import FocalLengthKind, SubarrayDescription
from ctapipe.io import DataWriter, SimTelEventSource

from .._compat import seeded_timing_fit
from ..resources import cache_dir, eventio_resource
from .showers import ToyPhysics
from .source import ToyEventSource

__all__ = ["FLAT_TRAINING_PHYSICS", "IRF_PHYSICS", "DatasetFile", "default_dataset_plan", "flat_gamma_plan",
           "irf_dataset_plan", "lst_subarray", "write_in_pool",
           "write_toy_file"]

log = logging.getLogger(__name__)

GEOMETRY_SIMTEL = "gamma_test.simtel.gz"
#: HDF5 compression level of the toy files: with ctapipe's default (5) the DataWriter takes ~2.2x its time at
#: level 1, for files ~5 % smaller (benchmarks/toy_production.py)
COMPRESSION_LEVEL = 1
LST_TYPE = "LST_LST_LSTCam"


def lst_subarray() -> SubarrayDescription:
    """The LSTs of the real prod-3 simtel sample, with their real LSTCam geometry.

    Read once from the simtel file (which carries positions, optics and camera
    geometry) and cached as HDF5, so later calls work without any network.
    The effective focal length is not in that file, hence ``EQUIVALENT``;
    readers of our files must use the same choice.
    """
    cached = cache_dir() / "lst_subarray.h5"
    if not cached.exists():
        simtel = eventio_resource(GEOMETRY_SIMTEL)
        with SimTelEventSource(simtel, focal_length_choice="EQUIVALENT", max_events=1) as source:
            subarray = source.subarray
        lst = subarray.select_subarray(subarray.get_tel_ids_for_type(LST_TYPE), name="LST")
        with tempfile.NamedTemporaryFile(dir=cached.parent, suffix=".h5.part", delete=False) as tmp:
            pass
        lst.to_hdf(tmp.name, overwrite=True)
        os.replace(tmp.name, cached)
    return SubarrayDescription.from_hdf(cached, focal_length_choice=FocalLengthKind.EQUIVALENT)


@dataclass(frozen=True)
class DatasetFile:
    """One output file of a toy production."""

    path: Path
    particle: str
    n_showers: int
    obs_id: int
    seed: int
    #: the physics of the file (None: the default ``ToyPhysics``, diffuse within 1 deg)
    physics: ToyPhysics | None = None


#: the IRF sample: gammas of a point source 0.4 deg from the pointing and protons diffuse over a wider cone
#: (background rates are estimated in a ring of 1 deg around the pointing); flatter spectra than the training
#: sample put more events at high energies (the IRFs reweight them to the Crab and cosmic-ray spectra)
IRF_PHYSICS = {
    "gamma": ToyPhysics(viewcone=0 * u.deg, source_offset=0.4 * u.deg, spectral_index=-1.5),
    "proton": ToyPhysics(viewcone=2.5 * u.deg, energy_min=0.05 * u.TeV, energy_max=50 * u.TeV,
                         spectral_index=-1.5),
}
IRF_NAMES = {"gamma": "gamma_point", "proton": "proton_diffuse"}
#: protons of the IRF sample that stay in ``irf/``; the files beyond them go to ``irf-protons/``, so that a larger
#: proton sample adds a directory and the default one (``irf/``, make irf-reference) stays as it is
IRF_DIR_PROTONS = 200_000


def _showers_per_file(n, showers_per_file):
    """The shower counts of the files ``n`` showers are spread over (at most ``showers_per_file`` each, as even as
    possible); none for n <= 0."""
    n_files = -(-n // showers_per_file) if n > 0 else 0
    return [n // n_files + (1 if chunk < n % n_files else 0) for chunk in range(n_files)]


#: extra training gammas flat in log E (index -1, otherwise the training sample's physics): the index -2 sample
#: throws ~1 % of its showers above 3 TeV, too few for the energy network there (docs/physics.md); added to the
#: index -2 sample, the density of the two stays smooth in energy (no step for the networks to learn)
FLAT_TRAINING_PHYSICS = ToyPhysics(spectral_index=-1.0)
FLAT_GAMMA_NAME = "gamma-flat"


def flat_gamma_plan(output_dir, n_gamma, seed, showers_per_file=1000) -> list[DatasetFile]:
    """Files of the extra training gammas flat in log E: ``<output_dir>/train/gamma-flat_train_obs13000+``.

    Their name does not match the training gammas' ``gamma_*`` pattern, so a
    config takes them only when it asks (e.g. ``--set
    'Project.signal_patterns=["gamma_*.dl1.h5", "gamma-flat_*.dl1.h5"]'``).
    """
    return [
        DatasetFile(path=Path(output_dir) / "train" / f"{FLAT_GAMMA_NAME}_train_obs{13000 + chunk}.dl1.h5",
                    particle="gamma", n_showers=n_showers, obs_id=13000 + chunk, seed=seed * 100003 + 13000 + chunk,
                    physics=FLAT_TRAINING_PHYSICS)
        for chunk, n_showers in enumerate(_showers_per_file(n_gamma, showers_per_file))
    ]


def irf_dataset_plan(output_dir, n_gamma, n_proton, seed, showers_per_file=1000) -> list[DatasetFile]:
    """Files of the IRF sample: point-like gammas and diffuse protons, obs_id 31000+.

    In ``<output_dir>/irf/``, except the proton files beyond the first
    ``IRF_DIR_PROTONS`` showers: ``<output_dir>/irf-protons/``.  ValueError
    for a proton sample beyond them that is not a whole number of files (its
    files in ``irf/`` would hold other showers than the default sample's).
    """
    if n_proton > IRF_DIR_PROTONS and (n_proton % showers_per_file or IRF_DIR_PROTONS % showers_per_file):
        raise ValueError(f"{n_proton} IRF protons: beyond {IRF_DIR_PROTONS} the sample must be a multiple of the "
                         f"showers per file ({showers_per_file}), and {IRF_DIR_PROTONS} too")
    output_dir = Path(output_dir)
    plan = []
    for particle_index, (particle, n) in enumerate((("gamma", n_gamma), ("proton", n_proton))):
        if n <= 0:
            continue
        for chunk, n_showers in enumerate(_showers_per_file(n, showers_per_file)):
            obs_id = 30000 + 1000 * (particle_index + 1) + chunk
            directory = "irf-protons" if particle == "proton" and chunk * showers_per_file >= IRF_DIR_PROTONS else "irf"
            plan.append(DatasetFile(
                path=output_dir / directory / f"{IRF_NAMES[particle]}_irf_obs{obs_id}.dl1.h5",
                particle=particle, n_showers=n_showers, obs_id=obs_id,
                seed=seed * 100003 + obs_id, physics=IRF_PHYSICS[particle],
            ))
    return plan


def default_dataset_plan(output_dir, n_gamma, n_proton, test_fraction, seed, showers_per_file=1000) -> list[DatasetFile]:
    """Files of a production: gamma and proton, training and test, each with its own seed and obs_id.

    Protons pass the trigger and the intensity cut less often than gammas, so
    callers usually throw more protons than gammas to get balanced classes.
    Showers are spread over files of at most ``showers_per_file`` so that a
    process pool can share the work.
    """
    output_dir = Path(output_dir)
    plan = []
    for split_index, (split, fraction) in enumerate((("train", 1 - test_fraction), ("test", test_fraction))):
        for particle_index, (particle, n) in enumerate((("gamma", n_gamma), ("proton", n_proton))):
            n_split = max(int(round(n * fraction)), 1)
            for chunk, n_showers in enumerate(_showers_per_file(n_split, showers_per_file)):
                obs_id = 10000 * (split_index + 1) + 1000 * (particle_index + 1) + chunk
                plan.append(
                    DatasetFile(
                        path=output_dir / split / f"{particle}_{split}_obs{obs_id}.dl1.h5",
                        particle=particle,
                        n_showers=n_showers,
                        obs_id=obs_id,
                        seed=seed * 100003 + obs_id,
                    )
                )
    return plan


def write_toy_file(spec: DatasetFile, physics: ToyPhysics | None = None, overwrite=False) -> int:
    """Simulate ``spec`` (with ``physics``, else its own) and write it; return the number of array events written.

    The file is written under a temporary name and renamed at the end, so an
    interrupted production never leaves a file that looks complete.
    """
    physics = physics or spec.physics
    path = Path(spec.path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (use --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    subarray = lst_subarray()
    partial = path.with_name(f".{path.name}.partial")
    partial.unlink(missing_ok=True)

    provenance = Provenance()
    if provenance.current_activity is None or provenance.current_activity.name == "":
        provenance.start_activity(f"toy-dl1 {path.name}")
    source = ToyEventSource(
        input_url=str(cache_dir() / "lst_subarray.h5"),
        subarray=subarray,
        particle=spec.particle,
        n_showers=spec.n_showers,
        obs_id=spec.obs_id,
        seed=spec.seed,
        physics=physics,
    )
    processor = ImageProcessor(subarray=subarray)
    n_events = 0
    with DataWriter(
        event_source=source,
        output_path=partial,
        overwrite=True,
        write_dl1_images=True,
        write_dl1_parameters=True,
        compression_level=COMPRESSION_LEVEL,
    ) as writer:
        with seeded_timing_fit(spec.seed):  # the file's timing parameters whatever the pool ran before it
            for event in source:
                processor(event)
                writer(event)
                n_events += 1
    os.replace(partial, path)
    # (debug: the pool logs each file with its counts and an ETA)
    log.debug("wrote %s: %d events from %d %s showers", path, n_events, spec.n_showers, spec.particle)
    return n_events


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
