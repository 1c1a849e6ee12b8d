"""Run reports, run comparison and the exploration notebook, on real tiny runs."""

import csv
import json
import os
import re
import shutil
import subprocess

import nbclient
import nbformat
import pytest
import yaml

from ctlearn_mlops.tools.compare import CompareTool
from ctlearn_mlops.tools.predict import PredictTool
from ctlearn_mlops.tools.report import ReportTool
from ctlearn_mlops.tools.train import TrainTool

from ..conftest import REPO, TASKS, run, shrink_config

pytestmark = pytest.mark.slow

BASELINES = {
    "energy": {"median predictor", "intensity fit", "Hillas BDT"},
    "type": {"Hillas width cut", "Hillas logistic regression", "Hillas BDT"},
    "cameradirection": {"Hillas centroid", "disp", "Hillas BDT disp"},
    "skydirection": {"Hillas centroid", "disp", "Hillas BDT disp"},
}
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.fixture(scope="module")
def reports(trained_runs, tmp_path_factory):
    root = tmp_path_factory.mktemp("reports")
    out = {}
    for task in TASKS:
        config, run_dir = trained_runs[task]
        assert run(ReportTool(), ["--config", config, "--run", run_dir, "--reports-root", root], cwd=root) == 0
        out[task] = root / task / run_dir.name
    return out


@pytest.mark.parametrize("task", TASKS)
def test_report_has_metrics_figures_pdf_and_html_with_baselines(task, reports):
    directory = reports[task]
    metrics = json.loads((directory / "metrics.json").read_text())
    assert metrics["task"] == task and metrics["events"]["test"]["images"] > 0
    assert metrics["events"]["training"]["images"] > metrics["events"]["validation"]["images"] > 0
    for metric, values in metrics["headline"].items():
        if metric.startswith("bias_"):
            continue
        assert "CNN" in values and BASELINES[task] <= set(values), metric
    assert set(metrics["binned"]) == {"CNN"} | BASELINES[task]
    # the margin to the best baseline is the headline difference, with a bootstrap spread over showers
    (metric, margin), = metrics["margin_to_best_baseline"].items()
    values = metrics["headline"][metric]
    best = (min if metric in metrics["lower_is_better"] else max)(v for m, v in values.items() if m != "CNN")
    assert values[margin["baseline"]] == best
    assert margin["difference"] == pytest.approx(values["CNN"] - best)
    assert 0 < margin["uncertainty"] < abs(values["CNN"]) + abs(best)
    assert f"{margin['difference']:+.4f} +- {margin['uncertainty']:.4f}" in (directory / "report.html").read_text()
    assert metrics["baselines_fitted_on"] == f"the run's {metrics['events']['training']['images'] + metrics['events']['validation']['images']} training images"
    pngs = sorted(directory.glob("*.png"))
    assert len(pngs) >= 4 and (directory / "training_curves.png") in pngs
    assert (directory / "report.pdf").read_bytes().startswith(b"%PDF")
    html = (directory / "report.html").read_text()
    assert len(re.findall(r"<img [^>]*src='data:image/png;base64,", html)) == len(pngs)
    assert "src='http" not in html and 'src="http' not in html
    if task == "skydirection":
        # per array event the axis fit is the network's direction, next to the mean and the classical one, with
        # the coverage of its stated uncertainty per energy bin and its figures
        combined = metrics["combined"]
        assert combined["network"] == "CNN axis fit"
        assert {"CNN axis fit", "CNN", "Hillas BDT"} <= set(combined["headline"]["containment_68_deg"])
        assert 0 < combined["headline"]["coverage_68"]["CNN axis fit"] < 1
        bins = combined["coverage"]["CNN axis fit"]
        assert 0 < sum(b["n_events"] for b in bins) <= combined["n_events"]
        assert {"combined_skydirection_uncertainty_coverage.png",
                "combined_skydirection_uncertainty_reliability.png"} <= {p.name for p in pngs}
    if task == "energy":
        # per array event the CNN's energy states a calibrated 68 % interval: its coverage and figures
        combined = metrics["combined"]
        assert 0 < combined["headline"]["coverage_68"]["CNN"] < 1
        assert set(combined["coverage"]) == {"CNN"}  # the classical energy_uncert is the telescopes' spread
        assert 0 < sum(b["n_events"] for b in combined["coverage"]["CNN"]) <= combined["n_events"]
        assert {"combined_energy_uncertainty_coverage.png",
                "combined_energy_uncertainty_reliability.png"} <= {p.name for p in pngs}


def test_report_refuses_existing_output_and_runs_without_predictions(trained_runs, reports, tmp_path, capfd):
    config, run_dir = trained_runs["energy"]
    root = reports["energy"].parents[1]
    assert run(ReportTool(), ["--config", config, "--run", run_dir, "--reports-root", root], cwd=tmp_path) == 2
    assert "--overwrite" in capfd.readouterr().err
    assert run(ReportTool(), ["--config", config, "--run", run_dir, "--reports-root", root, "--dl2", "nothing"],
               cwd=tmp_path) == 2
    assert "run scripts/test_model.py first" in capfd.readouterr().err
    # a DL2 file that is not whole is named, not reported on
    copy = tmp_path / "energy-copy"
    shutil.copytree(run_dir, copy)
    whole = (copy / "dl2" / "test.dl2.h5").read_bytes()
    (copy / "dl2" / "test.dl2.h5").write_bytes(whole[: len(whole) // 2])
    assert run(ReportTool(), ["--config", config, "--run", copy, "--reports-root", tmp_path / "r"], cwd=tmp_path) == 2
    err = capfd.readouterr().err
    assert f"{copy / 'dl2' / 'test.dl2.h5'} is truncated" in err and not (tmp_path / "r").exists(), err[-2000:]
    # a reports root that cannot be written is refused before any work
    in_the_way = tmp_path / "a file"
    in_the_way.write_text("")
    assert run(ReportTool(), ["--config", config, "--run", run_dir, "--reports-root", in_the_way / "reports"],
               cwd=tmp_path) == 2
    err = capfd.readouterr().err
    assert "--reports-root" in err and "is not a directory" in err and "Traceback" not in err, err[-2000:]


@pytest.mark.skipif(CHROMIUM is None and not os.environ.get("CI"), reason="no chromium (apt-get install chromium)")
def test_html_report_shows_every_figure_in_a_headless_browser(reports, tmp_path):
    assert CHROMIUM, "chromium is required in CI"
    source = reports["type"] / "report.html"
    probe = tmp_path / "probe.html"
    script = ("<script>window.addEventListener('load', () => { const imgs = [...document.images];"
              "document.body.setAttribute('data-shown', imgs.filter(i => i.complete && i.naturalWidth > 100).length);"
              "document.body.setAttribute('data-total', imgs.length); });</script></body>")
    probe.write_text(source.read_text().replace("</body>", script))
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=5000"]
    dom = subprocess.run([CHROMIUM, *flags, "--dump-dom", probe.as_uri()], capture_output=True, text=True, timeout=120)
    shown = re.search(r'data-shown="(\d+)"', dom.stdout)
    total = re.search(r'data-total="(\d+)"', dom.stdout)
    assert shown and total, dom.stderr[-2000:]
    assert int(total.group(1)) == len(list(reports["type"].glob("*.png"))) and shown.group(1) == total.group(1)
    screenshot = tmp_path / "report.png"
    subprocess.run([CHROMIUM, *flags, "--window-size=1200,2000", f"--screenshot={screenshot}", source.as_uri()],
                   capture_output=True, timeout=120, check=True)
    assert screenshot.stat().st_size > 50_000


@pytest.fixture(scope="module")
def three_energy_runs(trained_runs, toy_data, tmp_path_factory):
    config, first = trained_runs["energy"]
    root = first.parents[1]
    runs = [first]
    for name, rate in (("lr-high", 0.003), ("lr-low", 0.0003)):
        content = shrink_config("energy", toy_data, root)
        content["Project"]["run_name"] = name
        content["TrainCTLearnModel"]["optimizer"]["base_learning_rate"] = rate
        path = config.parent / f"energy-{name}.yaml"
        path.write_text(yaml.safe_dump(content))
        assert run(TrainTool(), ["--config", path], cwd=config.parent) == 0
        assert run(PredictTool(), ["--config", path, "--run", name], cwd=config.parent) == 0
        runs.append(root / "energy" / name)
    return runs


def test_compare_three_runs_with_ensemble(three_energy_runs, tmp_path):
    argv = ["--reports-root", tmp_path, "--name", "lr-scan", "--ensemble"]
    for run_dir in three_energy_runs:
        argv += ["--run", run_dir]
    assert run(CompareTool(), argv, cwd=tmp_path) == 0
    out = tmp_path / "compare" / "lr-scan"
    with open(out / "summary.csv") as f:
        rows = list(csv.DictReader(f))
    assert [r["run"] for r in rows] == ["tiny", "lr-high", "lr-low", "ensemble"]
    assert "TrainCTLearnModel.optimizer.base_learning_rate" in rows[0]
    assert {r["TrainCTLearnModel.optimizer.base_learning_rate"] for r in rows[:3]} == {"0.001", "0.003", "0.0003"}
    assert all(float(r["resolution (CNN)"]) > 0 for r in rows)
    assert (out / "energy_resolution_vs_energy.png").exists() and (out / "training_curves.png").exists()
    assert (out / "report.html").exists() and (out / "report.pdf").exists()


def test_compare_all_runs_of_a_task(three_energy_runs, tmp_path):
    models_root = three_energy_runs[0].parents[1]
    argv = ["--task", "energy", "--all", "--models-root", models_root, "--reports-root", tmp_path, "--name", "all"]
    assert run(CompareTool(), argv, cwd=tmp_path) == 0
    with open(tmp_path / "compare" / "all" / "summary.csv") as f:
        assert len(list(csv.DictReader(f))) == 3


def test_compare_refuses_mixed_tasks_and_runs_without_predictions(trained_runs, three_energy_runs, tmp_path, capfd):
    _, type_run = trained_runs["type"]
    argv = ["--run", three_energy_runs[0], "--run", type_run, "--reports-root", tmp_path]
    assert run(CompareTool(), argv, cwd=tmp_path) == 2
    err = capfd.readouterr().err
    assert "different tasks" in err and str(type_run) in err
    assert run(CompareTool(), ["--run", three_energy_runs[0], "--run", three_energy_runs[1], "--dl2", "none",
                               "--reports-root", tmp_path], cwd=tmp_path) == 2
    assert "without predictions" in capfd.readouterr().err
    assert not (tmp_path / "compare").exists()
    in_the_way = tmp_path / "a file"
    in_the_way.write_text("")
    assert run(CompareTool(), ["--run", three_energy_runs[0], "--run", three_energy_runs[1],
                               "--reports-root", in_the_way / "reports"], cwd=tmp_path) == 2
    assert "is not a directory" in capfd.readouterr().err


def test_exploration_notebook_runs_top_to_bottom(toy_data, trained_runs, monkeypatch):
    monkeypatch.setenv("CTLEARN_MLOPS_DATA", str(toy_data))
    monkeypatch.setenv("CTLEARN_MLOPS_RUN", str(trained_runs["energy"][1]))
    for notebook in sorted((REPO / "notebooks").glob("*.ipynb")):
        nb = nbformat.read(notebook, as_version=4)
        nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                                resources={"metadata": {"path": str(REPO / "notebooks")}}).execute()
        errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
        assert not errors
        images = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs if "image/png" in o.get("data", {})]
        assert len(images) >= 3
