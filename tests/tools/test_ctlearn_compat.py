"""Our runs and ctlearn 0.10.4's own tools: the stock predict tool reads our model and predicts what we predict;
runs trained before the move to Keras 3 are refused with one message and left as they are."""

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import tables
import yaml
from astropy.table import Table, join, vstack
from ctapipe.io import read_table

from ctlearn_mlops.io.dl2 import read_telescope_events

from ..conftest import REPO

pytestmark = pytest.mark.slow

#: the stock mono tool's prefix and table of the energy per telescope (ctlearn/tools/predict_model.py)
STOCK_PREFIX = "CTLearnRegressor"
STOCK_ENERGY_TABLE = "/dl2/event/telescope/energy/" + STOCK_PREFIX + "/tel_{:03d}"
KEYS = ["obs_id", "event_id", "tel_id"]
RTOL = 1e-5


def _env():
    return {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"}


def _stock_reader_config(config):
    """The sections of a run's config that make the stock tool's reader see the images as in training."""
    return {name: section for name, section in config.items()
            if section and (name in ("DLImageReader", "TableQualityQuery") or name.endswith("Mapper"))}


def _test_file(config):
    project = config["Project"]
    directory = Path(project["test_signal_dir"])
    files = sorted({p for pattern in project.get("test_signal_patterns", ["*.h5"]) for p in directory.glob(pattern)})
    assert files, f"no test file in {directory}"
    return files[0]


def _keyed(table, energy, valid):
    return Table({**{k: np.asarray(table[k]) for k in KEYS},
                  "energy": u.Quantity(table[energy]).to_value(u.TeV), "valid": np.asarray(table[valid], dtype=bool)})


def test_stock_predict_tool_reads_our_model_and_predicts_our_energies(trained_runs, tmp_path):
    config_path, run_dir = trained_runs["energy"]
    config = yaml.safe_load((run_dir / "config.yaml").read_text())
    dl1 = _test_file(config)

    ours = read_telescope_events(run_dir / "dl2" / "test.dl2.h5")
    assert u.Quantity(ours["CTLearn_tel_energy"]).unit == u.TeV
    ours = _keyed(ours, "CTLearn_tel_energy", "CTLearn_tel_is_valid")
    with tables.open_file(dl1) as h5:
        obs_ids = np.unique(h5.root.dl1.event.subarray.trigger.col("obs_id"))
    ours = ours[np.isin(ours["obs_id"], obs_ids)]
    n_valid = int(ours["valid"].sum())
    # a batch that leaves an incomplete last one: the stock tool predicts it with a loader of its own
    batch_size = 16
    while n_valid % batch_size == 0:
        batch_size += 1
    assert n_valid >= 2 * batch_size, f"only {n_valid} images of {dl1.name} pass the cuts"

    stock_config = _stock_reader_config(config)
    stock_config["PredictCTLearnModel"] = {"batch_size": batch_size, "dl1dh_reader_type": "DLImageReader",
                                           "keras_verbose": 0}
    stock_config_path = tmp_path / "stock_predict.yaml"
    stock_config_path.write_text(yaml.safe_dump(stock_config))
    output = tmp_path / "stock.dl2.h5"
    command = [Path(sys.executable).parent / "ctlearn-predict-mono-model", "--config", stock_config_path,
               "--input_url", dl1, "--energy_model", run_dir / "ctlearn_model.keras", "--output", output]
    result = subprocess.run([str(a) for a in command], capture_output=True, text=True, cwd=tmp_path, env=_env())
    assert result.returncode == 0, result.stderr[-3000:]

    tel_ids = config["DLImageReader"]["allowed_tels"]
    parts = [read_table(output, STOCK_ENERGY_TABLE.format(tel_id)) for tel_id in tel_ids]
    for part in parts:
        assert u.Quantity(part[f"{STOCK_PREFIX}_tel_energy"]).unit == u.TeV
    stock = _keyed(vstack(parts), f"{STOCK_PREFIX}_tel_energy", f"{STOCK_PREFIX}_tel_is_valid")

    both = join(ours, stock, keys=KEYS, join_type="inner", table_names=["ours", "stock"])
    assert len(both) == len(ours) == len(stock), "the stock tool and we do not write the same telescope events"
    # the stock tool predicts no image that we leave out; it may at most leave out its last incomplete batch
    assert not np.any(both["valid_stock"] & ~both["valid_ours"])
    compared = both["valid_ours"] & both["valid_stock"]
    assert compared.sum() >= n_valid - n_valid % batch_size and compared.sum() >= 30, (compared.sum(), n_valid)
    ours_energy, stock_energy = both["energy_ours"][compared], both["energy_stock"][compared]
    # the images have different energies, else equal values would say little about the pairing of the rows
    assert np.ptp(ours_energy) / np.median(ours_energy) > 100 * RTOL
    np.testing.assert_allclose(stock_energy, ours_energy, rtol=RTOL,
                               err_msg="the stock tool's per-telescope energies (TeV) differ from ours")


def _snapshot(directory):
    """Everything under ``directory``: kind, size, modification time and content hash of each path."""
    state = {}
    for path in sorted([directory, *directory.rglob("*")]):
        stat = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else None
        state[str(path.relative_to(directory))] = (path.is_dir(), stat.st_size if path.is_file() else None,
                                                   stat.st_mtime_ns, digest)
    return state


@pytest.fixture
def legacy_run(trained_runs, tmp_path):
    """A finished energy run as the old stack left it: the Keras 2 SavedModel directory, no ctlearn_model.keras."""
    run_dir = tmp_path / "models" / "energy" / "old-keras2"
    shutil.copytree(trained_runs["energy"][1], run_dir)
    (run_dir / "ctlearn_model.keras").unlink()
    legacy = run_dir / "ctlearn_model.cpk"
    (legacy / "variables").mkdir(parents=True)
    (legacy / "saved_model.pb").write_bytes(b"\x08\x01\x12\x00")
    (legacy / "keras_metadata.pb").write_bytes(b"")
    provenance = json.loads((run_dir / "provenance.json").read_text())
    provenance["packages"].update(ctlearn="0.10.2", keras="2.15.0", tensorflow="2.15.1")
    (run_dir / "provenance.json").write_text(json.dumps(provenance, indent=2) + "\n")
    return run_dir


def _expected_message(run_dir):
    return (f"{run_dir} was trained with ctlearn 0.10.2 / Keras 2 (ctlearn_model.cpk/), which today's stack",
            f"cannot load: train it again, e.g. python scripts/train_model.py --config {run_dir / 'config.yaml'} "
            f"--run-name old-keras2-keras3; the old run is kept as it is")


@pytest.mark.parametrize("script", ["test_model.py", "predict_events.py"])
def test_a_run_trained_before_keras_3_is_refused_and_kept(script, trained_runs, legacy_run, tmp_path):
    before = _snapshot(legacy_run)
    output = tmp_path / "events.dl2.h5"
    if script == "test_model.py":
        argv = ["--config", trained_runs["energy"][0], "--run", legacy_run]
    else:
        argv = ["--run", f"energy={legacy_run}", "--output", output]
    result = subprocess.run([sys.executable, REPO / "scripts" / script, *argv], capture_output=True, text=True,
                            cwd=tmp_path, env=_env())
    assert result.returncode == 2, result.stderr[-3000:]
    start, end = _expected_message(legacy_run)
    lines = [line for line in result.stderr.splitlines() if "ctlearn_model.cpk" in line]
    assert len(lines) == 1, result.stderr[-3000:]
    assert start in lines[0] and end in lines[0], lines[0]
    assert "Traceback" not in result.stderr
    assert _snapshot(legacy_run) == before, "the old run was changed"
    assert not output.exists() and not list(tmp_path.glob(".*.partial"))


def test_list_runs_shows_a_run_trained_before_keras_3(legacy_run, tmp_path):
    models = tmp_path / "models"
    before = _snapshot(legacy_run)
    for extra in ([], ["--csv"]):
        result = subprocess.run([sys.executable, REPO / "scripts" / "list_runs.py", "--models-root", models,
                                 "--reports-root", tmp_path / "reports", *extra],
                                capture_output=True, text=True, cwd=tmp_path, env=_env())
        assert result.returncode == 0, result.stderr[-3000:]
        rows = [line for line in result.stdout.splitlines() if "old-keras2" in line]
        assert len(rows) == 1, result.stdout
        assert "finished" in rows[0] and "Keras 2 model (ctlearn_model.cpk/): train it again" in rows[0], rows[0]
    assert _snapshot(legacy_run) == before


def test_an_unfinished_keras2_run_is_not_resumed(task_config, tmp_path):
    """A run started before the move to Keras 3 (Keras 2 backup in backup/chief/) is refused by --resume, unchanged."""
    config = task_config("energy")
    run_dir = tmp_path / "models" / "energy" / "tiny"
    (run_dir / "backup" / "chief").mkdir(parents=True)
    (run_dir / "backup" / "chief" / "checkpoint").write_text("model_checkpoint_path: \"ckpt-2\"\n")
    (run_dir / "run.json").write_text(json.dumps({"status": "interrupted", "task": "energy", "run_name": "tiny"}))
    (run_dir / "training_log.csv").write_text("epoch,loss,val_loss\n0,1.0,1.1\n1,0.9,1.0\n")
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    result = subprocess.run([sys.executable, REPO / "scripts" / "train_model.py", "--config", config, "--resume"],
                            cwd=tmp_path, capture_output=True, text=True, env=_env())
    assert result.returncode == 2, result.stderr[-2000:]
    assert "was started with" in result.stderr and "train it again" in result.stderr
    assert "Traceback" not in result.stderr
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
