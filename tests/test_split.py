import numpy as np
import pytest

from ctlearn_mlops.split import split_by_event


def _images():
    rng = np.random.default_rng(0)
    file_index = np.repeat([0, 1], 300)
    event_id = np.concatenate([rng.integers(1, 120, 300), rng.integers(1, 120, 300)])
    return file_index, event_id


def test_no_shower_on_both_sides():
    file_index, event_id = _images()
    kept, held = split_by_event(file_index, event_id, 0.2, seed=1)
    assert len(kept) + len(held) == len(event_id)
    assert not set(zip(file_index[kept], event_id[kept])) & set(zip(file_index[held], event_id[held]))


def test_fraction_counts_showers():
    file_index, event_id = _images()
    _, held = split_by_event(file_index, event_id, 0.25, seed=1)
    n_showers = len(set(zip(file_index, event_id)))
    n_held = len(set(zip(file_index[held], event_id[held])))
    assert n_held == round(0.25 * n_showers)


def test_same_seed_same_split_other_seed_other_split():
    file_index, event_id = _images()
    a = split_by_event(file_index, event_id, 0.2, seed=5)[1]
    b = split_by_event(file_index, event_id, 0.2, seed=5)[1]
    c = split_by_event(file_index, event_id, 0.2, seed=6)[1]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_edge_fractions(fraction):
    file_index, event_id = _images()
    kept, held = split_by_event(file_index, event_id, fraction, seed=0)
    assert len(held) == (len(event_id) if fraction == 1.0 else 0)
