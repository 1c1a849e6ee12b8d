"""What every tool of the package shares: logging defaults and the exit-code contract."""

import functools
import os

from ctapipe.core import Provenance, Tool
from traitlets import default

from ..exceptions import Stop, typed_error

__all__ = ["ExitCodes", "MLOpsTool"]

_PHASES = ("setup", "start", "finish")


def _with_typed_errors(phase):
    """Raise the typed error (``exceptions.typed_error``) for what ``phase`` raised, when it has one."""

    @functools.wraps(phase)
    def wrapped(self, *args, **kwargs):
        try:
            return phase(self, *args, **kwargs)
        except Exception as err:
            typed = typed_error(err, self.output_location())
            if typed is None:
                raise
            raise typed from None

    wrapped._typed_errors = True
    return wrapped


class ExitCodes:
    """Mixin for a ctapipe ``Tool``: every error ends the tool with the code of ``exceptions``.

    The ``setup``, ``start`` and ``finish`` of every subclass turn low-level
    errors with a meaning (no space left, a dead loader worker) into typed
    errors; a ``Stop`` ends the tool with one logged line and its exit code.
    """

    def __init_subclass__(cls, **kwargs):
        super().__init_subclass__(**kwargs)
        for name in _PHASES:
            phase = cls.__dict__.get(name)
            if phase is not None and not getattr(phase, "_typed_errors", False):
                setattr(cls, name, _with_typed_errors(phase))

    def output_location(self):
        """Where the tool writes (named in a no-space message), or None."""
        return None

    def run(self, argv=None, raises=False):
        try:
            super().run(argv, raises=raises)
        except Stop as stop:
            self.log.error("%s", stop)
            Provenance().finish_activity(activity_name=self.name, status="error", exit_code=stop.exit_code)
            if raises:
                raise
            self.exit(stop.exit_code)


class MLOpsTool(ExitCodes, Tool):
    """A ctapipe Tool that reports progress at INFO level and writes no provenance log
    until it knows where its outputs go (a refused input must leave nothing behind)."""

    @default("log_level")
    def _log_level_default(self):
        return "INFO"

    @default("provenance_log")
    def _provenance_log_default(self):
        return os.devnull
