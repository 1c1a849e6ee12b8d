"""Defaults shared by every tool of the package."""

import os

from ctapipe.core import Tool
from traitlets import default

__all__ = ["MLOpsTool"]


class MLOpsTool(Tool):
    """A ctapipe Tool that reports progress at INFO level and writes no provenance log
    until it knows where its outputs go (a refused input must leave nothing behind)."""

    @default("log_level")
    def _log_level_default(self):
        return "INFO"

    @default("provenance_log")
    def _provenance_log_default(self):
        return os.devnull
