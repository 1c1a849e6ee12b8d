"""Known-answer tests of the metric functions, and equality with pyirf on the same arrays."""

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable
from pyirf.benchmarks import angular_resolution as pyirf_angular_resolution
from pyirf.benchmarks import energy_bias_resolution as pyirf_energy_bias_resolution

from ctlearn_mlops import metrics

BINS = np.geomspace(0.1, 10, 3) * u.TeV  # two bins


def _energy_events(rng, n=20000, sigmas=(0.1, 0.3), biases=(0.0, 0.2)):
    true = np.concatenate([rng.uniform(0.11, 0.9, n), rng.uniform(1.1, 9, n)]) * u.TeV
    sigma = np.repeat(sigmas, n)
    bias = np.repeat(biases, n)
    reco = true * (1 + bias + rng.normal(0, sigma))
    # one underflow, one overflow and one NaN prediction
    true = np.append(true.value, [0.05, 20, 1.0]) * u.TeV
    reco = np.append(reco.value, [0.05, 20, np.nan]) * u.TeV
    return true, reco


def test_energy_known_gaussian_resolution_and_bias():
    true, reco = _energy_events(np.random.default_rng(0))
    table = metrics.energy_bias_resolution(true, reco, BINS)
    assert list(table["n_events"]) == [20000, 20001]
    np.testing.assert_allclose(table["bias"], [0.0, 0.2], atol=0.01)
    # 68.27% of |N(0, sigma)| lies below sigma
    np.testing.assert_allclose(table["resolution"], [0.1, 0.3], rtol=0.05)


def test_energy_equals_pyirf_on_same_arrays():
    true, reco = _energy_events(np.random.default_rng(1), n=2000)
    ours = metrics.energy_bias_resolution(true, reco, BINS)
    theirs = pyirf_energy_bias_resolution(
        QTable({"true_energy": true, "reco_energy": reco}), BINS, resolution_function=metrics.resolution_after_bias,
    )
    for column in ("n_events", "bias", "resolution"):
        np.testing.assert_array_equal(ours[column], theirs[column])


def test_energy_empty_input_gives_nan_rows():
    table = metrics.energy_bias_resolution([] * u.TeV, [] * u.TeV, BINS)
    assert len(table) == 2 and np.all(np.isnan(table["resolution"])) and list(table["n_events"]) == [0, 0]


def test_overall_resolution_of_a_single_gaussian():
    rng = np.random.default_rng(2)
    true = rng.uniform(0.1, 10, 50000) * u.TeV
    bias, resolution, n = metrics.overall_energy_bias_resolution(true, true * (1.1 + rng.normal(0, 0.25, true.size)))
    assert n == 50000 and bias == pytest.approx(0.1, abs=0.01) and resolution == pytest.approx(0.25, rel=0.03)


@pytest.mark.parametrize("unit", [u.deg, u.rad])
def test_angular_resolution_known_rayleigh_containment(unit):
    rng = np.random.default_rng(3)
    n = 20000
    sigma = np.repeat([0.1, 0.3], n)
    true = np.concatenate([rng.uniform(0.11, 0.9, n), rng.uniform(1.1, 9, n)]) * u.TeV
    theta = (np.hypot(rng.normal(0, sigma), rng.normal(0, sigma)) * u.deg).to(unit)
    table = metrics.angular_resolution(true, theta, BINS)
    # containment radius of a 2D Gaussian: sigma * sqrt(-2 ln(1 - q))
    expected = np.array([0.1, 0.3]) * np.sqrt(-2 * np.log(1 - 0.6826894921370859))
    np.testing.assert_allclose(u.Quantity(table["angular_resolution_68"]).to_value(u.deg), expected, rtol=0.05)
    theirs = pyirf_angular_resolution(QTable({"true_energy": true, "theta": theta.to(u.deg)}), BINS)
    np.testing.assert_allclose(table["angular_resolution_68"].to_value(u.deg), theirs["angular_resolution_68"].to_value(u.deg))
    assert metrics.containment(np.array([np.nan, 1.0, 2.0, 3.0]) * u.deg) == pytest.approx(np.quantile([1, 2, 3], 0.6826894921370859))


def test_classification_known_answers():
    rng = np.random.default_rng(4)
    n = 50000
    is_gamma = np.repeat([True, False], n)
    score = np.concatenate([rng.normal(1, 1, n), rng.normal(-1, 1, n)])
    # AUC of two unit Gaussians 2 sigma apart: Phi(2 / sqrt(2))
    assert metrics.auc(is_gamma, score) == pytest.approx(0.9214, abs=0.005)
    rejection = metrics.background_rejection_at(is_gamma, score, [0.5])
    assert rejection[0.5] == pytest.approx(0.9772, abs=0.005)  # cut at 1 = 2 sigma above the background mean
    assert metrics.auc(is_gamma, np.where(is_gamma, 1.0, 0.0)) == 1.0
    assert np.isnan(metrics.auc(np.ones(5, bool), np.arange(5.0)))
    gamma_eff, background_eff = metrics.roc_curve(is_gamma, score)
    assert gamma_eff[-1] == 1 and background_eff[-1] == 1


def test_auc_per_energy_bin_counts_each_class():
    rng = np.random.default_rng(5)
    true = np.array([0.2] * 100 + [2.0] * 100) * u.TeV
    is_gamma = np.tile([True, False], 100)
    score = np.where(is_gamma, 1.0, 0.0) + np.concatenate([np.zeros(100), rng.normal(0, 10, 100)])
    table = metrics.auc_per_energy_bin(true, is_gamma, score, BINS)
    assert list(table["n_gamma"]) == [50, 50] and list(table["n_background"]) == [50, 50]
    assert table["auc"][0] == 1.0 and 0.3 < table["auc"][1] < 0.8


def test_paired_bootstrap_of_the_same_method_is_exactly_zero():
    values = np.random.default_rng(1).normal(size=300)
    mean = lambda idx: values[idx].mean()  # noqa: E731
    assert metrics.paired_bootstrap_difference(mean, mean, np.arange(300)) == (0.0, 0.0)


def test_paired_bootstrap_known_standard_error_and_whole_groups():
    rng = np.random.default_rng(2)
    first, second = rng.normal(1.0, 1.0, 4000), rng.normal(0.0, 1.0, 4000)
    difference, sd = metrics.paired_bootstrap_difference(
        lambda idx: first[idx].mean(), lambda idx: second[idx].mean(), np.arange(4000), n_resamples=400,
    )
    assert difference == pytest.approx(first.mean() - second.mean())
    assert sd == pytest.approx(np.sqrt(2 / 4000), rel=0.15)  # independent events: sqrt(2 sigma^2 / n)
    # each value repeated in 4 events of one group: 1000 independent groups, twice the standard error
    groups = np.repeat(np.arange(1000), 4)
    first, second = np.repeat(first[:1000], 4), np.repeat(second[:1000], 4)
    _, grouped_sd = metrics.paired_bootstrap_difference(
        lambda idx: first[idx].mean(), lambda idx: second[idx].mean(), groups, n_resamples=400,
    )
    assert grouped_sd == pytest.approx(np.sqrt(2 / 1000), rel=0.15)
