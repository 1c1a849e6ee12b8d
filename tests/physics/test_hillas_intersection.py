"""The vectorized HillasReconstructor direction against ctapipe's own, event by event."""

import numpy as np
import pytest
from ctapipe.instrument import FocalLengthKind, SubarrayDescription

from ctlearn_mlops.io import dl2
from ctlearn_mlops.physics.hillas_intersection import TableHillasReconstructor
from ctlearn_mlops.physics.reconstruction import hillas_reconstructor_per_event


def _images_and_subarray(path):
    subarray = SubarrayDescription.from_hdf(path, focal_length_choice=FocalLengthKind.EQUIVALENT)
    return dl2.read_telescope_events(path), subarray


def _assert_equal_directions(images, subarray):
    fast = TableHillasReconstructor(subarray).directions(images)
    reference = hillas_reconstructor_per_event(images, subarray)
    for key in ("obs_id", "event_id", "is_valid", "telescopes"):
        np.testing.assert_array_equal(fast[key], reference[key], err_msg=key)
    valid = reference["is_valid"]
    np.testing.assert_allclose(fast["alt"][valid], reference["alt"][valid], rtol=0, atol=1e-6)
    # azimuths compared on the circle (0 and 360 deg are one direction)
    daz = (fast["az"][valid] - reference["az"][valid] + 180) % 360 - 180
    np.testing.assert_allclose(daz, 0, rtol=0, atol=1e-6)
    assert np.all(np.isnan(fast["alt"][~valid]))
    return fast


def test_every_event_of_the_default_data_has_ctapipes_direction(toy_data):
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


def test_an_image_of_zero_width_makes_the_event_invalid_as_in_ctapipe(toy_data):
    images, subarray = _images_and_subarray(sorted((toy_data / "test").glob("*.dl1.h5"))[0])
    fast = TableHillasReconstructor(subarray).directions(images)
    event = np.flatnonzero(fast["telescopes"].sum(axis=1) >= 3)[0]
    rows = np.flatnonzero((np.asarray(images["obs_id"]) == fast["obs_id"][event])
                          & (np.asarray(images["event_id"]) == fast["event_id"][event]))
    # a zero width fails the quality query ("Positive width"): the event keeps its other images
    images["hillas_width"][rows[0]] = 0 * images["hillas_width"].unit
    after = _assert_equal_directions(images, subarray)
    assert after["is_valid"][event] and after["telescopes"][event].sum() == fast["telescopes"][event].sum() - 1


@pytest.mark.parametrize("criteria", [[("bright", "parameters.hillas.intensity > 1e12")]])
def test_the_reconstructors_configured_quality_query_is_the_one_applied(toy_data, criteria):
    from traitlets.config import Config

    images, subarray = _images_and_subarray(sorted((toy_data / "test").glob("*.dl1.h5"))[0])
    config = Config({"TableHillasReconstructor": {"StereoQualityQuery": {"quality_criteria": criteria}}})
    fast = TableHillasReconstructor(subarray, config=config).directions(images)
    assert len(fast["is_valid"]) and not fast["is_valid"].any()
