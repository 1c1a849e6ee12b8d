"""Errors with a meaning for the command line: each carries its exit code."""

from ctapipe.core.tool import ToolConfigurationError

__all__ = ["ConfigError", "InputDataError", "RunExistsError", "TrainingDiverged", "TrainingInterrupted"]


class ConfigError(ToolConfigurationError):
    """A task config is invalid. Exit code 2 (ctapipe's code for config errors)."""

    exit_code = 2

    def __init__(self, message, source=None, key=None):
        self.source = source
        self.key = key
        where = ""
        if source is not None and key:
            where = f"{source}: key '{key}': "
        elif source is not None:
            where = f"{source}: "
        elif key:
            where = f"key '{key}': "
        super().__init__(where + message)
        # ctapipe's ToolConfigurationError does not pass the message to Exception
        self.args = (where + message,)


class RunExistsError(ConfigError):
    """The run directory or output exists and --overwrite was not given."""


class InputDataError(ConfigError):
    """An input file is missing, unreadable or not what the task needs."""


class TrainingDiverged(ConfigError):
    """The loss became NaN or infinite: rerunning the same config will not help."""


class TrainingInterrupted(Exception):
    """Training was stopped by a signal; the run can be resumed.

    Exit code 75 (EX_TEMPFAIL): the batch script requeues the job on it.
    """

    exit_code = 75
