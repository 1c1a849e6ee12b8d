"""How sure a difference between two methods on the same events is: a paired bootstrap over showers."""

import numpy as np

__all__ = ["paired_bootstrap_difference"]


def paired_bootstrap_difference(statistic_first, statistic_second, groups, n_resamples=200, seed=0):
    """Difference ``statistic_first - statistic_second`` on all events and its bootstrap standard deviation.

    Parameters
    ----------
    statistic_first, statistic_second : callable
        Map an array of event indices (with repeats) to a number, e.g. the AUC
        of one method on those events.
    groups : array
        One label per event; events with the same label (the images of one
        shower) are resampled together, since they are not independent.
    n_resamples : int
        Bootstrap resamples; both statistics see the same resampled events.

    Returns
    -------
    difference, standard_deviation : float
    """
    labels, group_of_event = np.unique(np.asarray(groups), return_inverse=True)
    order = np.argsort(group_of_event, kind="stable")
    starts = np.searchsorted(group_of_event[order], np.arange(len(labels) + 1))
    members = [order[starts[i]:starts[i + 1]] for i in range(len(labels))]
    everything = np.arange(len(group_of_event))
    difference = float(statistic_first(everything) - statistic_second(everything))
    rng = np.random.default_rng(seed)
    resampled = []
    for _ in range(n_resamples):
        chosen = rng.integers(0, len(labels), len(labels))
        indices = np.concatenate([members[i] for i in chosen])
        resampled.append(statistic_first(indices) - statistic_second(indices))
    return difference, float(np.nanstd(resampled))
