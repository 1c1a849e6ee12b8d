"""Stop requests from the batch system, caught from the first moment of a process.

SLURM's warning signal (``--signal=B:USR1@...``) can arrive while Python is
still importing TensorFlow; by default SIGUSR1 would kill the process.  The
train script calls ``catch_stop_signals()`` before any heavy import, and the
training loop checks ``stop_requested()``.  No TensorFlow here: keep it light.
"""

import signal

__all__ = ["STOP_SIGNALS", "catch_stop_signals", "stop_requested"]

STOP_SIGNALS = (signal.SIGUSR1, signal.SIGTERM)
_received = []


def _handle(signum, frame):
    _received.append(signal.Signals(signum).name)


def catch_stop_signals():
    for sig in STOP_SIGNALS:
        signal.signal(sig, _handle)


def stop_requested():
    """Name of the first stop signal received, or None."""
    return _received[0] if _received else None
