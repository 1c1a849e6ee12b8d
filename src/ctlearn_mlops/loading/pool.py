"""Worker processes that read batches while the network trains on the previous ones."""

import itertools
import multiprocessing
import os
import queue
import signal
import traceback
from multiprocessing import shared_memory

import numpy as np

__all__ = ["LoaderWorkerDiedError", "LoaderWorkerError", "WorkerPool"]

_POLL_SECONDS = 0.5


class LoaderWorkerError(RuntimeError):
    """A worker process failed to read a batch (an input problem: rerunning will fail again)."""


class LoaderWorkerDiedError(LoaderWorkerError):
    """A worker process died (killed, out of memory): the run can resume (``exceptions.LoaderWorkerDied``)."""


class _Slots:
    """A worker's view of the pool's shared-memory result slots (attached on first use)."""

    def __init__(self, names):
        self.names = names
        self.attached = {}

    def put(self, slot, array):
        if slot is None or array.nbytes > self._memory(slot).size:
            return array  # sent pickled
        memory = self._memory(slot)
        np.ndarray(array.shape, array.dtype, buffer=memory.buf)[...] = array
        return ("slot", slot, array.shape, array.dtype.str)

    def _memory(self, slot):
        if slot not in self.attached:
            # spawned workers share the main process's resource tracker, which unlinks the segment once
            self.attached[slot] = shared_memory.SharedMemory(name=self.names[slot])
        return self.attached[slot]

    def close(self):
        for memory in self.attached.values():
            memory.close()


def _worker_main(source, tasks, results, parent_pid, slot_names):
    # Ctrl-C and SLURM's warning signals are the main process's to handle: it stops the pool
    for name in ("SIGINT", "SIGUSR1", "SIGUSR2"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    slots = _Slots(slot_names)
    while True:
        try:
            task = tasks.get(timeout=1.0)
        except queue.Empty:
            if os.getppid() != parent_pid:  # the main process was killed: do not linger
                return
            continue
        if task is None:
            source.close()
            slots.close()
            return
        task_id, slot, method, args = task
        try:
            results.put((task_id, True, slots.put(slot, getattr(source, method)(*args))))
        except Exception as err:
            results.put((task_id, False, f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))


class WorkerPool:
    """``workers`` processes, each with its own copy of ``source`` and its own file handles.

    Processes are spawned, not forked: a fork of a process running TensorFlow
    threads can inherit held locks, and spawned workers import only NumPy,
    PyTables and h5py.  Waiting for a result checks that every worker is
    alive, so a worker that dies (killed, out of memory) raises
    ``LoaderWorkerError`` instead of hanging the training.
    """

    def __init__(self, source, workers, slot_bytes=0, n_slots=0):
        """``n_slots`` shared-memory blocks of ``slot_bytes`` carry results without pickling them."""
        context = multiprocessing.get_context("spawn")
        self._tasks = context.Queue()
        self._results = context.Queue()
        self._ids = itertools.count()
        self._done = {}
        self._cancelled = set()
        self._memory = [shared_memory.SharedMemory(create=True, size=slot_bytes) for _ in range(n_slots)] if slot_bytes else []
        self._free_slots = list(range(len(self._memory)))
        self._slot_of = {}
        self._processes = [
            context.Process(
                target=_worker_main,
                args=(source, self._tasks, self._results, os.getpid(), [m.name for m in self._memory]),
                name=f"ctlearn-mlops-loader-{i}", daemon=True,
            )
            for i in range(workers)
        ]
        for process in self._processes:
            process.start()
        self.closed = False

    @property
    def workers(self):
        return len(self._processes)

    def submit(self, method, *args):
        """Queue ``source.method(*args)``; returns a ticket for ``result``."""
        if self.closed:
            raise LoaderWorkerError("the loader's worker pool is closed")
        task_id = next(self._ids)
        slot = self._free_slots.pop() if self._free_slots else None
        if slot is not None:
            self._slot_of[task_id] = slot
        self._tasks.put((task_id, slot, method, args))
        return task_id

    def cancel(self, task_id):
        """Forget a ticket: its result is dropped when it arrives."""
        if task_id in self._done:
            self._done.pop(task_id)
            self._release(task_id)
        else:
            self._cancelled.add(task_id)

    def _release(self, task_id):
        slot = self._slot_of.pop(task_id, None)
        if slot is not None:
            self._free_slots.append(slot)

    def _unpack(self, task_id, value):
        if isinstance(value, tuple) and len(value) == 4 and value[0] == "slot":
            _, slot, shape, dtype = value
            value = np.ndarray(shape, np.dtype(dtype), buffer=self._memory[slot].buf).copy()
        self._release(task_id)
        return value

    def _check_alive(self, what):
        for process in self._processes:
            if not process.is_alive():
                self.close()
                raise LoaderWorkerDiedError(
                    f"loader worker {process.name} died (exit code {process.exitcode}) while reading {what}: "
                    "killed, or out of memory (lower FastLoader.workers or FastLoader.prefetch)"
                )

    def result(self, task_id, what):
        self._check_alive(what)
        while task_id not in self._done:
            try:
                done_id, ok, value = self._results.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                self._check_alive(what)
                continue
            if done_id in self._cancelled:
                self._cancelled.discard(done_id)
                self._release(done_id)
                continue
            self._done[done_id] = (ok, value)
        ok, value = self._done.pop(task_id)
        if not ok:
            self._release(task_id)
            raise LoaderWorkerError(f"reading {what} failed in a loader worker: {value}")
        return self._unpack(task_id, value)

    def close(self):
        if self.closed:
            return
        self.closed = True
        for _ in self._processes:
            self._tasks.put(None)
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        for q in (self._tasks, self._results):
            q.cancel_join_thread()
            q.close()
        for memory in self._memory:
            memory.close()
            memory.unlink()
        self._memory = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
