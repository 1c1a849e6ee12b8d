"""A run's state: one rule of who is alive (the run lock's), whatever wrote run.json."""

import json
import os
import subprocess
import sys

from ctlearn_mlops.runlock import RunLock, lock_path
from ctlearn_mlops.tools.runs import run_state


def _running_run(tmp_path, pid):
    run_dir = tmp_path / "energy" / "r"
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps({"status": "running", "host": os.uname().nodename, "pid": pid}))
    return run_dir


def test_a_running_run_is_alive_while_a_living_process_holds_its_lock(tmp_path):
    run_dir = _running_run(tmp_path, os.getpid())
    assert run_state(run_dir) == "resumable"  # nobody holds the lock: the process that wrote run.json is gone
    with RunLock(run_dir, "train").acquire():
        assert run_state(run_dir) == "running"
    assert run_state(run_dir) == "resumable"


def test_a_reused_process_id_is_not_taken_for_the_run(tmp_path):
    # run.json names a pid that now belongs to another process (this one); the lock's start time tells them apart
    run_dir = _running_run(tmp_path, os.getpid())
    lock_path(run_dir).write_text(json.dumps({"host": os.uname().nodename, "pid": os.getpid(), "pid_start": 1}))
    assert run_state(run_dir) == "resumable"


def test_a_process_of_another_user_is_alive(tmp_path):
    # os.kill(pid, 0) on another user's process raises PermissionError: still alive (pid 1 is init, root's)
    init = subprocess.run([sys.executable, "-c", "print(open('/proc/1/stat').read().rsplit(')', 1)[1].split()[19])"],
                          capture_output=True, text=True)
    run_dir = _running_run(tmp_path, 1)
    lock_path(run_dir).write_text(json.dumps({"host": os.uname().nodename, "pid": 1,
                                              "pid_start": int(init.stdout)}))
    assert run_state(run_dir) == "running"


def test_a_damaged_run_record_is_named_and_listed_as_damaged_without_hiding_the_others(tmp_path, capfd):
    import pytest

    from ctlearn_mlops.exceptions import ConfigError
    from ctlearn_mlops.rundir import read_run_info, resolve_run
    from ctlearn_mlops.tools.runs import RunsTool

    from ..conftest import run

    good = tmp_path / "models" / "energy" / "good"
    good.mkdir(parents=True)
    (good / "run.json").write_text(json.dumps({"task": "energy", "status": "finished", "finished": "2026-01-01"}))
    damaged = tmp_path / "models" / "energy" / "emptied"
    damaged.mkdir()
    (damaged / "run.json").write_text("")
    with pytest.raises(ConfigError, match="emptied/run.json: the run record cannot be read"):
        read_run_info(damaged)
    # the newest finished run is still found, the damaged one is passed over
    assert resolve_run("latest", tmp_path / "models", "energy", source=None) == good
    assert run(RunsTool(), ["--models-root", tmp_path / "models", "--reports-root", tmp_path / "reports", "--csv"],
               cwd=tmp_path) == 0
    rows = {line.split(",")[1]: line for line in capfd.readouterr().out.splitlines()[1:]}
    assert "damaged" in rows["emptied"] and "finished" in rows["good"]


def test_output_names_are_one_name_never_a_path():
    import pytest

    from ctlearn_mlops.exceptions import ConfigError
    from ctlearn_mlops.rundir import check_output_name

    assert check_output_name("quality-v2.1") == "quality-v2.1"
    for name in ("../../escape", "a/b", "", ".hidden", "x" * 201, "with space"):
        with pytest.raises(ConfigError, match="key '--name': invalid name"):
            check_output_name(name)
