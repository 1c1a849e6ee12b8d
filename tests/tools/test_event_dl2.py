"""The event DL2 file: ctapipe's data model, every role's runs on the same events, combined over telescopes."""

import json
import subprocess
import sys
from pathlib import Path

import astropy.units as u
import numpy as np
import pytest
import tables
import yaml
from astropy.table import QTable
from ctapipe.io import TableLoader, read_table

from ctlearn_mlops.io import dl2
from ctlearn_mlops.tools.events import EventDL2Tool

from ..conftest import REPO, run

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def event_file(trained_runs, tmp_path_factory):
    """One event DL2 file from the tiny type, energy and skydirection runs."""
    out = tmp_path_factory.mktemp("events")
    argv = ["--run", f"type={trained_runs['type'][1]}", "--run", f"energy={trained_runs['energy'][1]}",
            "--run", f"geometry={trained_runs['skydirection'][1]}", "--output", out / "events.dl2.h5"]
    assert run(EventDL2Tool(), argv, cwd=out) == 0
    return out / "events.dl2.h5"


def test_table_loader_reads_both_reconstructions_at_both_levels(event_file):
    with TableLoader(event_file, focal_length_choice="EQUIVALENT") as loader:
        telescope = loader.read_telescope_events(dl2=True, simulated=True, dl1_parameters=True)
        subarray = loader.read_subarray_events(dl2=True, simulated=True)
        n_events = len(read_table(event_file, "/dl1/event/subarray/trigger"))
    assert len(subarray) == n_events
    assert set(np.unique(subarray["true_shower_primary_id"])) == {0, 101}  # gammas and protons
    for prefix in ("CTLearn", "HillasBDT"):
        for column in ("tel_prediction", "tel_energy", "tel_alt", "tel_az", "tel_is_valid"):
            assert f"{prefix}_{column}" in telescope.colnames, (prefix, column)
        for column in ("prediction", "energy", "alt", "az", "is_valid", "telescopes"):
            assert f"{prefix}_{column}" in subarray.colnames, (prefix, column)
    assert "HillasReconstructor_alt" in subarray.colnames
    # every image that passes the cuts has a valid CNN value; the CNN gammaness is a gamma probability
    assert np.any(telescope["CTLearn_tel_is_valid"]) and not np.all(telescope["CTLearn_tel_is_valid"])
    gammaness = telescope["CTLearn_tel_prediction"][telescope["CTLearn_tel_is_valid"]]
    assert np.all((gammaness >= 0) & (gammaness <= 1))
    assert u.Quantity(subarray["CTLearn_energy"]).unit == u.TeV and u.Quantity(subarray["CTLearn_alt"]).unit == u.deg
    runs = dl2.read_runs(event_file)
    assert {key.split("/")[0] for key in runs} == {"type", "energy", "geometry"}


def test_one_subarray_row_per_event_and_events_without_a_valid_telescope_kept_invalid(event_file):
    events = read_table(event_file, "/dl1/event/subarray/trigger")
    for role in dl2.ROLES:
        for prefix in dl2.prefixes_in(event_file, role):
            table = read_table(event_file, dl2.subarray_table_path(role, prefix))
            assert len(table) == len(events), (role, prefix)
            assert np.array_equal(table["obs_id"], events["obs_id"]) and np.array_equal(table["event_id"], events["event_id"])
            keys = np.stack([table["obs_id"], table["event_id"]], axis=1)
            assert len(np.unique(keys, axis=0)) == len(table)  # no duplicated rows (upstream #266)
    table = read_table(event_file, dl2.subarray_table_path("energy", "CTLearn"))
    invalid = ~table["CTLearn_is_valid"]
    assert invalid.any(), "the test data has events whose images all fail the cuts"
    assert np.all(np.isnan(table["CTLearn_energy"][invalid])) and not table["CTLearn_telescopes"][invalid].any()


def test_subarray_energy_is_the_intensity_weighted_mean_of_the_log_energies(event_file):
    with TableLoader(event_file, focal_length_choice="EQUIVALENT") as loader:
        images = QTable(loader.read_telescope_events(dl2=True, dl1_parameters=True, simulated=False))
        tel_ids = list(loader.subarray.tel_ids)
    stereo = QTable(read_table(event_file, dl2.subarray_table_path("energy", "CTLearn")))
    valid = images[images["CTLearn_tel_is_valid"]]
    checked = 0
    for key in np.unique(np.stack([valid["obs_id"], valid["event_id"]], axis=1), axis=0):
        mine = valid[(valid["obs_id"] == key[0]) & (valid["event_id"] == key[1])]
        if not 2 <= len(mine) <= 4:
            continue
        weights = np.asarray(mine["hillas_intensity"], dtype=float)
        expected = np.exp(np.average(np.log(mine["CTLearn_tel_energy"].to_value(u.TeV)), weights=weights))
        row = stereo[(stereo["obs_id"] == key[0]) & (stereo["event_id"] == key[1])][0]
        assert row["CTLearn_energy"].to_value(u.TeV) == pytest.approx(expected, rel=1e-9)
        assert [t for t, used in zip(tel_ids, row["CTLearn_telescopes"]) if used] == sorted(mine["tel_id"])
        checked += 1
    assert checked >= 5


def test_the_axis_fit_direction_is_written_with_the_error_model_it_used(event_file):
    from ctlearn_mlops.physics.axis_fit import image_axes, to_nominal

    prefix = dl2.AXIS_FIT_PREFIX
    fit = QTable(read_table(event_file, dl2.subarray_table_path("geometry", prefix)))
    mean = read_table(event_file, dl2.subarray_table_path("geometry", dl2.CNN_PREFIX))
    model = read_table(event_file, dl2.DIRECTION_ERROR_MODEL_TABLE)
    assert len(model) >= 1 and np.all(model["network_along"] > 0) and np.all(model["axis"] > 0)
    valid = np.asarray(fit[f"{prefix}_is_valid"])
    # an event has an axis fit where it has a valid network image, from the same telescopes
    assert valid.any() and np.array_equal(valid, np.asarray(mean["CTLearn_is_valid"]))
    assert np.array_equal(np.asarray(fit[f"{prefix}_telescopes"]), np.asarray(mean["CTLearn_telescopes"]))
    uncert = fit[f"{prefix}_ang_distance_uncert"][valid].to_value(u.deg)
    assert np.all(np.isfinite(uncert) & (uncert > 0))
    assert f"geometry/{prefix}" in dl2.read_runs(event_file)
    # an event of one image keeps the network's position along the image axis
    images = dl2.read_telescope_events(event_file)
    images = images[np.asarray(images["CTLearn_tel_is_valid"])]
    counts = {}
    for key in zip(images["obs_id"], images["event_id"]):
        counts[key] = counts.get(key, 0) + 1
    single = images[[counts[key] == 1 for key in zip(images["obs_id"], images["event_id"])]][:20]
    assert len(single) >= 5
    rows = {(o, e): i for i, (o, e) in enumerate(zip(fit["obs_id"], fit["event_id"]))}
    chosen = fit[[rows[key] for key in zip(single["obs_id"], single["event_id"])]]
    axes = image_axes(single)
    network = axes.offsets(*to_nominal(single, single["CTLearn_tel_alt"].to_value(u.deg),
                                       single["CTLearn_tel_az"].to_value(u.deg)))[0]
    fitted = axes.offsets(*to_nominal(single, chosen[f"{prefix}_alt"].to_value(u.deg),
                                      chosen[f"{prefix}_az"].to_value(u.deg)))[0]
    np.testing.assert_allclose(fitted, network, atol=1e-6)


def test_the_cnn_energy_states_a_calibrated_uncertainty_with_the_model_it_used(event_file):
    from ctlearn_mlops.physics.energy_uncertainty import EnergyErrorModel, image_log_intensity_and_leakage

    stereo = QTable(read_table(event_file, dl2.subarray_table_path("energy", dl2.CNN_PREFIX)))
    model = EnergyErrorModel.from_table(read_table(event_file, dl2.ENERGY_ERROR_MODEL_TABLE))
    assert dl2.energy_uncertainty_calibrated(event_file) and np.all(model.image_error > 0)
    assert np.all(model.uncertainty_scale > 0) and model.weights == "intensity"
    valid = np.asarray(stereo["CTLearn_is_valid"])
    uncert = stereo["CTLearn_energy_uncert"].to_value(u.TeV)
    assert np.all(np.isfinite(uncert[valid]) & (uncert[valid] > 0)) and np.all(np.isnan(uncert[~valid]))
    # known answer for the events of one image (StereoMeanCombiner's spread would be 0 there): the image's
    # error times the scale of one-image events at the event's energy
    images = dl2.read_telescope_events(event_file)
    images = images[np.asarray(images["CTLearn_tel_is_valid"])]
    keys = list(zip(np.asarray(images["obs_id"]), np.asarray(images["event_id"])))
    counts = {key: keys.count(key) for key in set(keys)}
    single = images[[counts[key] == 1 for key in keys]][:20]
    assert len(single) >= 5
    rows = {(o, e): i for i, (o, e) in enumerate(zip(stereo["obs_id"], stereo["event_id"]))}
    chosen = stereo[[rows[key] for key in zip(single["obs_id"], single["event_id"])]]
    energy = chosen["CTLearn_energy"].to_value(u.TeV)
    log_intensity, leakage = image_log_intensity_and_leakage(single)
    sigma = model.event_errors(np.arange(len(single)), log_intensity, leakage, np.log10(energy))
    np.testing.assert_allclose(chosen["CTLearn_energy_uncert"].to_value(u.TeV), energy * (10**sigma - 1), rtol=1e-9)
    # the classical energy keeps the combiner's spread: ctapipe 0.32 writes exp(std of ln E), 1 for one image
    classical = QTable(read_table(event_file, dl2.subarray_table_path("energy", dl2.CLASSICAL_PREFIX)))
    spread = classical["HillasBDT_energy_uncert"][[rows[k] for k in zip(single["obs_id"], single["event_id"])]]
    assert spread.to_value(u.TeV) == pytest.approx(1, abs=1e-6)


def test_two_event_files_merge_with_ctapipe_merge(trained_runs, event_file, toy_data, tmp_path):
    second = tmp_path / "train_events.dl2.h5"
    argv = ["--run", f"type={trained_runs['type'][1]}", "--run", f"energy={trained_runs['energy'][1]}",
            "--run", f"geometry={trained_runs['skydirection'][1]}", "--input", toy_data / "train", "--output", second]
    assert run(EventDL2Tool(), argv, cwd=tmp_path) == 0
    merged = tmp_path / "merged.dl2.h5"
    # ctapipe's own merge tool (its module's __main__ guard is broken: the console script it is)
    merge = Path(sys.executable).parent / "ctapipe-merge"
    result = subprocess.run([merge, "--output", merged, event_file, second], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    n = sum(len(read_table(p, "/dl1/event/subarray/trigger")) for p in (event_file, second))
    with TableLoader(merged, focal_length_choice="EQUIVALENT") as loader:
        events = loader.read_subarray_events(dl2=True, simulated=True)
    assert len(events) == n and "CTLearn_energy" in events.colnames


@pytest.mark.parametrize("task", ["cameradirection", "skydirection"])
def test_direction_labels_go_back_to_the_true_altaz(task, toy_data):
    """Known answer: the reader's own direction labels, taken as network outputs, give the true alt/az."""
    from traitlets.config import Config

    from ctlearn_mlops.loading.reader import ImageReader
    from ctlearn_mlops.physics.reconstruction import network_telescope_values

    reader = ImageReader(
        input_url_signal=sorted(map(str, (toy_data / "test").glob("gamma_*.h5"))),
        config=Config({"DLImageReader": {"allowed_tels": [1, 2, 3, 4], "focal_length_choice": "EQUIVALENT"}}),
    )
    examples = reader.example_identifiers
    labels = ["cam_coord_offset_x", "cam_coord_offset_y"] if task == "cameradirection" else ["fov_lon", "fov_lat"]
    output = np.stack([u.Quantity(examples[c]).value for c in labels], axis=1)
    values = network_telescope_values(task, output, examples, reader.subarray, reader.pix_rotation)
    np.testing.assert_allclose(values["alt"], u.Quantity(examples["true_alt"]).to_value(u.deg), atol=1e-6)
    d_az = (values["az"] - u.Quantity(examples["true_az"]).to_value(u.deg) + 180) % 360 - 180
    np.testing.assert_allclose(d_az, 0, atol=1e-6)


def _edited_run(run_dir, tmp_path, name, edit):
    copy = tmp_path / run_dir.parent.name / name
    import shutil

    shutil.copytree(run_dir, copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    edit(config)
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    return copy


def test_bad_run_sets_are_refused_naming_the_runs(trained_runs, tmp_path, capfd):
    type_run, energy_run = trained_runs["type"][1], trained_runs["energy"][1]
    other_cuts = _edited_run(energy_run, tmp_path, "other-cuts", lambda c: c.update(
        TableQualityQuery={"quality_criteria": [["> 80 phe", "hillas_intensity > 80"]]}))
    cases = {
        "different cuts": ([f"type={type_run}", f"energy={other_cuts}"], f"runs {type_run} and {other_cuts}"),
        "wrong role": ([f"geometry={energy_run}"], "is an energy run: it cannot be the geometry run"),
        "unknown role": ([f"direction={energy_run}"], "ROLE one of type, energy, geometry"),
        "missing directory": ([f"energy={tmp_path / 'no' / 'such-run'}"], "no such run directory"),
        "another task's run": (["energy=type/tiny"], "an energy run must be an energy run"),
    }
    for argv, expected in cases.values():
        out = tmp_path / "out.dl2.h5"
        capfd.readouterr()
        assert run(EventDL2Tool(), [a for r in argv for a in ("--run", r)] + ["--output", out], cwd=tmp_path) == 2
        assert expected in capfd.readouterr().err
        assert not out.exists() and not list(tmp_path.glob("*.partial"))


def test_a_missing_role_is_absent_and_said(trained_runs, tmp_path):
    out = tmp_path / "energy_only.dl2.h5"
    result = subprocess.run([sys.executable, REPO / "scripts" / "predict_events.py", "--run",
                             f"energy={trained_runs['energy'][1]}", "--output", out], capture_output=True, text=True,
                            cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "no type run given" in result.stderr and "no geometry run given" in result.stderr
    # progress of the prediction in the log (stderr is not a terminal here), ending at the last batch
    progress = [line for line in result.stderr.splitlines() if "energy: predicting:" in line]
    assert progress and " batches, elapsed " in progress[-1] and "ETA 0 s" in progress[-1], result.stderr[-2000:]
    done, total = progress[-1].split("energy: predicting: ")[1].split(" ")[0].split("/")
    assert done == total
    with tables.open_file(out) as h5:
        assert "/dl2/event/subarray/energy/CTLearn" in h5
        assert "/dl2/event/subarray/particle_type" not in h5 and "/dl2/event/subarray/geometry" not in h5
    assert json.loads(json.dumps(dl2.read_runs(out))).keys() == {"energy/CTLearn"}


def test_a_shipped_energy_model_is_taken_and_set_aside_for_other_weights(caplog):
    """A reference energy model carries its error model: taken without its training data for the weights it was
    calibrated with; for other weights the energy uncertainty stays the combiner's spread, and the log says why."""
    import logging

    from ctlearn_mlops.tools.event_dl2 import energy_error_model, load_run

    run = load_run(REPO / "models" / "reference" / "energy")
    log = logging.getLogger("test-shipped-energy-model")
    model = energy_error_model(run, training=object(), fast=None, batch_size=1, log=log, weights="intensity")
    assert model is not None and model.weights == "intensity" and np.all(model.uncertainty_scale > 0)
    with caplog.at_level(logging.WARNING, logger=log.name):
        assert energy_error_model(run, object(), None, 1, log, "aspect-weighted-intensity") is None
    assert "calibrated with intensity weights, not aspect-weighted-intensity" in caplog.text


def test_validation_predictions_are_kept_in_the_run_and_read_back_for_the_same_weights(trained_runs, tmp_path,
                                                                                       caplog):
    """The error model of an energy run is measured on its validation images: the first event DL2 file predicts
    them and keeps them in the run; the next reads them back (same model), a damaged or stale copy is predicted
    again and replaced."""
    import logging
    import shutil

    from ctlearn_mlops.loading.loader import FastLoader
    from ctlearn_mlops.rundir import VALIDATION_PREDICTIONS
    from ctlearn_mlops.tools.event_dl2 import load_run, measure_energy_error_model, training_images

    copy = tmp_path / "energy" / "kept"
    shutil.copytree(trained_runs["energy"][1], copy)
    (copy / VALIDATION_PREDICTIONS).unlink(missing_ok=True)
    run_ = load_run(copy)
    log = logging.getLogger("test-kept-validation")
    training = training_images([run_], log)

    def measured():
        caplog.clear()
        with caplog.at_level(logging.INFO, logger=log.name):
            model = measure_energy_error_model(run_, training, FastLoader(), 64, log)
        return model.to_table(), "kept in" in caplog.text

    first, read_back = measured()
    assert not read_back and (copy / VALIDATION_PREDICTIONS).exists()
    kept = (copy / VALIDATION_PREDICTIONS).read_text()
    second, read_back = measured()
    assert read_back
    for name in first.colnames:
        np.testing.assert_array_equal(second[name], first[name])
    assert second.meta == first.meta
    for damage in ("not a table", kept.replace(kept.split("stamp: ")[1].split()[0], "0" * 64)):
        (copy / VALIDATION_PREDICTIONS).write_text(damage)
        again, read_back = measured()
        assert not read_back and (copy / VALIDATION_PREDICTIONS).read_text() == kept
        np.testing.assert_array_equal(again["image_error_dex"], first["image_error_dex"])


def test_a_training_file_named_twice_gives_its_images_once(trained_runs, tmp_path, monkeypatch):
    """A reference run names its training files relative to the repository, a local run absolute: the classical
    reconstruction and the error models get each training image once (they were read twice, and the energy
    error model failed on the duplicates)."""
    import logging
    import shutil

    from ctlearn_mlops.tools.event_dl2 import load_run, training_images, training_images_of_runs

    local = load_run(trained_runs["energy"][1])
    copy = tmp_path / "energy" / "relative"
    shutil.copytree(trained_runs["energy"][1], copy)
    config = yaml.safe_load((copy / "config.yaml").read_text())
    signal_dir = Path(config["Project"]["signal_dir"])
    monkeypatch.chdir(signal_dir.parent)
    config["Project"]["signal_dir"] = signal_dir.name
    (copy / "config.yaml").write_text(yaml.safe_dump(config))
    relative = load_run(copy)
    assert {str(p) for p in relative.files("train")[0]} != {str(p) for p in local.files("train")[0]}

    log = logging.getLogger("test-named-twice")
    alone, both = training_images([local], log), training_images([relative, local], log)
    keys = [(int(o), int(e), int(t)) for o, e, t in both.iterrows("obs_id", "event_id", "tel_id")]
    assert len(both) == len(alone) == len(set(keys))

    # each run's own images (its role's classical reconstruction is fitted on them), the union each image once
    type_run = load_run(trained_runs["type"][1])
    own = training_images_of_runs([type_run, local], log)
    assert set(np.unique(own[local.run_dir]["true_shower_primary_id"])) == {0}
    assert set(np.unique(own[type_run.run_dir]["true_shower_primary_id"])) == {0, 101}
    assert len(training_images([type_run, local], log)) == len(own[type_run.run_dir])
    # a reference run (carrying its images) beside a local one (reading its files)
    from ctapipe.io import write_table

    from ctlearn_mlops.rundir import SHIPPED_TRAINING_IMAGES

    carrying = tmp_path / "type" / "carrying"
    shutil.copytree(trained_runs["type"][1], carrying)
    write_table(own[type_run.run_dir], carrying / SHIPPED_TRAINING_IMAGES, dl2.TRAINING_IMAGES_TABLE)
    mixed = training_images_of_runs([load_run(carrying), local], log)
    assert len(mixed[carrying]) == len(own[type_run.run_dir]) and len(mixed[local.run_dir]) == len(alone)
    assert len(training_images([load_run(carrying), local], log)) == len(own[type_run.run_dir])
