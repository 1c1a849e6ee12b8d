"""The example index: the stock reader's example table, read back instead of rebuilt; never stale."""

import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from dl1_data_handler.reader import DLImageReader
from traitlets.config import Config

from ctlearn_mlops.loading.reader import ImageReader


def _config(mode, index_dir, **extra):
    return Config({"DLImageReader": {"allowed_tels": [1, 2, 3, 4], "focal_length_choice": "EQUIVALENT", "mode": mode,
                                     **extra},
                   "ExampleIndex": {"directory": str(index_dir)}})


def _files(data):
    return sorted(map(str, (data / "train").glob("gamma_*.h5"))), sorted(map(str, (data / "train").glob("proton_*.h5")))


def _assert_same(ours, stock):
    assert ours.colnames == stock.colnames
    for name in stock.colnames:
        assert ours[name].dtype == stock[name].dtype, name
        assert getattr(ours[name], "unit", None) == getattr(stock[name], "unit", None), name
        assert np.array_equal(np.asarray(ours[name]), np.asarray(stock[name])), name


@pytest.mark.parametrize("mode", ["mono", "stereo"])
def test_an_indexed_reader_has_the_stock_examples_bit_for_bit(mode, toy_data, tmp_path):
    signal, background = _files(toy_data)
    config = _config(mode, tmp_path / "index")
    cold = ImageReader(input_url_signal=signal, input_url_background=background, config=config)
    warm = ImageReader(input_url_signal=signal, input_url_background=background, config=config)
    stock = DLImageReader(input_url_signal=signal, input_url_background=background, config=config)
    assert not cold.indexed and warm.indexed and len(list((tmp_path / "index").glob("*.examples.h5"))) == 1
    for reader in (cold, warm):
        _assert_same(reader.example_identifiers, stock.example_identifiers)
        assert reader.class_weight == stock.class_weight
        assert len(reader.simulation_info) == len(stock.simulation_info)
    if mode == "stereo":
        _assert_same(warm.unique_example_identifiers, stock.unique_example_identifiers)
        assert np.array_equal(warm.example_identifiers_grouped.groups.indices,
                              stock.example_identifiers_grouped.groups.indices)
    else:
        assert list(warm.example_identifiers.loc[[5, 2]]["index"]) == [5, 2]  # the stock batch lookup works


def test_a_changed_file_or_setting_is_not_served_by_an_old_index(toy_data, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(toy_data / "train", data / "train")
    signal, background = _files(data)
    config = _config("mono", tmp_path / "index")
    ImageReader(input_url_signal=signal, input_url_background=background, config=config)
    # another setting: another index, built from the files
    cuts = Config({**config, "TableQualityQuery": {"quality_criteria": [["> 100 phe", "hillas_intensity > 100"]]}})
    with caplog.at_level(logging.INFO, logger="ctlearn_mlops.loading.index"):
        other = ImageReader(input_url_signal=signal, input_url_background=background, config=cuts)
    assert not other.indexed
    assert "an index of the same files has other reader settings: quality_criteria" in caplog.text
    caplog.clear()
    _assert_same(other.example_identifiers, DLImageReader(input_url_signal=signal, input_url_background=background,
                                                          config=cuts).example_identifiers)
    # a file that changed (here: only touched) is not trusted: its index is built again, and the log says why
    os.utime(signal[0], ns=(os.stat(signal[0]).st_atime_ns, os.stat(signal[0]).st_mtime_ns + 10**9))
    with caplog.at_level(logging.INFO, logger="ctlearn_mlops.loading.index"):
        assert not ImageReader(input_url_signal=signal, input_url_background=background, config=config).indexed
    assert f"1 of its files changed since it was indexed, e.g. {Path(signal[0]).resolve()}" in caplog.text
    # signal and background swapped: other labels, another index
    swapped = ImageReader(input_url_signal=background, input_url_background=signal, config=config)
    assert not swapped.indexed
    assert np.array_equal(swapped.example_identifiers["true_shower_primary_class"],
                          DLImageReader(input_url_signal=background, input_url_background=signal,
                                        config=config).example_identifiers["true_shower_primary_class"])
    # the indexes of the touched file's old state can never serve again: removed; the current and swapped stay
    assert len(list((tmp_path / "index").glob("*.examples.h5"))) == 2


def test_a_corrupt_index_is_rebuilt(toy_data, tmp_path):
    signal, background = _files(toy_data)
    config = _config("mono", tmp_path / "index")
    ImageReader(input_url_signal=signal, input_url_background=background, config=config)
    (index,) = (tmp_path / "index").glob("*.examples.h5")
    index.write_bytes(b"not an index")
    again = ImageReader(input_url_signal=signal, input_url_background=background, config=config)
    assert not again.indexed and len(again.example_identifiers) > 0
    assert ImageReader(input_url_signal=signal, input_url_background=background, config=config).indexed


def test_the_index_can_be_switched_off(toy_data, tmp_path):
    signal, background = _files(toy_data)
    config = Config({**_config("mono", tmp_path / "index"), "ExampleIndex": {"enabled": False,
                                                                              "directory": str(tmp_path / "index")}})
    ImageReader(input_url_signal=signal, input_url_background=background, config=config)
    assert not list(tmp_path.glob("index/*"))
