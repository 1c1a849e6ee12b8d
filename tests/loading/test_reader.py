"""The image reader every tool builds: the stock reader's examples, and telescopes without data tolerated."""

import numpy as np
import pytest
import tables
from ctapipe.instrument import SubarrayDescription
from dl1_data_handler.reader import DLImageReader
from traitlets.config import Config

from ctlearn_mlops.io.dl1 import available_telescopes
from ctlearn_mlops.loading.reader import ImageReader

CHANNELS = ["cleaned_image", "cleaned_relative_peak_time"]


def _same_table(ours, stock):
    assert ours.colnames == stock.colnames
    for name in stock.colnames:
        assert ours[name].dtype == stock[name].dtype, name
        assert np.array_equal(np.asarray(ours[name]), np.asarray(stock[name])), name


@pytest.mark.parametrize("mode", ["mono", "stereo"])
def test_telescopes_that_never_triggered_are_skipped_and_named(mode, sst1m_dl1, caplog):
    subarray = SubarrayDescription.from_hdf(sst1m_dl1)
    present = sorted(available_telescopes(sst1m_dl1))
    never = sorted(set(subarray.tel_ids) - set(present))
    assert len(never) >= 4  # the SST-1M sample: 4 of 70 telescopes never trigger in it (more in 12 events)
    with_data = present[:8]

    def config(tels):
        return Config({"DLImageReader": {"allowed_tels": tels, "channels": CHANNELS, "mode": mode}})

    with pytest.raises((tables.NoSuchNodeError, ValueError)):  # stereo: an empty join
        DLImageReader(input_url_signal=[str(sst1m_dl1)], config=config(with_data + never))
    with caplog.at_level("WARNING"):
        ours = ImageReader(input_url_signal=[str(sst1m_dl1)], config=config(with_data + never))
    skipped = sorted(ours.telescopes_without_data)
    # stereo also skips telescopes whose images all fail the cuts (the stock stereo reader fails on them)
    assert skipped == never if mode == "mono" else set(never) <= set(skipped)
    for tel_id in skipped:
        assert f"telescope {tel_id} (DLImageReader.allowed_tels) has no image to read in 1 of 1 files" in caplog.text
    usable = [t for t in with_data if t not in skipped]
    stock = DLImageReader(input_url_signal=[str(sst1m_dl1)], config=config(usable))
    _same_table(ours.example_identifiers, stock.example_identifiers)
    assert len(ours.example_identifiers) > 0


@pytest.mark.parametrize("mode", ["mono", "stereo"])
def test_without_missing_telescopes_the_reader_is_the_stock_reader(mode, toy_data):
    config = Config({"DLImageReader": {"allowed_tels": [1, 2, 3, 4], "focal_length_choice": "EQUIVALENT",
                                       "channels": CHANNELS, "mode": mode}})
    files = sorted(map(str, (toy_data / "train").glob("gamma_*.h5")))
    background = sorted(map(str, (toy_data / "train").glob("proton_*.h5")))
    ours = ImageReader(input_url_signal=files, input_url_background=background, config=config)
    stock = DLImageReader(input_url_signal=files, input_url_background=background, config=config)
    _same_table(ours.example_identifiers, stock.example_identifiers)
    assert ours.class_weight == stock.class_weight
    assert not ours.telescopes_without_data
