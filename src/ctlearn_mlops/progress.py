"""Progress with ETA: a bar on a terminal, plain periodic lines in batch logs.

SLURM output files are not terminals; carriage-return progress bars turn
into unreadable garbage there, so those get one log line per step or per
``interval`` seconds instead.
"""

import sys
import time

from tqdm.auto import tqdm

__all__ = ["Progress"]


class Progress:
    """Count finished units of work; use as a context manager."""

    def __init__(self, total, description, log, unit="file", interval=30.0, stream=None):
        self.total = total
        self.description = description
        self.log = log
        self.unit = unit
        self.interval = interval
        self.done = 0
        self.start = time.monotonic()
        self._last_line = 0.0
        stream = stream or sys.stderr
        self._bar = None
        if stream.isatty():
            self._bar = tqdm(total=total, desc=description, unit=unit, file=stream, dynamic_ncols=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        if self._bar is not None:
            self._bar.close()

    @property
    def elapsed(self):
        return time.monotonic() - self.start

    def eta(self):
        if self.done == 0:
            return float("nan")
        return self.elapsed / self.done * (self.total - self.done)

    def update(self, n=1, note=""):
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
            if note:
                self._bar.set_postfix_str(note, refresh=False)
            return
        now = time.monotonic()
        if self.done >= self.total or now - self._last_line >= self.interval or self.total <= 50:
            self._last_line = now
            self.log.info(
                "%s: %d/%d %s, elapsed %.0f s, ETA %.0f s%s", self.description, self.done, self.total,
                self.unit + ("es" if self.unit.endswith(("ch", "s", "x")) else "s"), self.elapsed, self.eta(), f" ({note})" if note else "",
            )
