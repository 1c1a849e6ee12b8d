"""What a program prints besides its log: its result on stdout, a refusal on stderr.

Progress and diagnostics go through the tools' loggers (``--log-level``);
what a user asked for (the path written, a table of runs, the sbatch
command) goes to stdout through ``show``, so that it survives
``--log-level WARN`` and can be piped.
"""

import contextlib
import os
import re
import sys
import tempfile

__all__ = ["refuse", "show", "startup_chatter_dropped"]


def show(*lines):
    """Print lines of a program's result on stdout."""
    for line in lines:
        print(line, file=sys.stdout, flush=True)


def refuse(program, message):
    """Print why a program (not a Tool: those log it) refuses its input, on stderr."""
    print(f"{program}: {message}", file=sys.stderr, flush=True)


#: what TensorFlow 2.21 writes to stderr at import whatever TF_CPP_MIN_LOG_LEVEL says (absl INFO lines)
_STARTUP_CHATTER = re.compile(r"^(WARNING: All log messages before absl::InitializeLog\(\) is called|I\d{4} [\d:. ]+\d+ \S+:\d+\] )")


@contextlib.contextmanager
def startup_chatter_dropped():
    """While active, the process' stderr (file descriptor 2) goes to a file; on exit, all but the chatter is replayed.

    TensorFlow 2.21 writes absl INFO lines (oneDNN, CUDA probing) to the process' stderr when it is imported,
    whatever TF_CPP_MIN_LOG_LEVEL says: around the imports that may load it (a tool's modules, a custom model
    file).  TF_CPP_MIN_LOG_LEVEL=0 keeps them.
    """
    if os.environ.get("TF_CPP_MIN_LOG_LEVEL") == "0":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            sys.stderr.write("".join(line for line in lines if not _STARTUP_CHATTER.match(line)))
            sys.stderr.flush()
