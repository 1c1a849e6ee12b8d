import numpy as np
import pytest

from ctlearn_mlops.showers import shower_groups, shower_keys, shower_reuse_of
from ctlearn_mlops.split import split_by_shower


def _images():
    rng = np.random.default_rng(0)
    obs_id = np.repeat([101, 102], 300)
    event_id = np.concatenate([rng.integers(1, 120, 300), rng.integers(1, 120, 300)])
    return obs_id, event_id


def test_no_shower_on_both_sides():
    obs_id, event_id = _images()
    kept, held = split_by_shower(obs_id, event_id, 0.2, seed=1)
    assert len(kept) + len(held) == len(event_id)
    assert not set(zip(obs_id[kept], event_id[kept])) & set(zip(obs_id[held], event_id[held]))


def test_fraction_counts_showers():
    obs_id, event_id = _images()
    _, held = split_by_shower(obs_id, event_id, 0.25, seed=1)
    n_showers = len(set(zip(obs_id, event_id)))
    n_held = len(set(zip(obs_id[held], event_id[held])))
    assert n_held == round(0.25 * n_showers)


def test_same_seed_same_split_other_seed_other_split():
    obs_id, event_id = _images()
    a = split_by_shower(obs_id, event_id, 0.2, seed=5)[1]
    b = split_by_shower(obs_id, event_id, 0.2, seed=5)[1]
    c = split_by_shower(obs_id, event_id, 0.2, seed=6)[1]
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


@pytest.mark.parametrize("fraction", [0.0, 1.0])
def test_edge_fractions(fraction):
    obs_id, event_id = _images()
    kept, held = split_by_shower(obs_id, event_id, fraction, seed=0)
    assert len(held) == (len(event_id) if fraction == 1.0 else 0)


def _reused_showers():
    """sim_telarray numbering: 40 CORSIKA showers, each thrown 10 times (event_id = 100 * shower + reuse)."""
    shower = np.repeat(np.arange(1, 41), 10)
    reuse = np.tile(np.arange(10), 40)
    event_id = 100 * shower + reuse
    obs_id = np.full(len(event_id), 7)
    return obs_id, event_id, shower


def test_reuses_of_one_shower_are_one_shower_when_the_run_reuses():
    obs_id, event_id, shower = _reused_showers()
    groups = shower_groups(obs_id, event_id, shower_reuse=10)
    assert groups.max() + 1 == 40
    for g in range(40):
        assert len(set(shower[groups == g])) == 1
    # without reuse every event is its own shower
    assert shower_groups(obs_id, event_id, shower_reuse=1).max() + 1 == 400


def test_split_keeps_reuses_together():
    obs_id, event_id, shower = _reused_showers()
    kept, held = split_by_shower(obs_id, event_id, 0.3, seed=2, shower_reuse=10)
    assert len(held) == 12 * 10
    assert not set(shower[kept]) & set(shower[held])


def test_same_shower_number_in_two_runs_are_two_showers():
    keys = shower_keys([1, 2], [305, 305], shower_reuse=[10, 10])
    assert len(np.unique(keys)) == 2


def test_shower_reuse_per_obs_id_from_the_simulation_table():
    from astropy.table import Table

    runs = Table({"obs_id": [5, 3], "shower_reuse": [10, 1]})
    np.testing.assert_array_equal(shower_reuse_of([3, 5, 5, 9], runs), [1, 10, 10, 1])
    np.testing.assert_array_equal(shower_reuse_of([3], None), [1])

