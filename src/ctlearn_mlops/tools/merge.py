"""Merge DL1 files (e.g. all gammas of a production) into one, with ctapipe's merge tool.

Targets ctapipe 0.23.2 ``MergeTool``: all its options are kept.  Added: every
input is checked first (same subarray, data model and processing products),
an incompatible set is refused naming the offending file, the output is
written under a temporary name and renamed when complete, and the events of
each input and the total are reported.
"""

import os
from pathlib import Path

from ctapipe.core.tool import ToolConfigurationError
from ctapipe.tools.merge import MergeTool

from ..dataproc.compat import incompatibility, summarize
from ..dataproc.inputs import expand_inputs

__all__ = ["MergeDL1", "main"]


class MergeDL1(MergeTool):
    """Check, merge and report DL1 files."""

    name = "ctlearn-mlops-merge"
    examples = """
    python scripts/data_processing/run_merge.py --output data/gamma_merged.dl1.h5 data/dl1/gamma_*.dl1.h5
    python scripts/data_processing/run_merge.py -o merged.dl1.h5 --input-dir data/dl1 --pattern 'proton_*.h5'
    """

    def setup(self):
        output = self.config.HDF5Merger.get("output_path")
        if not output:
            raise ToolConfigurationError("missing: --output FILE")
        self.final_output = Path(os.path.expandvars(str(output))).absolute()
        if self.final_output.exists() and not self.config.HDF5Merger.get("overwrite", False):
            raise ToolConfigurationError(f"{self.final_output} exists; pass --overwrite to replace it")
        self.partial = self.final_output.with_name(f".{self.final_output.name}.partial")
        self._exit_stack.callback(self.partial.unlink, missing_ok=True)
        self.final_output.parent.mkdir(parents=True, exist_ok=True)
        self.config.HDF5Merger.output_path = str(self.partial)
        self.config.HDF5Merger.overwrite = True
        self.provenance_log = self.final_output.with_name(f"{self.final_output.name}.provenance.log")
        super().setup()
        self.input_files = [Path(p) for p in expand_inputs(self.input_files, (".h5", ".hdf5"), key="input files")]
        self.summaries = [summarize(p) for p in self.input_files]
        reference = self.summaries[0]
        for summary in self.summaries[1:]:
            reason = incompatibility(reference, summary)
            if reason is not None:
                raise ToolConfigurationError(f"cannot merge {summary.path}: {reason}")

    def finish(self):
        super().finish()
        self.merger.close()
        os.replace(self.partial, self.final_output)
        width = max(len(s.path.name) for s in self.summaries)
        for s in self.summaries:
            print(f"{s.path.name:<{width}}  {s.n_events:>9d} events")
        print(f"{'total':<{width}}  {sum(s.n_events for s in self.summaries):>9d} events -> {self.final_output}")


def main():
    MergeDL1().run()
