"""Optional MLflow tracking against a real local MLflow store."""

import json
import subprocess
import sys

import pandas as pd
import pytest
import yaml

from ..conftest import run


def _tracked_config(task_config, tmp_path, **tracking):
    path = task_config("energy", MLflowTracking={"enabled": True, "store_dir": str(tmp_path / "mlruns"), **tracking})
    config = yaml.safe_load(path.read_text())
    config["TrainCTLearnModel"]["n_epochs"] = 2
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.mark.slow
def test_mlflow_holds_parameters_epoch_metrics_model_and_report(task_config, tmp_path):
    from ctlearn_mlops.tools.predict import PredictTool
    from ctlearn_mlops.tools.report import ReportTool
    from ctlearn_mlops.tools.train import TrainTool

    config = _tracked_config(task_config, tmp_path)
    assert run(TrainTool(), ["--config", config], cwd=tmp_path) == 0
    assert run(PredictTool(), ["--config", config, "--run", "tiny"], cwd=tmp_path) == 0
    assert run(ReportTool(), ["--config", config, "--run", "tiny", "--reports-root", tmp_path / "reports"], cwd=tmp_path) == 0

    import mlflow

    run_dir = tmp_path / "models" / "energy" / "tiny"
    recorded = json.loads((run_dir / "run.json").read_text())["mlflow"]
    mlflow.set_tracking_uri(recorded["tracking_uri"])
    found = mlflow.search_runs(experiment_names=["ctlearn-mlops-energy"], output_format="list")
    assert [r.info.run_id for r in found] == [recorded["run_id"]]
    tracked = found[0]
    assert tracked.info.status == "FINISHED"
    assert tracked.info.run_name == "tiny"
    assert tracked.data.params["TrainCTLearnModel.n_epochs"] == "2"
    assert tracked.data.params["Project.task"] == "energy"
    assert tracked.data.tags["ctlearn_mlops.run_dir"] == str(run_dir.absolute())

    client = mlflow.MlflowClient()
    history = client.get_metric_history(tracked.info.run_id, "loss")
    assert sorted(m.step for m in history) == [0, 1]
    logged = pd.read_csv(run_dir / "training_log.csv")["loss"].tolist()
    assert [m.value for m in sorted(history, key=lambda m: m.step)] == pytest.approx(logged, rel=1e-5)
    assert any(key.startswith("test_resolution.") for key in tracked.data.metrics)

    artifacts = {a.path for a in client.list_artifacts(tracked.info.run_id)}
    assert {"config.yaml", "final.weights.h5", "training_log.csv", "ctlearn_model.keras", "report"} <= artifacts
    report_files = {a.path for a in client.list_artifacts(tracked.info.run_id, "report")}
    assert {"report/report.html", "report/metrics.json"} <= report_files


@pytest.mark.slow
def test_mlflow_off_imports_and_writes_nothing_of_it(task_config, tmp_path):
    config = task_config("energy")
    code = (
        "import sys\n"
        "from ctapipe.core.tool import run_tool\n"
        "from ctlearn_mlops.tools.train import TrainTool\n"
        f"status = run_tool(TrainTool(), ['--config', {str(config)!r}], raises=False)\n"
        "print('EXIT', status, 'MLFLOW', 'mlflow' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert "EXIT 0 MLFLOW False" in result.stdout, result.stdout + result.stderr[-3000:]
    run_dir = tmp_path / "models" / "energy" / "tiny"
    assert "mlflow" not in json.loads((run_dir / "run.json").read_text())
    assert not (tmp_path / "mlruns").exists()


def test_unreachable_tracking_server_is_refused_before_any_run_directory(task_config, tmp_path, capfd):
    from ctlearn_mlops.tools.train import TrainTool

    config = _tracked_config(task_config, tmp_path, tracking_uri="http://127.0.0.1:9")
    assert run(TrainTool(), ["--config", config], cwd=tmp_path) == 2
    err = capfd.readouterr().err
    assert "MLflowTracking.tracking_uri" in err and str(config) in err
    assert "Traceback" not in err
    assert not (tmp_path / "models" / "energy" / "tiny").exists()
