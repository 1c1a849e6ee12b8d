"""A mock observation of the Crab Nebula: observed-like DL1 runs from the toy production.

Each run tracks a wobble position 0.4 deg from the Crab Nebula from CTA
North (``sky``), at times when the Crab is ~70 deg high (the toy's IRF
sample is simulated there).  Its showers arrive at the rates the IRFs
weight their simulations to: gammas from the Crab's spectrum at the source,
protons from the cosmic-ray spectrum within 2.5 deg of the pointing, both
over the thrown ranges of the IRF sample (``dataset.IRF_PHYSICS``), at
Poisson times.  Every shower is rendered for the pointing at its own time,
so the images, the pointing table and the times agree as in a tracking run.

The toy triggers on ~6,900 cosmic-ray protons a second: a full-rate
observation is out of reach of 2 cores.  Protons are thrown at a stated
fraction of their rate (``proton_fraction``, 1 % by default); gammas at the
full rate.  The reflected-regions analysis estimates the background from
the same runs, so the fitted spectrum does not depend on that fraction; the
significance does, and the analysis gives it at the simulated fraction and
scaled to the full rate.

The files carry what ``ctapipe-process`` writes for observed data (no
``/simulation`` and no ``/configuration/simulation``) plus the telescopes'
pointing over time (``/dl0/monitoring/telescope/pointing/tel_NNN``, as
ctapipe's ``PointingInterpolator`` reads it).  The truth of every event
goes to a separate file (``truth/`` next to ``dl1/``).
"""

import dataclasses
import json
import logging
import os
from dataclasses import dataclass
from pathlib import Path

import astropy.units as u
import numpy as np
from astropy.coordinates import AltAz, SkyCoord
from astropy.table import QTable
from astropy.time import Time
from ctapipe.containers import CoordinateFrameType, ObservationBlockContainer, SchedulingBlockContainer
from ctapipe.core import Provenance
from ctapipe.image import ImageProcessor
from ctapipe.instrument import SubarrayDescription
from ctapipe.io import DataWriter, read_table, write_table

from .._compat import seeded_timing_fit
from ..resources import cache_dir
from ..sky import CRAB_NEBULA, CRAB_SPECTRUM, CTA_NORTH, PROTON_SPECTRUM
from .dataset import COMPRESSION_LEVEL, IRF_PHYSICS, lst_subarray
from .showers import PRIMARY_ID, ShowerSample, sample_showers
from .source import ToyEventSource

__all__ = ["MockRun", "expected_thrown_gammas", "mock_observation_plan", "observation_subarray", "read_plan",
           "sample_run",
           "thrown_gamma_energies", "thrown_rate", "write_mock_run", "POINTING_TABLE", "TRUTH_DIR"]

log = logging.getLogger(__name__)

POINTING_TABLE = "/dl0/monitoring/telescope/pointing/tel_{:03d}"
#: the DL1 file attribute recording the run it was written for (the truth file's metadata holds the same)
RUN_ATTRIBUTE = "CTLEARN_MLOPS_MOCK_RUN"
TRUTH_DIR = "truth"
#: the first run starts here: the Crab rises through 67 deg at La Palma; four 7.5-minute runs see it at 67-73 deg
FIRST_RUN_START = Time("2024-01-15T21:30:00", scale="utc")
#: the pointing is sampled this often (ctapipe interpolates between samples)
_POINTING_STEP = 1 * u.s


@dataclass(frozen=True)
class MockRun:
    """One wobble run of the mock observation."""

    path: Path
    obs_id: int
    start: Time
    duration: u.Quantity
    #: position angle (from north through east, ICRS) of the pointing seen from the source
    wobble_angle: u.Quantity
    seed: int
    wobble_offset: u.Quantity = 0.4 * u.deg
    proton_fraction: float = 0.01

    @property
    def pointing(self) -> SkyCoord:
        return CRAB_NEBULA.directional_offset_by(self.wobble_angle, self.wobble_offset)

    def describe(self):
        """What the run's files record of it (their DL1 attribute and truth metadata): kept files must match."""
        return {"obs_id": self.obs_id, "start": self.start.utc.isot, "duration_s": self.duration.to_value(u.s),
                "wobble_angle_deg": self.wobble_angle.to_value(u.deg),
                "wobble_offset_deg": self.wobble_offset.to_value(u.deg), "proton_fraction": self.proton_fraction,
                "seed": self.seed}

    def recorded(self):
        """What its DL1 file and its truth file say they are ((None, None) where missing or unreadable)."""
        import tables

        found = []
        try:
            with tables.open_file(str(self.path), mode="r") as h5:
                found.append(json.loads(h5.root._v_attrs[RUN_ATTRIBUTE]))
        except (OSError, KeyError, ValueError, tables.HDF5ExtError):
            found.append(None)
        try:
            found.append(json.loads(read_table(str(self.truth_path), "/truth").meta["run"]))
        except (OSError, KeyError, ValueError, TypeError):
            found.append(None)
        return tuple(found)

    def is_complete(self):
        """Both files there, written for this run as planned (a run stopped between the two is not)."""
        dl1, truth = self.recorded()
        return dl1 is not None and truth is not None and dl1 == truth and \
            {k: dl1.get(k) for k in self.describe()} == self.describe()

    @property
    def truth_path(self) -> Path:
        return self.path.parent.parent / TRUTH_DIR / self.path.name.replace(".dl1.h5", ".truth.h5")


def mock_observation_plan(output_dir, n_runs=4, run_minutes=7.5, proton_fraction=0.01, seed=1,
                          start=FIRST_RUN_START):
    """Runs one after the other, wobbling through 0, 180, 90, 270 deg around the Crab; obs_id 50001+.

    The runs go to ``<output_dir>/dl1/``, their truth to ``<output_dir>/truth/``.
    """
    output_dir = Path(output_dir)
    duration = run_minutes * u.min
    runs = []
    for index in range(n_runs):
        obs_id = 50001 + index
        runs.append(MockRun(
            path=output_dir / "dl1" / f"crab_wobble_obs{obs_id}.dl1.h5", obs_id=obs_id, start=start + index * duration,
            duration=duration, wobble_angle=(0, 180, 90, 270)[index % 4] * u.deg, seed=seed * 100003 + obs_id,
            proton_fraction=proton_fraction,
        ))
    return runs


def observation_subarray() -> SubarrayDescription:
    """The toy's LSTs at CTA North (the simulated ground height is kept: the IRF sample's)."""
    lst = lst_subarray()
    return SubarrayDescription(name=lst.name, tel_positions=lst.positions, tel_descriptions=lst.tel,
                               reference_location=CTA_NORTH)


def _integral(spectrum, e_min, e_max):
    """Integral of a pyirf power law between two energies."""
    gamma = spectrum.index + 1
    return (spectrum.normalization * spectrum.e_ref / gamma
            * ((e_max / spectrum.e_ref).to_value(u.one) ** gamma - (e_min / spectrum.e_ref).to_value(u.one) ** gamma))


def thrown_rate(particle):
    """Showers per second over the IRF sample's thrown ranges (energy, scatter area, view cone for protons)."""
    physics = IRF_PHYSICS[particle]
    area = np.pi * physics.scatter_radius ** 2
    if particle == "gamma":
        return (_integral(CRAB_SPECTRUM, physics.energy_min, physics.energy_max) * area).to(1 / u.s)
    solid_angle = 2 * np.pi * (1 - np.cos(physics.viewcone)) * u.sr
    return (_integral(PROTON_SPECTRUM, physics.energy_min, physics.energy_max) * area * solid_angle).to(1 / u.s)


def _physics(particle):
    """The IRF sample's physics with the injected spectrum's index."""
    index = CRAB_SPECTRUM.index if particle == "gamma" else PROTON_SPECTRUM.index
    return dataclasses.replace(IRF_PHYSICS[particle], spectral_index=float(index))


def _concatenate(samples, order):
    fields = [f.name for f in dataclasses.fields(ShowerSample) if f.name != "particle"]
    joined = {name: np.concatenate([getattr(s, name) for s in samples])[order] for name in fields}
    return ShowerSample(particle="mixed", **joined)


def sample_run(run, rng):
    """The showers of ``run`` in time order: (ShowerSample, seconds from the run's start, particle of each).

    Poisson counts of gammas and protons at their rates, uniform times; gammas come from the source wherever it
    is at their time, protons from within the view cone around the pointing at theirs.
    """
    seconds = run.duration.to_value(u.s)
    counts = {"gamma": rng.poisson(thrown_rate("gamma").value * seconds),
              "proton": rng.poisson(thrown_rate("proton").value * run.proton_fraction * seconds)}
    offsets = {particle: np.sort(rng.uniform(0, seconds, size=n)) for particle, n in counts.items()}
    samples, times, particles = [], [], []
    for particle, seconds_in in offsets.items():
        frame = AltAz(obstime=run.start + seconds_in * u.s, location=CTA_NORTH)
        pointing = run.pointing.transform_to(frame)
        sample = sample_showers(rng, len(seconds_in), particle, _physics(particle),
                                pointing=(pointing.alt.to(u.deg), pointing.az.to(u.deg)))
        if particle == "gamma":  # from the source itself, wherever it is in the sky at that time
            source = CRAB_NEBULA.transform_to(frame)
            sample = dataclasses.replace(sample, alt=source.alt.to(u.deg),
                                         az=source.az.wrap_at(180 * u.deg).to(u.deg))
        samples.append(sample)
        times.append(seconds_in)
        particles.append(np.full(len(seconds_in), particle))
    seconds_in = np.concatenate(times)
    order = np.argsort(seconds_in, kind="stable")
    return _concatenate(samples, order), seconds_in[order], np.concatenate(particles)[order]


def expected_thrown_gammas(runs, above):
    """The mean number of gammas ``runs`` throw above the energy ``above`` (the injected spectrum, the IRF
    sample's thrown range)."""
    physics = IRF_PHYSICS["gamma"]
    seconds = sum(run.duration.to_value(u.s) for run in runs)
    lower = max(u.Quantity(above, u.TeV), physics.energy_min)
    fraction = _integral(CRAB_SPECTRUM, lower, physics.energy_max) / _integral(CRAB_SPECTRUM, physics.energy_min,
                                                                               physics.energy_max)
    return float(thrown_rate("gamma").value * seconds * fraction.to_value(u.one))


def thrown_gamma_energies(runs):
    """The true energies of every gamma thrown in ``runs`` (triggered or not), drawn again from their seeds."""
    energies = []
    for run in runs:
        showers, _, particles = sample_run(run, np.random.default_rng(run.seed))
        energies.append(showers.energy.to_value(u.TeV)[particles == "gamma"])
    return np.concatenate(energies) * u.TeV


def read_plan(directory):
    """The runs of the mock observation in ``directory``, from its ``mock_observation.json``."""
    directory = Path(directory)
    plan = json.loads((directory / "mock_observation.json").read_text())
    return mock_observation_plan(directory, n_runs=len(plan["runs"]), run_minutes=plan["run_minutes"],
                                 proton_fraction=plan["proton_fraction"], seed=plan["seed"])


class MockRunSource(ToyEventSource):
    """The showers of one run of the mock observation, as an observed run: no simulation truth in its events."""

    def __init__(self, input_url, subarray, run: MockRun, **kwargs):
        self.run = run
        super().__init__(input_url=input_url, subarray=subarray, particle="mixed", n_showers=0, obs_id=run.obs_id,
                         seed=run.seed, physics=IRF_PHYSICS["proton"], **kwargs)

    def _sample_showers(self):
        showers, seconds, self._particle = sample_run(self.run, self.rng)
        self._times = self.run.start.tai + seconds * u.s
        pointing = self.run.pointing.transform_to(AltAz(obstime=self._times, location=CTA_NORTH))
        self._pointing_alt, self._pointing_az = pointing.alt.to(u.deg), pointing.az.wrap_at(360 * u.deg).to(u.deg)
        self.n_showers = len(showers)
        return showers

    def _particles(self):
        return self._particle

    def _shower_pointing(self):
        return self._pointing_alt, self._pointing_az

    def _event_time(self, shower):
        return self._times[shower]

    def _fill_truth(self, event, shower, images):
        event.simulation = None

    @property
    def is_simulation(self):
        return False

    @property
    def simulation_config(self):
        return {}

    @property
    def observation_blocks(self):
        pointing = self.run.pointing
        return {self.obs_id: ObservationBlockContainer(
            obs_id=np.uint64(self.obs_id), sb_id=np.uint64(self.obs_id), producer_id="ctlearn-mlops mock",
            actual_start_time=self.run.start.tai, actual_duration=self.run.duration.to(u.min),
            subarray_pointing_frame=CoordinateFrameType.ICRS,
            subarray_pointing_lon=pointing.ra.to(u.deg), subarray_pointing_lat=pointing.dec.to(u.deg),
        )}

    @property
    def scheduling_blocks(self):
        return {self.obs_id: SchedulingBlockContainer(sb_id=np.uint64(self.obs_id), producer_id="ctlearn-mlops mock")}

    def truth(self, event_ids):
        """The truth of the showers behind ``event_ids`` (event_id = shower + 1)."""
        rows = np.asarray(event_ids, dtype=np.int64) - 1
        s = self.showers
        true = SkyCoord(alt=s.alt[rows], az=s.az[rows],
                        frame=AltAz(obstime=self._times[rows], location=CTA_NORTH)).icrs
        return QTable({
            "obs_id": np.full(len(rows), self.obs_id, dtype=np.int64),
            "event_id": np.asarray(event_ids, dtype=np.int64),
            "time": self._times[rows],
            "true_shower_primary_id": np.array([PRIMARY_ID[p] for p in self._particle[rows]], dtype=np.int64),
            "true_energy": s.energy[rows].to(u.TeV),
            "true_alt": s.alt[rows].to(u.deg), "true_az": s.az[rows].to(u.deg) % (360 * u.deg),
            "true_ra": true.ra.to(u.deg), "true_dec": true.dec.to(u.deg),
            "true_core_x": s.core_x[rows].to(u.m), "true_core_y": s.core_y[rows].to(u.m),
        })

    def pointing_table(self):
        """The pointing of the run sampled every second, as ctapipe's PointingInterpolator reads it."""
        run = self.run
        steps = np.arange(0, run.duration.to_value(u.s) + _POINTING_STEP.to_value(u.s), _POINTING_STEP.to_value(u.s))
        time = run.start.tai + steps * u.s
        pointing = run.pointing.transform_to(AltAz(obstime=time, location=CTA_NORTH))
        return QTable({"time": time, "azimuth": pointing.az.wrap_at(360 * u.deg).to(u.rad),
                       "altitude": pointing.alt.to(u.rad)})


def write_mock_run(run: MockRun, overwrite=False) -> int:
    """Simulate ``run`` and write its DL1 file and its truth file; return the number of events written.

    Both are written under temporary names and renamed at the end, the truth first.
    """
    path = Path(run.path)
    if path.exists() and not overwrite:
        raise FileExistsError(f"{path} exists (use --overwrite to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    run.truth_path.parent.mkdir(parents=True, exist_ok=True)
    subarray = observation_subarray()
    partial = path.with_name(f".{path.name}.partial")
    truth_partial = run.truth_path.with_name(f".{run.truth_path.name}.partial")
    provenance = Provenance()
    if provenance.current_activity is None or provenance.current_activity.name == "":
        provenance.start_activity(f"mock-observation {path.name}")
    source = MockRunSource(input_url=str(cache_dir() / "lst_subarray.h5"), subarray=subarray, run=run)
    processor = ImageProcessor(subarray=subarray)
    event_ids = []
    try:
        with DataWriter(event_source=source, output_path=partial, overwrite=True, write_dl1_images=True,
                        write_dl1_parameters=True, compression_level=COMPRESSION_LEVEL) as writer:
            with seeded_timing_fit(run.seed):  # the run's timing parameters whatever the pool ran before it
                for event in source:
                    processor(event)
                    writer(event)
                    event_ids.append(event.index.event_id)
        pointing = source.pointing_table()
        for tel_id in subarray.tel_ids:
            write_table(pointing, partial, POINTING_TABLE.format(tel_id), overwrite=True)
        record = json.dumps({**run.describe(), "gamma_rate_hz": thrown_rate("gamma").value,
                             "proton_rate_hz": thrown_rate("proton").value, "thrown": source.n_showers})
        truth = source.truth(event_ids)
        truth.meta["run"] = record
        write_table(truth, truth_partial, "/truth", overwrite=True)
        import tables

        with tables.open_file(str(partial), mode="r+") as h5:
            h5.root._v_attrs[RUN_ATTRIBUTE] = record
        # (both files carry the record: a run stopped between the two renames is seen as incomplete)
        os.replace(truth_partial, run.truth_path)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
        truth_partial.unlink(missing_ok=True)
    log.debug("wrote %s: %d events from %d showers", path, len(event_ids), source.n_showers)
    return len(event_ids)
