"""Task configs: one schema, checked before any work; bad input exits 2 and creates nothing."""

import subprocess
import sys

import pytest
import yaml

from ctlearn_mlops.config import (
    Project,
    apply_overrides,
    check_model_accepts_task,
    import_custom_model_file,
    validate_sections,
)
from ctlearn_mlops.exceptions import ConfigError
from ctlearn_mlops.tools.predict import PredictTool
from ctlearn_mlops.tools.train import TrainTool

from .conftest import REPO, TASKS, run

SHIPPED = sorted(p.stem for p in (REPO / "configs").glob("*.yaml"))


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_are_valid_and_name_their_task(name, toy_data):
    content = yaml.safe_load((REPO / "configs" / f"{name}.yaml").read_text())
    task = name.removesuffix("_quality").removesuffix("_stereo")
    assert task in TASKS and content["Project"]["task"] == task
    project = content["Project"]
    for key in ("signal_dir", "background_dir", "test_signal_dir", "test_background_dir"):
        if key in project:
            # the data is generated (make data, make data-quality), not shipped: check the layout in the toy fixture
            data_root = "data/quality/" if name.endswith("_quality") else "data/default/"
            assert project[key].startswith(data_root), key
            project[key] = str(toy_data / project[key].removeprefix(data_root))
    if "custom_model_file" in project:
        project["custom_model_file"] = str(REPO / project["custom_model_file"])
        import_custom_model_file(project["custom_model_file"])
    from ctlearn_mlops.tools.predict import PredictTool
    from ctlearn_mlops.tools.report import ReportTool

    # every tool that reads a task config checks its sections (and accepts the other tools')
    for tool in (TrainTool(), PredictTool(), ReportTool()):
        validate_sections(content, tool.config_classes(), f"configs/{name}.yaml", unchecked=tool.unchecked_sections())
    model_type = content.get("TrainCTLearnModel", {}).get("model_type")
    check_model_accepts_task(model_type, task, content.get(model_type, {}), f"configs/{name}.yaml")


def test_unknown_option_names_file_key_and_valid_options():
    with pytest.raises(ConfigError) as err:
        validate_sections({"TrainCTLearnModel": {"n_epoch": 3}}, TrainTool().config_classes(), "x.yaml")
    message = str(err.value)
    assert "x.yaml" in message and "TrainCTLearnModel.n_epoch" in message
    assert "Did you mean 'n_epochs'" in message and "batch_size" in message


def test_unknown_section_is_refused_with_suggestion():
    tool = TrainTool()
    with pytest.raises(ConfigError, match="Did you mean 'DLImageReader'"):
        validate_sections({"DLImageReadr": {}}, tool.config_classes(), "x.yaml", unchecked=tool.unchecked_sections())
    with pytest.raises(ConfigError, match="Did you mean 'PredictTool'"):
        validate_sections({"PredictTol": {}}, tool.config_classes(), "x.yaml", unchecked=tool.unchecked_sections())


def test_old_section_names_still_work_with_a_warning(tmp_path, caplog):
    from ctlearn_mlops.config import apply_overrides, read_yaml

    path = tmp_path / "old.yaml"
    path.write_text("PredictModel:\n  batch_size: 32\n")
    with caplog.at_level("WARNING"):
        content = read_yaml(path)
        content = apply_overrides(content, ["TrainModel.resume=true"], path)
    assert content == {"PredictTool": {"batch_size": 32}, "TrainTool": {"resume": True}}
    assert "section PredictModel is now called PredictTool" in caplog.text
    assert "section TrainModel is now called TrainTool" in caplog.text


def test_wrong_type_is_refused():
    with pytest.raises(ConfigError, match="TrainCTLearnModel.batch_size.*expected an int"):
        validate_sections({"TrainCTLearnModel": {"batch_size": "many"}}, TrainTool().config_classes(), "x.yaml")


@pytest.mark.parametrize("option, value, problem", [
    ("early_stopping", {"monitor": "val_loss", "patience": 3, "verbose": 1, "restore_best_weights": True,
                        "min_delta": 0.01}, "unknown key(s) min_delta"),
    ("lr_reducing", {"factor": 0.5, "patience": 3, "min_lr": 1e-6}, "missing key(s) min_delta"),
    ("optimizer", {"name": "Adam", "base_learning_rate": 1e-3}, "missing key(s) adam_epsilon"),
])
def test_keys_of_upstream_dict_options_are_checked(option, value, problem):
    # ctlearn 0.10.2 ignores unknown keys of these mappings without a word; a missing one is a traceback mid-setup
    with pytest.raises(ConfigError) as err:
        validate_sections({"TrainCTLearnModel": {option: value}}, TrainTool().config_classes(), "x.yaml")
    assert f"TrainCTLearnModel.{option}" in str(err.value) and problem in str(err.value)


def test_project_owned_option_is_refused():
    with pytest.raises(ConfigError, match="Project.task"):
        validate_sections(
            {"TrainCTLearnModel": {"reco_tasks": ["energy"]}}, TrainTool().config_classes(), "x.yaml",
            forbidden=TrainTool.owned_by_project,
        )


def test_overrides_set_nested_values_parsed_as_yaml():
    content = {"TrainCTLearnModel": {"optimizer": {"name": "Adam", "base_learning_rate": 1e-3}}}
    result = apply_overrides(
        content, ["TrainCTLearnModel.optimizer.base_learning_rate=0.01", "Project.task=type", "X.y=[1, 2]"], "x.yaml",
    )
    assert result["TrainCTLearnModel"]["optimizer"] == {"name": "Adam", "base_learning_rate": 0.01}
    assert result["Project"]["task"] == "type"
    assert result["X"]["y"] == [1, 2]
    assert content["TrainCTLearnModel"]["optimizer"]["base_learning_rate"] == 1e-3  # input untouched


def test_override_without_equals_is_an_error():
    with pytest.raises(ConfigError, match="Section.key=value"):
        apply_overrides({}, ["TrainCTLearnModel.n_epochs"], "x.yaml")


def test_project_traits_document_themselves():
    for name, trait in Project.class_traits(config=True).items():
        assert trait.help, name


BAD_CONFIGS = {
    "unknown key": ("energy", {"TrainCTLearnModel": {"n_epoch": 2}}, "TrainCTLearnModel.n_epoch"),
    "wrong type": ("energy", {"TrainCTLearnModel": {"n_epochs": "two"}}, "TrainCTLearnModel.n_epochs"),
    "missing input dir": ("energy", {"Project": {"signal_dir": "/no/such/dir"}}, "Project.signal_dir"),
    "no matching file": ("energy", {"Project": {"signal_patterns": ["nothing_*.h5"]}}, "Project.signal_patterns"),
    "type without background": ("type", {"Project": {"background_dir": None}}, "Project.background_dir"),
    "bad run name": ("energy", {"Project": {"run_name": "a/b"}}, "Project.run_name"),
    "run name of 300 characters": ("energy", {"Project": {"run_name": "r" * 300}}, "Project.run_name"),
    "run named latest": ("energy", {"Project": {"run_name": "latest"}}, "Project.run_name"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_exits_2_and_creates_no_run(case, task_config, tmp_path, capfd):
    task, sections, key = BAD_CONFIGS[case]
    config = task_config(task, **sections)
    assert run(TrainTool(), ["--config", config], cwd=tmp_path) == 2
    assert key in capfd.readouterr().err
    assert not (tmp_path / "models").exists()
    assert not list(tmp_path.glob("*.provenance.log"))


@pytest.mark.parametrize("argv", [["--resume", "--run-name", "ghost"], ["--frobnicate", "3"]])
def test_a_refused_start_leaves_no_directory(argv, task_config, tmp_path, capfd):
    config = task_config("energy")
    assert run(TrainTool(), ["--config", config, *argv], cwd=tmp_path) == 2
    assert "nothing to resume" in capfd.readouterr().err or "--frobnicate" in argv
    assert not (tmp_path / "models").exists()


def test_a_config_file_that_is_not_utf8_text_exits_2(task_config, tmp_path, capfd):
    config = task_config("energy")
    with open(config, "ab") as f:
        f.write("# r\xe9solution en \xe9nergie\n".encode("latin-1"))
    assert run(TrainTool(), ["--config", config], cwd=tmp_path) == 2
    err = capfd.readouterr().err
    assert f"{config}: not a YAML text file (not UTF-8" in err and "Traceback" not in err
    assert not (tmp_path / "models").exists()


def test_missing_config_file_exits_2(tmp_path, capfd):
    assert run(TrainTool(), ["--config", tmp_path / "nope.yaml"], cwd=tmp_path) == 2
    assert "nope.yaml: does not exist" in capfd.readouterr().err


def test_no_config_exits_2(tmp_path, capfd):
    assert run(PredictTool(), [], cwd=tmp_path) == 2
    assert "--config" in capfd.readouterr().err


def test_script_error_is_one_paragraph_without_traceback(task_config, tmp_path):
    config = task_config("energy", TrainCTLearnModel={"n_epochs": "two"})
    result = subprocess.run(
        [sys.executable, REPO / "scripts" / "train_model.py", "--config", config],
        capture_output=True, text=True, cwd=tmp_path,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if "ERROR" in line]
    assert any("TrainCTLearnModel.n_epochs" in line and str(config) in line for line in errors)


#: configs that every script reading a task config refuses, with the key its message names
REFUSED_BY_EVERY_SCRIPT = {
    "unknown section": ({"TrainCTLearnModle": {"n_epochs": 2}}, "TrainCTLearnModle"),
    "unknown option": ({"TrainCTLearnModel": {"n_epoch": 2}}, "TrainCTLearnModel.n_epoch"),
    "wrong type": ({"TrainCTLearnModel": {"n_epochs": "two"}}, "TrainCTLearnModel.n_epochs"),
    "unknown model": ({"TrainCTLearnModel": {"model_type": "VGG"}}, "TrainCTLearnModel.model_type"),
    "batch size 0": ({"TrainCTLearnModel": {"batch_size": 0}}, "TrainCTLearnModel.batch_size"),
    "validation split 1.5": ({"TrainCTLearnModel": {"validation_split": 1.5}}, "TrainCTLearnModel.validation_split"),
    "1e23 epochs": ({"TrainCTLearnModel": {"n_epochs": 10**23}}, "TrainCTLearnModel.n_epochs"),
    "no epochs in the tool's section": ({"TrainTool": {"n_epochs": 0}}, "TrainTool.n_epochs"),
    "learning rate read as text (1e-4)": ({"TrainCTLearnModel": {"optimizer": {
        "name": "Adam", "base_learning_rate": "1e-4", "adam_epsilon": 1.0e-8}}},
        "TrainCTLearnModel.optimizer.base_learning_rate': must be a number, got '1e-4' (YAML reads"),
    "unknown optimizer": ({"TrainCTLearnModel": {"optimizer": {"name": "Bogus", "base_learning_rate": 0.001}}},
                          "TrainCTLearnModel.optimizer.name': unknown value 'Bogus'"),
    "learning-rate factor 1 (Keras refuses it)": ({"TrainCTLearnModel": {"lr_reducing": {
        "factor": 1.0, "patience": 3, "min_delta": 0.001, "min_lr": 1.0e-6}}},
        "TrainCTLearnModel.lr_reducing.factor': must be above 0 and below 1"),
    "learning-rate factor as text": ({"TrainCTLearnModel": {"lr_reducing": {
        "factor": "abc", "patience": 3, "min_delta": 0.001, "min_lr": 1.0e-6}}},
        "TrainCTLearnModel.lr_reducing.factor': must be a number"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_BY_EVERY_SCRIPT))
def test_train_test_and_report_refuse_the_same_configs(case, task_config, tmp_path, capfd):
    from ctlearn_mlops.tools.report import ReportTool

    sections, key = REFUSED_BY_EVERY_SCRIPT[case]
    config = task_config("energy", **sections)
    for tool, argv in ((TrainTool(), []), (PredictTool(), ["--run", "tiny"]), (ReportTool(), ["--run", "tiny"])):
        assert run(tool, ["--config", config, *argv], cwd=tmp_path) == 2, (case, type(tool).__name__)
        err = capfd.readouterr().err
        assert key in err and str(config) in err and "(--set)" not in err, (type(tool).__name__, err[-1500:])
    assert not (tmp_path / "models").exists() and not (tmp_path / "reports").exists()


@pytest.mark.parametrize("sections, refused_in", [({"TrainCTLearnModel": {"batch_size": 0}}, "batch_size"),
                                                  ({}, "run 'tiny' not found")])
def test_the_report_checks_ctlearns_options_without_tensorflow(sections, refused_in, task_config, tmp_path):
    # a bad config is refused by the check; a good one passes it and is refused later (no run): no TensorFlow
    config = task_config("energy", **sections)
    code = ("import sys\n"
            "from ctapipe.core.tool import run_tool\n"
            "from ctlearn_mlops.tools.report import ReportTool\n"
            f"code = run_tool(ReportTool(), ['--config', '{config}', '--run', 'tiny'], raises=False)\n"
            "print(code, 'tensorflow' in sys.modules, 'keras' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path)
    assert result.stdout.split() == ["2", "False", "False"], result.stderr[-2000:]
    assert refused_in in result.stderr


def test_the_description_of_ctlearns_options_matches_the_installed_ctlearn():
    import json

    from ctlearn_mlops.cli import ctlearn_option_classes
    from ctlearn_mlops.tools.ctlearn_options import DESCRIPTION_FILE, describe, own_classes

    # after an upgrade of ctlearn: ctlearn-mlops-describe-options
    assert describe(own_classes(ctlearn_option_classes())) == json.loads(DESCRIPTION_FILE.read_text())


def test_a_bad_key_of_the_file_is_not_labelled_as_a_command_line_one():
    content = {"Train": {"n_epochs": 2}, "TrainCTLearnModel": {"batch_size": 8}}
    with pytest.raises(ConfigError) as refused:
        validate_sections(content, [TrainTool], "task.yaml", overridden=["TrainCTLearnModel.batch_size"],
                          unchecked=set())
    assert "task.yaml" in str(refused.value) and "(--set)" not in str(refused.value)


@pytest.mark.parametrize("key", ["DLImageReader.channels=[cleaned_image]", "ExampleIndex.enabled=false",
                                 "TableQualityQuery.quality_criteria=[]", "PredictTool.stack_telescope_images=true",
                                 "MLflowTracking.enabled=true"])
def test_testing_refuses_a_set_it_would_ignore(key, task_config, tmp_path, capfd):
    config = task_config("energy")
    assert run(PredictTool(), ["--config", config, "--run", "tiny", "--set", key], cwd=tmp_path) == 2
    err = capfd.readouterr().err
    assert key.split("=")[0] in err and "would be ignored" in err and "(--set)" in err, err[-1500:]
