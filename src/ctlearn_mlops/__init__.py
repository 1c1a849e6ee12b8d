"""MLOps layer over CTLearn: task configs, run directories, toy data and tools."""

import os
from importlib.metadata import PackageNotFoundError, version

# TensorFlow's C++ start-up chatter (CUDA probing on CPU machines) buries the
# messages that matter in batch logs; TF_CPP_MIN_LOG_LEVEL=0 brings it back.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

try:
    __version__ = version("ctlearn-mlops")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

TASKS = ("energy", "type", "cameradirection", "skydirection")

__all__ = ["TASKS", "__version__"]
