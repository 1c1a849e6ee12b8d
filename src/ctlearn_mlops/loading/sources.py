"""Where worker processes get mapped images from: DL1 files or an image cache.

A source is a small picklable description; each process opens its own HDF5
handles on first use (handles opened before a fork are not safe to share, and
dl1-data-handler serialises all reads behind one global lock because its
handles are shared).  This module imports neither TensorFlow nor Keras, so
worker processes start in seconds.
"""

import os

import h5py
import numpy as np
import tables
from dl1_data_handler.reader import get_unmapped_image

from .._compat import camera_type

__all__ = ["CachedImageSource", "DL1ImageSource"]


class _PerProcessHandles:
    """Open files on first use, once per process (a forked or spawned child opens its own)."""

    def __init__(self):
        self._pid = None
        self._handles = {}

    def get(self, path, opener):
        if self._pid != os.getpid():
            self._pid, self._handles = os.getpid(), {}
        handle = self._handles.get(path)
        if handle is None:
            handle = self._handles[path] = opener(path)
        return handle

    def close(self):
        if self._pid == os.getpid():
            for handle in self._handles.values():
                handle.close()
        self._handles = {}


class DL1ImageSource:
    """Mapped images of mono examples read from ctapipe DL1 files.

    The same numbers as ``DLImageReader._append_features`` (dl1-data-handler
    0.14.6): the unmapped image comes from its own ``get_unmapped_image``; the
    mapping is its ``map_image`` (``vector @ mapping_table`` per channel) done
    for all images of a file and telescope in one sparse product, which gives
    bit-identical results (tested).  Rows are read with one
    ``read_coordinates`` per file and telescope instead of one read per image.
    """

    def __init__(self, filenames, channels, transforms, mapping_tables, image_shapes):
        self.filenames = [str(f) for f in filenames]
        self.channels = list(channels)
        self.transforms = dict(transforms)
        #: per telescope type id: the scipy sparse mapping table of its camera
        self.mapping_tables = mapping_tables
        self.image_shapes = image_shapes
        self._handles = _PerProcessHandles()
        self._transposed_tables = {}

    @classmethod
    def of_reader(cls, reader):
        """The source that reads what ``reader`` (a ``DLImageReader``, mono or stereo) reads."""
        tables_by_type, shapes = {}, {}
        for tel_type_id, tel_type in enumerate(reader.selected_telescopes):
            camera = camera_type(reader, tel_type)
            mapper = reader.image_mappers[camera]
            if mapper.index_matrix is not None:
                raise ValueError(f"the {type(mapper).__name__} of {camera} gives indexed images; the fast loader needs square ones")
            tables_by_type[tel_type_id] = mapper.mapping_table
            shapes[tel_type_id] = (mapper.image_shape, mapper.image_shape, len(reader.channels))
        return cls(list(reader.files), reader.channels, reader.transforms, tables_by_type, shapes)

    def __getstate__(self):
        state = dict(self.__dict__)
        state["_handles"] = _PerProcessHandles()
        state["_transposed_tables"] = {}
        return state

    def _transposed(self, tel_type_id):
        if tel_type_id not in self._transposed_tables:
            self._transposed_tables[tel_type_id] = self.mapping_tables[tel_type_id].transpose()
        return self._transposed_tables[tel_type_id]

    def _image_table(self, file_index, tel_id):
        handle = self._handles.get(self.filenames[file_index], lambda p: tables.open_file(p, mode="r"))
        return handle.root.dl1.event.telescope.images._f_get_child(f"tel_{tel_id:03d}")

    #: the methods that take ``allocate``: a worker passes one that gives out its shared-memory slot
    allocating_methods = ("read",)

    def read(self, file_index, table_index, tel_id, tel_type_id, allocate=None):
        """Images of the examples given by four equally long integer arrays, in their order, in the array
        ``allocate(shape, dtype)`` gives (a new one if None; every element written)."""
        file_index, table_index, tel_id, tel_type_id = (
            np.asarray(a, dtype=np.int64) for a in (file_index, table_index, tel_id, tel_type_id)
        )
        shape = self.image_shapes[int(tel_type_id[0])]
        out = (allocate or np.empty)((len(file_index), *shape), np.dtype(np.float32))
        groups = np.stack([file_index, tel_id], axis=1)
        for f, t in np.unique(groups, axis=0):
            where = np.flatnonzero((file_index == f) & (tel_id == t))
            rows = self._image_table(int(f), int(t)).read_coordinates(table_index[where])
            unmapped = np.stack([get_unmapped_image(row, self.channels, self.transforms) for row in rows])
            transposed = self._transposed(int(tel_type_id[where[0]]))
            side = shape[0]
            for channel in range(unmapped.shape[2]):
                # scipy computes vector @ csr as (csr.T @ vector.T).T: the same sums, transposed once
                out[where, ..., channel] = (transposed @ unmapped[:, :, channel].T).T.reshape(len(where), side, side)
        return out

    def close(self):
        self._handles.close()


class CachedImageSource:
    """Mapped images stored by ``extract_only_images.py --image-cache``.

    An uncompressed cache is one contiguous array in the file: it is
    memory-mapped and a batch is one NumPy gather.  A compressed cache has one
    chunk per image, read image by image (h5py's fancy indexing is far slower).
    """

    def __init__(self, path):
        self.path = str(path)
        self._handles = _PerProcessHandles()

    def __getstate__(self):
        return {"path": self.path, "_handles": _PerProcessHandles()}

    def _open(self, path):
        f = h5py.File(path, "r")
        images = f["images"]
        offset = images.id.get_offset() if images.chunks is None else None
        if offset is not None:
            return _MappedImages(f, np.memmap(path, dtype=images.dtype, mode="r", offset=offset, shape=images.shape))
        return _MappedImages(f, None)

    allocating_methods = ("read_rows",)

    def read_rows(self, rows, allocate=None):
        """The images of cache rows ``rows``, in the array ``allocate(shape, dtype)`` gives (a new one if None)."""
        rows = np.asarray(rows, dtype=np.int64)
        opened = self._handles.get(self.path, self._open)
        # the memory map where the cache is one contiguous array (no HDF5 lookup per batch), else the dataset
        images = opened.mapped if opened.mapped is not None else opened.file["images"]
        if len(rows) and (rows.min() < 0 or rows.max() >= images.shape[0]):
            raise IndexError(f"rows {rows.min()}-{rows.max()} of a cache of {images.shape[0]} images ({self.path})")
        out = (allocate or np.empty)((len(rows), *images.shape[1:]), images.dtype)
        if opened.mapped is not None:
            # one gather into ``out`` (mode "clip" writes directly; the rows are checked above)
            return np.take(images, rows, axis=0, out=out, mode="clip")
        for k, row in enumerate(rows):
            images.read_direct(out, np.s_[row:row + 1], np.s_[k:k + 1])
        return out

    def close(self):
        self._handles.close()


class _MappedImages:
    def __init__(self, file, mapped):
        self.file = file
        self.mapped = mapped

    def close(self):
        self.mapped = None
        self.file.close()
