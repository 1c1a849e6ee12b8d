"""The observation path end to end: a mock Crab observation, its event DL2, DL3 and gammapy's analysis."""

import json
import shutil

import astropy.units as u
import numpy as np
import pytest
import tables
from astropy.coordinates import AltAz, SkyCoord
from astropy.io import fits
from astropy.table import join, vstack
from ctapipe.io import read_table

from ctlearn_mlops.io import dl2
from ctlearn_mlops.sky import CRAB_NEBULA, CTA_NORTH
from ctlearn_mlops.tools.analyse_dl3 import AnalyseDL3Tool
from ctlearn_mlops.tools.dl3 import DL3Tool
from ctlearn_mlops.tools.events import EventDL2Tool
from ctlearn_mlops.tools.irf import IRFTool
from ctlearn_mlops.tools.mock_observation import MockObservationTool

from ..conftest import run, write_event_file

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def mock(tmp_path_factory):
    """Two 40-second wobble runs of the mock Crab observation."""
    out = tmp_path_factory.mktemp("mock")
    assert run(MockObservationTool(), ["--output-dir", out, "--n-runs", 2, "--run-minutes", 0.67, "--seed", 4],
               cwd=out) == 0
    return out


@pytest.fixture(scope="module")
def observed_dl2(trained_runs, mock):
    return write_event_file(trained_runs, [mock / "dl1"], mock / "mock.dl2.h5")


@pytest.fixture(scope="module")
def irf_dir(event_file, tmp_path_factory):
    root = tmp_path_factory.mktemp("irfs")
    assert run(IRFTool(), ["--input", event_file, "--name", "toy", "--reports-root", root], cwd=root) == 0
    return root / "irf" / "toy"


@pytest.fixture(scope="module")
def dl3_dir(observed_dl2, irf_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("dl3") / "mock"
    assert run(DL3Tool(), ["--input", observed_dl2, "--irf", irf_dir, "--output-dir", out], cwd=out.parent) == 0
    return out


def _truth(mock):
    return vstack([read_table(p, "/truth") for p in sorted((mock / "truth").glob("*.truth.h5"))])


def test_mock_runs_are_observed_wobble_runs_of_the_crab(mock):
    files = sorted((mock / "dl1").glob("*.dl1.h5"))
    assert len(files) == 2
    truth = _truth(mock)
    for path in files:
        with tables.open_file(path) as h5:
            assert h5.root._v_attrs["CTA PROCESS TYPE"] == "Observation"
            assert "/simulation" not in h5 and "/configuration/simulation" not in h5
            tel_ids = sorted(int(n.removeprefix("tel_")) for n in h5.root.dl1.event.telescope.parameters._v_children)
        trigger = read_table(path, "/dl1/event/subarray/trigger")
        assert np.all(np.diff(trigger["time"].mjd) >= 0) and np.all(np.diff(trigger["event_id"]) > 0)
        pointing = read_table(path, f"/dl0/monitoring/telescope/pointing/tel_{tel_ids[0]:03d}")
        # the pointing tracks one position 0.4 deg from the Crab through the run
        tracked = SkyCoord(alt=pointing["altitude"], az=pointing["azimuth"],
                           frame=AltAz(obstime=pointing["time"], location=CTA_NORTH)).icrs
        assert np.allclose(tracked.separation(CRAB_NEBULA).deg, 0.4, atol=1e-3)
        assert tracked.separation(tracked[0]).deg.max() < 1e-3
        assert pointing["altitude"].quantity.to_value(u.deg).min() > 60  # the Crab is up, where the IRF sample was simulated
        here = truth[truth["obs_id"] == trigger["obs_id"][0]]
        assert len(here) == len(trigger) and np.array_equal(here["event_id"], trigger["event_id"])
    # both particles, gammas from the Crab itself
    gammas = truth[truth["true_shower_primary_id"] == 0]
    assert 0 < len(gammas) < len(truth)
    sky = SkyCoord(ra=gammas["true_ra"], dec=gammas["true_dec"])
    assert sky.separation(CRAB_NEBULA).deg.max() < 1e-6
    assert json.loads((mock / "mock_observation.json").read_text())["proton_fraction"] == 0.01


def test_observed_runs_get_event_dl2_with_times_and_sky_directions(observed_dl2, mock):
    events = dl2.read_subarray_events(observed_dl2)
    assert "time" in events.colnames and not any(c.startswith("true_") for c in events.colnames)
    with tables.open_file(observed_dl2) as h5:
        assert "/simulation" not in h5 and dl2.RUN_PARTICLE_TABLE not in h5
    subarray = dl2.read_subarray(observed_dl2)
    for prefix in dl2.prefixes_in(observed_dl2, "geometry"):
        valid = np.asarray(events[f"{prefix}_is_valid"], dtype=bool)
        assert valid.any(), prefix
        sky = SkyCoord(ra=events[f"{prefix}_ra"][valid], dec=events[f"{prefix}_dec"][valid])
        # the same direction as the file's AltAz at each event's time, from the array's site
        altaz = SkyCoord(alt=events[f"{prefix}_alt"][valid], az=events[f"{prefix}_az"][valid],
                         frame=AltAz(obstime=events["time"][valid], location=subarray.reference_location))
        assert altaz.separation(sky.transform_to(altaz.frame)).deg.max() < 1e-6, prefix
        assert np.isnan(np.asarray(events[f"{prefix}_ra"][~valid])).all(), prefix
    # ctapipe's HillasReconstructor puts the gammas of the mock where they came from
    rows = join(events, _truth(mock), keys=["obs_id", "event_id"])
    gamma = (rows["true_shower_primary_id"] == 0) & np.asarray(rows["HillasReconstructor_is_valid"], dtype=bool)
    sky = SkyCoord(ra=rows["HillasReconstructor_ra"][gamma], dec=rows["HillasReconstructor_dec"][gamma])
    assert np.median(sky.separation(CRAB_NEBULA).deg) < 0.3


def test_dl3_opens_in_gammapy_and_the_chain_fits_a_spectrum(dl3_dir, observed_dl2, irf_dir, tmp_path):
    from gammapy.data import DataStore

    assert sorted(p.name for p in dl3_dir.iterdir()) == ["classical", "cnn"]
    for reconstruction in ("cnn", "classical"):
        store = DataStore.from_dir(dl3_dir / reconstruction)
        observations = store.get_observations(required_irf="point-like")
        assert sorted(observations.ids) == ["50001", "50002"]
        for observation in observations:
            assert observation.rad_max is not None and observation.aeff is not None
            assert observation.get_pointing_icrs(observation.tmid).separation(CRAB_NEBULA).deg == \
                pytest.approx(0.4, abs=1e-3)
            assert observation.gti.time_sum.to_value(u.s) == pytest.approx(40, abs=2)
        with fits.open(dl3_dir / reconstruction / "dl3_obs50001.fits.gz") as hdus:
            events = hdus["EVENTS"].data
            assert {"EVENT_ID", "TIME", "RA", "DEC", "ENERGY", "GAMMANESS", "MULTIP"} <= set(events.names)
            # every event passed the gammaness cut of its energy bin in the IRFs
            with fits.open(irf_dir / f"irf_{reconstruction}.fits.gz") as irf:
                cuts = irf["GH_CUTS"].data
            bins = np.searchsorted(cuts["high"], events["ENERGY"])
            assert np.all(events["GAMMANESS"] >= cuts["cut"][bins])
    out = tmp_path / "reports"
    assert run(AnalyseDL3Tool(), ["--input", dl3_dir, "--reports-root", out, "--background-fraction", 0.01],
               cwd=tmp_path) == 0
    metrics = json.loads((out / "dl3" / "mock" / "metrics.json").read_text())
    # (the tiny networks' energies are too poor for a converged fit: the classical one's is asked to converge)
    assert metrics["reconstructions"]["classical"]["fit_success"]
    for label in ("CNN", "classical"):
        result = metrics["reconstructions"][label]
        assert result["n_on"] > result["alpha"] * result["n_off"]
        assert np.isfinite(result["index_error"]) and result["index_error"] > 0
        assert np.isfinite(result["amplitude_1tev_error"]) and result["amplitude_1tev_error"] > 0
        assert result["significance_per_sqrt_hour_full_background"] <= result["significance_per_sqrt_hour"] + 1e-9
        # the counts per energy bin are the ones the totals count, and the Crab's prediction goes through the IRFs
        per_bin = result["counts_per_bin"]
        assert sum(b["n_on"] for b in per_bin) == result["n_on"]
        assert all(b["energy_min"] < b["energy_max"] for b in per_bin)
        assert sum(b["npred_reference"] for b in per_bin) > 0
    assert {"report.html", "spectrum.png", "theta2.png", "sed_cnn.ecsv"} <= {p.name for p in
                                                                             (out / "dl3" / "mock").iterdir()}


def _refused(tool, argv, cwd, capfd, *phrases):
    assert run(tool, argv, cwd=cwd) == 2
    err = capfd.readouterr().err
    for phrase in phrases:
        assert phrase in err, err[-2000:]
    assert "Traceback" not in err
    return err


def test_bad_observation_inputs_are_refused_naming_file_and_problem(trained_runs, toy_data, mock, observed_dl2,
                                                                      event_file, irf_dir, dl3_dir, tmp_path, capfd):
    runs = [arg for task, role in (("type", "type"), ("energy", "energy"), ("skydirection", "geometry"))
            for arg in ("--run", f"{role}={trained_runs[task][1]}")]
    observed = sorted((mock / "dl1").glob("*.dl1.h5"))[0]
    # observed and simulated runs in one event file
    simulated = sorted((toy_data / "test").glob("*.dl1.h5"))
    _refused(EventDL2Tool(), [*runs, "--input", observed, "--input", simulated[0], "--output", tmp_path / "x.h5"],
             tmp_path, capfd, str(observed), "observed run", "simulation")
    # an observed run without its telescopes' pointing
    no_pointing = tmp_path / observed.name
    shutil.copy(observed, no_pointing)
    with tables.open_file(no_pointing, "a") as h5:
        h5.remove_node("/dl0/monitoring/telescope/pointing", recursive=True)
    _refused(EventDL2Tool(), [*runs, "--input", no_pointing, "--output", tmp_path / "x.h5"], tmp_path, capfd,
             str(no_pointing), "without the pointing")
    assert not (tmp_path / "x.h5").exists()
    # DL3 of simulations, of a file without the IRFs' reconstruction, with IRFs of other runs; an existing output
    _refused(DL3Tool(), ["--input", event_file, "--irf", irf_dir, "--output-dir", tmp_path / "d"], tmp_path, capfd,
             str(event_file), "holds simulations")
    lacking = tmp_path / "lacking.dl2.h5"
    shutil.copy(observed_dl2, lacking)
    with tables.open_file(lacking, "a") as h5:
        h5.remove_node(dl2.subarray_table_path("geometry", dl2.AXIS_FIT_PREFIX))
    _refused(DL3Tool(), ["--input", lacking, "--irf", irf_dir, "--output-dir", tmp_path / "d"], tmp_path, capfd,
             str(lacking), "lacks the reconstruction", dl2.AXIS_FIT_PREFIX)
    other = tmp_path / "other-irf"
    shutil.copytree(irf_dir, other)
    metrics = json.loads((other / "metrics.json").read_text())
    for key, recorded in metrics["made_with"].items():
        if key.startswith("geometry/"):
            recorded["telescopes"] = [1, 2]
    (other / "metrics.json").write_text(json.dumps(metrics))
    _refused(DL3Tool(), ["--input", observed_dl2, "--irf", other, "--output-dir", tmp_path / "d"], tmp_path, capfd,
             str(observed_dl2), "telescopes [1, 2, 3, 4] here, [1, 2] for the IRFs")
    assert not (tmp_path / "d").exists()
    before = sorted(p.name for p in (dl3_dir / "cnn").iterdir())
    _refused(DL3Tool(), ["--input", observed_dl2, "--irf", irf_dir, "--output-dir", dl3_dir], tmp_path, capfd,
             str(dl3_dir), "exists")
    assert sorted(p.name for p in (dl3_dir / "cnn").iterdir()) == before
    _refused(AnalyseDL3Tool(), ["--input", mock, "--reports-root", tmp_path], tmp_path, capfd, str(mock),
             "no DL3 set")
    _refused(AnalyseDL3Tool(), ["--input", dl3_dir, "--name", "../../escape", "--reports-root", tmp_path], tmp_path,
             capfd, "key '--name': invalid name")
    # a damaged DL3 file (gammapy reads lazily and would give None for its IRF in the middle of the analysis)
    damaged = tmp_path / "damaged-dl3"
    shutil.copytree(dl3_dir, damaged)
    victim = sorted((damaged / "cnn").glob("*obs*.fits*"))[0]
    victim.write_bytes(victim.read_bytes()[:3000])
    _refused(AnalyseDL3Tool(), ["--input", damaged, "--reports-root", tmp_path], tmp_path, capfd, victim.name,
             "cannot be read")
    assert not (tmp_path / "dl3").exists()
    # the mock observation keeps runs of its plan and refuses to mix another into them
    before = {p.name: p.stat().st_mtime_ns for p in (mock / "dl1").iterdir()}
    assert run(MockObservationTool(), ["--output-dir", mock, "--n-runs", 2, "--run-minutes", 0.67, "--seed", 4],
               cwd=tmp_path) == 0
    _refused(MockObservationTool(), ["--output-dir", mock, "--n-runs", 2, "--run-minutes", 0.67, "--seed", 5],
             tmp_path, capfd, "crab_wobble_obs50001.dl1.h5", "another plan")
    assert {p.name: p.stat().st_mtime_ns for p in (mock / "dl1").iterdir()} == before
    assert json.loads((mock / "mock_observation.json").read_text())["seed"] == 4
