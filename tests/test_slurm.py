"""bash_template.sh on a real (one-node) SLURM cluster."""

import csv
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import time
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
import yaml

from ctlearn_mlops.tracking import read_events

from .conftest import REPO, shrink_config

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
VENV = Path(sys.prefix)


def _cluster_ready():
    try:
        result = subprocess.run(["sinfo", "-h", "-o", "%t"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    # the node must be up and free for jobs: idle, or mixed (partly allocated)
    return result.returncode == 0 and bool({"idle", "mix"} & set(result.stdout.split()))


@pytest.fixture(scope="module")
def slurm():
    if not _cluster_ready() and os.geteuid() == 0 and shutil.which("slurmctld"):
        subprocess.run(["bash", REPO / "scripts" / "slurm" / "start_local_cluster.sh"], check=False)
    if not _cluster_ready():
        if os.environ.get("CI"):
            pytest.fail("no SLURM cluster: scripts/slurm/start_local_cluster.sh (as root) starts one")
        pytest.skip("no SLURM cluster (scripts/slurm/start_local_cluster.sh starts one as root)")


def sbatch(*args, env=None):
    result = subprocess.run(
        ["sbatch", "--parsable", *map(str, args)], cwd=REPO, capture_output=True, text=True,
        env={**os.environ, "VENV": str(VENV), **(env or {})},
    )
    assert result.returncode == 0, result.stderr
    return result.stdout.strip().split(";")[0]


def _job_states(job_id):
    """States of a job (all array elements), from scontrol (kept MinJobAge seconds after the end)."""
    result = subprocess.run(["scontrol", "-o", "show", "job", job_id], capture_output=True, text=True)
    return [word.split("=", 1)[1] for line in result.stdout.splitlines() for word in line.split() if word.startswith("JobState=")]


# a job has ended for good only in one of these; any other state, including flags SLURM shows as states for
# a moment (SIGNALING, STAGE_OUT, REQUEUED, ...), means it may still run or be requeued
TERMINAL_STATES = {"COMPLETED", "FAILED", "CANCELLED", "TIMEOUT", "NODE_FAIL", "PREEMPTED", "BOOT_FAIL", "DEADLINE",
                   "OUT_OF_MEMORY"}


def wait_for(job_ids, timeout=900):
    """Until every job has ended for good: each in a terminal state, at every poll for 3 s (a requeued job passes
    through several states)."""
    deadline = time.monotonic() + timeout
    ended_since = None
    states = {}
    while time.monotonic() < deadline:
        states = {job: _job_states(job) for job in job_ids}
        # a job scontrol does not answer for (a failed query) has not been seen to end
        if all(states.values()) and all(set(s) <= TERMINAL_STATES for s in states.values()):
            ended_since = ended_since or time.monotonic()
            if time.monotonic() - ended_since >= 3:
                return [s for job in job_ids for s in states[job]]
        else:
            ended_since = None
        time.sleep(1)
    subprocess.run(["scancel", *job_ids])
    pytest.fail(f"jobs {job_ids} did not finish in {timeout} s (last states: {states})")


def _config(toy_data, tmp_path, task, **sections):
    config = shrink_config(task, toy_data, tmp_path / "models", **sections)
    config.setdefault("ReportTool", {})["reports_root"] = str(tmp_path / "reports")
    path = tmp_path / f"{task}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _limited_training(n_epochs):
    """The training of the time-limit test: small batches from the fast loader in the process."""
    return {"TrainCTLearnModel": {"batch_size": 8, "n_epochs": n_epochs}, "FastLoader": {"enabled": True, "workers": 0}}


@pytest.fixture(scope="module")
def seconds_per_epoch(toy_data, tmp_path_factory):
    """Seconds from one epoch's end to the next of the time-limit test's training in one task (saving included).

    The median over a short run, from the events' millisecond ``ended_at``: their whole-second times made this
    twice as large from one run to the next (and the test's training, and the test, twice as long).
    """
    directory = tmp_path_factory.mktemp("timing")
    timing = _config(toy_data, directory, "energy", **_limited_training(8))
    subprocess.run([VENV / "bin" / "python", REPO / "scripts" / "train_model.py", "--config", timing,
                    "--run-name", "timing", "--log-level", "WARN"], check=True, cwd=directory, capture_output=True)
    ends = [e["ended_at"] for e in read_events(directory / "models" / "energy" / "timing") if e["event"] == "epoch_end"]
    return max(statistics.median(np.diff(ends)), 0.05)


def _epochs_lasting(seconds, seconds_per_epoch):
    """Epochs of the time-limit test's training that take about ``seconds`` in one task here (at least 25)."""
    return max(25, int(seconds / seconds_per_epoch))


def test_tasks_and_a_sweep_run_under_sbatch(slurm, toy_data, tmp_path):
    # the batch script does not depend on the task: type (signal and background) and skydirection beside the
    # energy sweep (energy also runs in the time-limit tests), four jobs in two waves on the node's two cores
    tasks = ["type", "skydirection"]
    jobs = []
    for task in tasks:
        config = _config(toy_data, tmp_path, task)
        jobs.append(sbatch("--time=15", "--cpus-per-task=1", "--mem=3G", f"--output={tmp_path}/{task}-%j.out",
                           "bash_template.sh", config, env={"RUN_NAME": f"batch-{task}"}))
    sweep = subprocess.run(
        [sys.executable, REPO / "scripts" / "submit_sweep.py", "--config", _config(toy_data, tmp_path, "energy"), "--name", "lrscan",
         "--grid", "TrainCTLearnModel.optimizer.base_learning_rate=0.001,0.003",
         "--sbatch-option=--time=15", "--sbatch-option=--cpus-per-task=1", "--sbatch-option=--mem=3G",
         f"--sbatch-option=--output={tmp_path}/sweep-%A_%a.out"],
        cwd=REPO, capture_output=True, text=True, env={**os.environ, "VENV": str(VENV)},
    )
    assert sweep.returncode == 0, sweep.stderr
    jobs.append(sweep.stdout.strip().splitlines()[-1].split(";")[0])
    wait_for(jobs, timeout=1200)
    for task in tasks:
        run_dir = tmp_path / "models" / task / f"batch-{task}"
        assert json.loads((run_dir / "run.json").read_text())["status"] == "finished", task
        assert (run_dir / "dl2" / "test.dl2.h5").exists() and (tmp_path / "reports" / task / f"batch-{task}" / "report.html").exists()
    rates = set()
    for i in (0, 1):
        run_dir = tmp_path / "models" / "energy" / f"lrscan-{i}"
        assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
        rates.add(yaml.safe_load((run_dir / "config.yaml").read_text())["TrainCTLearnModel"]["optimizer"]["base_learning_rate"])
    assert rates == {0.001, 0.003}


def _curve(run_dir):
    with open(run_dir / "training_log.csv") as f:
        return [(float(r["loss"]), float(r["val_loss"])) for r in csv.DictReader(f)]


def test_two_tasks_train_one_run_whose_curve_is_the_one_task_curve(slurm, toy_data, tmp_path):
    """MultiWorkerMirroredStrategy over 2 SLURM tasks: per-task batch 8 = one task with batch 16, same seed."""
    config = _config(toy_data, tmp_path, "energy", TrainCTLearnModel={"n_epochs": 3, "batch_size": 8},
                     FastLoader={"enabled": True, "workers": 0})
    log = tmp_path / "mw-%j.out"
    job = sbatch("--ntasks=2", "--cpus-per-task=1", "--time=15", f"--output={log}", "bash_template.sh", config,
                 env={"RUN_NAME": "two-tasks"})
    wait_for([job])
    output = Path(str(log).replace("%j", job)).read_text()
    run_dir = tmp_path / "models" / "energy" / "two-tasks"
    assert "training over 2 tasks" in output and "task 1 of 2" in output and "task 0 of 2 (chief)" in output
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished", output[-3000:]
    assert (run_dir / "dl2" / "test.dl2.h5").exists()
    # only the chief wrote the run directory: no copy of another task's files
    assert not [p for p in run_dir.rglob("*") if "workertemp" in p.name or "worker1" in p.name]
    # the same run in one task with the global batch (16) and the same seed
    single = subprocess.run(
        [VENV / "bin" / "python", REPO / "scripts" / "train_model.py", "--config", config, "--run-name", "one-task",
         "--set", "TrainCTLearnModel.batch_size=16", "--log-level", "WARN"], cwd=tmp_path, capture_output=True, text=True)
    assert single.returncode == 0, single.stderr[-2000:]
    two, one = _curve(run_dir), _curve(tmp_path / "models" / "energy" / "one-task")
    # and nothing but what a one-task run writes (its test step's DL2 file and log aside)
    def written(directory):
        # (TensorBoard names its files by time, host and pid)
        return {re.sub(r"tfevents\..*", "tfevents", str(p.relative_to(directory))) for p in directory.rglob("*")
                if p.relative_to(directory).parts[0] != "dl2" and "predict" not in p.name}
    assert written(run_dir) == written(tmp_path / "models" / "energy" / "one-task")
    assert len(two) == len(one) == 3
    # summation order differs between the all-reduce and one device: float32 noise only
    np.testing.assert_allclose(np.array(two), np.array(one), rtol=1e-4)


def test_two_task_job_is_requeued_at_the_time_limit_resumes_and_finishes(slurm, toy_data, seconds_per_epoch,
                                                                         tmp_path):
    # epochs of one task lasting 40 s take two tasks on these cores longer than the window left after start-up
    # (the warning comes 20 s after the start): at least one stop and one resume.  SLURM checks for due warning
    # signals only about once a minute, so some windows end before training has started; after a warning, a step
    # starts only with 40 s left.  (A one-task job goes through the same requeue path of bash_template.sh.)
    n_epochs = _epochs_lasting(40, seconds_per_epoch)
    config = _config(toy_data, tmp_path, "energy", **_limited_training(n_epochs))
    log = tmp_path / "mw-limit-%j.out"
    job = sbatch("--ntasks=2", "--cpus-per-task=1", "--time=1", "--signal=B:USR1@40", f"--output={log}",
                 "bash_template.sh", config, env={"RUN_NAME": "two-limited", "MAX_RESTARTS": "40", "STEP_RESERVE": "40"})
    wait_for([job], timeout=1800)
    output = Path(str(log).replace("%j", job)).read_text()
    run_dir = tmp_path / "models" / "energy" / "two-limited"
    events = read_events(run_dir)
    kinds = [e["event"] for e in events]
    assert kinds.count("interruption") >= 1 and kinds.count("resume") >= 1, output[-3000:]
    assert "on every task" in output and "requeuing job" in output
    with open(run_dir / "training_log.csv") as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(n_epochs))
    assert sorted(e["epoch"] for e in events if e["event"] == "epoch_end") == list(range(n_epochs))
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    # the run is saved right after its last epoch (the tasks once waited up to a minute there for TensorFlow's
    # input pipeline, long enough to meet the time limit with the training done)
    last_epoch = max(e["ended_at"] for e in events if e["event"] == "epoch_end")
    saved = datetime.fromisoformat(next(e["time"] for e in events if e["event"] == "run_end")).timestamp()
    assert saved - last_epoch < 5
    # testing and the report follow the resumed training in the same job
    assert (run_dir / "dl2" / "test.dl2.h5").exists()
    assert (tmp_path / "reports" / "energy" / "two-limited" / "report.html").exists()


def test_a_killed_task_ends_the_job_with_a_message_in_bounded_time(slurm, toy_data, tmp_path):
    import psutil

    config = _config(toy_data, tmp_path, "energy", TrainCTLearnModel={"n_epochs": 200, "batch_size": 8},
                     FastLoader={"enabled": True, "workers": 0})
    log = tmp_path / "mw-kill-%j.out"
    job = sbatch("--ntasks=2", "--cpus-per-task=1", "--time=15", f"--output={log}", "bash_template.sh", config,
                 env={"RUN_NAME": "two-killed"})
    run_dir = tmp_path / "models" / "energy" / "two-killed"
    deadline = time.monotonic() + 600
    while not (run_dir / "state" / "epoch_00000.json").exists():
        assert time.monotonic() < deadline, "the 2-task run never finished an epoch"
        time.sleep(1)
    workers = [p for p in psutil.process_iter(["name", "cmdline"])
               if p.info["name"].startswith("python") and str(config) in " ".join(p.info["cmdline"] or [])
               and "train_model.py" in " ".join(p.info["cmdline"])]
    assert len(workers) == 2
    # the task that is not the chief (the chief holds the run lock)
    chief_pid = json.loads((run_dir.with_name(".two-killed.lock")).read_text())["pid"]
    victim = next(p for p in workers if p.pid != chief_pid)
    killed_at = time.monotonic()
    victim.kill()
    wait_for([job], timeout=300)
    assert time.monotonic() - killed_at < 120
    output = Path(str(log).replace("%j", job)).read_text()
    assert "a task of this multi-worker run stopped answering" in output, output[-3000:]
    assert "Traceback" not in output.split("stopped answering")[0][-2000:]
