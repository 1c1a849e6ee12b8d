"""What every tool of the package shares: logging defaults and the exit-code contract."""

import contextlib
import functools
import os
import sys
from argparse import ArgumentError
from pathlib import Path

from ctapipe.core import Provenance, Tool
from traitlets import TraitError, default
from traitlets.config.loader import ArgumentError as OptionValueError

from .._compat import parse_command_line
from ..config import trait_error_message
from ..exceptions import ConfigError, Stop, typed_error

__all__ = ["ExitCodes", "MLOpsTool", "RenamedOptions", "current_options"]

_PHASES = ("setup", "start", "finish")
#: the options that only print something and end the tool
_ASKING_FOR_HELP = ("-h", "--help", "--help-all", "--version")


def _with_typed_errors(phase):
    """Raise the typed error (``exceptions.typed_error``) for what ``phase`` raised, when it has one."""

    @functools.wraps(phase)
    def wrapped(self, *args, **kwargs):
        try:
            return phase(self, *args, **kwargs)
        except Exception as err:
            typed = typed_error(err, self.output_location(), self.runs_over_tasks())
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

    def runs_over_tasks(self):
        """True while the tool runs over several tasks (then a lost peer ends it as resumable)."""
        return False

    def run(self, argv=None, raises=False):
        if any(str(option) in _ASKING_FOR_HELP for option in (sys.argv[1:] if argv is None else argv)):
            # the help alone on the terminal, without ctapipe's "Starting" and "Finished" lines around it
            self.log_level = "WARN"
            self.update_logging_config()
        try:
            super().run(argv, raises=raises)
        except Stop as stop:
            self.log.error("%s", stop)
            Provenance().finish_activity(activity_name=self.name, status="error", exit_code=stop.exit_code)
            if raises:
                raise
            self.exit(stop.exit_code)


#: what traitlets' command line always takes besides a tool's aliases and flags
_ALWAYS_KNOWN = ("h", "help", "help-all", "version", "show-config", "show-config-json")


def _is_number(text):
    try:
        float(text)
    except ValueError:
        return False
    return True


def current_options(argv, renamed, log):
    """``argv`` with the options a tool renamed spelled the new way, each use logged as a warning.

    ``renamed`` maps an old spelling (``--output-root``, ``-o``) to the new one.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    result = []
    for arg in argv:
        name, sep, value = arg.partition("=")
        if name in renamed:
            log.warning("%s is now %s (the old spelling still works for now)", name, renamed[name])
            arg = renamed[name] + sep + value
        result.append(arg)
    return result


class RenamedOptions:
    """Mixin for a ctapipe ``Tool``: old option spellings keep working, with a warning."""

    #: {"--old": "--new"}
    renamed_options = {}

    def initialize(self, argv=None):
        super().initialize(current_options(argv, self.renamed_options, self.log))

    def parse_command_line(self, argv=None):
        """traitlets' parsing without its wrapper, which ends a bad option with "Bad config" and exit code 1;
        an option the tool does not have is refused (traitlets only warns that it will have no effect)."""
        self._refuse_unknown_options(sys.argv[1:] if argv is None else argv)
        try:
            return parse_command_line(self, argv)
        except (TraitError, ArgumentError, OptionValueError) as err:
            raise ConfigError(f"command line: {trait_error_message(err)}") from None

    def _refuse_unknown_options(self, argv):
        known = set(_ALWAYS_KNOWN)
        for table in (self.aliases, self.flags):
            for key in table:
                known.update(key if isinstance(key, tuple) else (key,))
        for arg in map(str, argv):
            name = arg.lstrip("-").split("=", 1)[0]
            if not arg.startswith("-") or not name or "." in name or name in known or _is_number(arg):
                continue  # a value, a --Class.option, or an option of the tool
            raise ConfigError(f"command line: unknown option {arg.split('=', 1)[0]} (see --help)")


class MLOpsTool(RenamedOptions, ExitCodes, Tool):
    """A ctapipe Tool that reports progress at INFO level and writes no provenance log
    until it knows where its outputs go (a refused input must leave nothing behind)."""

    @default("log_level")
    def _log_level_default(self):
        return "INFO"

    def run(self, argv=None, raises=False):
        # ctapipe's Tool.run logs "Starting" before it reads the command line: --log-level applies from the start
        options = list(sys.argv[1:] if argv is None else argv)
        for i, option in enumerate(options):
            name, sep, value = str(option).partition("=")
            if name == "--log-level":
                value = value if sep else (options[i + 1] if i + 1 < len(options) else "")
                with contextlib.suppress(TraitError):
                    self.log_level = value
                    self.update_logging_config()
        return super().run(argv, raises=raises)

    @default("provenance_log")
    def _provenance_log_default(self):
        return os.devnull

    def write_provenance(self):
        """ctapipe's provenance log (``Tool.write_provenance``), for a run that ended well only, never half-written.

        A failed or refused run wrote no output: a log beside it would stand
        beside nothing (the run's own log says what happened).  The log is
        written whole or not at all; a log that cannot be written (a full
        disk) is said in one line.
        """
        from ..rundir import atomic_write_text

        activities = Provenance().finished_activities
        if not activities or activities[-1].provenance.get("status") != "completed":
            return
        path = Path(self.provenance_log)
        if str(path) == os.devnull:
            return
        try:
            earlier = path.read_text() if path.exists() else ""
            atomic_write_text(path, earlier + Provenance().as_json(indent=3))
        except OSError as err:
            typed = typed_error(err, path.parent)
            self.log.error("the provenance log %s could not be written: %s", path, typed or err)
            raise SystemExit(typed.exit_code if typed is not None else 1) from None
