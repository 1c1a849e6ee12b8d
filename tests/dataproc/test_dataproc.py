"""simtel -> DL1 -> slim -> merged, on the real simtel files of the eventio sdist."""

import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import tables
import yaml
from ctapipe.io import TableLoader
from dl1_data_handler.reader import DLImageReader
from traitlets.config import Config

from ctlearn_mlops.dataproc.inputs import output_name, select_shard
from ctlearn_mlops.resources import eventio_resource
from ctlearn_mlops.tools.convert import ConvertTool
from ctlearn_mlops.tools.extract import ExtractImagesTool
from ctlearn_mlops.tools.merge import DL1MergeTool
from ctlearn_mlops.tools.predict import PredictTool
from ctlearn_mlops.tools.train import TrainTool

from ..conftest import REPO, V6_FIXTURE, run, shrink_config

PROCESSING = REPO / "configs" / "processing" / "dl1_images.yaml"
LST = ["--allowed-tels", "1", "--allowed-tels", "2", "--allowed-tels", "3", "--allowed-tels", "4"]
SST1M_ZST = "gamma_20deg_0deg_run102___cta-prod4-sst-1m_desert-2150m-Paranal-sst-1m.simtel.zst"


@pytest.fixture(scope="session")
def simtel_dir(tmp_path_factory):
    """The real LST sample (gamma_test.simtel.gz, 126 telescopes of prod-3) in its own directory."""
    directory = tmp_path_factory.mktemp("simtel")
    (directory / "gamma_test.simtel.gz").symlink_to(eventio_resource("gamma_test.simtel.gz"))
    return directory


@pytest.fixture(scope="session")
def real_dl1(simtel_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("dl1")
    argv = ["--input", simtel_dir, "--output-dir", out, "--processing-config", PROCESSING, "--allow-truncated", *LST]
    assert run(ConvertTool(), argv, cwd=out) == 0
    return out / "gamma_test.dl1.h5"


def _leftovers(directory):
    return [p for p in directory.rglob("*") if p.name.endswith(".partial")]


@pytest.mark.slow
def test_real_simtel_converts_to_dl1_that_stock_readers_open(real_dl1):
    with tables.open_file(real_dl1) as h5:
        for node in ("/dl1/event/telescope/images/tel_001", "/dl1/event/telescope/parameters/tel_001",
                     "/simulation/event/subarray/shower", "/configuration/telescope/pointing/tel_001",
                     "/dl1/event/subarray/trigger", "/configuration/simulation/run"):
            assert node in h5.root, node
    with TableLoader(real_dl1, focal_length_choice="EQUIVALENT") as loader:
        events = loader.read_telescope_events(["LST_LST_LSTCam"], dl1_images=True, simulated=True)
    assert len(events) >= 5 and set(np.unique(events["tel_id"])) <= {1, 2, 3, 4}
    assert events["image"].shape[1] == 1855
    reader = DLImageReader(
        input_url_signal=[str(real_dl1)],
        config=Config({"DLImageReader": {"allowed_tels": [1, 2, 3, 4], "focal_length_choice": "EQUIVALENT"},
                       "TableQualityQuery": {"quality_criteria": [["any", "hillas_intensity > 0"]]}}),
    )
    batch = reader.generate_mono_batch(list(range(reader._get_n_events())))
    assert batch["features"].shape[1:] == (110, 110, 2) and np.isfinite(batch["features"]).all()


@pytest.mark.slow
def test_truncated_input_fails_unless_allowed(simtel_dir, tmp_path, capfd):
    argv = ["--input", simtel_dir, "--output-dir", tmp_path, "--processing-config", PROCESSING, *LST]
    assert run(ConvertTool(), argv, cwd=tmp_path) == 1
    err = capfd.readouterr().err
    assert "gamma_test.simtel.gz: input is truncated" in err and "--allow-truncated" in err
    assert not (tmp_path / "gamma_test.dl1.h5").exists() and not _leftovers(tmp_path)


@pytest.mark.slow
def test_bad_files_fail_one_line_each_and_the_others_finish(simtel_dir, tmp_path, capfd):
    inputs = tmp_path / "in"
    inputs.mkdir()
    real = eventio_resource("gamma_test.simtel.gz").read_bytes()
    (inputs / "cut_short.simtel.gz").write_bytes(real[: 3_000_000])
    (inputs / "not_simtel.simtel.gz").write_bytes(b"this is not a simtel file\n" * 100)
    (inputs / "sst1m.simtel.zst").symlink_to(eventio_resource(SST1M_ZST))
    out = tmp_path / "out"
    argv = ["--input", inputs, "--output-dir", out, "--processing-config", PROCESSING, "--max-events", "5", "--jobs", "2"]
    assert run(ConvertTool(), argv, cwd=tmp_path) == 1
    captured = capfd.readouterr()
    # one ERROR log line per failed file, "FAILED <file>: <reason>"
    failed = [line for line in captured.err.splitlines() if "ERROR" in line and "FAILED " in line]
    assert len(failed) == 2
    assert any("cut_short.simtel.gz" in line for line in failed)
    assert any("not_simtel.simtel.gz: not a simulation file" in line for line in failed)
    assert "converted 1, skipped 0 (already complete), failed 2" in captured.out
    assert sorted(p.name for p in out.glob("*.h5")) == ["sst1m.dl1.h5"]
    assert not _leftovers(out)


@pytest.mark.parametrize(
    "case, expected",
    [("empty", "no input files"), ("missing", "no such file or directory"), ("unwritable", "cannot write to")],
)
def test_bad_input_locations_exit_2_before_work(case, expected, tmp_path, capfd):
    inputs, out = tmp_path / "empty", tmp_path / "out"
    inputs.mkdir()
    if case == "missing":
        inputs = tmp_path / "nowhere"
    if case == "unwritable":
        (inputs / "a.simtel.gz").write_bytes(b"x")
        blocker = tmp_path / "a_file"
        blocker.write_text("not a directory")
        out = blocker / "out"
    argv = ["--input", inputs, "--output-dir", out, "--processing-config", PROCESSING]
    assert run(ConvertTool(), argv, cwd=tmp_path) == 2
    assert expected in capfd.readouterr().err


def test_shards_are_disjoint_and_cover_all_files():
    files = [f"f{i}" for i in range(11)]
    shards = [select_shard(files, i, 4) for i in range(4)]
    assert sorted(sum(shards, [])) == sorted(files)
    assert output_name("/x/run7.simtel.zst") == "run7.dl1.h5"


@pytest.mark.slow
def test_slurm_array_element_converts_only_its_shard(tmp_path, monkeypatch):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b", "c"):
        (inputs / f"{name}.simtel.zst").symlink_to(eventio_resource(SST1M_ZST))
    monkeypatch.setenv("SLURM_ARRAY_TASK_ID", "1")
    monkeypatch.setenv("SLURM_ARRAY_TASK_COUNT", "2")
    out = tmp_path / "out"
    argv = ["--input", inputs, "--output-dir", out, "--processing-config", PROCESSING, "--max-events", "3"]
    assert run(ConvertTool(), argv, cwd=tmp_path) == 0
    assert sorted(p.name for p in out.glob("*.h5")) == ["b.dl1.h5"]


def _converting(process, name):
    """Whether a child of ``process`` (ctapipe-process) is converting the input ``name``."""
    import psutil

    try:
        children = psutil.Process(process.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return False
    for child in children:
        try:
            if any(name in arg for arg in child.cmdline()):
                return True
        except psutil.Error:
            continue
    return False


@pytest.mark.slow
def test_killed_conversion_reruns_only_unfinished_files(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    for name in ("a", "b", "c"):
        (inputs / f"{name}.simtel.zst").symlink_to(eventio_resource(SST1M_ZST))
    out = tmp_path / "out"
    cmd = [sys.executable, REPO / "scripts" / "data_processing" / "convert_data.py", "--input", inputs,
           "--output-dir", out, "--processing-config", PROCESSING, "--max-events", "3", "--jobs", "1"]
    process = subprocess.Popen(cmd, cwd=tmp_path, start_new_session=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    # killed while the second file converts, however fast this machine is: a is done, b half-written, c not begun
    deadline = time.monotonic() + 300
    while not _converting(process, "b.simtel.zst"):
        assert process.poll() is None and time.monotonic() < deadline, "the conversion of b never started"
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    finished = {p.name: p.stat().st_mtime_ns for p in out.glob("*.h5")}
    assert sorted(finished) == ["a.dl1.h5"]

    result = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"converted {3 - len(finished)}, skipped {len(finished)}" in result.stdout
    for name, mtime in finished.items():
        assert (out / name).stat().st_mtime_ns == mtime
    assert sorted(p.name for p in out.glob("*.h5")) == ["a.dl1.h5", "b.dl1.h5", "c.dl1.h5"]
    assert not _leftovers(out)


def test_merge_reports_events_and_refuses_other_subarrays(toy_data, real_dl1, tmp_path, capfd):
    gammas = sorted((toy_data / "train").glob("gamma_*.h5")) + sorted((toy_data / "test").glob("gamma_*.h5"))
    merged = tmp_path / "merged.dl1.h5"
    assert run(DL1MergeTool(), ["--output", merged, *gammas], cwd=tmp_path) == 0
    out = capfd.readouterr().out
    counts = [tables.open_file(p).root.dl1.event.subarray.trigger.nrows for p in gammas]
    total_line = next(line for line in out.splitlines() if line.startswith("total"))
    assert int(total_line.split()[1]) == sum(counts)
    for path, count in zip(gammas, counts):
        assert any(line.split()[:2] == [path.name, str(count)] for line in out.splitlines())
    with tables.open_file(merged) as h5:
        assert h5.root.dl1.event.subarray.trigger.nrows == sum(counts)

    refused = tmp_path / "refused.dl1.h5"
    assert run(DL1MergeTool(), ["--output", refused, gammas[0], real_dl1], cwd=tmp_path) == 2
    err = capfd.readouterr().err
    assert f"cannot merge {real_dl1}" in err and "different subarray" in err
    assert not refused.exists() and not _leftovers(tmp_path)
    assert run(DL1MergeTool(), ["--output", merged, gammas[0]], cwd=tmp_path) == 2
    assert "--overwrite" in capfd.readouterr().err


@pytest.mark.slow
def test_real_chain_convert_extract_merge_train_test(real_dl1, tmp_path):
    slim_dir = tmp_path / "slim"
    assert run(ExtractImagesTool(), ["--input", real_dl1, "--output-dir", slim_dir], cwd=tmp_path) == 0
    slim = slim_dir / real_dl1.name
    with tables.open_file(slim) as h5:
        assert "/simulation/event/telescope/parameters" not in h5.root
    merged_dir = tmp_path / "merged"
    assert run(DL1MergeTool(), ["--output", merged_dir / "lst_gammas.dl1.h5", slim], cwd=tmp_path) == 0
    _train_and_test_energy_on(merged_dir, tmp_path)


def test_dl1_of_data_model_v6_trains_and_predicts(tmp_path):
    """DL1 written by ctapipe 0.23 (data model v6, older productions): tests/data, scripts/ci/make_v6_fixture.sh."""
    data = tmp_path / "v6"
    data.mkdir()
    shutil.copy(V6_FIXTURE, data)
    with tables.open_file(data / V6_FIXTURE.name) as h5:
        assert h5.root._v_attrs["CTA PRODUCT DATA MODEL VERSION"] == "v6.0.0"
    _train_and_test_energy_on(data, tmp_path)


def _train_and_test_energy_on(directory, tmp_path):
    """A tiny energy run trained and tested on the real LST images of ``directory``."""
    merged_dir = directory
    config = shrink_config(
        "energy", tmp_path, tmp_path / "models",
        TrainCTLearnModel={"batch_size": 1, "validation_split": 0.3},
        TableQualityQuery={"quality_criteria": [["any", "hillas_intensity > 0"]]},
        PredictTool={"batch_size": 4},
    )
    config["Project"].update(
        signal_dir=str(merged_dir), signal_patterns=["*.h5"], test_signal_dir=str(merged_dir), test_signal_patterns=["*.h5"],
    )
    path = tmp_path / "energy_real.yaml"
    path.write_text(yaml.safe_dump(config))
    assert run(TrainTool(), ["--config", path], cwd=tmp_path) == 0
    assert run(PredictTool(), ["--config", path, "--run", "tiny"], cwd=tmp_path) == 0
    with TableLoader(tmp_path / "models" / "energy" / "tiny" / "dl2" / "test.dl2.h5",
                     focal_length_choice="EQUIVALENT") as loader:
        dl2 = loader.read_telescope_events(dl2=True, dl1_parameters=True)
    predicted = dl2[dl2["CTLearn_tel_is_valid"]]
    assert len(predicted) >= 5 and set(np.unique(predicted["tel_id"])) <= {1, 2, 3, 4}
    assert np.isfinite(predicted["CTLearn_tel_energy"]).all()


@pytest.mark.parametrize("case", ["truncated", "empty", "text"])
def test_extracting_a_broken_file_is_refused_before_anything_is_written(case, toy_data, tmp_path, capfd):
    source = sorted((toy_data / "train").glob("gamma_*.h5"))[0]
    broken = tmp_path / "in" / f"{case}.dl1.h5"
    broken.parent.mkdir()
    content = {"truncated": source.read_bytes()[: source.stat().st_size // 3], "empty": b"",
               "text": b"obs_id,event_id\n1,2\n"}[case]
    broken.write_bytes(content)
    capfd.readouterr()
    output = tmp_path / "out"
    assert run(ExtractImagesTool(), ["--input", broken, "--output-dir", output], cwd=tmp_path) == 2
    err = capfd.readouterr().err
    assert str(broken) in err and "Traceback" not in err, err[-2000:]
    assert not output.exists()
