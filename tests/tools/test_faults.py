"""Runs that cannot be lost or corrupted: refused overwrites, run locks, exit codes, bad inputs, a full disk."""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest
import yaml

from ctlearn_mlops.exceptions import EXIT_CONFIG, EXIT_FAILURE, EXIT_RESUMABLE
from ctlearn_mlops.runlock import RunLock, lock_path
from ctlearn_mlops.tools.train import TrainTool
from ctlearn_mlops.tracking import read_events

from ..conftest import REPO, run, shrink_config

pytestmark = pytest.mark.slow


def _snapshot(run_dir):
    """Every file of a run with its content (bytes), to show that nothing changed."""
    return {p.relative_to(run_dir): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


@pytest.fixture
def finished_run(task_config, tmp_path):
    config = task_config("energy")
    assert run(TrainTool(), ["--config", config, "--run-name", "keep"], cwd=tmp_path) == 0
    run_dir = tmp_path / "models" / "energy" / "keep"
    return config, run_dir, _snapshot(run_dir)


def _leftovers(root):
    return [p for p in root.rglob("*") if ".partial" in p.name or p.name.endswith(".lock")]


@pytest.mark.parametrize("case", ["validation split smaller than a batch", "unreadable training data"])
def test_a_refused_overwrite_keeps_the_old_run(case, finished_run, tmp_path, capfd):
    config, run_dir, before = finished_run
    argv = ["--config", config, "--run-name", "keep", "--overwrite"]
    if case == "validation split smaller than a batch":
        argv += ["--set", "TrainCTLearnModel.batch_size=100"]
        expected = "fewer than one batch"
    else:
        bad = tmp_path / "bad"
        bad.mkdir()
        (bad / "gamma_broken.dl1.h5").write_text("this is not HDF5\n")
        argv += ["--set", f"Project.signal_dir={bad}"]
        expected = "gamma_broken.dl1.h5 is not an HDF5 file"
    capfd.readouterr()
    assert run(TrainTool(), argv, cwd=tmp_path) == EXIT_CONFIG
    err = capfd.readouterr().err
    assert expected in err, err
    assert _snapshot(run_dir) == before
    assert sorted(p.name for p in run_dir.parent.iterdir()) == ["keep"]


def test_an_overwrite_keeps_the_old_run_aside_until_the_new_one_finishes(finished_run, tmp_path):
    config, run_dir, before = finished_run
    # an interrupted overwrite: its checks passed, it started, and was stopped before the end
    process = subprocess.Popen(
        [sys.executable, REPO / "scripts" / "train_model.py", "--config", config, "--run-name", "keep", "--overwrite",
         "--epochs", "30", "--log-level", "WARN"], cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )
    deadline = time.monotonic() + 300
    # the old run is set aside once the new one passed its checks; then the new run finishes an epoch
    while not (list(run_dir.parent.glob(".keep.replaced-*")) and (run_dir / "state" / "epoch_00000.json").exists()):
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-2000:]
        time.sleep(0.1)
    process.send_signal(signal.SIGUSR1)
    assert process.wait(timeout=120) == EXIT_RESUMABLE
    aside = list(run_dir.parent.glob(".keep.replaced-*"))
    assert len(aside) == 1 and _snapshot(aside[0]) == before
    assert json.loads((run_dir / "run.json").read_text())["replaces"] == aside[0].name
    # once the new run has finished, the old one goes
    assert run(TrainTool(), ["--config", config, "--run-name", "keep", "--resume", "--epochs", "2"], cwd=tmp_path) == 0
    assert not list(run_dir.parent.glob(".keep.replaced-*"))
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


def test_an_overwrite_that_fails_while_training_gives_the_old_run_back(finished_run, tmp_path, capfd):
    config, run_dir, before = finished_run
    # a learning rate that makes the loss infinite in the first batches: the new run fails after its checks
    diverging = "TrainCTLearnModel.optimizer={name: Adam, base_learning_rate: 1.0e+30, adam_epsilon: 1.0e-8}"
    for _attempt in range(2):
        capfd.readouterr()
        assert run(TrainTool(), ["--config", config, "--run-name", "keep", "--overwrite", "--set", diverging],
                   cwd=tmp_path) != 0
        assert "the new run failed" in capfd.readouterr().err
        assert _snapshot(run_dir) == before
        assert not list(run_dir.parent.glob(".keep.replaced-*"))
    failed = sorted(run_dir.parent.glob("keep.failed-*"))
    assert failed and json.loads((failed[-1] / "run.json").read_text())["status"] == "failed"


def test_an_overwrite_killed_before_its_run_started_gets_the_old_run_back(finished_run, tmp_path, capfd):
    config, run_dir, before = finished_run
    # what a kill between setting the old run aside and creating the new one leaves behind
    os.replace(run_dir, run_dir.with_name(".keep.replaced-20260101T000000000000"))
    assert run(TrainTool(), ["--config", config, "--run-name", "keep"], cwd=tmp_path) == EXIT_CONFIG
    assert "the old run is back" in capfd.readouterr().err
    assert _snapshot(run_dir) == before


def _train(config, cwd, *argv):
    """The train script in its own process (TensorFlow closes pytest's captured streams in-process)."""
    return subprocess.run([sys.executable, REPO / "scripts" / "train_model.py", "--config", config, *argv],
                          cwd=cwd, capture_output=True, text=True)


def _sleeper():
    """A living process of ours whose pid a lock can name."""
    return subprocess.Popen(["sleep", "300"])


def _fake_lock(run_dir, pid, **fields):
    from ctlearn_mlops.runlock import _process_start_time

    record = {"host": os.uname().nodename, "pid": pid, "pid_start": _process_start_time(pid), "slurm_job_id": None,
              "slurm_restart_count": 0, "since": "2026-11-30T00:00:00+00:00", "tool": "ctlearn-mlops-train", **fields}
    lock_path(run_dir).write_text(json.dumps(record))


def test_a_second_writer_is_refused_naming_the_holder_and_a_stale_lock_is_taken_over(finished_run, tmp_path, capfd):
    config, run_dir, before = finished_run
    holder = _sleeper()
    try:
        _fake_lock(run_dir, holder.pid)
        capfd.readouterr()
        for argv in (["--overwrite"], ["--auto-resume"]):
            assert run(TrainTool(), ["--config", config, "--run-name", "keep", *argv], cwd=tmp_path) == EXIT_CONFIG
            err = capfd.readouterr().err
            assert f"in use by ctlearn-mlops-train process {holder.pid}" in err and str(lock_path(run_dir)) in err
        resume = subprocess.run([sys.executable, REPO / "scripts" / "rerun" / "resume.py", "--run", run_dir],
                                cwd=tmp_path, capture_output=True, text=True)
        assert resume.returncode == EXIT_CONFIG and f"process {holder.pid}" in resume.stderr
        assert _snapshot(run_dir) == before
    finally:
        holder.kill()
        holder.wait()
    # the holder is gone: its lock is stale, taken over and logged
    result = _train(config, tmp_path, "--run-name", "keep", "--auto-resume")
    assert result.returncode == 0 and f"process {holder.pid} on" in result.stderr, result.stderr[-2000:]
    assert not lock_path(run_dir).exists()


def test_lock_of_a_reused_pid_or_an_ended_slurm_job_is_stale(tmp_path):
    from ctlearn_mlops.runlock import stale_reason

    me = {"host": os.uname().nodename, "pid": os.getpid()}
    from ctlearn_mlops.runlock import _process_start_time

    assert stale_reason({**me, "pid_start": _process_start_time(os.getpid())}) is None
    assert "another process" in stale_reason({**me, "pid_start": 1})
    elsewhere = {"host": "node-that-does-not-exist", "pid": 1, "slurm_job_id": None}
    assert stale_reason(elsewhere) is None  # cannot be checked from here: refused
    with RunLock(tmp_path / "run", "test").acquire() as lock:
        assert lock.read()["pid"] == os.getpid()
    assert not lock_path(tmp_path / "run").exists()


BAD_TRAINING = {
    "no epochs": ({"TrainCTLearnModel": {"n_epochs": 0}}, "TrainCTLearnModel.n_epochs': must be from 1 to"),
    "zero batch": ({"TrainCTLearnModel": {"batch_size": 0}}, "TrainCTLearnModel.batch_size': must be from 1 to"),
    "no keras model": ("custom:none", "leaves nothing in self.model"),
    "not a keras model": ("custom:dict", "leaves dict in self.model"),
    "outputs not named after the task": ("custom:unnamed", "outputs are named ['out']: each output must be named"),
}

_BAD_MODEL = '''
from ctlearn.core.model import CTLearnModel


class BrokenCNN(CTLearnModel):
    def __init__(self, input_shape, tasks, config=None, parent=None, **kwargs):
        super().__init__(config=config, parent=parent, **kwargs)
        {body}
'''


@pytest.mark.parametrize("case", sorted(BAD_TRAINING))
def test_bad_training_settings_exit_2_and_leave_nothing(case, task_config, tmp_path):
    sections, expected = BAD_TRAINING[case]
    if isinstance(sections, str):
        body = {"custom:none": "pass", "custom:dict": "self.model = {}",
                "custom:unnamed": "import keras; inputs = keras.Input(shape=input_shape); self.model = keras.Model("
                                  "inputs, keras.layers.Dense(1, name='out')(keras.layers.Flatten()(inputs)))"}[sections]
        model_file = tmp_path / "broken.py"
        model_file.write_text(_BAD_MODEL.format(body=body))
        sections = {"Project": {"custom_model_file": str(model_file)}, "TrainCTLearnModel": {"model_type": "BrokenCNN"}}
    config = task_config("energy", **sections)
    result = _train(config, tmp_path)
    assert result.returncode == EXIT_CONFIG
    assert expected in result.stderr and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert not (tmp_path / "models").exists()


@pytest.mark.parametrize("case, expected", [
    ("truncated", "is truncated"), ("empty", "is empty (0 bytes)"), ("text", "is not an HDF5 file"),
])
def test_broken_dl1_files_get_one_line_naming_the_file(case, expected, toy_data, task_config, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(toy_data / "train", data)
    victim = data / "gamma_broken.dl1.h5"
    original = sorted(data.glob("gamma_*.h5"))[0].read_bytes()
    victim.write_bytes({"truncated": original[: len(original) // 2], "empty": b"", "text": b"not a DL1 file\n"}[case])
    config = task_config("energy", Project={"signal_dir": str(data)})
    result = subprocess.run([sys.executable, REPO / "scripts" / "train_model.py", "--config", config],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == EXIT_CONFIG
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert any(f"{victim} {expected}" in line for line in errors), result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "H5F.c" not in result.stderr
    assert len(result.stderr.splitlines()) < 10
    assert not (tmp_path / "models").exists()


def test_an_old_data_model_in_any_file_is_refused_naming_it(toy_data, task_config, tmp_path):
    import tables

    data = tmp_path / "data"
    shutil.copytree(toy_data / "train", data)
    old = data / "gamma_zz_v5.dl1.h5"  # sorts after the good files: the readers check the first file only
    shutil.copy(sorted(data.glob("gamma_*.h5"))[0], old)
    with tables.open_file(str(old), mode="a") as h5:
        h5.root._v_attrs["CTA PRODUCT DATA MODEL VERSION"] = "v5.0.0"
    config = task_config("energy", Project={"signal_dir": str(data)})
    result = subprocess.run([sys.executable, REPO / "scripts" / "train_model.py", "--config", config],
                            cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == EXIT_CONFIG
    assert f"{old} is ctapipe data model v5.0.0" in result.stderr and "Traceback" not in result.stderr
    assert not (tmp_path / "models").exists()


def test_an_unwritable_output_root_is_refused_before_the_data_is_read(task_config, tmp_path, capfd):
    blocker = tmp_path / "a_file"
    blocker.write_text("a file where a directory should be")
    config = task_config("energy", Project={"output_root": str(blocker / "models")})
    assert run(TrainTool(), ["--config", config], cwd=tmp_path) == EXIT_CONFIG
    err = capfd.readouterr().err
    assert "Project.output_root" in err and "cannot write to" in err
    assert "Number of events loaded" not in err


def _runs_as_nobody():
    """The other user can start this interpreter (a pyenv Python under a private /root cannot)."""
    probe = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", "pass"]
    return subprocess.run(probe, capture_output=True).returncode == 0


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root to run as another user")
def test_an_output_root_without_permission_is_refused_for_a_non_root_user(toy_data, tmp_path):
    if not _runs_as_nobody():
        pytest.skip(f"user 65534 cannot run {sys.executable} (its installation is not readable by other users)")
    shared = tmp_path / "shared"
    shutil.copytree(toy_data, shared / "data")
    config = shrink_config("energy", shared / "data", shared / "readonly" / "models")
    (shared / "readonly").mkdir()
    (shared / "energy.yaml").write_text(yaml.safe_dump(config))
    for path in [tmp_path, *tmp_path.parents[:-1], *shared.rglob("*"), shared]:
        path.chmod(path.stat().st_mode | 0o755 if path.is_dir() else path.stat().st_mode | 0o644)
    (shared / "readonly").chmod(0o555)
    (shared / "home").mkdir(mode=0o777)
    (shared / "home").chmod(0o777)
    result = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable,
         REPO / "scripts" / "train_model.py", "--config", shared / "energy.yaml"],
        cwd=shared, capture_output=True, text=True,
        env={**os.environ, "HOME": str(shared / "home"), "NUMBA_CACHE_DIR": str(shared / "home"),
             "MPLCONFIGDIR": str(shared / "home")},
    )
    assert result.returncode == EXIT_CONFIG, result.stderr[-2000:]
    assert "Permission denied" in result.stderr and "Traceback" not in result.stderr


def _training_until_epoch(config, tmp_path, epoch):
    """A training process of ``config`` (run ``tiny``), returned once its resume state of ``epoch`` is written."""
    process = subprocess.Popen([sys.executable, REPO / "scripts" / "train_model.py", "--config", config,
                                "--log-level", "WARN"], cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    run_dir = tmp_path / "models" / "energy" / "tiny"
    deadline = time.monotonic() + 300
    while not (run_dir / "state" / f"epoch_{epoch:05d}.json").exists():
        assert process.poll() is None and time.monotonic() < deadline, process.stderr.read()[-2000:]
        time.sleep(0.1)
    return process, run_dir


def test_a_corrupt_resume_state_or_backup_names_the_file(task_config, tmp_path):
    config = task_config("energy", TrainCTLearnModel={"n_epochs": 8})
    process, run_dir = _training_until_epoch(config, tmp_path, 1)
    process.kill()
    process.wait()
    states = sorted((run_dir / "state").glob("epoch_*.json"))
    latest_state = run_dir / "state" / f"epoch_{_backup_epoch(run_dir):05d}.json"
    assert latest_state in states
    good = latest_state.read_text()
    latest_state.write_text(good[: len(good) // 2])
    result = _train(config, tmp_path, "--resume")
    assert result.returncode == EXIT_CONFIG and str(latest_state) in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    latest_state.write_text(good)
    backup = sorted((run_dir / "backup").glob("epoch_*.weights.h5"))[-1]
    backup.write_bytes(b"\0" * 16)
    result = _train(config, tmp_path, "--resume")
    assert result.returncode == EXIT_CONFIG and "cannot be read" in result.stderr and str(backup) in result.stderr
    assert "Traceback" not in result.stderr


def test_a_resume_goes_on_with_the_runs_own_config_or_is_refused(task_config, tmp_path):
    config = task_config("energy", TrainCTLearnModel={"n_epochs": 8})
    process, run_dir = _training_until_epoch(config, tmp_path, 0)
    process.kill()
    process.wait()
    saved = (run_dir / "config.yaml").read_text()
    result = _train(config, tmp_path, "--resume", "--set", "TrainCTLearnModel.batch_size=32")
    assert result.returncode == EXIT_CONFIG, result.stderr[-2000:]
    assert "TrainCTLearnModel.batch_size: 16 -> 32" in result.stderr and "Traceback" not in result.stderr
    assert (run_dir / "config.yaml").read_text() == saved
    # a run whose final saves fail is recorded as failed (not left "running") and still resumes
    (run_dir / "split.csv").mkdir()
    (run_dir / "split.csv" / "in the way").write_text("")
    result = _train(config, tmp_path, "--resume", "--epochs", "2", "--log-level", "WARN")
    in_the_way = f"{run_dir / 'split.csv'}: Is a directory"
    assert result.returncode == EXIT_FAILURE and in_the_way in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Run directory" not in result.stdout
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "failed" and in_the_way in info["error"]
    assert list((run_dir / "backup").glob("epoch_*.weights.h5"))
    shutil.rmtree(run_dir / "split.csv")
    # the number of epochs may change, and the run's config says so; with every epoch done the resume only
    # finishes the run, without a word (Keras 2's restore printed a TensorFlow warning per variable here)
    result = _train(config, tmp_path, "--resume", "--epochs", "2", "--log-level", "WARN")
    assert result.returncode == 0, result.stderr[-2000:]
    assert not [line for line in result.stderr.splitlines() if "took over the lock" not in line], result.stderr
    assert [e["from_epoch"] for e in read_events(run_dir) if e["event"] == "resume"][-1] == 2
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["TrainCTLearnModel"]["n_epochs"] == 2
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


def _backup_epoch(run_dir):
    from ctlearn_mlops.resume import backup_epoch

    return backup_epoch(run_dir / "backup")


def test_a_dead_loader_worker_ends_the_run_with_the_resume_code(task_config, tmp_path):
    import psutil

    config = task_config("energy", FastLoader={"enabled": True, "workers": 2}, TrainCTLearnModel={"n_epochs": 30})
    process, run_dir = _training_until_epoch(config, tmp_path, 0)
    workers = [p for p in psutil.Process(process.pid).children() if "spawn_main" in " ".join(p.cmdline())]
    assert len(workers) == 2
    os.kill(workers[0].pid, signal.SIGKILL)
    assert process.wait(timeout=120) == EXIT_RESUMABLE
    err = process.stderr.read()
    assert "died" in err and "Traceback" not in err
    assert json.loads((run_dir / "run.json").read_text())["status"] == "interrupted"
    assert run(TrainTool(), ["--config", config, "--resume", "--epochs", "2"], cwd=tmp_path) == 0


def _nearly_full_disk(tmp_path, free):
    """A tmpfs of 4 MB with ``free`` bytes left, unmounted by the caller."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small file system needs root")
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)], capture_output=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {result.stderr.decode().strip()}")
    filler = mount / "filler"
    filler.write_bytes(b"\0" * (shutil.disk_usage(mount).free - free))
    return mount


@pytest.fixture
def small_disk(tmp_path):
    """A nearly full file system: room for a run's first files, not for its checkpoints."""
    mount = _nearly_full_disk(tmp_path, 160_000)
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.fixture(scope="module")
def whole_event_file(trained_runs, tmp_path_factory):
    """The energy run's event file written where there is room, and the command that wrote it."""
    _config, run_dir = trained_runs["energy"]
    whole = tmp_path_factory.mktemp("whole") / "whole.dl2.h5"
    argv = [sys.executable, REPO / "scripts" / "predict_events.py", "--run", f"energy={run_dir}", "--log-level", "WARN"]
    assert subprocess.run([*argv, "--output", whole], cwd=whole.parent, capture_output=True).returncode == 0
    return whole, argv


@pytest.mark.parametrize("fraction", [0.6, 0.3])
def test_an_event_file_on_a_full_disk_is_an_error_never_a_broken_file(fraction, whole_event_file, tmp_path):
    whole, argv = whole_event_file
    mount = _nearly_full_disk(tmp_path, int(fraction * whole.stat().st_size))
    try:
        output = mount / "dl2" / "events.dl2.h5"
        result = subprocess.run([*argv, "--output", output], cwd=tmp_path, capture_output=True, text=True)
        assert "Traceback" not in result.stderr, result.stderr[-3000:]
        assert not [p for p in mount.rglob("*") if ".partial" in p.name]
        if result.returncode == 0:  # it fitted: then it is whole
            from ctapipe.io import read_table

            from ctlearn_mlops.io.dl2 import check_written, read_telescope_events

            assert output.exists() and "DL2 file:" in result.stdout
            check_written(output, len(read_table(whole, "/dl1/event/subarray/trigger")))
            assert len(read_telescope_events(output)) == len(read_telescope_events(whole))
        else:
            assert result.returncode == EXIT_FAILURE, result.stderr[-3000:]
            assert f"no space left on {mount}" in result.stderr, result.stderr[-3000:]
            assert "DL2 file:" not in result.stdout and not output.exists()
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_full_disk_ends_the_run_with_one_message_and_no_half_written_files(task_config, small_disk, tmp_path):
    config = task_config("energy", Project={"output_root": str(small_disk / "models")},
                         TrainCTLearnModel={"n_epochs": 3})
    result = subprocess.run([sys.executable, REPO / "scripts" / "train_model.py", "--config", config,
                             "--log-level", "WARN"], cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == EXIT_FAILURE, result.stderr[-3000:]
    assert f"no space left on {small_disk}" in result.stderr
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    run_dir = small_disk / "models" / "energy" / "tiny"
    assert not _leftovers(small_disk)
    if (run_dir / "ctlearn_model.keras").exists():
        import keras

        keras.saving.load_model(run_dir / "ctlearn_model.keras")  # whole, or not there
    if (run_dir / "run.json").exists():
        info = json.loads((run_dir / "run.json").read_text())
        if info["status"] == "failed":
            assert "no space left" in info["error"]
            assert read_events(run_dir)[-1]["event"] == "exception"
        else:
            # there was no room to record the end: the run shows as resumable once the process is gone
            from ctlearn_mlops.tools.runs import run_state

            assert run_state(run_dir) == "resumable"


def test_a_conversion_on_a_full_disk_says_so(small_disk, tmp_path):
    from ctlearn_mlops.resources import eventio_resource

    inputs = tmp_path / "simtel"
    inputs.mkdir()
    (inputs / "gamma_test.simtel.gz").symlink_to(eventio_resource("gamma_test.simtel.gz"))
    (small_disk / "filler").unlink()
    (small_disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - 30_000))
    result = subprocess.run(
        [sys.executable, REPO / "scripts" / "data_processing" / "convert_data.py", "--input", inputs,
         "--output-dir", small_disk / "dl1", "--processing-config", REPO / "configs" / "processing" / "dl1_images.yaml",
         "--max-events", "3", "--allowed-tels", "1", "--allowed-tels", "2", "--log-level", "WARN"],
        cwd=tmp_path, capture_output=True, text=True,
    )
    assert result.returncode == EXIT_FAILURE
    assert f"no space left on {small_disk / 'dl1'}" in result.stderr
    assert "Traceback" not in result.stderr
    assert not _leftovers(small_disk)


def test_a_report_on_a_full_disk_names_the_place_and_leaves_nothing(trained_runs, small_disk, tmp_path):
    config, run_dir = trained_runs["energy"]
    (small_disk / "filler").unlink()
    (small_disk / "filler").write_bytes(b"\0" * (shutil.disk_usage(small_disk).free - 20_000))
    reports = small_disk / "reports"
    result = subprocess.run([sys.executable, REPO / "scripts" / "generate_report.py", "--config", config, "--run",
                             run_dir, "--reports-root", reports, "--log-level", "WARN"], cwd=tmp_path,
                            capture_output=True, text=True)
    assert result.returncode == EXIT_FAILURE, result.stderr[-3000:]
    assert f"no space left on {reports}" in result.stderr, result.stderr[-3000:]
    assert f"(the file system mounted at {small_disk})" in result.stderr
    assert "Traceback" not in result.stderr
    assert not reports.exists()  # not even the empty directories the report would have gone to
