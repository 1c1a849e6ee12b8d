"""Errors with a meaning for the command line, and the one place that turns them into exit codes.

The exit-code contract of every script (docs/task_execution.md#exit-codes):

====  ==========================================================================
0     done
1     unexpected failure (a traceback is logged), or the machine failed the run
      (no space left): one message, the run marked failed
2     configuration or input error, found before work starts (or a config that
      cannot work, such as a diverging loss): rerunning unchanged will not help
75    stopped in a way that can be resumed: stop signal, time limit, a dead
      loader worker (``bash_template.sh`` requeues, ``resume.py`` continues)
130   Ctrl-C
====  ==========================================================================

Errors of code 2 are ctapipe's ``ToolConfigurationError`` (ctapipe's ``Tool.run``
logs them in one line).  The others that end a tool with a message and no
traceback derive from ``Stop``, a ``BaseException`` (ctapipe logs every
``Exception`` with its traceback); ``tools.base.MLOpsTool`` ends the tool on
them.  ``typed_error`` turns the low-level errors that have such a meaning
(``ENOSPC`` from any library, a dead loader worker seen through TensorFlow)
into these types.
"""

import errno
import re

from ctapipe.core.tool import ToolConfigurationError

__all__ = [
    "EXIT_CONFIG",
    "EXIT_CTRL_C",
    "EXIT_FAILURE",
    "EXIT_GATE",
    "GateFailed",
    "EXIT_RESUMABLE",
    "ConfigError",
    "FileUnusable",
    "InputDataError",
    "LoaderWorkerDied",
    "NoSpaceLeft",
    "ResumableStop",
    "RunExistsError",
    "RunLockedError",
    "TaskLost",
    "Stop",
    "TrainingDiverged",
    "TrainingInterrupted",
    "typed_error",
]

EXIT_FAILURE = 1
EXIT_CONFIG = 2
EXIT_GATE = 3
EXIT_RESUMABLE = 75  # EX_TEMPFAIL
EXIT_CTRL_C = 130  # ctapipe's Tool.run for KeyboardInterrupt


class ConfigError(ToolConfigurationError):
    """A task config or an input is invalid. Exit code 2 (ctapipe's code for config errors)."""

    exit_code = EXIT_CONFIG

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


class RunLockedError(ConfigError):
    """Another living process (or SLURM job) holds the run."""


class InputDataError(ConfigError):
    """An input file is missing, unreadable or not what the task needs."""


class TrainingDiverged(ConfigError):
    """The loss became NaN or infinite: rerunning the same config will not help."""


class Stop(BaseException):  # noqa: N818 (a control-flow stop, like KeyboardInterrupt)
    """Ends a tool with one message and ``exit_code``, without a traceback.

    A ``BaseException``: ctapipe's ``Tool.run`` logs every ``Exception`` with
    its traceback; ``MLOpsTool.run`` logs these in one line.
    """

    exit_code = EXIT_FAILURE


class NoSpaceLeft(Stop):
    """A write failed for lack of space (or quota). Exit code 1."""

    def __init__(self, where=None):
        self.where = where
        mount = _mount_point(where) if where else None
        on = f" (the file system mounted at {mount})" if mount and str(mount) != str(where) else ""
        super().__init__(f"no space left on {where or 'the output file system'}{on}")


class FileUnusable(Stop):
    """A file or directory the tool must write (or read) cannot be used: permission, a directory in the
    way, a read-only file system, a name too long. Exit code 1."""

    def __init__(self, err):
        # a rename names its destination second: that is the place in the way (the source is a temporary file)
        super().__init__(f"{err.filename2 or err.filename}: {err.strerror or err}")


#: the errors of a file in the way or out of reach, as opposed to a failing device or a bug
_FILE_UNUSABLE = (errno.EACCES, errno.EPERM, errno.EISDIR, errno.ENOTDIR, errno.EROFS, errno.ENAMETOOLONG)


def _mount_point(path):
    """The mount point of the file system holding ``path`` (or its nearest existing parent), or None."""
    import os
    from pathlib import Path

    path = Path(path).absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path if path.exists() else None


class GateFailed(Stop):
    """A physics gate found the new result worse than its reference (``compare_models.py --gate``). Exit code 3."""

    exit_code = EXIT_GATE


class ResumableStop(Stop):
    """Stopped in a way that a rerun continues. Exit code 75: the batch script requeues."""

    exit_code = EXIT_RESUMABLE


class TrainingInterrupted(ResumableStop):
    """Training was stopped by a signal (SLURM's warning before the time limit, SIGTERM)."""


class LoaderWorkerDied(ResumableStop):
    """A loader worker process died (killed, out of memory): the run resumes from its last finished epoch."""


class TaskLost(ResumableStop):
    """A task of a multi-worker run stopped answering (died, killed, its node failed)."""


_NO_SPACE = re.compile(r"no space left on device|disk quota exceeded", re.IGNORECASE)
#: what TensorFlow's coordination service and collectives say when another task of the cluster is gone
_PEER_LOST = re.compile(r"heartbeat timeout|Socket closed|Connection reset by peer|failed to connect to all addresses|"
                        r"Collective ops is aborted", re.IGNORECASE)
#: names of the loader pool's errors (``loading.pool``); through tf.data they arrive as text in an OpError
_WORKER_DIED = "LoaderWorkerDiedError"
_WORKER_FAILED = "LoaderWorkerError"


def _path_in(text):
    match = re.search(r"'(/[^']+)'|\"(/[^\"]+)\"|(/[\w./+-]{3,})", text)
    return next((g for g in match.groups() if g), None) if match else None


def typed_error(err, output=None, multi_worker=False):
    """The typed error that ``err`` means, or None (an unexpected error: keep its traceback).

    Parameters
    ----------
    err : BaseException
        What a tool phase raised.
    output : path-like, optional
        Where the tool writes: named in the no-space message when ``err`` does not say.
    multi_worker : bool
        The tool runs over several tasks: a lost peer is a lost task (resumable).  In a
        one-task run the same words (an MLflow server's "Connection reset by peer") are
        not: a requeue would meet them again.
    """
    if isinstance(err, (Stop, ToolConfigurationError, KeyboardInterrupt, SystemExit)):
        return None
    text = str(err)
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT) or _NO_SPACE.search(text):
        # a path in the text of a TensorFlow error may be a device name (/job:localhost/...): only real places
        candidates = (getattr(err, "filename", None), _path_in(text), output)
        where = next((c for c in candidates if c and _mount_point(c) is not None and ":" not in str(c)), output)
        return NoSpaceLeft(where)
    if isinstance(err, OSError) and err.errno in _FILE_UNUSABLE and err.filename:
        return FileUnusable(err)
    if multi_worker and _PEER_LOST.search(text):
        # TensorFlow names the task that failed as /job:worker/task:N (or .../replica:0/task:N)
        lost = re.search(r"(?:from|Task) /job:worker/(?:replica:\d+/)?task:(\d+)", text)
        who = f"task {lost.group(1)}" if lost else "a task"
        return TaskLost(f"a task of this multi-worker run stopped answering ({who}: it died, was killed or lost its "
                        "node): every task stops; the run resumes from its last finished epoch")
    for name, kind in ((_WORKER_DIED, LoaderWorkerDied), (_WORKER_FAILED, InputDataError)):
        if type(err).__name__ == name or f"{name}:" in text:
            message = text.split(f"{name}:", 1)[-1].strip() or name
            return kind(message.splitlines()[0]) if kind is LoaderWorkerDied else kind(message.splitlines()[0], key="FastLoader")
    return None
