"""Dataset splits that keep all images of one shower together."""

import numpy as np

__all__ = ["split_by_event"]


def split_by_event(file_index, event_id, fraction, seed):
    """Split image indices into (kept, held_out) so that no shower is on both sides.

    Parameters
    ----------
    file_index, event_id : array-like, one entry per image
        Together they identify the shower of each image (a shower never spans files).
    fraction : float
        Fraction of the showers that go to the held-out side.
    seed : int
        Seed of the shuffle; the same seed gives the same split.

    Returns
    -------
    kept, held_out : sorted integer arrays of image indices
    """
    keys = np.stack([np.asarray(file_index, dtype=np.int64), np.asarray(event_id, dtype=np.int64)], axis=1)
    showers, shower_of_image = np.unique(keys, axis=0, return_inverse=True)
    shower_of_image = shower_of_image.ravel()
    order = np.random.default_rng(seed).permutation(len(showers))
    n_held_out = int(round(fraction * len(showers)))
    held_out_showers = np.zeros(len(showers), dtype=bool)
    held_out_showers[order[:n_held_out]] = True
    held_out = held_out_showers[shower_of_image]
    return np.flatnonzero(~held_out), np.flatnonzero(held_out)
