"""Worker processes that read batches while the network trains on the previous ones."""

import itertools
import multiprocessing
import multiprocessing.connection
import os
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
            if slot is not None and int(np.prod(shape)) * dtype.itemsize <= self._memory(slot).size:
                return np.ndarray(shape, dtype, buffer=self._memory(slot).buf)
            return np.empty(shape, dtype)
        return allocate

    def put(self, slot, array):
        """What to send back for ``array``: a reference to the slot if it is there already or fits, else itself
        (pickled)."""
        if slot is None or not isinstance(array, np.ndarray) or array.nbytes > self._memory(slot).size:
            return array
        memory = self._memory(slot)
        target = np.ndarray(array.shape, array.dtype, buffer=memory.buf)
        if not np.shares_memory(target, array):  # the source filled a new array, not the slot
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
    """Serve ``source`` method calls received on ``tasks`` (a pipe), sending each result on ``results``."""
    # Ctrl-C and SLURM's warning signals are the main process's to handle: it stops the pool
    for name in ("SIGINT", "SIGUSR1", "SIGUSR2"):
        signal.signal(getattr(signal, name), signal.SIG_IGN)
    slots = _Slots(slot_names)
    allocating = set(getattr(source, "allocating_methods", ()))
    try:
        while True:
            if not tasks.poll(1.0):
                if os.getppid() != parent_pid:  # the main process was killed: do not linger
                    return
                continue
            task = tasks.recv()
            if task is None:
                return
            task_id, slot, method, args = task
            try:
                # a source that takes ``allocate`` writes its result straight into the slot (no copy)
                kwargs = {"allocate": slots.allocator(slot)} if slot is not None and method in allocating else {}
                results.send((task_id, True, slots.put(slot, getattr(source, method)(*args, **kwargs))))
            except Exception as err:
                results.send((task_id, False, f"{type(err).__name__}: {err}\n{traceback.format_exc()}"))
    except (EOFError, BrokenPipeError):  # the main process closed the pool's pipes or died
        return
    finally:
        source.close()
        slots.close()


class _Lent:
    """The memory of a result handed out in its shared-memory slot: arrays made from it keep it (through their
    buffer), and when the last of them is gone the slot goes back to the pool (``weakref.finalize``)."""

    def __init__(self, buffer):
        self._buffer = buffer

    def __buffer__(self, flags):
        return memoryview(self._buffer)

    def __release_buffer__(self, view):
        view.release()  # the slot's memory can be closed once the pool is


class WorkerPool:
    """``workers`` processes, each with its own copy of ``source`` and its own file handles.

    Processes are spawned, not forked: a fork of a process running TensorFlow
    threads can inherit held locks, and spawned workers import only NumPy,
    PyTables and h5py.  Each worker has its own pair of pipes (a
    ``multiprocessing.Queue`` costs a lock and a feeder thread per message,
    ~0.2 ms here, as much as reading a batch); a task goes to the worker with
    the fewest outstanding.  Waiting for a result checks that every worker is
    alive, so a worker that dies (killed, out of memory) raises
    ``LoaderWorkerError`` instead of hanging the training.
    """

    def __init__(self, source, workers, slot_bytes=0, n_slots=0):
        """``n_slots`` shared-memory blocks of ``slot_bytes`` carry results without pickling them."""
        context = multiprocessing.get_context("spawn")
        self._ids = itertools.count()
        self._done = {}
        self._cancelled = set()
        self._memory = [shared_memory.SharedMemory(create=True, size=slot_bytes) for _ in range(n_slots)] if slot_bytes else []
        self._free_slots = list(range(len(self._memory)))
        self._slot_of = {}
        self._memory_of_closed = {}
        self._lent = set()  # slots whose memory a handed-out array still uses
        self._slots_lock = threading.Lock()  # a lent slot comes back in whichever thread drops its last array
        self._receive_lock = threading.Lock()  # one thread at a time reads the result pipes
        self._task_pipes, self._result_pipes, self._processes = [], [], []
        for i in range(workers):
            task_out, task_in = context.Pipe(duplex=False)
            result_out, result_in = context.Pipe(duplex=False)
            self._processes.append(context.Process(
                target=_worker_main,
                args=(source, task_out, result_in, os.getpid(), [m.name for m in self._memory]),
                name=f"ctlearn-mlops-loader-{i}", daemon=True,
            ))
            self._task_pipes.append(task_in)
            self._result_pipes.append(result_out)
        self._outstanding = [0] * workers
        self._worker_of = {}
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
        with self._slots_lock:
            slot = self._free_slots.pop() if self._free_slots else None
            if slot is not None:
                self._slot_of[task_id] = slot
            worker = self._outstanding.index(min(self._outstanding))
            self._outstanding[worker] += 1
            self._worker_of[task_id] = worker
            self._task_pipes[worker].send((task_id, slot, method, args))
        return task_id

    def cancel(self, task_id):
        """Forget a ticket: its result is dropped when it arrives."""
        if task_id in self._done:
            self._done.pop(task_id)
            self._release(task_id)
        else:
            self._cancelled.add(task_id)

    def _release(self, task_id):
        with self._slots_lock:
            slot = self._slot_of.pop(task_id, None)
            if slot is not None:
                self._free_slots.append(slot)

    def _unpack(self, task_id, value):
        """The result: an array in its slot is handed out as it is, and the slot comes back to the pool when
        the last array using it is gone (no copy; a consumer that keeps batches only keeps their slots)."""
        if not (isinstance(value, tuple) and len(value) == 4 and value[0] == "slot"):
            self._release(task_id)
            return value
        _, slot, shape, dtype = value
        with self._slots_lock:
            self._slot_of.pop(task_id, None)
            self._lent.add(slot)
        lent = _Lent(self._memory[slot].buf)
        weakref.finalize(lent, self._give_back, slot)
        dtype = np.dtype(dtype)
        return np.frombuffer(lent, dtype=dtype, count=int(np.prod(shape))).reshape(shape)

    def _give_back(self, slot):
        with self._slots_lock:
            self._lent.discard(slot)
            if slot in self._memory_of_closed:
                self._memory_of_closed.pop(slot).close()
            elif not self.closed:
                self._free_slots.append(slot)

    def _check_alive(self, what):
        for process in self._processes:
            if not process.is_alive():
                self.close()
                raise LoaderWorkerDiedError(
                    f"loader worker {process.name} died (exit code {process.exitcode}) while reading {what}: "
                    "killed, or out of memory (lower FastLoader.workers or FastLoader.prefetch)"
                )

    def _receive(self, what):
        """Take in every result that has arrived (waiting up to ``_POLL_SECONDS`` for one)."""
        ready = multiprocessing.connection.wait(self._result_pipes, timeout=_POLL_SECONDS)
        if not ready:
            self._check_alive(what)
        for pipe in ready:
            try:
                done_id, ok, value = pipe.recv()
            except (EOFError, OSError):  # its worker died mid-send
                self._check_alive(what)
                raise LoaderWorkerDiedError(f"a loader worker stopped while sending {what}") from None
            with self._slots_lock:
                self._outstanding[self._worker_of.pop(done_id)] -= 1
            if done_id in self._cancelled:
                self._cancelled.discard(done_id)
                self._release(done_id)
                continue
            self._done[done_id] = (ok, value)

    def result(self, task_id, what):
        self._check_alive(what)
        while task_id not in self._done:
            with self._receive_lock:
                if task_id not in self._done:
                    self._receive(what)
        ok, value = self._done.pop(task_id)
        if not ok:
            self._release(task_id)
            raise LoaderWorkerError(f"reading {what} failed in a loader worker: {value}")
        return self._unpack(task_id, value)

    def close(self):
        if self.closed:
            return
        self.closed = True
        for pipe in self._task_pipes:
            try:
                pipe.send(None)
            except OSError:  # its worker is gone
                pass
        for process in self._processes:
            process.join(timeout=5)
            if process.is_alive():
                process.terminate()
                process.join(timeout=5)
        for pipe in (*self._task_pipes, *self._result_pipes):
            pipe.close()
        with self._slots_lock:
            for slot, memory in enumerate(self._memory):
                memory.unlink()
                if slot in self._lent:  # closed when its last array is gone
                    self._memory_of_closed[slot] = memory
                else:
                    memory.close()
            self._memory = []

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
