"""All four tasks train and test end to end with real TensorFlow on toy DL1."""

import csv
import hashlib
import json
import shutil

import numpy as np
import pytest
import yaml
from ctapipe.io import TableLoader
from dl1_data_handler.reader import DLImageReader
from traitlets.config import Config

from ctlearn_mlops.io.dl2 import read_telescope_events, read_training_images
from ctlearn_mlops.tools.predict import PredictTool
from ctlearn_mlops.tools.train import TrainTool

from ..conftest import REPO, TASKS, run

pytestmark = pytest.mark.slow

#: the telescope-level DL2 columns of each task's network (io.dl2)
PREDICTION_COLUMNS = {
    "energy": ["CTLearn_tel_energy"],
    "type": ["CTLearn_tel_prediction"],
    "cameradirection": ["CTLearn_tel_alt", "CTLearn_tel_az"],
    "skydirection": ["CTLearn_tel_alt", "CTLearn_tel_az"],
}


@pytest.mark.parametrize("task", TASKS)
def test_run_directory_holds_config_model_log_tensorboard_and_provenance(task, trained_runs):
    config, run_dir = trained_runs[task]
    info = json.loads((run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["task"] == task
    snapshot = yaml.safe_load((run_dir / "config.yaml").read_text())
    assert snapshot["Project"]["task"] == task and snapshot["Project"]["run_name"] == "tiny"
    assert (run_dir / "ctlearn_model.keras").is_file()
    with open(run_dir / "training_log.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["epoch"] for r in rows] == ["0"]
    assert np.isfinite(float(rows[0]["loss"])) and np.isfinite(float(rows[0]["val_loss"]))
    assert list(run_dir.glob("train/events.out.tfevents.*")) and list(run_dir.glob("validation/events.out.tfevents.*"))

    provenance = json.loads((run_dir / "provenance.json").read_text())
    assert provenance["packages"]["ctlearn"] == "0.10.4"
    assert provenance["host"] and provenance["started"] <= provenance["finished"]
    roles = {i["role"] for i in provenance["inputs"]}
    assert roles == ({"DL1 signal", "DL1 background"} if task == "type" else {"DL1 signal"})
    first = provenance["inputs"][0]
    with open(first["path"], "rb") as f:
        assert hashlib.sha256(f.read()).hexdigest() == first["sha256"]


@pytest.mark.parametrize("task", TASKS)
def test_validation_split_keeps_showers_together(task, trained_runs):
    _, run_dir = trained_runs[task]
    with open(run_dir / "split.csv") as f:
        rows = list(csv.DictReader(f))
    sides = {}
    for r in rows:
        sides.setdefault((r["obs_id"], r["event_id"]), set()).add(r["split"])
    assert {"training"} in sides.values() and {"validation"} in sides.values()
    assert all(len(s) == 1 for s in sides.values())


def _reader(toy_data, split, task):
    return DLImageReader(
        input_url_signal=sorted(str(p) for p in (toy_data / split).glob("gamma_*.h5")),
        input_url_background=sorted(str(p) for p in (toy_data / split).glob("proton_*.h5")) if task == "type" else [],
        config=Config({"DLImageReader": {"allowed_tels": [1, 2, 3, 4], "focal_length_choice": "EQUIVALENT"},
                       "TableQualityQuery": {"quality_criteria": [["> 50 phe", "hillas_intensity > 50"]]}}),
    )


@pytest.mark.parametrize("task", TASKS)
def test_dl2_has_every_test_image_with_truth_ids_and_predictions(task, trained_runs, toy_data):
    _, run_dir = trained_runs[task]
    with TableLoader(run_dir / "dl2" / "test.dl2.h5", focal_length_choice="EQUIVALENT") as loader:
        dl2 = loader.read_telescope_events(dl2=True, dl1_parameters=True, simulated=True)
    for column in ("obs_id", "event_id", "tel_id", "true_energy", "true_alt", "true_az", "true_shower_primary_id",
                   "hillas_intensity", "hillas_width", "CTLearn_tel_is_valid", *PREDICTION_COLUMNS[task]):
        assert column in dl2.colnames, column
    predicted = dl2[dl2["CTLearn_tel_is_valid"]]
    reader = _reader(toy_data, "test", task)
    examples = reader.example_identifiers
    # every image that passes the cuts, and only those, has a prediction
    assert len(predicted) == len(examples)
    assert set(zip(predicted["obs_id"], predicted["event_id"], predicted["tel_id"])) == set(
        zip(examples["obs_id"], examples["event_id"], examples["tel_id"]))
    particles = {0} | ({101} if task == "type" else set())
    assert set(np.unique(predicted["true_shower_primary_id"])) == particles
    for column in PREDICTION_COLUMNS[task]:
        values = np.asarray(predicted[column], dtype=float)
        assert np.isfinite(values).all()
        # the stock mono tool wrote 0.0 for the last incomplete batch: the last examples in reader order
        last = set(zip(examples["obs_id"][-10:], examples["event_id"][-10:], examples["tel_id"][-10:]))
        tail = [v for o, e, t, v in zip(predicted["obs_id"], predicted["event_id"], predicted["tel_id"], values)
                if (o, e, t) in last]
        assert len(tail) == 10 and not np.any(np.asarray(tail) == 0.0), column
    if task == "type":
        assert ((predicted["CTLearn_tel_prediction"] >= 0) & (predicted["CTLearn_tel_prediction"] <= 1)).all()
    if task == "energy":
        assert (predicted["CTLearn_tel_energy"] > 0).all()
    # the classical reconstruction of the same images
    classical = "HillasBDT_tel_is_valid"
    assert np.array_equal(np.asarray(dl2[classical]), np.asarray(dl2["CTLearn_tel_is_valid"]))

    # the baselines are fitted on the training files' images, after the same cuts
    training = read_training_images(run_dir / "dl2" / "test.dl2.h5")
    assert len(training) == len(_reader(toy_data, "train", task).example_identifiers)
    assert not {c for c in training.colnames if c.startswith("CTLearn")}
    assert np.isfinite(np.asarray(training["hillas_width"], dtype=float)).all()


def test_second_training_into_same_run_is_refused_then_overwritten(trained_runs, capfd):
    config, run_dir = trained_runs["energy"]
    before = (run_dir / "run.json").read_text()
    assert run(TrainTool(), ["--config", config], cwd=config.parent) == 2
    assert "--overwrite" in capfd.readouterr().err
    assert (run_dir / "run.json").read_text() == before

    assert run(PredictTool(), ["--config", config, "--run", "tiny"], cwd=config.parent) == 2
    assert "test.dl2.h5 exists" in capfd.readouterr().err


def test_overwrite_replaces_a_run(task_config, tmp_path):
    config = task_config("energy")
    assert run(TrainTool(), ["--config", config], cwd=tmp_path) == 0
    run_dir = tmp_path / "models" / "energy" / "tiny"
    (run_dir / "stale-file").write_text("from the first run")
    assert run(TrainTool(), ["--config", config, "--overwrite"], cwd=tmp_path) == 0
    assert not (run_dir / "stale-file").exists()
    assert json.loads((run_dir / "run.json").read_text())["status"] == "finished"


def test_predicting_with_a_run_of_another_task_is_refused(trained_runs, capfd):
    type_config, _ = trained_runs["type"]
    _, energy_run = trained_runs["energy"]
    assert run(PredictTool(), ["--config", type_config, "--run", energy_run, "--name", "x"], cwd=type_config.parent) == 2
    assert "trained for task 'energy'" in capfd.readouterr().err
    assert not (energy_run / "dl2" / "x.dl2.h5").exists()


def test_predicting_into_a_run_where_nothing_can_be_written_is_refused_before_the_work(trained_runs, tmp_path, capfd):
    config, run_dir = trained_runs["energy"]
    copy = tmp_path / "energy-copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("dl2"))
    (copy / "dl2").write_text("a file where the DL2 directory goes")
    assert run(PredictTool(), ["--config", config, "--run", copy, "--name", "x"], cwd=tmp_path) == 2
    err = capfd.readouterr().err
    assert "is not a directory" in err and "Traceback" not in err, err[-2000:]
    assert not list(copy.glob(".*lock*"))


def test_latest_run_and_explicit_input(trained_runs, toy_data):
    config, run_dir = trained_runs["cameradirection"]
    test_file = sorted((toy_data / "test").glob("gamma_*.h5"))[0]
    argv = ["--config", config, "--run", "latest", "--input", test_file, "--name", "one-file"]
    assert run(PredictTool(), argv, cwd=config.parent) == 0
    assert read_telescope_events(run_dir / "dl2" / "one-file.dl2.h5")["CTLearn_tel_is_valid"].any()


def test_custom_model_template_trains_and_predicts(task_config, tmp_path):
    config = task_config(
        "energy",
        Project={"custom_model_file": str(REPO / "models" / "custom_model_template.py")},
        TrainCTLearnModel={"model_type": "CustomCNN"},
        CustomCNN={"filters": [4, 8], "head_layers": {"energy": [8, 1]}, "head_activation_function": {"energy": "relu"},
                   "mirror_augmentation": True, "mirror_average": True, "log_channels": [0]},
    )
    assert run(TrainTool(), ["--config", config], cwd=tmp_path) == 0
    run_dir = tmp_path / "models" / "energy" / "tiny"
    assert json.loads((run_dir / "run.json").read_text())["model_type"] == "CustomCNN"
    assert run(PredictTool(), ["--config", config, "--run", "tiny"], cwd=tmp_path) == 0
    dl2 = read_telescope_events(run_dir / "dl2" / "test.dl2.h5")
    dl2 = dl2[dl2["CTLearn_tel_is_valid"]]
    assert len(dl2) and np.isfinite(dl2["CTLearn_tel_energy"]).all()
    # the saved model holds the template's own layer and loads again in the predict tool
    import keras

    model = keras.saving.load_model(run_dir / "ctlearn_model.keras")
    assert model.get_layer("custom_log_channels").channels == [0]
    # averaged over the four mirrors, the prediction is the same for an image and its mirror
    images = np.random.default_rng(0).exponential(20.0, size=(3, *model.input_shape[1:])).astype(np.float32)
    energies = model.predict(images, verbose=0)["energy"]
    assert energies.shape == (3, 1)
    np.testing.assert_allclose(model.predict(images[:, ::-1], verbose=0)["energy"], energies, rtol=1e-5)
    np.testing.assert_allclose(model.predict(images[:, :, ::-1], verbose=0)["energy"], energies, rtol=1e-5)
    # the mirror is a training-time layer: predicting twice gives the same energies
    assert run(PredictTool(), ["--config", config, "--run", "tiny", "--name", "again"], cwd=tmp_path) == 0
    again = read_telescope_events(run_dir / "dl2" / "again.dl2.h5")
    again = again[again["CTLearn_tel_is_valid"]]
    np.testing.assert_array_equal(dl2["CTLearn_tel_energy"], again["CTLearn_tel_energy"])


def test_custom_model_refuses_a_task_before_the_run_starts(task_config, tmp_path, capsys):
    config = task_config(
        "cameradirection",
        Project={"custom_model_file": str(REPO / "models" / "custom_model_template.py")},
        TrainCTLearnModel={"model_type": "CustomCNN"},
        CustomCNN={"filters": [4], "head_layers": {"cameradirection": [8, 2]},
                   "head_activation_function": {"cameradirection": "relu"}, "mirror_augmentation": True},
    )
    assert run(TrainTool(), ["--config", config], cwd=tmp_path) == 2
    assert "key 'CustomCNN'" in capsys.readouterr().err
    assert not (tmp_path / "models").exists()


def test_the_saved_model_is_the_epoch_of_lowest_validation_loss(task_config, tmp_path):
    """ctlearn's checkpoint keeps the epoch of lowest val_loss; so does the run (Keras 3 sets the checkpoint's
    direction only once training runs: read too early, it kept the worst epoch)."""
    import keras

    from ctlearn_mlops.checkpoints import checkpoint_mode

    assert checkpoint_mode(keras.callbacks.ModelCheckpoint("m.keras", monitor="val_loss", mode="min")) == "min"
    config = task_config("energy", TrainCTLearnModel={"n_epochs": 3})
    assert run(TrainTool(), ["--config", config], cwd=tmp_path) == 0
    run_dir = tmp_path / "models" / "energy" / "tiny"
    with open(run_dir / "training_log.csv") as f:
        val_loss = [float(row["val_loss"]) for row in csv.DictReader(f)]
    assert len(val_loss) == 3 and min(val_loss) < max(val_loss)
    last_state = sorted((run_dir / "state").glob("epoch_*.json"))[-1]
    assert json.loads(last_state.read_text())["callbacks"]["BestWeights"]["best"] == pytest.approx(min(val_loss))


def test_a_run_that_kept_its_worst_epoch_is_named_and_not_used(trained_runs, tmp_path, capfd):
    """Runs trained before 2026-12-06 on Keras 3 kept their epoch of highest val_loss: list_runs.py says so and
    prediction refuses them, rather than giving their results silently."""
    from ctlearn_mlops.tools.runs import describe

    config, run_dir = trained_runs["energy"]
    copy = tmp_path / "models" / "energy" / "worst"
    shutil.copytree(run_dir, copy)
    assert "note" not in describe(copy, tmp_path / "reports")
    # two epochs, the first the worse, and the state of a run that kept it
    (copy / "training_log.csv").write_text("epoch,loss,val_loss\n0,0.9,0.5\n1,0.6,0.3\n")
    last_state = sorted((copy / "state").glob("epoch_*.json"))[-1]
    state = json.loads(last_state.read_text())
    state["callbacks"]["BestWeights"]["best"] = 0.5
    last_state.write_text(json.dumps(state))
    assert "kept the epoch of highest validation loss" in describe(copy, tmp_path / "reports")["note"]
    assert run(PredictTool(), ["--config", config, "--run", copy, "--name", "x"], cwd=tmp_path) == 2
    assert "train it again" in capfd.readouterr().err and not (copy / "dl2" / "x.dl2.h5").exists()


@pytest.mark.parametrize("case", ["name with a path", "batch size 0", "empty model file"])
def test_bad_test_settings_and_a_damaged_model_are_refused_before_the_work(case, trained_runs, tmp_path, capfd):
    config, run_dir = trained_runs["energy"]
    copy = tmp_path / "energy-copy"
    shutil.copytree(run_dir, copy, ignore=shutil.ignore_patterns("dl2"))
    argv, expected = {
        "name with a path": (["--name", "../../escape"], "key 'PredictTool.output_name': invalid name '../../escape'"),
        "batch size 0": (["--name", "x", "--batch-size", "0"], "key 'PredictCTLearnModel.batch_size': batch size 0"),
        "empty model file": (["--name", "x"], "ctlearn_model.keras is not a Keras model file (empty or damaged)"),
    }[case]
    if case == "empty model file":
        (copy / "ctlearn_model.keras").write_bytes(b"")
    assert run(PredictTool(), ["--config", config, "--run", copy, *argv], cwd=tmp_path) == 2
    err = capfd.readouterr().err
    assert expected in err and "Traceback" not in err, err[-2000:]
    assert not (copy / "dl2").exists() and not list(tmp_path.rglob("escape*"))
