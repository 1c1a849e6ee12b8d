"""Merge DL1 files (e.g. all gammas of a production) into one, with ctapipe's merge tool.

Targets ctapipe 0.32 ``MergeTool``: all its options are kept.  Added: every
input is checked first (same subarray, data model and processing products),
an incompatible set is refused naming the offending file before anything is
written (no output, no directory, no provenance log), the output is written
under a temporary name and renamed when complete, and the events of each
input and the total are reported.
"""

import os
from pathlib import Path

from ctapipe.tools.merge import MergeTool
from traitlets import default

from ..dataproc.compat import incompatibility, summarize
from ..dataproc.inputs import expand_inputs
from ..exceptions import ConfigError
from ..io.dl1 import hdf5_problem
from ..output import show
from .base import ExitCodes, RenamedOptions
from .io_checks import check_writable

__all__ = ["DL1MergeTool", "main"]


class DL1MergeTool(RenamedOptions, ExitCodes, MergeTool):
    """Check, merge and report DL1 files."""

    name = "ctlearn-mlops-merge"
    # ctapipe's -i is --input-dir; in every script of this package -i is --input (files or directories)
    aliases = {**{k: v for k, v in MergeTool.aliases.items() if k != ("i", "input-dir")},
               "input-dir": "MergeTool.input_dir"}
    renamed_options = {"-i": "--input-dir"}
    examples = """
    python scripts/data_processing/run_merge.py --output data/gamma_merged.dl1.h5 data/dl1/gamma_*.dl1.h5
    python scripts/data_processing/run_merge.py -o merged.dl1.h5 --input-dir data/dl1 --pattern 'proton_*.h5'
    """

    @default("log_level")
    def _log_level_default(self):
        return "INFO"  # as every script of the package (ctapipe-merge: WARN)

    @default("provenance_log")
    def _provenance_log_default(self):
        return os.devnull  # until the inputs passed their checks (set in setup)

    def _requested_inputs(self):
        """The inputs ctapipe's ``MergeTool.setup`` will merge: positional files, then --input-dir matches."""
        files = list(self.input_files) + list(self.parser.parse_args(self.extra_args).input_files)
        if self.input_dir is not None:
            files += sorted(self.input_dir.glob(self.file_pattern))
        return [Path(p) for p in expand_inputs(files, (".h5", ".hdf5"), key="input files")] if files else []

    def setup(self):
        output = self.config.HDF5Merger.get("output_path")
        if not output:
            raise ConfigError("missing: the merged file", key="--output")
        self.final_output = Path(os.path.expandvars(str(output))).absolute()
        if self.final_output.exists() and not self.config.HDF5Merger.get("overwrite", False):
            raise ConfigError(f"{self.final_output} exists; pass --overwrite to replace it", key="--output")
        inputs = self._requested_inputs()
        if not inputs:
            raise ConfigError("no input files: give them as arguments or with --input-dir", key="input files")
        for path in inputs:
            problem = hdf5_problem(path)
            if problem is not None:
                raise ConfigError(f"cannot merge {path}: it {problem}", key="input files")
        self.summaries = [summarize(p) for p in inputs]
        reference = self.summaries[0]
        for summary in self.summaries[1:]:
            reason = incompatibility(reference, summary)
            if reason is not None:
                raise ConfigError(f"cannot merge {summary.path}: {reason}", key="input files")
        check_writable(self.final_output.parent, "--output")

        # every check passed: from here on files are written
        self.partial = self.final_output.with_name(f".{self.final_output.name}.partial")
        self.enter_context(_RemovedAtExit(self.partial))
        self.final_output.parent.mkdir(parents=True, exist_ok=True)
        self.config.HDF5Merger.output_path = str(self.partial)
        self.config.HDF5Merger.overwrite = True
        self.provenance_log = self.final_output.with_name(f"{self.final_output.name}.provenance.log")
        super().setup()

    def output_location(self):
        return getattr(self, "final_output", None)

    def finish(self):
        super().finish()
        # close the file only: HDF5Merger.close() also registers its output_path in the provenance, which the
        # tool's exit stack does once the complete file has its final name
        self.merger.h5file.close()
        os.replace(self.partial, self.final_output)
        self.merger.output_path = self.final_output
        width = max(len(s.path.name) for s in self.summaries)
        for s in self.summaries:
            self.log.info("%s  %9d events", f"{s.path.name:<{width}}", s.n_events)
            show(f"{s.path.name:<{width}}  {s.n_events:>9d} events")
        show(f"{'total':<{width}}  {sum(s.n_events for s in self.summaries):>9d} events -> {self.final_output}")


class _RemovedAtExit:
    """Context manager that removes a temporary file when the tool ends, whatever the outcome."""

    def __init__(self, path):
        self.path = path

    def __enter__(self):
        return self.path

    def __exit__(self, *exc):
        self.path.unlink(missing_ok=True)


def main():
    DL1MergeTool().run()
