"""Run locks: one writer per run directory at a time.

A process that trains or tests a run holds ``<task dir>/.<run name>.lock``
(next to the run directory, so that it survives the run directory being moved
aside during an overwrite or a resume).  The lock file says who holds it: host,
process id and start time, SLURM job id and restart count, the tool and since
when.  A second writer is refused naming the holder.  A lock whose holder is
gone is stale and taken over (with a warning):

* same host, and the process is dead (or the id now belongs to another
  process: its start time differs);
* the same SLURM job in an earlier incarnation (a requeued job: its restart
  count is lower);
* another SLURM job that SLURM no longer lists as pending or running.

The record appears whole (written under a temporary name, then linked into
place), and a stale lock is replaced by one process only (``_take_over``).
A lock held on another host outside SLURM cannot be checked from here: it is
refused; ``docs/task_execution.md#run-locks`` says how to clear one by hand.
"""

import json
import logging
import os
import socket
import subprocess
import time
from pathlib import Path

from .exceptions import RunLockedError
from .rundir import utc_now

__all__ = ["RunLock", "lock_path", "stale_reason"]

log = logging.getLogger(__name__)

_ACTIVE_SLURM_STATES = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "RESIZING", "SUSPENDED"}


def lock_path(run_dir):
    run_dir = Path(run_dir)
    return run_dir.with_name(f".{run_dir.name}.lock")


def _process_start_time(pid):
    """Start time of a process in clock ticks since boot (Linux), or None."""
    try:
        with open(f"/proc/{int(pid)}/stat") as f:
            # the command name (2nd field) may contain spaces: count from the closing parenthesis
            return int(f.read().rsplit(")", 1)[1].split()[19])
    except (OSError, ValueError, IndexError):
        return None


def _slurm_job_active(job_id):
    try:
        result = subprocess.run(["squeue", "-h", "-j", str(job_id), "-o", "%T"], capture_output=True, text=True,
                                timeout=20)
    except (OSError, subprocess.SubprocessError):
        return None  # cannot tell
    if result.returncode != 0:
        # squeue refuses the ids of jobs that ended long ago; any other failure says nothing
        return False if "invalid job id" in result.stderr.lower() else None
    return bool(set(result.stdout.split()) & _ACTIVE_SLURM_STATES)


def _holder():
    return {
        "host": socket.gethostname(),
        "pid": os.getpid(),
        "pid_start": _process_start_time(os.getpid()),
        "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
        "slurm_restart_count": int(os.environ.get("SLURM_RESTART_COUNT", "0")),
        "since": utc_now(),
    }


def describe_holder(holder):
    where = f"process {holder.get('pid')} on {holder.get('host')}"
    if holder.get("slurm_job_id"):
        where += f" (SLURM job {holder['slurm_job_id']})"
    tool = f"{holder.get('tool')} " if holder.get("tool") else ""
    return f"{tool}{where}, since {holder.get('since')}"


def stale_reason(holder):
    """Why the lock of ``holder`` is stale (a sentence), or None while its holder may be alive."""
    here = socket.gethostname()
    job = holder.get("slurm_job_id")
    if job and job == os.environ.get("SLURM_JOB_ID"):
        if int(holder.get("slurm_restart_count") or 0) < int(os.environ.get("SLURM_RESTART_COUNT", "0")):
            return f"held by an earlier run of this SLURM job ({job}, before its requeue)"
    if holder.get("host") == here:
        start = _process_start_time(holder.get("pid", -1))
        if start is None:
            return f"process {holder.get('pid')} on {here} is gone"
        if holder.get("pid_start") is not None and start != holder["pid_start"]:
            return f"process id {holder.get('pid')} on {here} now belongs to another process"
        return None
    if job:
        active = _slurm_job_active(job)
        if active is False:
            return f"SLURM job {job} has ended"
    return None


class RunLock:
    """The lock of one run directory; use as a context manager or call ``release``."""

    def __init__(self, run_dir, tool):
        self.path = lock_path(run_dir)
        self.run_dir = Path(run_dir)
        self.tool = tool
        self.held = False

    def _record_file(self):
        """A complete record of this holder under a temporary name next to the lock (linked or renamed into place)."""
        record = {**_holder(), "tool": self.tool, "run_dir": str(self.run_dir)}
        tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.{time.monotonic_ns()}.partial")
        with open(tmp, "w") as f:
            f.write(json.dumps(record, indent=2) + "\n")
            f.flush()
            os.fsync(f.fileno())
        return tmp, record

    def _create(self, tmp):
        """Put the record in place if there is no lock: a hard link appears whole, and only if the name is free."""
        os.link(tmp, self.path)  # FileExistsError when the lock exists

    def _take_over(self, tmp, stale):
        """Replace the lock whose holder ``stale`` is gone; False if another process changed it meanwhile.

        Judging and replacing happen under a second name taken by a link
        (``<lock>.takeover``): of two processes that find the same stale lock,
        one replaces it, the other then finds a living holder.  A takeover
        name older than a minute was left by a process killed in between.
        """
        guard = self.path.with_name(f"{self.path.name}.takeover")
        try:
            os.link(tmp, guard)
        except FileExistsError:
            try:
                if time.time() - guard.stat().st_mtime > 60:
                    guard.unlink(missing_ok=True)
            except FileNotFoundError:
                pass
            return False
        try:
            if self.read() != stale:
                return False
            os.replace(tmp, self.path)
            return True
        finally:
            guard.unlink(missing_ok=True)

    def read(self):
        try:
            return json.loads(self.path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable: not written by this version (records appear whole), or damaged

    def acquire(self, source=None):
        """Take the lock, or raise RunLockedError naming its living holder."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp, record = self._record_file()
        try:
            for attempt in range(50):
                try:
                    self._create(tmp)
                    self.held, self.record = True, record
                    return self
                except FileExistsError:
                    pass
                holder = self.read()
                if holder is None:
                    continue  # released meanwhile
                reason = "the lock file is unreadable" if holder == {} else stale_reason(holder)
                if reason is None:
                    raise RunLockedError(
                        f"run {self.run_dir} is in use by {describe_holder(holder)}; wait for it to end or stop it "
                        f"(if it is gone, remove {self.path}: docs/task_execution.md#run-locks)",
                        source=source, key="Project.run_name",
                    )
                if self._take_over(tmp, holder):
                    log.warning("took over the lock of %s: %s", self.run_dir, reason)
                    self.held, self.record = True, record
                    return self
                time.sleep(0.01 * (attempt + 1))  # another process is taking it over: look again
        finally:
            Path(tmp).unlink(missing_ok=True)
        raise RunLockedError(f"could not take the lock {self.path}: other processes keep taking it", source=source,
                             key="Project.run_name")

    def release(self):
        if self.held:
            holder = self.read()
            if holder and holder.get("pid") == os.getpid() and holder.get("host") == socket.gethostname():
                self.path.unlink(missing_ok=True)
            self.held = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.release()
