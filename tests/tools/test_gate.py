"""compare_models.py --gate: a new IRF output against a reference, bin by bin."""

import json

import numpy as np
import pytest
from astropy.table import Table

from ctlearn_mlops.exceptions import EXIT_GATE
from ctlearn_mlops.reporting.irf_figures import MIN_GAMMA_EVENTS, MIN_PROTON_EVENTS
from ctlearn_mlops.tools.compare import CompareTool

from ..conftest import run

EDGES = 10 ** np.linspace(-1.5, 1.5, 13)  # TeV: 12 bins, 9 of them centred between 50 GeV and 10 TeV


def _irf_output(directory, cnn, classical=None, gammas=50, protons=40):
    """An IRF output directory as compute_irf.py writes it (its sensitivity.csv; only what the gate reads differs)."""
    directory.mkdir(parents=True)
    rows = []
    for label, values in (("CNN", cnn), ("classical", classical if classical is not None else cnn)):
        for low, high, value, n_gamma, n_proton in zip(EDGES[:-1], EDGES[1:], values,
                                                       np.broadcast_to(gammas, len(values)),
                                                       np.broadcast_to(protons, len(values))):
            rows.append({"reconstruction": label, "reco_energy_low_tev": low, "reco_energy_high_tev": high,
                         "n_gamma_events": int(n_gamma), "n_gamma_weighted": float(n_gamma),
                         "n_proton_events_in_ring": int(n_proton), "n_background_on_weighted": 1.0,
                         "significance": 5.0, "relative_sensitivity": value,
                         "flux_sensitivity_per_tev_cm2_s": value * 1e-11, "e2_flux_sensitivity_erg_per_cm2_s": value,
                         "theta_cut_deg": 0.2, "gh_cut": 0.5})
    Table(rows=rows).write(directory / "sensitivity.csv", format="ascii.csv")
    return directory


def _gate(tmp_path, new, reference, *extra):
    argv = ["--irf", new, "--irf", reference, "--gate", "--name", f"gate-{new.name}", "--reports-root",
            tmp_path / "reports", *extra]
    return run(CompareTool(), argv, cwd=tmp_path)


REFERENCE = np.linspace(0.5, 0.05, 12)


def test_an_identical_or_better_output_passes_the_gate(tmp_path):
    reference = _irf_output(tmp_path / "reference", REFERENCE)
    same = _irf_output(tmp_path / "same", REFERENCE)
    # better, with fewer protons left in the background region than a counted bin needs: still better
    better = _irf_output(tmp_path / "better", REFERENCE * 0.8, protons=MIN_PROTON_EVENTS - 5)
    assert _gate(tmp_path, same, reference) == 0
    assert _gate(tmp_path, better, reference) == 0
    metrics = json.loads((tmp_path / "reports" / "compare" / "gate-better" / "metrics.json").read_text())
    assert metrics["gate"]["verdict"].startswith("gate passed") and len(metrics["gate"]["bins"]) == 9


def test_a_worse_output_fails_the_gate_naming_its_bins(tmp_path, capfd):
    reference = _irf_output(tmp_path / "reference", REFERENCE)
    worse = REFERENCE.copy()
    worse[4] *= 1.5  # a bin well inside the compared range
    worse[6] *= 1.05  # within the 10 % tolerance
    gammas = np.full(12, 50)
    gammas[7] = MIN_GAMMA_EVENTS - 1  # no longer counted: its sensitivity is lost
    new = _irf_output(tmp_path / "worse", worse, gammas=gammas)
    capfd.readouterr()
    assert _gate(tmp_path, new, reference) == EXIT_GATE
    err = capfd.readouterr().err
    assert "gate failed" in err and "in 2 of 9 bins" in err, err[-2000:]
    assert f"{EDGES[4]:.3g}-{EDGES[5]:.3g} TeV (1.50x)" in err and f"{EDGES[7]:.3g}-{EDGES[8]:.3g} TeV (not measured)" in err
    # the comparison is written all the same, with the gate in it
    metrics = json.loads((tmp_path / "reports" / "compare" / "gate-worse" / "metrics.json").read_text())
    assert [b["failed"] for b in metrics["gate"]["bins"]].count(True) == 2
    # a looser tolerance lets the 1.5x bin pass
    assert _gate(tmp_path, new, reference, "--gate-tolerance", "0.6", "--overwrite") == EXIT_GATE
    assert "in 1 of 9 bins" in capfd.readouterr().err


def test_the_gate_is_refused_without_two_outputs_or_without_the_reconstruction(tmp_path, capfd):
    reference = _irf_output(tmp_path / "reference", REFERENCE)
    assert run(CompareTool(), ["--irf", reference, "--gate", "--reports-root", tmp_path / "r"], cwd=tmp_path) == 2
    assert "--gate compares two IRF outputs" in capfd.readouterr().err
    assert _gate(tmp_path, reference, reference, "--gate-reconstruction", "CNN stereo") == 2
    assert "no reconstruction 'CNN stereo'" in capfd.readouterr().err
    sparse = _irf_output(tmp_path / "sparse", REFERENCE, protons=MIN_PROTON_EVENTS - 1)
    assert _gate(tmp_path, reference, sparse) == 2
    assert "no counted bin" in capfd.readouterr().err
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("tolerance", ["-0.1", "x"])
def test_a_bad_tolerance_is_refused(tmp_path, tolerance):
    reference = _irf_output(tmp_path / "reference", REFERENCE)
    assert _gate(tmp_path, reference, reference, "--gate-tolerance", tolerance) == 2
