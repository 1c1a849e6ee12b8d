"""The vectorized HillasReconstructor direction against ctapipe's own, event by event."""

import numpy as np
from ctapipe.instrument import FocalLengthKind, SubarrayDescription
from traitlets.config import Config

from ctlearn_mlops.io import dl2
from ctlearn_mlops.physics.hillas_intersection import TableHillasReconstructor
from ctlearn_mlops.physics.reconstruction import hillas_reconstructor_per_event


def _images_and_subarray(path):
    subarray = SubarrayDescription.from_hdf(path, focal_length_choice=FocalLengthKind.EQUIVALENT)
    return dl2.read_telescope_events(path), subarray


def _assert_equal_directions(images, subarray, config=None):
    fast = TableHillasReconstructor(subarray, config=config).directions(images)
    reference = hillas_reconstructor_per_event(images, subarray, config=config)
    for key in ("obs_id", "event_id", "is_valid", "telescopes"):
        np.testing.assert_array_equal(fast[key], reference[key], err_msg=key)
    valid = reference["is_valid"]
    np.testing.assert_allclose(fast["alt"][valid], reference["alt"][valid], rtol=0, atol=1e-6)
    # azimuths compared on the circle (0 and 360 deg are one direction), both in [0, 360)
    daz = (fast["az"][valid] - reference["az"][valid] + 180) % 360 - 180
    np.testing.assert_allclose(daz, 0, rtol=0, atol=1e-6)
    assert np.all((fast["az"][valid] >= 0) & (fast["az"][valid] < 360))
    assert np.all(np.isnan(fast["alt"][~valid]))
    return fast


def _quality(criteria):
    return Config({"HillasReconstructor": {"StereoQualityQuery": {"quality_criteria": criteria}}})


def test_every_event_of_the_toy_production_has_ctapipes_direction(toy_data):
    paths = sorted((toy_data / "test").glob("*.dl1.h5")) + sorted((toy_data / "train").glob("*.dl1.h5"))
    assert paths
    counted = {"valid": 0, "invalid with images": 0}
    multiplicities = set()
    for path in paths:
        images, subarray = _images_and_subarray(path)
        fast = _assert_equal_directions(images, subarray)
        counted["valid"] += int(fast["is_valid"].sum())
        counted["invalid with images"] += int((~fast["is_valid"]).sum())
        multiplicities |= set(fast["telescopes"][fast["is_valid"]].sum(axis=1).tolist())
    # both kinds of events and more than one multiplicity were compared
    assert counted["valid"] >= 100 and counted["invalid with images"] >= 100, counted
    assert len(multiplicities) >= 2, multiplicities


def test_the_real_sst1m_sample_has_ctapipes_direction(sst1m_dl1):
    images, subarray = _images_and_subarray(sst1m_dl1)
    fast = _assert_equal_directions(images, subarray)
    assert fast["is_valid"].any()


def _first_test_file(toy_data):
    return _images_and_subarray(sorted((toy_data / "test").glob("*.dl1.h5"))[0])


def _rows_of(images, fast, event):
    return np.flatnonzero((np.asarray(images["obs_id"]) == fast["obs_id"][event])
                          & (np.asarray(images["event_id"]) == fast["event_id"][event]))


def _a_used_image(images, fast, subarray, event):
    """The row of an image that takes part in ``event``'s direction."""
    used = set(np.asarray(subarray.tel_ids)[fast["telescopes"][event]])
    return next(r for r in _rows_of(images, fast, event) if int(images["tel_id"][r]) in used)


def test_a_zero_width_image_leaves_the_event_as_in_ctapipe(toy_data):
    images, subarray = _first_test_file(toy_data)
    fast = TableHillasReconstructor(subarray).directions(images)
    event = np.flatnonzero(fast["telescopes"].sum(axis=1) >= 3)[0]
    row = _a_used_image(images, fast, subarray, event)
    images["hillas_width"][row] = 0 * images["hillas_width"].unit
    # the default criteria drop it ("Positive width"): the event keeps its other images
    after = _assert_equal_directions(images, subarray)
    assert after["is_valid"][event] and after["telescopes"][event].sum() == fast["telescopes"][event].sum() - 1
    # without that criterion it passes, and ctapipe refuses the whole event (InvalidWidthException)
    after = _assert_equal_directions(images, subarray, _quality([("> 50 phe", "parameters.hillas.intensity > 50")]))
    assert not after["is_valid"][event]


def test_the_reconstructors_configured_quality_query_is_the_one_applied(toy_data):
    images, subarray = _first_test_file(toy_data)
    everything = TableHillasReconstructor(subarray).directions(images)
    # (the per-event reference fills the Hillas and morphology parameters only)
    brighter = _assert_equal_directions(images, subarray, _quality([
        ("bright", "parameters.hillas.intensity > 200"), ("pixels", "parameters.morphology.n_pixels > 5")]))
    assert 0 < brighter["telescopes"].sum() < everything["telescopes"].sum()
    # every group of ctapipe's image parameters is there under its table prefix (intensity_max here)
    none = TableHillasReconstructor(subarray, config=_quality([("never", "parameters.intensity_statistics.max > 1e12")]))
    assert not none.directions(images)["is_valid"].any()
    peaked = TableHillasReconstructor(subarray, config=_quality([("peaked", "parameters.intensity_statistics.max > 0")]))
    assert peaked.directions(images)["is_valid"].any()
