"""Known-answer tests of the classical baselines on tables whose answer is built in."""

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable, vstack

from ctlearn_mlops import metrics
from ctlearn_mlops.physics import baselines

POINTING_ALT, POINTING_AZ = 70.0, 0.0


def _images(rng, n=3000, xi=2.0):
    """Gamma images whose source lies at xi (1 - width/length) along the axis, on the side the time gradient says.

    The skewness carries no head-tail information; the intensity fixes the
    energy exactly (log10 E = log10 intensity - 2).
    """
    source_lon, source_lat = np.zeros(n), np.zeros(n)  # true direction = pointing
    psi = rng.uniform(-np.pi / 2, np.pi / 2, n)
    length = rng.uniform(0.1, 0.3, n)
    width = length * rng.uniform(0.2, 0.8, n)
    disp = xi * (1 - width / length)
    side = rng.choice([-1.0, 1.0], n)  # which side of the centroid the source is on
    centroid_lon = source_lon - side * disp * np.cos(psi)
    centroid_lat = source_lat - side * disp * np.sin(psi)
    intensity = 10 ** rng.uniform(2, 4, n)
    return QTable({
        "obs_id": np.full(n, 1),
        "event_id": np.arange(n),
        "tel_id": np.ones(n, dtype=int),
        "true_energy": intensity / 100 * u.TeV,
        "true_alt": np.full(n, POINTING_ALT) * u.deg,
        "true_az": np.full(n, POINTING_AZ) * u.deg,
        "pointing_altitude": np.full(n, POINTING_ALT) * u.deg,
        "pointing_azimuth": np.full(n, POINTING_AZ) * u.deg,
        "true_shower_primary_id": np.zeros(n, dtype=int),
        "hillas_intensity": intensity,
        "hillas_fov_lon": centroid_lon * u.deg,
        "hillas_fov_lat": centroid_lat * u.deg,
        "hillas_r": np.hypot(centroid_lon, centroid_lat) * u.deg,
        "hillas_psi": psi * u.rad,
        "hillas_width": width * u.deg,
        "hillas_length": length * u.deg,
        "hillas_skewness": rng.normal(0, 0.3, n),
        "timing_slope": side * rng.uniform(1, 5, n) / u.deg,
    })


@pytest.fixture(scope="module")
def images():
    return _images(np.random.default_rng(3))


def test_disp_finds_the_source_from_the_time_gradient(images):
    theta = baselines.disp_theta(images)
    assert np.all(np.isfinite(theta))
    # xi is fitted as the median of disp / elongation: exact here, so every image lands on its source
    assert np.percentile(theta, 99) < 1e-6


def test_disp_without_a_time_gradient_falls_back_to_the_skewness(images):
    no_gradient = images.copy()
    no_gradient["timing_slope"] = 0 / u.deg
    theta = baselines.disp_theta(no_gradient)
    # an uninformative skewness puts about half the sources on the wrong side, 2 disp away
    wrong = theta > 1e-3
    assert 0.35 < wrong.mean() < 0.65


def test_head_tail_sign_follows_the_time_gradient_and_never_is_zero(images):
    sign = baselines.head_tail_sign(images)
    assert set(np.unique(sign)) <= {-1.0, 1.0}
    np.testing.assert_array_equal(sign, np.sign(images["timing_slope"].value))


def test_bdt_disp_learns_what_the_centroid_does_not_know(images):
    bdt = metrics.containment(baselines.bdt_disp_theta(images))
    centroid = metrics.containment(baselines.centroid_theta(images))
    assert centroid > 0.5
    assert bdt < 0.2 * centroid


def test_bdt_energy_learns_an_exact_intensity_relation(images):
    reco = baselines.bdt_energy(images) * u.TeV
    _, resolution, _ = metrics.overall_energy_bias_resolution(images["true_energy"], reco)
    _, median_resolution, _ = metrics.overall_energy_bias_resolution(
        images["true_energy"], baselines.median_energy(images) * u.TeV,
    )
    assert resolution < 0.05
    assert median_resolution > 0.5


def test_bdt_gamma_score_separates_by_width(images):
    protons = _images(np.random.default_rng(4))
    protons["hillas_width"] = protons["hillas_width"] * 1.5
    protons["true_shower_primary_id"] = 101
    protons["event_id"] = protons["event_id"] + len(images)
    both = vstack([images, protons])
    is_gamma = np.asarray(both["true_shower_primary_id"]) == 0
    bdt = metrics.auc(is_gamma, baselines.bdt_gamma_score(both))
    width_cut = metrics.auc(is_gamma, baselines.width_score(both))
    assert bdt > 0.8
    # the trees see width and length together, which the width cut alone does not
    assert bdt > width_cut


def test_baselines_fit_on_the_training_table_when_one_is_given(images):
    training = _images(np.random.default_rng(5), xi=2.0)
    np.testing.assert_array_less(baselines.disp_theta(images, training), 1e-6)
    # a training sample with another xi moves every test image off its source
    wrong_xi = _images(np.random.default_rng(5), xi=3.0)
    assert np.median(baselines.disp_theta(images, wrong_xi)) > 0.1
    # a fit on the training table gives one answer per test image, the whole test table included
    assert np.all(np.isfinite(baselines.bdt_energy(images, training)))
