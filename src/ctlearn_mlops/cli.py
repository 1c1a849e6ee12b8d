"""Where every program of the package starts: process-wide settings first, then its tool.

The scripts in ``scripts/`` and the console scripts (``pyproject.toml``) call
these functions.  Settings that belong to a program and not to a library are
made here, before the tool (and TensorFlow) is imported:

* ``TF_CPP_MIN_LOG_LEVEL=3``: TensorFlow's C++ start-up chatter (CUDA probing
  on CPU nodes) buries the messages that matter in batch logs; set it to 0 in
  the environment to bring it back.  TensorFlow 2.21 writes some of it
  (oneDNN, CUDA probing: absl INFO lines, written before absl's logging is
  set up) straight to the process' stderr, where the variable does not
  reach: those lines are dropped while the tool's modules (and a custom
  model file) are imported (``output.startup_chatter_dropped``);
* the training programs catch SLURM's stop signals from the first moment: a
  batch system may warn while TensorFlow is still loading;
* a program ends without interpreter teardown once its tool has ended
  (``_end``);
* astropy's MergeConflictWarning about the description of ``obs_id`` is not
  shown: ctapipe describes the column one way in its DL1 tables and another
  in its simulation tables, and every join of the two (once per file of a
  production) would print it;
* ctapipe's NoneDefaultNotAllowedWarning about a trait of ctlearn 0.10.4's
  training tool is not shown: it is upstream's to fix, not the user's.
"""

import importlib
import os
import sys
import warnings

from .output import startup_chatter_dropped

__all__ = [
    "analyse_dl3", "compare", "convert", "dl3", "ctlearn_option_classes", "describe_options", "events", "extract_images", "irf", "make_default_data", "merge", "mock_observation", "predict", "report",
    "resume", "runs", "sweep", "train",
]


def _start(module, function="main"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", message="In merged column 'obs_id' the 'description' attribute does not match")
    warnings.filterwarnings("ignore", message="Setting default_value=None and allow_none will result in misleading")
    with startup_chatter_dropped():
        tool_module = importlib.import_module(f"ctlearn_mlops.tools.{module}")
    try:
        result = getattr(tool_module, function)()
        code = result if isinstance(result, int) else 0
    except SystemExit as stop:
        code = stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 1)
    _end(code)


def _end(code):
    """End the process with ``code`` once its tool has ended, without interpreter teardown.

    Teardown destroys what TensorFlow, PyTables and h5py still hold, and that
    has failed in ways that change the exit code or print tracebacks after
    the tool's own last word: TensorFlow (seen with 2.14) could deadlock
    destroying the iterator of an interrupted epoch; a PyTables file whose
    write failed on a full disk stays registered and its close at exit
    raises; h5py can crash in the destructor of such a file.  Everything the
    tool writes is written and closed, or removed, by then.
    """
    import logging

    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _training(module, function):
    from .stop import catch_stop_signals

    catch_stop_signals()
    _start(module, function)


def train():
    """scripts/train_model.py, ctlearn-mlops-train"""
    _training("train", "main")


def resume():
    """scripts/rerun/resume.py, ctlearn-mlops-resume"""
    _training("runs", "resume_main")


def predict():
    """scripts/test_model.py, ctlearn-mlops-predict"""
    _start("predict")


def events():
    """scripts/predict_events.py, ctlearn-mlops-predict-events"""
    _start("events")


def report():
    """scripts/generate_report.py, ctlearn-mlops-report"""
    _start("report")


def compare():
    """scripts/compare_models.py, ctlearn-mlops-compare"""
    _start("compare")


def irf():
    """scripts/compute_irf.py, ctlearn-mlops-irf"""
    _start("irf")


def dl3():
    """scripts/create_dl3.py, ctlearn-mlops-dl3"""
    _start("dl3")


def analyse_dl3():
    """scripts/analyse_dl3.py, ctlearn-mlops-analyse-dl3"""
    _start("analyse_dl3")


def runs():
    """scripts/list_runs.py, ctlearn-mlops-runs"""
    _start("runs", "list_main")


def sweep():
    """scripts/submit_sweep.py, ctlearn-mlops-sweep"""
    _start("sweep")


def convert():
    """scripts/data_processing/convert_data.py, ctlearn-mlops-convert"""
    _start("convert")


def extract_images():
    """scripts/data_processing/extract_only_images.py, ctlearn-mlops-extract-images"""
    _start("extract")


def merge():
    """scripts/data_processing/run_merge.py, ctlearn-mlops-merge"""
    _start("merge")


def make_default_data():
    """scripts/data_processing/make_default_dataset.py, ctlearn-mlops-make-default-data"""
    _start("make_default_data")


def mock_observation():
    """scripts/data_processing/make_mock_observation.py, ctlearn-mlops-mock-observation"""
    _start("mock_observation")


def ctlearn_option_classes():
    """The classes whose options tools/ctlearn_options.json describes: CTLearn's tools and models and the
    package's task tools and fast loader (imports TensorFlow)."""
    from ctapipe.core.traits import classes_with_traits
    from ctlearn.core.model import CTLearnModel
    from ctlearn.tools.predict_model import PredictCTLearnModel
    from ctlearn.tools.train_model import TrainCTLearnModel

    from .loading.loader import FastLoader
    from .tools.image_cache import ImageCacheTool
    from .tools.predict import PredictTool
    from .tools.report import ReportTool
    from .tools.train import TrainTool

    return [TrainCTLearnModel, PredictCTLearnModel, TrainTool, PredictTool, ImageCacheTool, ReportTool, FastLoader,
            *classes_with_traits(CTLearnModel)]


def describe_options():
    """ctlearn-mlops-describe-options: rewrite tools/ctlearn_options.json from the installed packages (after an
    upgrade of CTLearn or a change of the tools' options)."""
    from .tools.ctlearn_options import write_description

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with startup_chatter_dropped():
        classes = ctlearn_option_classes()
    print(f"wrote {write_description(classes)}")
