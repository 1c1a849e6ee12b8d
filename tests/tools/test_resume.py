"""Runs that survive kill -9, signals and time limits, and reproduce exactly."""

import csv
import json
import os
import random
import signal
import subprocess
import sys
import time
import zipfile

import h5py
import numpy as np
import pytest
import yaml

from ctlearn_mlops.resume import backup_epoch
from ctlearn_mlops.tools.runs import run_state
from ctlearn_mlops.tools.train import TrainTool
from ctlearn_mlops.tracking import read_events

from ..conftest import REPO, run, shrink_config

pytestmark = pytest.mark.slow
N_EPOCHS = 6


@pytest.fixture
def resumable_config(toy_data, tmp_path):
    config = shrink_config("energy", toy_data, tmp_path / "models", TrainCTLearnModel={"n_epochs": N_EPOCHS})
    path = tmp_path / "energy.yaml"
    path.write_text(yaml.safe_dump(config))
    return path

#: seed of the kill times: fixed, so a failing order of kills is replayed; CTLEARN_MLOPS_KILL_SEED tries others
KILL_SEED = int(os.environ.get("CTLEARN_MLOPS_KILL_SEED", "20261206"))


def _train_process(config, run_name, *extra):
    return subprocess.Popen(
        [sys.executable, REPO / "scripts" / "train_model.py", "--config", config, "--run-name", run_name,
         "--log-level", "WARN", *extra],
        cwd=config.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )


def _wait_for_epoch(run_dir, epoch, process, timeout=300):
    state = run_dir / "state" / f"epoch_{epoch:05d}.json"
    deadline = time.monotonic() + timeout
    while not state.exists():
        assert process.poll() is None, f"training ended early: {process.stderr.read()[-2000:]}"
        assert time.monotonic() < deadline, "no progress"
        time.sleep(0.1)


def _epochs_in_log(run_dir):
    with open(run_dir / "training_log.csv") as f:
        return [int(row["epoch"]) for row in csv.DictReader(f)]


def _weights(path):
    with h5py.File(path) as f:
        out = {}
        f.visititems(lambda name, obj: out.setdefault(name, obj[()]) if isinstance(obj, h5py.Dataset) else None)
        return out


def test_killed_twice_at_random_points_resumes_to_the_same_weights(resumable_config):
    models = resumable_config.parent / "models" / "energy"
    assert run(TrainTool(), ["--config", resumable_config, "--run-name", "straight"], cwd=resumable_config.parent) == 0

    rng = random.Random(KILL_SEED)  # the kill times of a failure can be replayed
    process = _train_process(resumable_config, "killed")
    for epoch in (1, 3):
        _wait_for_epoch(models / "killed", epoch, process)
        time.sleep(rng.uniform(0, 0.6))  # somewhere in the next epoch
        process.kill()
        process.wait()
        assert run_state(models / "killed") == "resumable"
        process = subprocess.Popen(
            [sys.executable, REPO / "scripts" / "rerun" / "resume.py", "--run", models / "killed", "--log-level", "WARN"],
            cwd=resumable_config.parent, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
    assert process.wait() == 0, process.stderr.read()[-3000:]

    assert _epochs_in_log(models / "killed") == list(range(N_EPOCHS))
    assert _epochs_in_log(models / "killed") == _epochs_in_log(models / "straight")
    events = read_events(models / "killed")
    assert [e["event"] for e in events].count("resume") == 2
    assert sorted(e["epoch"] for e in events if e["event"] == "epoch_end") == list(range(N_EPOCHS))
    assert events[-1]["event"] == "run_end" and run_state(models / "killed") == "finished"
    straight, killed = _weights(models / "straight" / "final.weights.h5"), _weights(models / "killed" / "final.weights.h5")
    assert straight.keys() == killed.keys()
    for name in straight:
        np.testing.assert_allclose(killed[name], straight[name], rtol=0, atol=1e-6, err_msg=name)
    with open(models / "straight" / "scalars.csv") as f, open(models / "killed" / "scalars.csv") as g:
        assert [r[:3] for r in csv.reader(f)] == [r[:3] for r in csv.reader(g)]


def test_warning_signal_stops_cleanly_with_exit_75_then_resumes(resumable_config):
    run_dir = resumable_config.parent / "models" / "energy" / "signalled"
    process = _train_process(resumable_config, "signalled")
    _wait_for_epoch(run_dir, 0, process)
    process.send_signal(signal.SIGUSR1)
    assert process.wait(timeout=120) == 75
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "interrupted" and "SIGUSR1" in info["error"]
    events = read_events(run_dir)
    assert events[-1]["event"] == "interruption" and "SIGUSR1" in events[-1]["reason"]
    assert run_state(run_dir) == "resumable"
    done = _epochs_in_log(run_dir)
    assert done == list(range(len(done))) and len(done) < N_EPOCHS

    argv = ["--config", resumable_config, "--run-name", "signalled", "--auto-resume"]
    assert run(TrainTool(), argv, cwd=resumable_config.parent) == 0
    assert _epochs_in_log(run_dir) == list(range(N_EPOCHS))
    assert run(TrainTool(), argv, cwd=resumable_config.parent) == 0  # finished: nothing to do
    assert _epochs_in_log(run_dir) == list(range(N_EPOCHS))


def test_exception_leaves_an_exception_record_and_a_nonzero_exit(resumable_config, tmp_path):
    config = yaml.safe_load(resumable_config.read_text())
    config["TrainCTLearnModel"]["optimizer"]["base_learning_rate"] = 1e30  # diverges at once
    path = tmp_path / "diverging.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run(TrainTool(), ["--config", path, "--run-name", "diverged"], cwd=tmp_path) != 0
    run_dir = tmp_path / "models" / "energy" / "diverged"
    events = read_events(run_dir)
    assert events[-1]["event"] == "exception" and "Traceback" in events[-1]["traceback"]
    assert "TrainingDiverged" in events[-1]["traceback"]
    assert run_state(run_dir) == "failed"


def test_same_seed_same_metrics_other_seed_other_split(resumable_config):
    cwd = resumable_config.parent
    models = cwd / "models" / "energy"
    for name, seed in (("a", 7), ("b", 7), ("c", 8)):
        argv = ["--config", resumable_config, "--run-name", name, "--seed", str(seed), "--epochs", "2"]
        assert run(TrainTool(), argv, cwd=cwd) == 0
    log = {name: (models / name / "training_log.csv").read_text() for name in "abc"}
    split = {name: (models / name / "split.csv").read_text() for name in "abc"}
    assert log["a"] == log["b"] and split["a"] == split["b"]
    assert split["a"] != split["c"]
    snapshot = yaml.safe_load((models / "c" / "config.yaml").read_text())
    assert snapshot["TrainCTLearnModel"]["random_seed"] == 8 and snapshot["TrainCTLearnModel"]["n_epochs"] == 2


def test_status_lists_states_and_csv(resumable_config, capfd):
    from ctlearn_mlops.tools.runs import RunsTool

    cwd = resumable_config.parent
    assert run(TrainTool(), ["--config", resumable_config, "--run-name", "done", "--epochs", "1"], cwd=cwd) == 0
    # far more epochs than the listing takes: the run is surely alive when listed
    process = _train_process(resumable_config, "alive", "--epochs", "500")
    _wait_for_epoch(cwd / "models" / "energy" / "alive", 0, process)
    capfd.readouterr()
    assert run(RunsTool(), ["--task", "energy", "--models-root", cwd / "models", "--csv"], cwd=cwd) == 0
    rows = {r["run"]: r for r in csv.DictReader(capfd.readouterr().out.splitlines())}
    assert rows["done"]["state"] == "finished" and rows["done"]["epochs"] == "1/1"
    assert rows["alive"]["state"] == "running"
    process.kill()
    process.wait()
    assert run(RunsTool(), ["--task", "energy", "--models-root", cwd / "models"], cwd=cwd) == 0
    table = capfd.readouterr().out
    assert any(line.split()[1:3] == ["alive", "resumable"] for line in table.splitlines())


def _complete_files_only(root, killed=False):
    """No half-written file anywhere: every JSON record parses, a model directory is whole, and no temporary name
    left (``killed``: a SIGKILL mid-write may leave one; the next start of the run removes it)."""
    if not killed:
        assert not [p for p in root.rglob("*") if ".partial" in p.name], "temporary files left behind"
    finished = [p for p in root.rglob("*") if ".partial" not in str(p.relative_to(root))]
    for record in (p for p in finished if p.suffix == ".json"):
        json.loads(record.read_text())
    for model in (p for p in finished if p.name == "ctlearn_model.keras"):
        with zipfile.ZipFile(model) as saved:
            assert saved.testzip() is None and "model.weights.h5" in saved.namelist()


def test_killed_six_times_at_random_points_loses_no_finished_epoch(resumable_config):
    """SIGKILL anywhere (start-up, an epoch, the checkpoints, the final save), then --auto-resume, six times."""
    n_epochs = 12
    models = resumable_config.parent / "models"
    run_dir = models / "energy" / "sixkills"
    rng = random.Random(KILL_SEED)  # the kill times of a failure can be replayed
    expected_resumes = []
    process = None
    for _kill in range(6):
        process = _train_process(resumable_config, "sixkills", "--auto-resume", "--epochs", str(n_epochs))
        time.sleep(rng.uniform(1.0, 10.0))
        if process.poll() is not None:
            break
        process.kill()
        process.wait()
        _complete_files_only(models, killed=True)
        # a run that exists (possibly set aside while a resume was starting) resumes after its last finished epoch
        for where in (run_dir, run_dir.with_name(".sixkills.resuming")):
            if (where / "run.json").exists() and json.loads((where / "run.json").read_text())["status"] != "finished":
                last = backup_epoch(where / "backup")
                expected_resumes.append(0 if last is None else last + 1)
    if process.poll() is None or process.returncode != 0:
        process = _train_process(resumable_config, "sixkills", "--auto-resume", "--epochs", str(n_epochs))
        assert process.wait(timeout=600) == 0, process.stderr.read()[-3000:]
    _complete_files_only(models)
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"
    assert _epochs_in_log(run_dir) == list(range(n_epochs))
    events = read_events(run_dir)
    # every resume started right after the last finished epoch: nothing finished was done twice or lost
    # finished epochs are never lost: what a resume would continue from never goes back, and every resume
    # continued right after the last epoch finished before the kill (a kill during start-up records no resume)
    assert expected_resumes == sorted(expected_resumes)
    resumes = [e["from_epoch"] for e in events if e["event"] == "resume"]
    assert resumes == sorted(resumes) and set(resumes) <= set(expected_resumes), (resumes, expected_resumes)
    assert sorted({e["epoch"] for e in events if e["event"] == "epoch_end"}) == list(range(n_epochs))
    assert not list(models.rglob("*.lock"))


def test_the_next_start_removes_what_killed_writes_left(tmp_path):
    from ctlearn_mlops.rundir import remove_temporaries

    run_dir = tmp_path / "run"
    (run_dir / "state").mkdir(parents=True)
    kept = [run_dir / "run.json", run_dir / "final.weights.h5", run_dir / "state" / "epoch_00003.json"]
    left = [run_dir / ".final.partial.weights.h5", run_dir / "state" / ".epoch_00004.json.abc123.partial",
            run_dir / ".ctlearn_model.partial.keras", run_dir / "backup" / ".epoch_00004.partial.weights.h5"]
    for path in kept + left:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    removed = remove_temporaries(run_dir)
    assert {p.name for p in removed} >= {".final.partial.weights.h5", ".epoch_00004.json.abc123.partial",
                                         ".ctlearn_model.partial.keras", ".epoch_00004.partial.weights.h5"}
    assert all(p.exists() for p in kept)
    assert not [p for p in run_dir.rglob("*") if ".partial" in str(p)]


def test_epoch_backup_keeps_the_last_epochs_and_names_a_broken_one(tmp_path):
    import keras

    from ctlearn_mlops.resume import EpochBackup, backup_file

    class StopAfterThirdEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 2:
                raise RuntimeError("stop")

    def model():
        built = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
        built.compile(keras.optimizers.Adam(0.1), "mse")
        return built

    x, y = np.ones((8, 2), np.float32), np.ones((8, 1), np.float32)
    assert backup_epoch(tmp_path / "backup") is None
    trained = model()
    with pytest.raises(RuntimeError):
        trained.fit(x, y, epochs=5, verbose=0, callbacks=[EpochBackup(tmp_path / "backup"), StopAfterThirdEpoch()])
    assert backup_epoch(tmp_path / "backup") == 2
    assert sorted(p.name for p in (tmp_path / "backup").iterdir()) == ["epoch_00001.weights.h5", "epoch_00002.weights.h5"]
    # the restore gives the weights and the optimizer state of the backed-up epoch
    restored = model()
    restored.fit(x, y, epochs=3, initial_epoch=3, verbose=0,
                 callbacks=[EpochBackup(tmp_path / "other", restore=backup_file(tmp_path / "backup", 2))])
    assert int(restored.optimizer.iterations) == int(trained.optimizer.iterations)
    np.testing.assert_array_equal(restored.get_weights()[0], trained.get_weights()[0])
    backup_file(tmp_path / "backup", 2).write_bytes(b"not a backup")
    with pytest.raises(ValueError, match="epoch_00002.weights.h5 cannot be read"):
        backup_epoch(tmp_path / "backup")
