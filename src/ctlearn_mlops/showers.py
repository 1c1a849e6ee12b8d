"""One definition of a simulated air shower, for every split, fold and resampling.

sim_telarray throws each CORSIKA shower several times at different core
positions (``shower_reuse`` in the simulation configuration) and numbers the
array events ``event_id = 100 * shower + reuse``: the images of the reuses of
one air shower are not independent, so they must never land on both sides of
a split, in two cross-fit folds, or be resampled apart.  A shower is
therefore ``(obs_id, event_id // 100)`` when the run reuses showers and
``(obs_id, event_id)`` when it does not.
"""

import numpy as np

__all__ = ["REUSE_FACTOR", "shower_groups", "shower_keys", "shower_reuse_of"]

#: sim_telarray's event numbering: event_id = REUSE_FACTOR * shower + reuse
REUSE_FACTOR = 100
_KEY_DTYPE = np.dtype([("obs_id", "i8"), ("shower", "i8")])


def shower_keys(obs_id, event_id, shower_reuse=1):
    """The shower of each row as a structured array of (obs_id, shower number).

    Parameters
    ----------
    obs_id, event_id : array-like of int, one entry per image (or event)
    shower_reuse : int or array-like of int
        ``shower_reuse`` of each row's run (or one value for all rows), from
        ``/configuration/simulation/run``; above 1, the reuses of one shower
        share a key.
    """
    obs_id = np.asarray(obs_id, dtype=np.int64)
    event_id = np.asarray(event_id, dtype=np.int64)
    reused = np.broadcast_to(np.asarray(shower_reuse, dtype=np.int64) > 1, event_id.shape)
    keys = np.empty(len(event_id), dtype=_KEY_DTYPE)
    keys["obs_id"] = obs_id
    keys["shower"] = np.where(reused, event_id // REUSE_FACTOR, event_id)
    return keys


def shower_groups(obs_id, event_id, shower_reuse=1):
    """Dense group index per row (0 .. n_showers - 1): rows of one shower share it."""
    _, groups = np.unique(shower_keys(obs_id, event_id, shower_reuse), return_inverse=True)
    return groups.ravel()


def shower_reuse_of(obs_id, simulation_runs):
    """``shower_reuse`` for each obs_id, from a ``/configuration/simulation/run`` table (1 where unknown)."""
    obs_id = np.asarray(obs_id, dtype=np.int64)
    if simulation_runs is None or len(simulation_runs) == 0 or "shower_reuse" not in simulation_runs.colnames:
        return np.ones(len(obs_id), dtype=np.int64)
    run_obs = np.asarray(simulation_runs["obs_id"], dtype=np.int64)
    run_reuse = np.asarray(simulation_runs["shower_reuse"], dtype=np.int64)
    order = np.argsort(run_obs, kind="stable")
    position = np.clip(np.searchsorted(run_obs[order], obs_id), 0, len(order) - 1)
    found = run_obs[order][position] == obs_id
    return np.where(found, run_reuse[order][position], 1)
