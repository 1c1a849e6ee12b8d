"""Write slim DL1 files holding only what training reads.

Kept: images with peak times and cleaning masks, image parameters (the reader
indexes events and applies its cuts with them), triggers, simulation truth,
pointing and the instrument/simulation configuration, in the ctapipe layout
so that stock readers still open the files.  Dropped: true images and their
parameters, waveforms, muon and DL2 tables, processing statistics.  The copy
is done by ctapipe's HDF5Merger.
"""

import os
import sys

from ctapipe.core.traits import Bool, List, Path, Unicode
from ctapipe.io import HDF5Merger

from ..dataproc.inputs import expand_inputs
from ..exceptions import ConfigError
from ..io.dl1 import check_dl1_files
from ..output import show
from ..progress import Progress
from .base import MLOpsTool
from .io_checks import require_writable_directory

__all__ = ["ExtractImagesTool", "main"]

#: what HDF5Merger leaves out of the slim files
SLIM = dict(
    true_images=False, true_parameters=False, r0_waveforms=False, r1_waveforms=False,
    dl1_muon=False, dl2_subarray=False, dl2_telescope=False, processing_statistics=False,
)


def _size(path):
    return os.stat(path).st_size


class ExtractImagesTool(MLOpsTool):
    """Slim copies of DL1 files for training (same names, in --output-dir)."""

    name = "ctlearn-mlops-extract-images"
    description = __doc__
    examples = """
    python scripts/data_processing/extract_only_images.py --input data/dl1/ --output-dir data/dl1_images
    python scripts/data_processing/extract_only_images.py --image-cache --config configs/energy.yaml   # image cache
    """

    inputs = List(Unicode(), default_value=[], help="DL1 files, directories or glob patterns.").tag(config=True)
    output_dir = Path(default_value=None, allow_none=True, directory_ok=True, file_ok=False,
                      help="Directory of the slim files.").tag(config=True)
    overwrite = Bool(False, help="Replace slim files that exist.").tag(config=True)

    aliases = {("i", "input"): "ExtractImagesTool.inputs", "output-dir": "ExtractImagesTool.output_dir"}
    renamed_options = {"-o": "--output-dir"}
    flags = {
        "overwrite": ({"ExtractImagesTool": {"overwrite": True}}, "Replace existing outputs."),
        # handled by main(): the image-cache mode is its own tool (its options: --image-cache --help)
        "image-cache": ({}, "Write the image cache of a task config instead (--config, --set, --split, "
                            "--compression, --output-dir; see extract_only_images.py --image-cache --help)."),
    }


    def setup(self):
        if self.output_dir is None:
            raise ConfigError("missing: where to write the slim files", key="--output-dir")
        self.files = expand_inputs(self.inputs, (".h5", ".hdf5"))
        check_dl1_files(self.files, key="--input")  # before the output directory is made
        for source in self.files:
            if (self.output_dir / source.name).resolve() == source.resolve():
                raise ConfigError(f"output would replace its input {source}", key="--output-dir")
        require_writable_directory(self.output_dir, "--output-dir")
        self.provenance_log = self.output_dir / f"{self.name}.provenance.log"

    def start(self):
        self.rows = []
        with Progress(len(self.files), "extracting", self.log) as progress:
            for source in self.files:
                target = self.output_dir / source.name
                if target.exists() and not self.overwrite:
                    self.rows.append((source, target, _size(source), _size(target), "skipped"))
                    progress.update(note=f"{source.name} exists")
                    continue
                partial = target.with_name(f".{target.name}.partial")
                try:
                    with HDF5Merger(output_path=partial, overwrite=True, parent=self, **SLIM) as merger:
                        merger(source)
                        # the complete file under its final name before HDF5Merger.close() registers its output
                        merger.h5file.close()
                        os.replace(partial, target)
                        merger.output_path = target
                finally:
                    partial.unlink(missing_ok=True)
                self.rows.append((source, target, _size(source), _size(target), "written"))
                progress.update(note=source.name)

    def finish(self):
        before = sum(r[2] for r in self.rows)
        after = sum(r[3] for r in self.rows)
        for _source, target, size_in, size_out, status in self.rows:
            show(f"{status:8s} {target}  {size_in / 1e6:8.1f} MB -> {size_out / 1e6:8.1f} MB ({size_out / size_in:.0%})")
        show(f"total {before / 1e6:.1f} MB -> {after / 1e6:.1f} MB: {1 - after / max(before, 1):.0%} smaller")


def main(argv=None):
    """Slim DL1 copies, or with --image-cache the image cache of a task config."""
    argv = sys.argv[1:] if argv is None else argv
    if "--image-cache" in argv:
        from .image_cache import ImageCacheTool

        ImageCacheTool().run([a for a in argv if a != "--image-cache"])
    else:
        ExtractImagesTool().run(argv)
