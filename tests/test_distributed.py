"""The per-task shares of a training run (``distributed.WorkerShare``)."""

import numpy as np


def test_a_share_keeps_the_orders_it_may_be_asked_for_only():
    """WorkerShare remembers the order of the last finished epoch and of those read ahead, not every epoch's."""
    from ctlearn_mlops.distributed import WorkerShare

    class Loader:
        def __init__(self, n, batch_size, seed):
            self.indices, self.batch_size, self.rng = list(range(n)), batch_size, np.random.default_rng(seed)

        def __len__(self):
            return len(self.indices) // self.batch_size

        def __getitem__(self, i):
            rows = self.indices[i * self.batch_size:(i + 1) * self.batch_size]
            return np.asarray(rows, np.float32)[:, None], np.zeros((len(rows), 1), np.float32)

        def on_epoch_end(self):
            self.rng.shuffle(self.indices)

    share = WorkerShare(Loader(40, 8, 0), Loader(40, 8, 1), rank=0, n_workers=1)
    batches = share.batches()
    seen = []
    for _epoch in range(50):
        order = [int(x) for _ in range(len(share)) for x in next(batches)[0][:, 0]]
        seen.append(order)
        share.epoch_finished()
        assert share.indices == order  # what the resume state saves: the order of the epoch just finished
    assert len(share.orders) <= 2
