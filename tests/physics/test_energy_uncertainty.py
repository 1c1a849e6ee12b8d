"""The calibrated energy uncertainty: known answers on made-up images and events."""

import numpy as np
import pytest
from astropy.table import Table

from ctlearn_mlops.metrics import coverage, reliability
from ctlearn_mlops.physics.axis_fit import LEAKAGE_COLUMN, MAX_IMAGES_SCALED
from ctlearn_mlops.physics.energy_uncertainty import (
    EnergyErrorModel,
    energy_error_dex,
    image_log_intensity_and_leakage,
    stated_dex,
    uncertainty_from_dex,
)


def _images(rng, n_events, errors_of):
    """Images of events of 1-4 telescopes: log10 intensity in [1.5, 4], some leaking; each image's log energy error
    is a shower term shared by its event plus its own term, both scaled by ``errors_of`` of the image."""
    n_images = rng.integers(1, 5, n_events)
    event_index = np.repeat(np.arange(n_events), n_images)
    log_intensity = rng.uniform(1.5, 4.0, len(event_index))
    leakage = np.where(rng.random(len(event_index)) < 0.3, rng.uniform(0.25, 0.9, len(event_index)), 0.0)
    sigma = errors_of(log_intensity, leakage)
    shower = rng.normal(0, 1, n_events)[event_index]
    error = sigma * (0.5 * shower + np.sqrt(0.75) * rng.normal(0, 1, len(event_index)))
    log_true = rng.uniform(-1.5, 1.5, n_events)
    return event_index, log_intensity, leakage, log_true, log_true[event_index] + error


def _errors(log_intensity, leakage):
    return np.where(log_intensity < 2.5, 0.2, 0.08) * np.where(leakage > 0.2, 2.0, 1.0)


def _combined(event_index, log_energy, weights):
    """The weighted mean of the images' log energies per event (what StereoMeanCombiner does with log_target)."""
    return np.bincount(event_index, weights * log_energy) / np.bincount(event_index, weights)


def test_the_model_measures_the_68_percent_error_by_intensity_and_the_leakage_factor():
    rng = np.random.default_rng(1)
    event_index, log_intensity, leakage, log_true, log_energy = _images(rng, 20000, _errors)
    model = EnergyErrorModel.fit(log_intensity, leakage, np.abs(log_energy - log_true[event_index]), n_bins=4)
    # 68 % of |N(0, s)| is 0.994 s; the low bins are of the 0.2 dex images, the high ones of the 0.08 dex
    assert model.image_errors(np.array([1.6]), np.zeros(1))[0] == pytest.approx(0.2 * 0.994, rel=0.08)
    assert model.image_errors(np.array([3.9]), np.zeros(1))[0] == pytest.approx(0.08 * 0.994, rel=0.08)
    # the intensity bins mix whole and leaking images: the ratio of the factors is the ratio of the errors
    assert model.leakage_factor[2] / model.leakage_factor[0] == pytest.approx(2.0, rel=0.1)
    assert model.leakage_factor[1] == model.leakage_factor[2]  # no image in the middle bin: the largest factor


def test_calibrated_event_uncertainties_cover_68_percent_of_new_events_per_number_of_images_and_energy():
    rng = np.random.default_rng(2)
    event_index, log_intensity, leakage, log_true, log_energy = _images(rng, 30000, _errors)
    model = EnergyErrorModel.fit(log_intensity, leakage, np.abs(log_energy - log_true[event_index]))
    combined = _combined(event_index, log_energy, 10**log_intensity)
    uncalibrated = EnergyErrorModel(model.edges, model.image_error, model.leakage_factor)
    model.calibrate(event_index, log_intensity, leakage, combined, np.abs(combined - log_true))
    # the telescopes of a shower err together: events of more images need a larger scale than independent errors
    assert model.uncertainty_scale.shape[1] == MAX_IMAGES_SCALED
    assert np.all(model.uncertainty_scale[:, 3] > model.uncertainty_scale[:, 0])
    event_index, log_intensity, leakage, log_true, log_energy = _images(np.random.default_rng(3), 30000, _errors)
    combined = _combined(event_index, log_energy, 10**log_intensity)
    stated = model.event_errors(event_index, log_intensity, leakage, combined)
    error = np.abs(combined - log_true)
    n_images = np.bincount(event_index)
    for n in range(1, 5):
        assert coverage(error[n_images == n], stated[n_images == n]) == pytest.approx(0.68, abs=0.03), n
    # uncalibrated (independent errors assumed), events of four images are covered far less
    assert coverage(error[n_images == 4],
                    uncalibrated.event_errors(event_index, log_intensity, leakage, combined)[n_images == 4]) < 0.6
    # an event without a valid image states nothing
    assert np.isnan(model.event_errors(np.zeros(1, int), np.ones(1), np.zeros(1), np.zeros(2))[1])


def test_the_stated_interval_is_a_factor_either_way():
    energy = np.array([0.1, 1.0, 10.0])
    uncert = uncertainty_from_dex(energy, 0.1)
    assert uncert == pytest.approx(energy * (10**0.1 - 1))
    assert stated_dex(energy, uncert) == pytest.approx(0.1)
    # the truth a factor 10**0.1 below or above is just inside
    assert np.all(energy_error_dex(energy, energy / 10**0.0999) <= stated_dex(energy, uncert))
    assert np.all(energy_error_dex(energy, energy * 10**0.1001) > stated_dex(energy, uncert))


def test_reliability_of_an_interval_scales_as_a_1d_gaussian():
    rng = np.random.default_rng(4)
    error = np.abs(rng.normal(0, 1, 200000))
    stated = np.full(len(error), 0.9945)  # the 68 % quantile of |N(0, 1)|
    expected, observed = reliability(error, stated, dimensions=1)
    assert observed == pytest.approx(expected, abs=0.01)
    _, as_2d = reliability(error, stated)  # scaled as a 2-d radius, a 1-d error is under-covered at high levels
    assert as_2d[-1] < expected[-1] - 0.02
    with pytest.raises(ValueError):
        reliability(error, stated, dimensions=3)


def test_a_stored_model_is_read_back_and_refused_with_other_leakage_bins():
    rng = np.random.default_rng(5)
    event_index, log_intensity, leakage, log_true, log_energy = _images(rng, 5000, _errors)
    model = EnergyErrorModel.fit(log_intensity, leakage, np.abs(log_energy - log_true[event_index]))
    combined = _combined(event_index, log_energy, np.ones(len(event_index)))
    model.calibrate(event_index, log_intensity, leakage, combined, np.abs(combined - log_true))
    model.weights = "none"
    table = model.to_table()
    read = EnergyErrorModel.from_table(table)
    for name in ("edges", "image_error", "leakage_factor", "energy_edges", "uncertainty_scale"):
        assert np.array_equal(getattr(read, name), getattr(model, name)), name
    assert read.weights == "none"
    table.meta["leakage_edges"] = [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="leakage_edges"):
        EnergyErrorModel.from_table(table)


def test_images_of_unknown_leakage_take_the_largest_errors():
    images = Table({"hillas_intensity": [100.0, 1000.0], LEAKAGE_COLUMN: [0.0, np.nan]})
    log_intensity, leakage = image_log_intensity_and_leakage(images)
    assert log_intensity == pytest.approx([2.0, 3.0]) and leakage.tolist() == [0.0, 1.0]
    _, leakage = image_log_intensity_and_leakage(Table({"hillas_intensity": [100.0]}))
    assert leakage.tolist() == [1.0]


def test_too_few_validation_images_or_events_are_refused():
    with pytest.raises(ValueError, match="validation images"):
        EnergyErrorModel.fit(np.ones(10), np.zeros(10), np.ones(10))
    model = EnergyErrorModel(np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.1]), np.ones(3))
    with pytest.raises(ValueError, match="validation events"):
        model.calibrate(np.arange(5), np.full(5, 1.5), np.zeros(5), np.zeros(5), np.full(5, 0.1))


def test_a_model_without_its_scales_is_refused_and_events_without_images_give_empty_arrays():
    from ctlearn_mlops.physics.reconstruction import energy_images_of_events

    table = EnergyErrorModel(np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.1]), np.ones(3)).to_table()
    del table.meta["uncertainty_scale"]
    with pytest.raises(ValueError, match="lacks uncertainty_scale: measure it again"):
        EnergyErrorModel.from_table(table)
    # no valid image in any telescope table: nothing to join, every event without an image
    empty = Table({"obs_id": np.zeros(0, int), "event_id": np.zeros(0, int), "tel_id": np.zeros(0, int),
                   "CTLearn_tel_is_valid": np.zeros(0, bool)})
    stereo = Table({"obs_id": [1], "event_id": [2]})
    images = Table({"obs_id": [1], "event_id": [2], "tel_id": [1], "hillas_intensity": [100.0]})
    index, log_intensity, leakage = energy_images_of_events(stereo, [empty], images, "CTLearn")
    assert len(index) == len(log_intensity) == len(leakage) == 0


def test_telescope_weights_take_ctapipes_names_and_the_old_one():
    from ctlearn_mlops.physics.reconstruction import combiner_weights

    assert combiner_weights("konrad") == combiner_weights("aspect-weighted-intensity") == "aspect-weighted-intensity"
    assert combiner_weights("intensity") == "intensity"
    with pytest.raises(ValueError, match="choose one of none, intensity, aspect-weighted-intensity"):
        combiner_weights("bogus")
