"""What a program prints besides its log: its result on stdout, a refusal on stderr.

Progress and diagnostics go through the tools' loggers (``--log-level``);
what a user asked for (the path written, a table of runs, the sbatch
command) goes to stdout through ``show``, so that it survives
``--log-level WARN`` and can be piped.
"""

import sys

__all__ = ["refuse", "show"]


def show(*lines):
    """Print lines of a program's result on stdout."""
    for line in lines:
        print(line, file=sys.stdout, flush=True)


def refuse(program, message):
    """Print why a program (not a Tool: those log it) refuses its input, on stderr."""
    print(f"{program}: {message}", file=sys.stderr, flush=True)
