"""What identifies a reader's data and settings: the keys of the image cache and the example index."""

import json
import os
from pathlib import Path

__all__ = [
    "READER_TYPES", "configured_reader_type", "example_settings", "reader_settings", "reader_type_for",
    "source_fingerprints",
]

#: reader types of a task config that ``loading.reader.ImageReader`` stands in for
READER_TYPES = {"DLImageReader": "ImageReader"}


def reader_type_for(configured):
    """The reader class name to build for ``TrainCTLearnModel.dl1dh_reader_type`` as configured."""
    return READER_TYPES.get(configured, configured)


def configured_reader_type(built):
    """The reader type a config names for the class ``built`` (the inverse of ``reader_type_for``)."""
    return next((name for name, ours in READER_TYPES.items() if ours == built), built)


def _jsonable(value):
    return json.loads(json.dumps(value, default=str))


def reader_settings(reader):
    """What determines the images and the example list of a reader, as plain JSON values."""
    mappers = {}
    for camera, mapper in sorted(reader.image_mappers.items()):
        traits = {name: getattr(mapper, name) for name in sorted(mapper.class_trait_names(config=True))}
        mappers[str(camera)] = {"class": type(mapper).__name__, **traits}
    return _jsonable({
        # ImageReader reads what DLImageReader reads: a cache of one serves the other
        "reader": configured_reader_type(type(reader).__name__),
        "mode": reader.mode,
        "channels": list(reader.channels),
        "tel_ids": [int(t) for t in reader.tel_ids],
        "quality_criteria": [list(c) for c in reader.quality_query.quality_criteria],
        "transforms": reader.transforms,
        "image_mappers": mappers,
    })


def source_fingerprints(files):
    result = []
    for path in files:
        stat = os.stat(path)
        result.append({"path": str(Path(path).resolve()), "size": stat.st_size, "mtime_ns": stat.st_mtime_ns})
    return result


def example_settings(reader):
    """What determines a reader's example table: its class and every option of it and of its cuts.

    Read while the reader is being built (its options are set, its images not
    yet), unlike ``reader_settings``.
    """
    options = {name: getattr(reader, name) for name in sorted(reader.class_trait_names(config=True))}
    return _jsonable({
        "reader": configured_reader_type(type(reader).__name__),
        "options": options,
        "quality_criteria": [list(c) for c in reader.quality_query.quality_criteria],
    })
