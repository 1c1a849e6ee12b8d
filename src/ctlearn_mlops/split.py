"""Dataset splits that keep all images of one shower together."""

import numpy as np

from .showers import shower_groups

__all__ = ["split_by_shower"]


def split_by_shower(obs_id, event_id, fraction, seed, shower_reuse=1):
    """Split image indices into (kept, held_out) so that no shower is on both sides.

    Parameters
    ----------
    obs_id, event_id : array-like, one entry per image
    fraction : float
        Fraction of the showers that go to the held-out side.
    seed : int
        Seed of the shuffle; the same seed gives the same split.
    shower_reuse : int or array-like
        ``shower_reuse`` of each image's run: the reuses of one CORSIKA shower
        are one shower (``showers.shower_keys``).

    Returns
    -------
    kept, held_out : sorted integer arrays of image indices
    """
    shower_of_image = shower_groups(obs_id, event_id, shower_reuse)
    n_showers = shower_of_image.max() + 1 if len(shower_of_image) else 0
    order = np.random.default_rng(seed).permutation(n_showers)
    n_held_out = int(round(fraction * n_showers))
    held_out_showers = np.zeros(n_showers, dtype=bool)
    held_out_showers[order[:n_held_out]] = True
    held_out = held_out_showers[shower_of_image]
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)
