"""What ``exceptions.typed_error`` makes of the errors a tool meets."""

import errno
import os

import pytest

from ctlearn_mlops.exceptions import EXIT_RESUMABLE, FileUnusable, NoSpaceLeft, TaskLost, typed_error


def test_a_lost_peer_is_a_lost_task_only_in_a_multi_worker_run():
    # an MLflow server or any other socket of a one-task run says the same words: requeuing would not help
    lost = RuntimeError("UNAVAILABLE: Connection reset by peer (from /job:worker/replica:0/task:1)")
    assert typed_error(lost) is None
    assert typed_error(lost, multi_worker=False) is None
    task_lost = typed_error(lost, multi_worker=True)
    assert isinstance(task_lost, TaskLost) and task_lost.exit_code == EXIT_RESUMABLE
    assert "task 1" in str(task_lost)


def test_no_space_left_names_the_file_system():
    full = OSError(errno.ENOSPC, "No space left on device", "/data/runs/energy/x/best.weights.h5")
    assert isinstance(typed_error(full), NoSpaceLeft)
    assert "/data/runs/energy/x/best.weights.h5" in str(typed_error(full))


def test_a_file_in_the_way_is_named_and_a_device_error_is_not_taken_for_one(tmp_path):
    (tmp_path / "split.csv").mkdir()
    with pytest.raises(OSError) as written:
        (tmp_path / "split.csv").write_text("")
    typed = typed_error(written.value)
    assert isinstance(typed, FileUnusable) and str(tmp_path / "split.csv") in str(typed) and typed.exit_code == 1
    # a rename into a directory: the destination is named, not the temporary source
    (tmp_path / ".split.csv.partial").write_text("")
    with pytest.raises(OSError) as renamed:
        os.replace(tmp_path / ".split.csv.partial", tmp_path / "split.csv")
    assert str(typed_error(renamed.value)).startswith(f"{tmp_path / 'split.csv'}: ")
    # an I/O error of the device, or one without a file, keeps its traceback
    assert typed_error(OSError(errno.EIO, "Input/output error", str(tmp_path))) is None
    assert typed_error(PermissionError(errno.EACCES, "Permission denied")) is None
