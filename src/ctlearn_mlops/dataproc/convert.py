"""simtel -> ctapipe DL1 through ctapipe's own ``ctapipe-process``, one subprocess per file.

A subprocess per file isolates crashes (a corrupt file cannot take the others
down) and lets a pool of them use several cores.  Each output is written under
a temporary name and renamed only when complete and checked.
"""

import os
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import tables

__all__ = ["NO_SPACE", "ConversionResult", "convert_file", "count_events"]

#: the reason of a conversion that failed for lack of space
NO_SPACE = "no space left"

_ERROR_LINE = re.compile(r"^([A-Za-z_][\w.]*)(Error|Exception)\b.*")
_TRUNCATED = re.compile(r"truncated", re.IGNORECASE)


@dataclass
class ConversionResult:
    source: Path
    output: Path
    status: str  # done, skipped or failed
    n_events: int = 0
    seconds: float = 0.0
    reason: str = ""


def count_events(path):
    """Array events in a DL1 file (rows of the subarray trigger table)."""
    with tables.open_file(path) as h5:
        if "/dl1/event/subarray/trigger" not in h5.root:
            return 0
        return h5.root.dl1.event.subarray.trigger.nrows


#: below this much free space in the output directory, a failed conversion is taken for a full disk
_LOW_SPACE_BYTES = 8 * 1024 * 1024


def _no_space(stderr, directory):
    if re.search(r"no space left on device|disk quota exceeded", stderr, re.IGNORECASE):
        return True
    try:
        return shutil.disk_usage(directory).free < _LOW_SPACE_BYTES
    except OSError:
        return False


def _failure_reason(stderr):
    errors = [m.group(0).strip() for m in map(_ERROR_LINE.match, stderr.splitlines()) if m]
    if not errors:
        tail = [line for line in stderr.strip().splitlines() if line.strip()]
        return tail[-1][:300] if tail else "ctapipe-process failed without a message"
    reason = errors[-1]
    if "Could not find compatible EventSource" in reason:
        return "not a simulation file that ctapipe can read (no compatible EventSource)"
    return reason[:300]


def convert_file(source, output, processing_config, allowed_tels=(), max_events=None,
                 allow_truncated=False, log_dir=None):
    """Convert one simtel file; never leaves a file at ``output`` unless it is complete."""
    source, output = Path(source), Path(output)
    partial = output.with_name(f".{output.name}.partial")
    partial.unlink(missing_ok=True)
    log_dir = Path(log_dir or output.parent)
    cmd = [
        sys.executable, "-m", "ctapipe.tools.process",
        "--input", str(source), "--output", str(partial), "--config", str(processing_config),
        "--overwrite", "--no-progress", "--log-level", "WARN",
        "--provenance-log", str(log_dir / f"{output.name}.provenance.log"),
    ]
    for tel_id in allowed_tels:
        cmd += ["--allowed-tels", str(tel_id)]
    if max_events is not None:
        cmd += ["--max-events", str(max_events)]
    t0 = time.monotonic()
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="3", PYTHONWARNINGS="default")
    result = subprocess.run(cmd, capture_output=True, text=True, env=env)
    seconds = time.monotonic() - t0

    def failed(reason):
        partial.unlink(missing_ok=True)
        try:
            (log_dir / f"{output.name}.log").write_text(result.stderr)
        except OSError:
            pass  # no room for the log either: the reason says why
        return ConversionResult(source, output, "failed", seconds=seconds, reason=reason)

    if result.returncode != 0:
        if _no_space(result.stderr, output.parent):
            return failed(NO_SPACE)
        return failed(_failure_reason(result.stderr))
    if not partial.exists():
        return failed("ctapipe-process wrote no output")
    n_events = count_events(partial)
    if n_events == 0:
        return failed("no events written (no telescope triggered, or the file holds no events)")
    if _TRUNCATED.search(result.stderr) and not allow_truncated:
        return failed(f"input is truncated ({n_events} events before the end); --allow-truncated keeps such files")
    os.replace(partial, output)
    return ConversionResult(source, output, "done", n_events=n_events, seconds=seconds)
