"""The axis fit: the networks' image positions fitted with the image axes (known answers on made-up images)."""

import astropy.units as u
import numpy as np
import pytest
from astropy.table import QTable

from ctlearn_mlops.physics.axis_fit import (
    DISTANCE_EDGES,
    LEAKAGE_COLUMN,
    ImageErrorModel,
    axis_fit_directions,
    bin_of,
    from_nominal,
    image_axes,
    measure_error_model,
    to_nominal,
)

POINTING_ALT, POINTING_AZ = 70.0, 10.0


def _images(centroids, psi_deg, intensity=1000.0, source=None):
    centroids = np.atleast_2d(centroids)
    table = QTable({
        "hillas_fov_lon": centroids[:, 0] * u.deg, "hillas_fov_lat": centroids[:, 1] * u.deg,
        "hillas_psi": np.asarray(psi_deg, float) * u.deg,
        "hillas_intensity": np.broadcast_to(np.asarray(intensity, float), len(centroids)).copy(),
        "pointing_altitude": np.full(len(centroids), POINTING_ALT) * u.deg,
        "pointing_azimuth": np.full(len(centroids), POINTING_AZ) * u.deg,
    })
    if source is not None:
        alt, az = from_nominal(source[:, 0], source[:, 1], table["pointing_altitude"], table["pointing_azimuth"])
        table["true_alt"], table["true_az"] = alt * u.deg, az * u.deg
    return table


def _model(along, across, axis):
    return ImageErrorModel(np.array([0.0, 10.0]), np.array([along]), np.array([across]),
                           np.full((1, len(DISTANCE_EDGES) - 1), axis))


def _psi_towards(centroids, points):
    delta = np.atleast_2d(points) - np.atleast_2d(centroids)
    return np.degrees(np.arctan2(delta[:, 1], delta[:, 0]))


def test_nominal_offsets_go_to_altaz_and_back():
    lon, lat = np.array([0.0, 1.2, -2.0]), np.array([0.0, -0.7, 1.5])
    table = _images(np.zeros((3, 2)), np.zeros(3))
    alt, az = from_nominal(lon, lat, table["pointing_altitude"], table["pointing_azimuth"])
    assert np.isclose(alt[0], POINTING_ALT) and np.isclose(az[0], POINTING_AZ)
    back = to_nominal(table, alt, az)
    np.testing.assert_allclose(back, (lon, lat), atol=1e-9)


def test_two_axes_through_the_source_fix_it_whatever_the_networks_say_along_them():
    source = np.array([0.3, -0.2])
    centroids = np.array([[1.0, 0.5], [-0.6, 0.4]])
    axes = image_axes(_images(centroids, _psi_towards(centroids, source)))
    # the networks are wrong along their axes by +0.3 and -0.25 deg, right across
    network = source + np.array([0.3, -0.25])[:, None] * axes.along
    lon, lat, r68 = axis_fit_directions(np.array([0, 0]), axes, network[:, 0], network[:, 1],
                                        _model(along=0.2, across=0.1, axis=1e-4))
    np.testing.assert_allclose([lon[0], lat[0]], source, atol=1e-3)
    # and the mean of the networks does not find it
    assert np.hypot(*(network.mean(axis=0) - source)) > 0.02
    assert 0 < r68[0] < 0.01


def test_one_image_takes_the_network_along_its_axis_and_weighs_network_and_axis_across():
    centroid = np.array([[1.0, 0.0]])
    axes = image_axes(_images(centroid, [0.0]))
    model = _model(along=0.2, across=0.1, axis=0.01)
    lon, lat, r68 = axis_fit_directions(np.array([0]), axes, np.array([0.4]), np.array([0.1]), model)
    assert np.isclose(lon[0], 0.4, atol=1e-9)
    # across: 0.1 from the network, 0 from the axis, weighted 1/0.1^2 : 1/0.01^2
    assert np.isclose(lat[0], 0.1 * (1 / 0.1**2) / (1 / 0.1**2 + 1 / 0.01**2), rtol=1e-6)
    sigma_across = 1 / np.sqrt(1 / 0.1**2 + 1 / 0.01**2)
    assert np.isclose(r68[0], np.sqrt(-2 * np.log(0.32)) * np.sqrt((0.2**2 + sigma_across**2) / 2), rtol=1e-6)


def test_events_are_fitted_separately():
    sources = np.array([[0.3, -0.2], [-0.5, 0.6]])
    centroids = np.array([[1.0, 0.5], [-0.6, 0.4], [0.5, 1.5], [-1.5, 0.0]])
    event = np.array([0, 0, 1, 1])
    axes = image_axes(_images(centroids, _psi_towards(centroids, sources[event])))
    lon, lat, _ = axis_fit_directions(event, axes, sources[event, 0], sources[event, 1], _model(0.2, 0.1, 1e-3))
    np.testing.assert_allclose(np.stack([lon, lat], axis=1), sources, atol=1e-6)


def test_the_error_model_measures_the_68_percent_errors_along_across_and_of_the_axis():
    rng = np.random.default_rng(1)
    n = 6000
    source = rng.uniform(-1, 1, (n, 2))
    distance = rng.uniform(0.1, 1.5, n)
    direction = rng.uniform(0, 2 * np.pi, n)
    # the axis misses the source by an angle of 0.02 rad (sigma): its offset grows with the distance
    angle_error = rng.normal(0, 0.02, n)
    centroid = source - distance[:, None] * np.stack([np.cos(direction), np.sin(direction)], axis=1)
    images = _images(centroid, np.degrees(direction + angle_error), intensity=10 ** rng.uniform(2, 4, n),
                     source=source)
    images["obs_id"], images["event_id"] = np.ones(n, int), np.arange(n)  # one image per event
    axes = image_axes(images)
    network = source + rng.normal(0, 0.2, n)[:, None] * axes.along + rng.normal(0, 0.05, n)[:, None] * axes.across
    alt, az = from_nominal(network[:, 0], network[:, 1], images["pointing_altitude"], images["pointing_azimuth"])
    model = measure_error_model(images, alt, az, images, n_bins=3)
    one_sigma_68 = 0.994  # the 68 % quantile of |x| for a normal x, in sigmas
    np.testing.assert_allclose(model.network_along, 0.2 * one_sigma_68, rtol=0.1)
    np.testing.assert_allclose(model.network_across, 0.05 * one_sigma_68, rtol=0.1)
    # the axis' error at 0.2-0.4 deg from the centroid is about 0.02 rad * 0.3 deg, and grows with the distance
    np.testing.assert_allclose(model.axis[:, 1], 0.02 * 0.3 * one_sigma_68, rtol=0.25)
    assert np.all(np.diff(model.axis[:, 1:7], axis=1) > 0)
    assert len(model.to_table()) == 3


def _events(rng, n_events, images_per_event=3):
    """Made-up events: a true source, images around it whose axes miss it by 0.03 rad, network positions with
    0.15 deg errors along the axis and 0.06 deg across."""
    source = rng.uniform(-1, 1, (n_events, 2))
    n = n_events * images_per_event
    event = np.repeat(np.arange(n_events), images_per_event)
    distance = rng.uniform(0.2, 1.5, n)
    direction = rng.uniform(0, 2 * np.pi, n)
    centroid = source[event] - distance[:, None] * np.stack([np.cos(direction), np.sin(direction)], axis=1)
    images = _images(centroid, np.degrees(direction + rng.normal(0, 0.03, n)), intensity=10 ** rng.uniform(2, 4, n),
                     source=source[event])
    images["obs_id"], images["event_id"] = np.ones(n, int), event
    axes = image_axes(images)
    network = source[event] + rng.normal(0, 0.15, n)[:, None] * axes.along + \
        rng.normal(0, 0.06, n)[:, None] * axes.across
    alt, az = from_nominal(network[:, 0], network[:, 1], images["pointing_altitude"], images["pointing_azimuth"])
    return images, alt, az, event, axes, network, source


def test_the_uncertainty_is_calibrated_on_the_validation_events_and_covers_68_percent_of_new_ones():
    rng = np.random.default_rng(7)
    images, alt, az, *_ = _events(rng, 1500)
    model = measure_error_model(images, alt, az, images, n_bins=3)
    assert model.uncertainty_scale[2] != 1.0  # three-image events: their own scale
    _, _, _, event, axes, network, source = _events(rng, 1500)
    lon, lat, r68 = axis_fit_directions(event, axes, network[:, 0], network[:, 1], model)
    error = np.hypot(lon - source[:, 0], lat - source[:, 1])
    assert abs(np.mean(error <= r68) - 0.68) < 0.04
    # and the fit beats the mean of the networks
    mean = np.stack([np.bincount(event, network[:, i]) / np.bincount(event) for i in (0, 1)], axis=1)
    assert np.percentile(error, 68) < 0.8 * np.percentile(np.hypot(*(mean - source).T), 68)


def test_images_without_a_hillas_axis_do_not_spoil_the_error_model():
    rng = np.random.default_rng(3)
    images, alt, az, *_ = _events(rng, 600)
    images["hillas_psi"][5] = np.nan * u.deg  # an image whose axis is undefined
    images["hillas_intensity"][9] = np.nan
    model = measure_error_model(images, alt, az, images, n_bins=3)
    assert np.all(np.isfinite(model.network_along)) and np.all(np.isfinite(model.axis))
    assert np.all(np.isfinite(model.uncertainty_scale))


def test_a_stored_error_model_is_read_back_and_refused_with_other_distance_bins():
    rng = np.random.default_rng(4)
    images, alt, az, *_ = _events(rng, 600)
    model = measure_error_model(images, alt, az, images, n_bins=3)
    table = model.to_table()
    back = ImageErrorModel.from_table(table)
    for name in ("edges", "network_along", "network_across", "axis", "uncertainty_scale", "along_leakage_factor",
                 "across_leakage_factor"):
        np.testing.assert_allclose(getattr(back, name), getattr(model, name))
    # a model written before the leakage factors were measured reads with factors of 1
    for key in ("leakage_edges", "network_along_leakage_factor", "network_across_leakage_factor"):
        del table.meta[key]
    old_model = ImageErrorModel.from_table(table)
    np.testing.assert_array_equal(old_model.along_leakage_factor, 1.0)
    np.testing.assert_array_equal(old_model.across_leakage_factor, 1.0)
    table.meta["network_along_leakage_factor"] = [1.0, 2.0]
    with pytest.raises(ValueError, match="measure it again"):
        ImageErrorModel.from_table(table)
    del table.meta["network_along_leakage_factor"]
    table.meta["leakage_edges"] = [0.0, 0.5, 1.0]
    with pytest.raises(ValueError, match="measure it again"):
        ImageErrorModel.from_table(table)
    del table.meta["leakage_edges"]
    table.meta["axis_distance_edges_deg"] = [0.0, 1.0, 3.0]
    with pytest.raises(ValueError, match="measure it again"):
        ImageErrorModel.from_table(table)


def test_images_cut_by_the_camera_edge_get_the_larger_errors_they_show():
    """Truncated images (leakage) have 3x the network's error along the axis: the model's factor says so, and the
    fit trusts those images less than the whole ones of the same event."""
    rng = np.random.default_rng(11)
    images, alt, az, event, axes, network, source = _events(rng, 2000)
    leaking = rng.uniform(size=len(images)) < 0.2
    images[LEAKAGE_COLUMN] = np.where(leaking, rng.uniform(0.25, 0.6, len(images)), 0.0)
    along_error = np.where(leaking, 3.0, 1.0) * rng.normal(0, 0.15, len(images))
    network = source[event] + along_error[:, None] * axes.along + rng.normal(0, 0.06, len(images))[:, None] * axes.across
    alt, az = from_nominal(network[:, 0], network[:, 1], images["pointing_altitude"], images["pointing_azimuth"])
    model = measure_error_model(images, alt, az, images, n_bins=3)
    # the intensity bins mix both kinds: the ratio of the factors is the ratio of the errors
    assert 2.5 < model.along_leakage_factor[2] / model.along_leakage_factor[0] < 3.5
    assert 0.8 < model.across_leakage_factor[2] / model.across_leakage_factor[0] < 1.25
    # the middle bin has no image: it takes the largest factor, never a smaller error
    assert model.along_leakage_factor[1] == model.along_leakage_factor[2]
    # an image of unknown leakage gets the largest errors
    unknown = images[:1].copy()
    unknown[LEAKAGE_COLUMN] = np.nan
    unknown_axes = image_axes(unknown)
    intensity_bin = bin_of(model.edges, unknown_axes.log_intensity)[0]
    assert model.errors(unknown_axes, np.zeros(1))[0][0] == pytest.approx(
        model.network_along[intensity_bin] * model.along_leakage_factor[2])
    axes = image_axes(images)
    lon, lat, _ = axis_fit_directions(event, axes, network[:, 0], network[:, 1], model)
    fitted = np.percentile(np.hypot(lon - source[:, 0], lat - source[:, 1]), 68)
    model.along_leakage_factor[:] = 1.0
    model.across_leakage_factor[:] = 1.0
    lon, lat, _ = axis_fit_directions(event, axes, network[:, 0], network[:, 1], model)
    assert fitted < 0.97 * np.percentile(np.hypot(lon - source[:, 0], lat - source[:, 1]), 68)


def test_cell_scales_cover_68_percent_per_cell_and_fall_back_where_a_cell_has_few_events():
    from ctlearn_mlops.physics.axis_fit import MIN_EVENTS_PER_SCALE, cell_scales

    rng = np.random.default_rng(7)
    n = 4000
    proxy = rng.uniform(0, 1, n)
    group = rng.integers(0, 2, n)
    group[:10] = 2  # too few events of three images for a scale of their own
    truth_scale = np.where(proxy < 0.5, 1.0, 2.0) * np.where(group == 1, 1.5, 1.0)
    ratio = np.abs(rng.normal(0, 1, n)) * truth_scale
    inner, scales = cell_scales(ratio, proxy, group, n_proxy_bins=2, n_groups=4)
    assert inner == pytest.approx([0.5], abs=0.03) and scales.shape == (2, 4)
    q68 = 0.9945  # the 68 % quantile of |N(0, 1)|
    assert scales[:, 0] == pytest.approx([q68, 2 * q68], rel=0.08)
    assert scales[:, 1] == pytest.approx([1.5 * q68, 3 * q68], rel=0.08)
    # the group of ten events takes the scale of all events, the empty group too
    assert np.all(scales[:, 2] == np.percentile(ratio, 68)) and np.all(scales[:, 3] == scales[:, 2])
    with pytest.raises(ValueError, match="validation events"):
        few = slice(MIN_EVENTS_PER_SCALE - 1)
        cell_scales(ratio[few], proxy[few], group[few], 2)
