"""compute_irf.py end to end on the toy IRF sample, and the event files it refuses."""

import json
import shutil

import astropy.units as u
import numpy as np
import pytest
import tables
from astropy.io import fits
from astropy.table import Table

from ctlearn_mlops.tools.events import EventDL2Tool
from ctlearn_mlops.tools.irf import IRFTool

from ..conftest import run

pytestmark = pytest.mark.slow

# what pyirf's GADF writers produce, with the units the format prescribes
GADF = {
    "EFFECTIVE AREA": {"EFFAREA": u.m**2, "ENERG_LO": u.TeV, "THETA_LO": u.deg},
    "ENERGY DISPERSION": {"MATRIX": u.one, "MIGRA_LO": u.one, "ENERG_LO": u.TeV},
    "PSF": {"RPSF": u.sr**-1, "RAD_LO": u.deg},
    "BACKGROUND": {"BKG": u.Unit("1 / (MeV s sr)"), "ENERG_LO": u.TeV},
}


@pytest.fixture(scope="module")
def irf_sample(tmp_path_factory):
    """Point-like gammas and diffuse protons, as make_default_dataset.py writes to irf/ (smaller)."""
    from ctlearn_mlops.toysim.dataset import irf_dataset_plan, write_toy_file

    out = tmp_path_factory.mktemp("irfsample")
    for spec in irf_dataset_plan(out, n_gamma=600, n_proton=2400, seed=5, showers_per_file=1200):
        write_toy_file(spec)
    return out / "irf"


def _events(trained_runs, inputs, output, roles=("type", "energy", "skydirection")):
    role_of = {"type": "type", "energy": "energy", "skydirection": "geometry"}
    argv = [arg for task in roles for arg in ("--run", f"{role_of[task]}={trained_runs[task][1]}")]
    argv += [arg for path in inputs for arg in ("--input", path)] + ["--output", output]
    assert run(EventDL2Tool(), argv, cwd=output.parent) == 0
    return output


@pytest.fixture(scope="module")
def event_file(trained_runs, irf_sample, tmp_path_factory):
    return _events(trained_runs, [irf_sample], tmp_path_factory.mktemp("irfevents") / "irf.dl2.h5")


def test_compute_irf_writes_gadf_sensitivity_metrics_and_report(event_file, tmp_path):
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
    assert set(metrics["reconstructions"]) >= {"CNN", "classical"} and metrics["options"]["gamma_efficiency"] == 0.7
    assert not list(tmp_path.glob("irf/.*"))  # no temporary directory left


def _without(source, node, tmp_path):
    target = tmp_path / source.name
    shutil.copy(source, target)
    with tables.open_file(target, "a") as h5:
        h5.remove_node(node, recursive=True)
    return target


@pytest.mark.parametrize("case", ["no protons", "no simulation table", "no CNN direction"])
def test_event_files_without_what_irfs_need_are_refused(case, trained_runs, irf_sample, event_file, tmp_path, capfd):
    if case == "no protons":
        path = _events(trained_runs, sorted(irf_sample.glob("gamma_*.dl1.h5")), tmp_path / "gammas.dl2.h5")
        expected = "no protons in"
    elif case == "no simulation table":
        path = _without(event_file, "/configuration/simulation/run", tmp_path)
        expected = "has no simulation configuration"
    else:
        path = _without(event_file, "/dl2/event/subarray/geometry/CTLearn", tmp_path)
        expected = "lacks the CNN reconstruction (geometry/CTLearn"
    capfd.readouterr()
    reports = tmp_path / "reports"
    assert run(IRFTool(), ["--input", path, "--name", "refused", "--reports-root", reports], cwd=tmp_path) == 2
    err = capfd.readouterr().err
    assert expected in err and str(path) in err, err[-2000:]
    assert "Traceback" not in err
    assert not reports.exists()
    if case == "no protons":
        # with a file of protons next to it, the gammas are welcome: the inputs count together
        protons = _events(trained_runs, sorted(irf_sample.glob("proton_*.dl1.h5")), tmp_path / "protons.dl2.h5")
        argv = ["--input", path, "--input", protons, "--name", "together", "--reports-root", reports]
        assert run(IRFTool(), argv, cwd=tmp_path) == 0
        assert (reports / "irf" / "together" / "sensitivity.csv").exists()
