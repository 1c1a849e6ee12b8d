"""Run locks under races: many processes at once, on a free lock and on a stale one."""

import json
import multiprocessing
import os
import subprocess
import sys
import time

from ctlearn_mlops.runlock import RunLock, lock_path


def _contend(run_dir, start_at, results):
    from ctlearn_mlops.exceptions import RunLockedError

    while time.time() < start_at:
        pass
    lock = RunLock(run_dir, "race")
    try:
        lock.acquire()
    except RunLockedError:
        results.put(("refused", os.getpid()))
        return
    results.put(("held", os.getpid()))
    time.sleep(1.0)  # hold it while the others look
    lock.release()


def _race(run_dir, n=12):
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    start_at = time.time() + 0.5
    processes = [context.Process(target=_contend, args=(run_dir, start_at, results)) for _ in range(n)]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)
    return [kind for kind, _pid in outcomes]


def test_of_many_processes_on_a_free_lock_one_holds_it(tmp_path):
    outcomes = _race(tmp_path / "run")
    assert outcomes.count("held") == 1 and outcomes.count("refused") == len(outcomes) - 1


def test_of_many_processes_on_a_stale_lock_one_takes_it_over(tmp_path):
    for _round in range(3):
        dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
        stale = {"host": os.uname().nodename, "pid": int(dead.stdout), "pid_start": 1, "tool": "gone",
                 "since": "2026-01-01T00:00:00+00:00"}
        lock_path(tmp_path / "run").write_text(json.dumps(stale))
        outcomes = _race(tmp_path / "run")
        assert outcomes.count("held") == 1, outcomes
        assert not lock_path(tmp_path / "run").exists()
    assert not [p for p in tmp_path.iterdir() if p.name != "run"], list(tmp_path.iterdir())


def test_a_reader_never_finds_a_lock_half_written(tmp_path):
    run_dir = tmp_path / "run"
    path = lock_path(run_dir)
    for _ in range(200):
        lock = RunLock(run_dir, "reader").acquire()
        assert json.loads(path.read_text())["tool"] == "reader"
        lock.release()
