"""Stop requests from the batch system, caught from the first moment of a process.

SLURM's warning signal (``--signal=B:USR1@...``) can arrive while Python is
still importing TensorFlow; by default SIGUSR1 would kill the process.  The
train script calls ``catch_stop_signals()`` before any heavy import, and the
training loop checks ``stop_requested()``.  No TensorFlow here: keep it light.
"""

import os
import re
import signal
import subprocess
import time

__all__ = ["STOP_SIGNALS", "catch_stop_signals", "parse_slurm_duration", "stop_deadline", "stop_requested"]

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
#: (signal name, monotonic time) of each stop signal received
_received = []
_deadline = []


def _handle(signum, frame):
    _received.append((signal.Signals(signum).name, time.monotonic()))


def catch_stop_signals():
    for sig in STOP_SIGNALS:
        signal.signal(sig, _handle)


def stop_requested():
    """Name of the first stop signal received, or None."""
    return _received[0][0] if _received else None


def parse_slurm_duration(text):
    """Seconds of a SLURM duration ('45', '1:30', '2:01:30', '1-02:00:00'), or None."""
    match = re.fullmatch(r"(?:(\d+)-)?(?:(\d+):)?(?:(\d+):)?(\d+)", text.strip())
    if not match:
        return None
    days, a, b, seconds = match.groups()
    hours, minutes = (int(a), int(b)) if b is not None else (0, int(a or 0))
    return ((int(days or 0) * 24 + hours) * 60 + minutes) * 60 + int(seconds)


def _slurm_seconds_left():
    job = os.environ.get("SLURM_JOB_ID")
    if not job:
        return None
    try:
        result = subprocess.run(["squeue", "-h", "-j", job, "-o", "%L"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    return parse_slurm_duration(result.stdout) if result.returncode == 0 else None


def stop_deadline():
    """Monotonic time by which a stop must be done: the job's end for SLURM's warning signal, else now.

    SLURM checks for due warning signals only periodically, so the warning can
    come well before the grace time asked for; asking SLURM for the time left
    lets the training use it.
    """
    if not _received:
        return None
    if not _deadline:
        name, received_at = _received[0]
        left = _slurm_seconds_left() if name == "SIGUSR1" else None
        _deadline.append(received_at if left is None else time.monotonic() + left)
    return _deadline[0]
