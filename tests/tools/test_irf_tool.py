"""compute_irf.py end to end on the toy IRF sample, and the event files it refuses."""

import json
import re
import shutil

import astropy.units as u
import numpy as np
import pytest
import tables
from astropy.io import fits
from astropy.table import Table
from ctapipe.io import read_table

from ctlearn_mlops.tools.compare import CompareTool
from ctlearn_mlops.tools.events import EventDL2Tool
from ctlearn_mlops.tools.irf import IRFTool

from ..conftest import V6_FIXTURE, run, write_event_file

pytestmark = pytest.mark.slow

# what pyirf's GADF writers produce, with the units the format prescribes
GADF = {
    "EFFECTIVE AREA": {"EFFAREA": u.m**2, "ENERG_LO": u.TeV, "THETA_LO": u.deg},
    "ENERGY DISPERSION": {"MATRIX": u.one, "MIGRA_LO": u.one, "ENERG_LO": u.TeV},
    "PSF": {"RPSF": u.sr**-1, "RAD_LO": u.deg},
    "BACKGROUND": {"BKG": u.Unit("1 / (MeV s sr)"), "ENERG_LO": u.TeV},
}


def test_compute_irf_writes_gadf_sensitivity_metrics_and_report(event_file, tmp_path, monkeypatch):
    from ctlearn_mlops.reporting import irf_figures

    # the toy sample has tens of gammas per bin of true energy: judge the coverage on bins of 10
    monkeypatch.setattr(irf_figures, "MIN_COVERAGE_EVENTS", 10)
    assert run(IRFTool(), ["--input", event_file, "--name", "toy", "--reports-root", tmp_path], cwd=tmp_path) == 0
    out = tmp_path / "irf" / "toy"
    assert {p.name for p in out.iterdir()} >= {"irf.fits.gz", "irf_cnn.fits.gz", "irf_classical.fits.gz",
                                              "sensitivity.csv", "metrics.json", "report.html"}
    with fits.open(out / "irf.fits.gz") as hdus:
        for name, columns in GADF.items():
            assert name in hdus, name
            header = hdus[name].header
            assert header["HDUCLASS"] == "GADF" and header["HDUDOC"]
            for column, unit in columns.items():
                assert u.Unit(hdus[name].columns[column].unit or "") == unit, (name, column)
    # gammapy's reader takes the file as it takes any GADF IRF file
    from gammapy.irf import load_irf_dict_from_file

    irfs = load_irf_dict_from_file(out / "irf.fits.gz")
    assert set(irfs) == {"aeff", "edisp", "psf", "bkg", "rad_max"}
    assert irfs["aeff"].unit == u.m**2 and irfs["aeff"].axes.names == ["energy_true", "offset"]
    sensitivity = Table.read(out / "sensitivity.csv", format="ascii.csv")
    assert {"CNN", "classical"} <= set(np.unique(np.asarray(sensitivity["reconstruction"]).astype(str)))
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["reconstructions"]) >= {"CNN", "CNN, mean direction", "classical"}
    assert metrics["options"]["gamma_efficiency"] == 0.7
    # the CNN pipeline's direction is the axis fit, the mean of the telescopes a diagnostic beside it
    assert metrics["reconstructions"]["CNN"]["geometry"] == "CTLearnAxisFit"
    assert metrics["reconstructions"]["CNN, mean direction"]["geometry"] == "CTLearn"
    # the array-level resolutions against the classical pipeline, bin by bin
    angular = metrics["resolution"]["CNN"]["angular_resolution_68_deg"]
    for b in angular["bins"]:
        assert b["ratio"] == pytest.approx(b["network"] / b["classical"]) and 0.1 <= b["true_energy_high_tev"]
    assert angular["fraction_at_or_below"] is None or 0 <= angular["fraction_at_or_below"] <= 1
    # the axis fit states a 68 % radius: its coverage is measured, reported and written
    coverage = metrics["direction_coverage"]["CNN"]
    assert 0 <= coverage["within_tolerance"] <= coverage["n_bins"] == len(coverage["bins"]) and coverage["n_bins"] >= 1
    assert all(0 <= b["coverage"] <= 1 and b["n_events"] >= 10 for b in coverage["bins"])
    assert "Coverage of the stated 68 % direction radius, CNN" in (out / "report.html").read_text()
    # so does the CNN's energy (the classical energy_uncert is the telescopes' spread: no coverage)
    energy = metrics["energy_coverage"]
    assert set(energy) == {"CNN"} and energy["CNN"]["n_bins"] >= 1
    assert all(0 <= b["coverage"] <= 1 and b["n_events"] >= 10 for b in energy["CNN"]["bins"])
    assert "Coverage of the stated 68 % energy interval, CNN" in (out / "report.html").read_text()
    assert not list(tmp_path.glob("irf/.*"))  # no temporary directory left


def _without(source, node, tmp_path):
    target = tmp_path / source.name
    shutil.copy(source, target)
    with tables.open_file(target, "a") as h5:
        h5.remove_node(node, recursive=True)
    return target


def _renumbered(source, target, obs_ids):
    """A copy of a ctapipe file with its obs_ids renumbered ({old: new}) in every table."""
    shutil.copy(source, target)
    with tables.open_file(target, "a") as h5:
        for node in h5.walk_nodes("/", classname="Table"):
            if "obs_id" in node.colnames and node.nrows:
                column = node.col("obs_id")
                node.modify_column(column=np.array([obs_ids.get(int(i), int(i)) for i in column], column.dtype),
                                   colname="obs_id")
    return target


@pytest.fixture(scope="module")
def particle_files(trained_runs, irf_sample, tmp_path_factory):
    """Event files of the gammas and of the protons, as a real production numbers them: the same obs_ids."""
    out = tmp_path_factory.mktemp("particles")
    gamma_dl1 = sorted(irf_sample.glob("gamma_*.dl1.h5"))
    gamma_ids = sorted({int(i) for path in gamma_dl1 for i in read_table(path, "/configuration/simulation/run")["obs_id"]})
    proton_dl1 = [_renumbered(path, out / path.name, {int(read_table(path, "/configuration/simulation/run")["obs_id"][0]):
                                                      gamma_ids[0]} if k == 0 else {})
                  for k, path in enumerate(sorted(irf_sample.glob("proton_*.dl1.h5")))]
    thrown = {name: sum(int(row["n_showers"]) * int(row["shower_reuse"]) for path in files
                        for row in read_table(path, "/configuration/simulation/run"))
              for name, files in (("gamma", gamma_dl1), ("proton", proton_dl1))}
    return (write_event_file(trained_runs, gamma_dl1, out / "gammas.dl2.h5"),
            write_event_file(trained_runs, proton_dl1, out / "protons.dl2.h5"), proton_dl1, thrown)


def _thrown(irf_dir, particle):
    """The thrown showers compute_irf.py took for a particle (from metrics.json)."""
    metrics = json.loads((irf_dir / "metrics.json").read_text())
    return int(re.search(r"n_showers=(\d+)", metrics["simulation"][particle]).group(1))


def test_separate_particle_files_sharing_obs_ids(trained_runs, particle_files, irf_sample, tmp_path, capfd):
    gammas, protons, proton_dl1, thrown = particle_files
    # one event file of both: refused before any prediction, naming both files and the way out
    capfd.readouterr()
    inputs = [*sorted(irf_sample.glob("gamma_*.dl1.h5")), proton_dl1[0]]
    argv = [arg for path in inputs for arg in ("--input", path)] + ["--output", tmp_path / "both.dl2.h5"]
    argv += ["--run", f"type={trained_runs['type'][1]}"]
    assert run(EventDL2Tool(), argv, cwd=tmp_path) == 2
    err = capfd.readouterr().err
    assert "both hold obs_id" in err and str(proton_dl1[0]) in err and "one per particle" in err, err[-2000:]
    assert not list(tmp_path.glob("*both*")) and not list(tmp_path.glob(".*both*"))
    # the two files together: each particle's runs from its own file, every run counted once
    reports = tmp_path / "reports"
    argv = ["--input", gammas, "--input", protons, "--name", "shared", "--reports-root", reports]
    assert run(IRFTool(), argv, cwd=tmp_path) == 0
    assert _thrown(reports / "irf" / "shared", "gamma") == thrown["gamma"]
    assert _thrown(reports / "irf" / "shared", "proton") == thrown["proton"]
    # a proton run none of whose showers triggered still threw its showers
    quiet = tmp_path / "protons_quiet.dl2.h5"
    shutil.copy(protons, quiet)
    with tables.open_file(quiet, "a") as h5:
        table = h5.get_node("/configuration/simulation/run")
        row = table.read(0, 1)
        row["obs_id"] = 99999
        table.append(row)
    argv = ["--input", gammas, "--input", quiet, "--name", "quiet", "--reports-root", reports]
    assert run(IRFTool(), argv, cwd=tmp_path) == 0
    assert _thrown(reports / "irf" / "quiet", "proton") == thrown["proton"] + int(row["n_showers"][0]) * int(
        row["shower_reuse"][0])
    # the two IRF outputs' sensitivity curves in one comparison
    argv = ["--irf", reports / "irf" / "shared", "--irf", reports / "irf" / "quiet", "--name", "overlay",
            "--reports-root", reports]
    assert run(CompareTool(), argv, cwd=tmp_path) == 0
    summary = Table.read(reports / "compare" / "overlay" / "summary.csv", format="ascii.csv")
    assert len(summary) >= 4 and (reports / "compare" / "overlay" / "report.html").exists()
    # a reports root that cannot be written is refused before the IRFs are computed
    (tmp_path / "a file").write_text("")
    argv = ["--input", gammas, "--input", protons, "--reports-root", tmp_path / "a file" / "reports"]
    assert run(IRFTool(), argv, cwd=tmp_path) == 2
    assert "is not a directory" in capfd.readouterr().err
    # the same file twice would count its showers twice
    argv = ["--input", gammas, "--input", protons, "--input", protons, "--name", "twice", "--reports-root", reports]
    assert run(IRFTool(), argv, cwd=tmp_path) == 2
    assert "given twice" in capfd.readouterr().err


@pytest.mark.parametrize("case", ["no protons", "no simulation table", "no CNN direction", "a DL1 file"])
def test_event_files_without_what_irfs_need_are_refused(case, trained_runs, particle_files, event_file, toy_data,
                                                        tmp_path, capfd):
    if case == "a DL1 file":
        path = sorted((toy_data / "test").glob("*.h5"))[0]
        expected = "is not an event DL2 file"
    elif case == "no protons":
        path = particle_files[0]
        expected = "no protons in"
    elif case == "no simulation table":
        path = _without(event_file, "/configuration/simulation/run", tmp_path)
        expected = "has no simulation configuration"
    else:
        # neither the mean of the telescopes nor the axis fit
        path = _without(event_file, "/dl2/event/subarray/geometry/CTLearn", tmp_path)
        with tables.open_file(path, "a") as h5:
            h5.remove_node("/dl2/event/subarray/geometry/CTLearnAxisFit", recursive=True)
        expected = "lacks the CNN reconstruction (geometry/CTLearn"
    capfd.readouterr()
    reports = tmp_path / "reports"
    assert run(IRFTool(), ["--input", path, "--name", "refused", "--reports-root", reports], cwd=tmp_path) == 2
    err = capfd.readouterr().err
    assert expected in err and str(path) in err, err[-2000:]
    assert "Traceback" not in err
    assert not reports.exists()


def test_gammas_of_data_model_v6_go_through_event_dl2_and_irfs(trained_runs, particle_files, tmp_path):
    """Real LST gammas written by ctapipe 0.23 (data model v6) with the toy protons: the runs predict them, the
    classical reconstruction runs on them, and their simulation gives the gammas' thrown showers."""
    v6 = write_event_file(trained_runs, [V6_FIXTURE], tmp_path / "v6_gammas.dl2.h5")
    runs = read_table(V6_FIXTURE, "/configuration/simulation/run")
    reports = tmp_path / "reports"
    argv = ["--input", v6, "--input", particle_files[1], "--name", "v6", "--reports-root", reports]
    assert run(IRFTool(), argv, cwd=tmp_path) == 0
    assert _thrown(reports / "irf" / "v6", "gamma") == int(runs["n_showers"][0]) * int(runs["shower_reuse"][0])
    metrics = json.loads((reports / "irf" / "v6" / "metrics.json").read_text())
    assert {"CNN", "classical"} <= set(metrics["reconstructions"])
