"""Where every program of the package starts: process-wide settings first, then its tool.

The scripts in ``scripts/`` and the console scripts (``pyproject.toml``) call
these functions.  Settings that belong to a program and not to a library are
made here, before the tool (and TensorFlow) is imported:

* ``TF_CPP_MIN_LOG_LEVEL=3``: TensorFlow's C++ start-up chatter (CUDA probing
  on CPU nodes) buries the messages that matter in batch logs; set it to 0 in
  the environment to bring it back;
* the training programs catch SLURM's stop signals from the first moment: a
  batch system may warn while TensorFlow is still loading;
* astropy's MergeConflictWarning about the description of ``obs_id`` is not
  shown: ctapipe describes the column one way in its DL1 tables and another
  in its simulation tables, and every join of the two (once per file of a
  production) would print it.
"""

import importlib
import os
import sys
import warnings

__all__ = [
    "compare", "convert", "events", "extract_images", "irf", "make_default_data", "merge", "predict", "report",
    "resume", "runs", "sweep", "train",
]


def _start(module, function="main"):
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    warnings.filterwarnings("ignore", message="In merged column 'obs_id' the 'description' attribute does not match")
    result = getattr(importlib.import_module(f"ctlearn_mlops.tools.{module}"), function)()
    if isinstance(result, int):
        sys.exit(result)


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
