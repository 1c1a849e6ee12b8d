"""The image reader every tool builds: dl1-data-handler's ``DLImageReader``, made robust.

``ImageReader`` is a ``DLImageReader`` (dl1-data-handler 0.14.6) with the same
examples, labels and images, configured by the same ``DLImageReader`` section
of a task config.  What it adds:

* a telescope without tables in a file (it never triggered there) has no
  examples in that file instead of failing the whole reader; the log says
  which allowed telescopes had no data where;
* the example table comes from a persistent index (``loading.index``,
  section ``ExampleIndex``) instead of reading every file's tables again.
"""

import logging
from collections import defaultdict
from pathlib import Path

import numpy as np
from ctapipe.io import read_table
from dl1_data_handler.reader import DLImageReader

from .._compat import ReaderHooks, subarray_read_once, tolerate_missing_telescopes
from ..io.dl1 import available_telescopes
from .index import ExampleIndex, known_file_set
from .keys import READER_TYPES, reader_type_for

__all__ = ["ImageReader", "READER_TYPES", "reader_type_for"]

log = logging.getLogger(__name__)


class ImageReader(ReaderHooks, DLImageReader):
    """``DLImageReader`` that tolerates telescopes without data in some files and restores indexed examples."""

    def __init__(self, input_url_signal, input_url_background=(), config=None, parent=None, example_index=None,
                 **kwargs):
        input_url_signal, input_url_background = list(input_url_signal), list(input_url_background)
        #: an ``ExampleIndex`` (or None): where the example table is kept between runs
        self.example_index = example_index
        self.indexed = False
        self.telescopes_available = {}
        settings = config if config is not None else getattr(parent, "config", None)
        directory = ((settings or {}).get("ExampleIndex") or {}).get("directory")
        enabled = ((settings or {}).get("ExampleIndex") or {}).get("enabled", True)
        # files an index saw together passed the subarray check before: read the first file's subarray only
        known = enabled and known_file_set(directory, input_url_signal, input_url_background)
        with tolerate_missing_telescopes(set()), subarray_read_once(known):
            super().__init__(
                input_url_signal=list(input_url_signal), input_url_background=list(input_url_background),
                config=config, parent=parent, **kwargs,
            )
        self.telescopes_without_data = _without_data(self.telescopes_available, self.tel_ids)
        for tel_id, files in sorted(self.telescopes_without_data.items()):
            log.warning(
                "telescope %d (DLImageReader.allowed_tels) has no image to read in %d of %d files (it never "
                "triggered there%s), e.g. %s", tel_id, len(files), len(self.files),
                ", or none of its images passes the cuts" if self.mode == "stereo" else "", Path(files[0]).name,
            )

    def telescopes_in(self, filename):
        """Telescopes with examples in a file: tables with rows, and in stereo mode a row that passes the cuts.

        dl1-data-handler 0.14.6 joins each telescope's selected rows in stereo
        mode, which fails for a telescope whose images all fail the cuts.
        """
        handle = self.files[filename]
        present = available_telescopes(handle)
        if self.mode == "stereo" and self.quality_query:
            selected = {int(t) for ids in self.selected_telescopes.values() for t in ids}
            for tel_id in sorted(present & selected):
                parameters = read_table(handle, f"/dl1/event/telescope/parameters/tel_{tel_id:03d}")
                if not np.any(self.quality_query.get_table_mask(parameters)):
                    present.discard(tel_id)
        return present

    def restore_examples(self):
        if self.example_index is None:
            self.example_index = ExampleIndex(parent=self)
        self.indexed = self.example_index.restore(self)
        return self.indexed

    def examples_built(self):
        self.example_index.store(self)


def _without_data(available, tel_ids):
    """{tel_id: [files where the selected telescope has no tables]}."""
    files = defaultdict(list)
    for filename, present in available.items():
        if present is None:
            continue
        for tel_id in tel_ids:
            if int(tel_id) not in present:
                files[int(tel_id)].append(filename)
    return dict(files)
