"""MLOps layer over CTLearn: task configs, run directories, toy data and tools."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("ctlearn-mlops")
except PackageNotFoundError:  # running from a source tree without installation
    __version__ = "0.0.0"

TASKS = ("energy", "type", "cameradirection", "skydirection")

__all__ = ["TASKS", "__version__"]
