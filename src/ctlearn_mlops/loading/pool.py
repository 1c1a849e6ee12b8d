"""Worker processes that read batches while the network trains on the previous ones."""

import collections
import itertools
import multiprocessing
import os
import queue
import signal
import threading
import traceback
import weakref
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

    def allocator(self, slot):
        """``allocate(shape, dtype)`` for a source: the slot's memory where the array fits, else a new array."""
        def allocate(shape, dtype):
            dtype = np.dtype(dtype)
            if int(np.prod(shape)) * dtype.itemsize <= self._memory(slot).size:
                return np.ndarray(shape, dtype, buffer=self._memory(slot).buf)
            return np.empty(shape, dtype)
        return allocate

    def put(self, slot, array):
        """What to send back for ``array``: a reference to the slot (copied there unless the source filled the
        slot itself), or the array itself (pickled) where there is no slot or it does not fit."""
        if slot is None or not isinstance(array, np.ndarray) or array.nbytes > self._memory(slot).size:
            return array
        target = np.ndarray(array.shape, array.dtype, buffer=self._memory(slot).buf)
        filled = array.ctypes.data == target.ctypes.data and array.flags.c_contiguous
        if not filled:
            target[...] = array
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
    allocating = set(getattr(source, "allocating_methods", ()))
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
            # a source that takes ``allocate`` writes its result straight into the slot (no copy)
            kwargs = {"allocate": slots.allocator(slot)} if slot is not None and method in allocating else {}
            results.put((task_id, True, slots.put(slot, getattr(source, method)(*args, **kwargs))))
        except Exception as err:
            results.put((task_id, False, f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))


class _Lent:
    """The memory of a result handed out in its shared-memory slot.  Arrays made from it hold it through their
    buffer, and it holds the slot's block (after the pool is closed, the block is closed when it goes); when
    the last of them is gone, a finalizer returns the slot to the pool."""

    def __init__(self, block):
        self._block = block

    def __buffer__(self, flags):
        return memoryview(self._block.buf)

    def __release_buffer__(self, view):
        view.release()  # no export left: the block can be closed


class WorkerPool:
    """``workers`` processes, each with its own copy of ``source`` and its own file handles.

    Processes are spawned, not forked: a fork of a process running TensorFlow
    threads can inherit held locks, and spawned workers import only NumPy,
    PyTables and h5py.  Waiting for a result checks that every worker is
    alive, so a worker that dies (killed, out of memory) raises
    ``LoaderWorkerError`` instead of hanging the training.

    A result that fits a shared-memory slot is handed out in the slot, without
    a copy: the slot is not given to another task while any array of that
    result lives.
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
        # slots whose last array is gone: a finalizer may run in any thread, inside any code (a garbage-collection
        # pass), so it only appends here (deque.append is atomic); the pool takes them back under its lock
        self._returned = collections.deque()
        self._lent = set()
        self._lock = threading.Lock()
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

    @property
    def free_slots(self):
        """How many slots a task can take now (none are lent or in flight)."""
        with self._lock:
            self._take_back_returned()
            return len(self._free_slots)

    def _take_back_returned(self):
        """Move the slots whose arrays are gone back to the free list (under the lock)."""
        while self._returned:
            slot = self._returned.popleft()
            self._lent.discard(slot)
            self._free_slots.append(slot)

    def submit(self, method, *args):
        """Queue ``source.method(*args)``; returns a ticket for ``result``."""
        with self._lock:
            if self.closed:
                raise LoaderWorkerError("the loader's worker pool is closed")
            self._take_back_returned()
            task_id = next(self._ids)
            slot = self._free_slots.pop() if self._free_slots else None
            if slot is not None:
                self._slot_of[task_id] = slot
        self._tasks.put((task_id, slot, method, args))
        return task_id

    def cancel(self, task_id):
        """Forget a ticket: its result is dropped when it arrives."""
        with self._lock:
            if task_id in self._done:
                self._done.pop(task_id)
                self._release(task_id)
            else:
                self._cancelled.add(task_id)

    def _release(self, task_id):
        """Give back the slot of a result that is not handed out (under the lock)."""
        slot = self._slot_of.pop(task_id, None)
        if slot is not None:
            self._free_slots.append(slot)

    def _unpack(self, task_id, value):
        """The result: an array in its slot is handed out as it is (no copy); the slot comes back to the pool
        when the last array using it is gone."""
        with self._lock:
            if not (isinstance(value, tuple) and len(value) == 4 and value[0] == "slot"):
                self._release(task_id)
                return value
            if self.closed:
                raise LoaderWorkerError("the loader's worker pool is closed")
            _, slot, shape, dtype = value
            self._slot_of.pop(task_id, None)
            self._lent.add(slot)
            lent = _Lent(self._memory[slot])
        finalizer = weakref.finalize(lent, self._returned.append, slot)
        finalizer.atexit = False  # at exit the arrays may still be alive: nothing to give back then
        return np.frombuffer(lent, dtype=np.dtype(dtype), count=int(np.prod(shape))).reshape(shape)

    def _check_alive(self, what):
        for process in self._processes:
            if not process.is_alive():
                self.close()
                raise LoaderWorkerDiedError(
                    f"loader worker {process.name} died (exit code {process.exitcode}) while reading {what}: "
                    "killed, or out of memory (lower FastLoader.workers or FastLoader.prefetch)"
                )

    def result(self, task_id, what):
        if self.closed:
            raise LoaderWorkerError(f"the loader's worker pool was closed before {what} was read")
        self._check_alive(what)
        while True:
            with self._lock:
                if task_id in self._done:
                    ok, value = self._done.pop(task_id)
                    break
            try:
                done_id, ok, value = self._results.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                self._check_alive(what)
                continue
            with self._lock:
                if done_id in self._cancelled:
                    self._cancelled.discard(done_id)
                    self._release(done_id)
                else:
                    self._done[done_id] = (ok, value)
        if not ok:
            with self._lock:
                self._release(task_id)
            raise LoaderWorkerError(f"reading {what} failed in a loader worker: {value}")
        return self._unpack(task_id, value)

    def close(self):
        with self._lock:
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
        with self._lock:
            self._take_back_returned()
            memory, self._memory = self._memory, []
            for slot, block in enumerate(memory):
                block.unlink()
                if slot not in self._lent:
                    block.close()
            # a lent block stays open until its last array is gone (closing it would pull the memory from under
            # that array): its _Lent holds it, and it closes itself when that goes

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
