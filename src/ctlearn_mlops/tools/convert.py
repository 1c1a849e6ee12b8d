"""Convert simtel files (.simtel.gz / .simtel.zst) to training-ready ctapipe DL1 HDF5.

Each file goes through ctapipe's own processing tool (ctapipe-process) with the
processing config kept in configs/processing/.  Outputs that are already
complete are skipped, so a killed conversion is resumed by running the same
command again; each output is written under a temporary name and renamed only
when complete.  Under a SLURM job array each element converts only its shard.
"""

import time
from concurrent.futures import ThreadPoolExecutor, as_completed

from ctapipe.core.traits import Bool, Int, List, Path, Unicode

from ..dataproc.convert import NO_SPACE, convert_file
from ..dataproc.inputs import (
    SIMTEL_SUFFIXES,
    expand_inputs,
    output_name,
    parse_shard,
    select_shard,
    shard_from_environment,
)
from ..exceptions import ConfigError, NoSpaceLeft, Stop
from ..output import show
from ..progress import Progress
from .base import MLOpsTool
from .io_checks import require_writable_directory

__all__ = ["ConvertTool", "main"]


class ConvertTool(MLOpsTool):
    """simtel -> DL1 (images, peak times, parameters, simulation truth, pointing) with ctapipe-process."""

    name = "ctlearn-mlops-convert"
    description = __doc__
    examples = """
    python scripts/data_processing/convert_data.py --input /data/gammas/ --output-dir data/dl1/gammas --jobs 2
    python scripts/data_processing/convert_data.py --input '/data/prod/*.simtel.zst' --output-dir data/dl1 --allowed-tels 1 --allowed-tels 2
    sbatch --array=0-99 ... convert_data.py --input /data/prod/ --output-dir data/dl1   # each element takes its shard
    """

    inputs = List(Unicode(), default_value=[], help="simtel files, directories (recursive) or glob patterns.").tag(
        config=True
    )
    output_dir = Path(default_value=None, allow_none=True, directory_ok=True, file_ok=False,
                      help="Directory of the DL1 outputs (<name>.dl1.h5).").tag(config=True)
    processing_config = Path(
        default_value="configs/processing/dl1_images.yaml", exists=True, directory_ok=False,
        help="ctapipe-process configuration (YAML).",
    ).tag(config=True)
    jobs = Int(1, min=1, help="Files converted in parallel.").tag(config=True)
    shard = Unicode("", help="Convert only shard i of n of the sorted file list ('i/n'); "
                             "default under a SLURM job array: its task id and count.").tag(config=True)
    allowed_tels = List(Int(), default_value=[], help="Keep only these telescope ids (default: all).").tag(config=True)
    max_events = Int(default_value=None, allow_none=True, min=1, help="Stop each file after this many events.").tag(
        config=True
    )
    allow_truncated = Bool(False, help="Keep the events of truncated input files instead of failing them.").tag(
        config=True
    )
    overwrite = Bool(False, help="Convert again files whose output exists.").tag(config=True)

    aliases = {
        ("i", "input"): "ConvertTool.inputs",
        "output-dir": "ConvertTool.output_dir",
        "processing-config": "ConvertTool.processing_config",
        ("j", "jobs"): "ConvertTool.jobs",
        "shard": "ConvertTool.shard",
        ("t", "allowed-tels"): "ConvertTool.allowed_tels",
        ("m", "max-events"): "ConvertTool.max_events",
    }
    renamed_options = {"-o": "--output-dir"}
    flags = {
        "overwrite": ({"ConvertTool": {"overwrite": True}}, "Convert again files whose output exists."),
        "allow-truncated": ({"ConvertTool": {"allow_truncated": True}}, "Keep events of truncated files."),
    }


    def setup(self):
        if self.output_dir is None:
            raise ConfigError("missing: where to write the DL1 files", key="--output-dir")
        # sorted, so that every element of a job array sees the same list
        files = sorted(expand_inputs(self.inputs, SIMTEL_SUFFIXES))
        shard = parse_shard(self.shard) if self.shard else shard_from_environment()
        if shard is not None:
            files = select_shard(files, *shard)
            self.log.info("shard %d/%d: %d files", shard[0], shard[1], len(files))
        names = [output_name(f) for f in files]
        if len(set(names)) != len(names):
            duplicates = sorted({n for n in names if names.count(n) > 1})
            raise ConfigError(f"several inputs would write the same output: {duplicates}", key="--input")
        require_writable_directory(self.output_dir, "--output-dir")
        self.log_dir = self.output_dir / "logs"
        self.log_dir.mkdir(exist_ok=True)
        self.provenance_log = self.log_dir / f"{self.name}.provenance.log"
        self.todo, self.skipped = [], []
        for source, name in zip(files, names):
            target = self.output_dir / name
            (self.skipped if target.exists() and not self.overwrite else self.todo).append((source, target))

    def start(self):
        t0 = time.monotonic()
        self.results = []
        with Progress(len(self.todo), "converting", self.log) as progress, ThreadPoolExecutor(self.jobs) as pool:
            futures = [
                pool.submit(
                    convert_file, source, target, self.processing_config, self.allowed_tels,
                    self.max_events, self.allow_truncated, self.log_dir,
                )
                for source, target in self.todo
            ]
            for future in as_completed(futures):
                result = future.result()
                self.results.append(result)
                if result.reason == NO_SPACE:
                    # every other file would fail the same way
                    for other in futures:
                        other.cancel()
                    raise NoSpaceLeft(self.output_dir)
                note = f"{result.output.name}: {result.n_events} events" if result.status == "done" else (
                    f"{result.source.name} FAILED")
                progress.update(note=note)
        self.seconds = time.monotonic() - t0

    def output_location(self):
        return self.output_dir

    def finish(self):
        done = [r for r in self.results if r.status == "done"]
        failed = sorted((r for r in self.results if r.status == "failed"), key=lambda r: str(r.source))
        show(
            f"converted {len(done)}, skipped {len(self.skipped)} (already complete), failed {len(failed)}; "
            f"{sum(r.n_events for r in done)} events written in {self.seconds:.0f} s to {self.output_dir}"
        )
        for result in failed:
            self.log.error("FAILED %s: %s", result.source, result.reason)
        if failed:
            raise Stop(f"{len(failed)} of {len(self.results)} files failed; ctapipe-process logs of the failed files: "
                       f"{self.log_dir}")


def main():
    ConvertTool().run()
