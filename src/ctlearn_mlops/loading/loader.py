"""The Keras loader of the fast path: ctlearn's ``DLDataLoader`` with images read ahead by workers.

Patched from ctlearn 0.10.4 ``DLDataLoader.__getitem__``: the examples of a
batch, their order, the shuffling between epochs and the labels are the stock
loader's (its own ``on_epoch_end`` and item code run; in stereo mode the
reader's own batch with its blank images for missing telescopes); only the
images come from a ``DL1ImageSource`` or an image cache, read by a
``WorkerPool`` up to ``prefetch`` batches ahead.
"""

import math
import threading

import numpy as np
from ctapipe.core import Component
from ctapipe.core.traits import Bool, Int, Path
from ctlearn.core.loader import DLDataLoader

from .._compat import mono_item_of_columns, stereo_batch_with_images, stereo_item
from .pool import WorkerPool
from .sources import CachedImageSource, DL1ImageSource

__all__ = ["FastDataLoader", "FastLoader", "FastPath", "image_source"]

#: example columns the stock label code reads
_LABEL_COLUMNS = (
    "true_shower_primary_class", "log_true_energy", "fov_lon", "fov_lat", "cam_coord_offset_x", "cam_coord_offset_y",
)


class FastLoader(Component):
    """How training and test images are read: stock dl1-data-handler, or the parallel reader and image cache."""

    enabled = Bool(False, help="Read images with the parallel reader (off: the stock DLImageReader / DLDataLoader).").tag(
        config=True
    )
    workers = Int(2, min=0, help="Worker processes reading and mapping images ahead of the network (0: in this process).").tag(
        config=True
    )
    prefetch = Int(4, min=1, help="Batches read ahead; memory is bounded by prefetch x batch size images.").tag(config=True)
    cache_dir = Path(
        default_value=None, allow_none=True, directory_ok=True, file_ok=False,
        help=(
            "Image cache of this config, made by extract_only_images.py --image-cache: train.images.h5 "
            "and test.images.h5 hold the mapped images; refused when the data or reader settings changed."
        ),
    ).tag(config=True)


class FastDataLoader(DLDataLoader):
    """Batches identical to ``DLDataLoader``'s for the same indices, read ahead in parallel.

    Parameters
    ----------
    source : DL1ImageSource or CachedImageSource (row i of the cache = example i of the reader)
    pool : WorkerPool or None (read in this process)
    complete : count the last incomplete batch (prediction) instead of dropping it (training)
    """

    def __init__(self, reader, indices, tasks, batch_size=64, random_seed=None, *, source, pool=None, prefetch=4,
                 complete=False, stack_telescope_images=False, sort_by_intensity=False):
        self._lock = threading.RLock()
        self._pending = {}
        super().__init__(reader, indices, tasks, batch_size=batch_size, random_seed=random_seed,
                         stack_telescope_images=stack_telescope_images, sort_by_intensity=sort_by_intensity)
        self.source = source
        self.pool = pool
        self.prefetch = prefetch
        self.complete = complete
        self.stereo = reader.mode == "stereo"
        ids = reader.example_identifiers
        self._ids = {name: np.asarray(ids[name]) for name in ("file_index", "table_index", "tel_id", "tel_type_id")}
        self._labels = {name: np.asarray(ids[name]) for name in _LABEL_COLUMNS if name in ids.colnames}
        if self.stereo:
            # the reader's grouped table (by array event) keeps the example table's row order
            grouped = reader.example_identifiers_grouped
            if not np.array_equal(np.asarray(grouped["tel_id"]), self._ids["tel_id"]):
                raise ValueError("the reader's events are not in the order of its examples")
            self._event_starts = np.asarray(grouped.groups.indices)

    def __len__(self):
        if self.complete:
            return math.ceil(len(self.indices) / self.batch_size)
        return super().__len__()

    def on_epoch_end(self):
        with self._lock:
            super().on_epoch_end()  # the stock reshuffle: the batches read ahead are stale
            self._forget(list(self._pending))

    def _forget(self, indices):
        for index in indices:
            ticket = self._pending.pop(index)
            if ticket is not None:
                self.pool.cancel(ticket)

    def _batch_indices(self, index):
        return np.asarray(self.indices[index * self.batch_size:(index + 1) * self.batch_size], dtype=np.int64)

    def _example_rows(self, batch):
        """Rows of the example table a batch reads: its examples (mono), every image of its events (stereo)."""
        if not self.stereo:
            return batch
        starts = self._event_starts
        # astropy's TableGroups[indices], which the stock batch is built from, keeps the groups in table order
        return np.concatenate([np.arange(starts[e], starts[e + 1]) for e in np.sort(batch)]).astype(np.int64)

    def _read_call(self, rows):
        if isinstance(self.source, CachedImageSource):
            return "read_rows", (rows,)
        ids = self._ids
        return "read", (ids["file_index"][rows], ids["table_index"][rows], ids["tel_id"][rows], ids["tel_type_id"][rows])

    def _submit(self, index):
        if self.pool is None:
            return None
        method, args = self._read_call(self._example_rows(self._batch_indices(index)))
        return self.pool.submit(method, *args)

    def __getitem__(self, index):
        if index >= len(self) or index < -len(self):
            raise IndexError(f"batch {index} of {len(self)}")
        index %= len(self)
        with self._lock:
            future = self._pending.pop(index, None) if index in self._pending else self._submit(index)
            # keep a window of `prefetch` batches ahead of this one; forget the rest (bounded memory)
            window = range(index + 1, min(index + 1 + self.prefetch, len(self)))
            self._forget(set(self._pending) - set(window))
            for ahead in window:
                if ahead not in self._pending:
                    self._pending[ahead] = self._submit(ahead)
            rows = self._batch_indices(index)
        if future is None:
            method, args = self._read_call(self._example_rows(rows))
            images = getattr(self.source, method)(*args)
        else:
            images = self.pool.result(future, f"batch {index}")
        if self.stereo:
            # the stock batch (blank images for missing telescopes, event order, labels) around our images
            return stereo_item(self, stereo_batch_with_images(self.DLDataReader, rows, images))
        # the images are this batch's own array (read, or in its worker's shared-memory slot): not copied
        return mono_item_of_columns(self, {**{name: column[rows] for name, column in self._labels.items()},
                                           "features": images})

    def close(self):
        with self._lock:
            self._forget(list(self._pending))


def image_source(reader, cache=None):
    """The source of the reader's images: the cache file if given (checked by the caller), else its DL1 files."""
    if cache is not None:
        return CachedImageSource(cache)
    return DL1ImageSource.of_reader(reader)


class FastPath:
    """The source and worker pool that a tool's fast loaders share; close it when done."""

    def __init__(self, settings: FastLoader, reader, split, config_source):
        from ..exceptions import ConfigError
        from .cache import StaleCacheError, cache_path, check_cache

        self.settings = settings
        self.cache = None
        if settings.cache_dir is not None:
            self.cache = cache_path(settings.cache_dir, split)
            try:
                check_cache(self.cache, reader)
            except StaleCacheError as err:
                raise ConfigError(
                    f"image cache refused: {err}. (Re)build it: python scripts/data_processing/extract_only_images.py "
                    f"--image-cache --config {config_source} --overwrite",
                    source=config_source, key="FastLoader.cache_dir",
                ) from None
        try:
            self.source = image_source(reader, self.cache)
        except ValueError as err:
            raise ConfigError(str(err), source=config_source, key="FastLoader.enabled") from None
        self.reader = reader
        self.pool = None
        self.loaders = []

    def loader(self, indices, tasks, batch_size, random_seed=None, complete=False, stack_telescope_images=False,
                sort_by_intensity=False):
        """A loader over ``indices`` of the reader's examples (events in stereo mode), sharing source and workers."""
        if self.pool is None and self.settings.workers:
            # results travel through shared memory: room for the read-ahead of a training and a validation loader
            images_per_example = 1 if self.reader.mode == "mono" else max(
                len(ids) for ids in self.reader.selected_telescopes.values())
            image_shape = next(iter(self.source.image_shapes.values())) if hasattr(self.source, "image_shapes") \
                else self.reader.input_shape
            batch_bytes = batch_size * images_per_example * int(np.prod(image_shape)) * 4
            self.pool = WorkerPool(self.source, self.settings.workers, slot_bytes=batch_bytes,
                                   n_slots=2 * (self.settings.prefetch + 1) + self.settings.workers)
        loader = FastDataLoader(
            self.reader, indices, tasks, batch_size=batch_size, random_seed=random_seed, source=self.source,
            pool=self.pool, prefetch=self.settings.prefetch, complete=complete,
            stack_telescope_images=stack_telescope_images, sort_by_intensity=sort_by_intensity,
        )
        self.loaders.append(loader)
        return loader

    def describe(self):
        where = f"image cache {self.cache}" if self.cache else "DL1 files"
        workers = f"{self.pool.workers} worker processes" if self.pool else "in this process"
        return f"fast loader: {where}, {workers}, {self.settings.prefetch} batches ahead"

    def close(self):
        for loader in self.loaders:
            loader.close()
        if self.pool is not None:
            self.pool.close()
        self.source.close()
