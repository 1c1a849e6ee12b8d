"""Session fixtures: small real files made once per test session.

* ``toy_data``: the embedded default production, shrunk (a few hundred showers),
  written by the same code as ``make data``.
* ``task_config``: the real ``configs/<task>.yaml``, shrunk (1 epoch, tiny
  network) and pointed at ``toy_data`` and a temporary output root.
* ``irf_sample`` / ``event_file``: a small IRF sample (point-like gammas,
  diffuse protons) and its event DL2 file with the ``trained_runs``.
"""

import os
import sys
from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[1]
#: DL1 of data model v6 (ctapipe 0.23) of real LST images: scripts/ci/make_v6_fixture.sh
V6_FIXTURE = REPO / "tests" / "data" / "gamma_test_lst_v6.dl1.h5"
TASKS = ("energy", "type", "cameradirection", "skydirection")

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


def pytest_configure(config):
    """Keep absl's log handler (imported with TensorFlow) away from pytest's capture files.

    absl 2's ``PythonHandler`` keeps the ``sys.stderr`` of its creation and
    closes it in ``close()`` unless it is the current ``sys.stderr``; every
    ``logging.config.dictConfig`` (each ctapipe Tool run) closes all handlers,
    so under ``capfd`` it would close pytest's own capture file.
    """
    from absl import logging as absl_logging

    absl_logging.get_absl_handler().python_handler.stream = sys.__stderr__


@pytest.fixture(scope="session")
def toy_data(tmp_path_factory):
    from ctlearn_mlops.toysim.dataset import default_dataset_plan, write_toy_file

    out = tmp_path_factory.mktemp("toy")
    plan = default_dataset_plan(out, n_gamma=400, n_proton=1000, test_fraction=0.3, seed=3, showers_per_file=10000)
    for spec in plan:
        write_toy_file(spec)
    return out


def shrink_config(task, data_dir, output_root, config_name=None, **sections):
    """The real task config (``configs/<config_name or task>.yaml``), made small and pointed at ``data_dir``."""
    config = yaml.safe_load((REPO / "configs" / f"{config_name or task}.yaml").read_text())
    project = config["Project"]
    for key in ("signal_dir", "background_dir"):
        if key in project:
            project[key] = str(data_dir / "train")
    for key in ("test_signal_dir", "test_background_dir"):
        if key in project:
            project[key] = str(data_dir / "test")
    project["output_root"] = str(output_root)
    project["run_name"] = "tiny"
    config["TrainCTLearnModel"].update(n_epochs=1, batch_size=16)
    n_out = 1 if task == "energy" else 2
    config["SingleCNN"].update(
        architecture=[{"filters": 4, "kernel_size": 3, "number": 1}, {"filters": 8, "kernel_size": 3, "number": 1}],
        head_layers={task: [8, n_out]},
    )
    for section, values in sections.items():
        config.setdefault(section, {}).update(values)
    return config


@pytest.fixture
def task_config(toy_data, tmp_path):
    """Factory: write a shrunk config of ``task`` and return its path."""

    def make(task, **sections):
        path = tmp_path / f"{task}.yaml"
        path.write_text(yaml.safe_dump(shrink_config(task, toy_data, tmp_path / "models", **sections)))
        return path

    return make


def run(tool, argv, cwd):
    """Run a ctapipe Tool in-process and return its exit code."""
    from ctapipe.core.tool import run_tool

    return run_tool(tool, [str(a) for a in argv], cwd=cwd, raises=False)


@pytest.fixture(scope="session")
def trained_runs(toy_data, tmp_path_factory):
    """One tiny trained and tested run per task (shared by the tests that only read runs)."""
    from ctlearn_mlops.tools.predict import PredictTool
    from ctlearn_mlops.tools.train import TrainTool

    root = tmp_path_factory.mktemp("runs")
    runs = {}
    for task in TASKS:
        config = root / f"{task}.yaml"
        # enough validation images and events for the error models of the skydirection run (the axis fit,
        # physics/axis_fit.py) and of the energy run (its calibrated uncertainty, physics/energy_uncertainty.py)
        split = {"skydirection": 0.3, "energy": 0.4}.get(task)
        sections = {"TrainCTLearnModel": {"validation_split": split}} if split else {}
        config.write_text(yaml.safe_dump(shrink_config(task, toy_data, root / "models", **sections)))
        assert run(TrainTool(), ["--config", config], cwd=root) == 0, f"training {task} failed"
        assert run(PredictTool(), ["--config", config, "--run", "tiny"], cwd=root) == 0, f"predicting {task} failed"
        runs[task] = (config, root / "models" / task / "tiny")
    return runs


@pytest.fixture(scope="session")
def sst1m_dl1(tmp_path_factory):
    """DL1 of the real SST-1M sample (eventio sdist): 70 telescopes, 4 of which never trigger in it."""
    from ctapipe.core.tool import run_tool

    from ctlearn_mlops.resources import eventio_resource
    from ctlearn_mlops.tools.convert import ConvertTool

    out = tmp_path_factory.mktemp("sst1m")
    inputs = out / "simtel"
    inputs.mkdir()
    (inputs / "sst1m.simtel.zst").symlink_to(eventio_resource(
        "gamma_20deg_0deg_run102___cta-prod4-sst-1m_desert-2150m-Paranal-sst-1m.simtel.zst"))
    argv = ["--input", inputs, "--output-dir", out / "dl1", "--processing-config",
            REPO / "configs" / "processing" / "dl1_images.yaml", "--max-events", "12"]
    assert run_tool(ConvertTool(), [str(a) for a in argv], cwd=out, raises=False) == 0
    return out / "dl1" / "sst1m.dl1.h5"


@pytest.fixture(scope="session")
def irf_sample(tmp_path_factory):
    """Point-like gammas and diffuse protons, as make_default_dataset.py writes to irf/ (smaller)."""
    from ctlearn_mlops.toysim.dataset import irf_dataset_plan, write_toy_file

    out = tmp_path_factory.mktemp("irfsample")
    for spec in irf_dataset_plan(out, n_gamma=600, n_proton=2400, seed=5, showers_per_file=1200):
        write_toy_file(spec)
    return out / "irf"


def write_event_file(trained_runs, inputs, output, roles=("type", "energy", "skydirection")):
    """The event DL2 file of ``inputs`` with the tiny trained runs of ``roles``."""
    from ctlearn_mlops.tools.events import EventDL2Tool

    role_of = {"type": "type", "energy": "energy", "skydirection": "geometry"}
    argv = [arg for task in roles for arg in ("--run", f"{role_of[task]}={trained_runs[task][1]}")]
    argv += [arg for path in inputs for arg in ("--input", path)] + ["--output", output]
    assert run(EventDL2Tool(), argv, cwd=output.parent) == 0
    return output


@pytest.fixture(scope="session")
def event_file(trained_runs, irf_sample, tmp_path_factory):
    return write_event_file(trained_runs, [irf_sample], tmp_path_factory.mktemp("irfevents") / "irf.dl2.h5")
