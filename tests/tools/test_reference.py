"""Reference models: a finished run reduced to what prediction needs, found again from the repository's top."""

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from ctapipe.io import read_table

from ctlearn_mlops.io import dl2
from ctlearn_mlops.rundir import SHIPPED_ERROR_MODEL, SHIPPED_TRAINING_IMAGES
from ctlearn_mlops.tools.event_dl2 import load_run
from ctlearn_mlops.tools.events import EventDL2Tool
from ctlearn_mlops.tools.reference import REFERENCE_FILES, main, make_reference

from ..conftest import run

pytestmark = pytest.mark.slow


def test_a_reference_model_predicts_from_the_repository_top_with_relative_paths(trained_runs, toy_data,
                                                                                 tmp_path_factory, monkeypatch):
    top = tmp_path_factory.getbasetemp()  # holds both the toy data and the runs, as a repository holds data/ and models/
    source = trained_runs["skydirection"][1]
    target = make_reference(source, top / "reference" / "skydirection", top)
    assert sorted(p.name for p in target.iterdir()) == sorted(
        [*REFERENCE_FILES, SHIPPED_TRAINING_IMAGES, SHIPPED_ERROR_MODEL])
    project = yaml.safe_load((target / "config.yaml").read_text())["Project"]
    assert not Path(project["signal_dir"]).is_absolute() and (top / project["signal_dir"]) == toy_data / "train"
    info = json.loads((target / "run.json").read_text())
    assert info["status"] == "finished" and info["reference_of"] == str(source)
    assert load_run(target).task == "skydirection"
    # from the top directory the relative paths resolve: the classical reconstruction is fitted on the run's
    # training images and the axis fit measured on its validation images
    output = top / "reference-events.dl2.h5"
    argv = ["--run", f"geometry={target}", "--input", toy_data / "test", "--output", output]
    assert run(EventDL2Tool(), argv, cwd=top) == 0
    assert dl2.AXIS_FIT_PREFIX in dl2.prefixes_in(output, "geometry")
    # without the production it was trained on, it predicts all the same from what it carries
    config = yaml.safe_load((target / "config.yaml").read_text())
    config["Project"]["signal_dir"] = "no/such/production/train"
    (target / "config.yaml").write_text(yaml.safe_dump(config))
    carried = top / "reference-carried.dl2.h5"
    argv = ["--run", f"geometry={target}", "--input", toy_data / "test", "--output", carried]
    assert run(EventDL2Tool(), argv, cwd=top) == 0
    for path in (output, carried):
        assert len(dl2.read_training_images(path)) > 0
    same = [read_table(p, dl2.subarray_table_path("geometry", dl2.AXIS_FIT_PREFIX)) for p in (output, carried)]
    np.testing.assert_allclose(same[0][f"{dl2.AXIS_FIT_PREFIX}_alt"], same[1][f"{dl2.AXIS_FIT_PREFIX}_alt"])
    # made again: the new copy replaces the old one
    assert make_reference(source, target, top) == target and not list(target.parent.glob(".*"))
    # made again from itself (from the repository's top, where its relative paths resolve): its error model is
    # measured anew (not copied), its origin kept
    monkeypatch.chdir(top)
    from astropy.table import Table

    shipped = Table.read(target / SHIPPED_ERROR_MODEL, format="ascii.ecsv")
    shipped["network_along"] *= 5
    shipped.write(target / SHIPPED_ERROR_MODEL, format="ascii.ecsv", overwrite=True)
    assert make_reference(target, target, top) == target
    measured = Table.read(target / SHIPPED_ERROR_MODEL, format="ascii.ecsv")
    np.testing.assert_allclose(measured["network_along"], shipped["network_along"] / 5)
    assert json.loads((target / "run.json").read_text())["reference_of"] == str(source)


def test_unfinished_or_missing_runs_are_refused(tmp_path, capsys):
    # a malformed --run is refused, never taken for "the default runs"
    assert main(["--run", "models/type/quality", "--output-root", str(tmp_path / "out")]) == 2
    assert "expected TASK=DIR" in capsys.readouterr().err
    assert main(["--run", f"type={tmp_path / 'nothing'}", "--output-root", str(tmp_path / "out")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    unfinished = tmp_path / "unfinished"
    unfinished.mkdir()
    (unfinished / "run.json").write_text(json.dumps({"task": "type", "status": "running"}))
    assert main(["--run", f"type={unfinished}", "--output-root", str(tmp_path / "out")]) == 2
    assert "not a finished run" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()
