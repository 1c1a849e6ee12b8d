"""What the train and predict tools share: reading and checking a task config."""

import warnings
from pathlib import Path as PathlibPath

from astropy.utils.metadata import MergeConflictWarning
from ctapipe.core.traits import Bool, List, Unicode, classes_with_traits
from traitlets.config import Config

from ..config import (
    Project,
    apply_overrides,
    import_custom_model_file,
    overridden_keys,
    read_yaml,
    validate_sections,
)
from ..exceptions import ConfigError
from ..mlflow_tracking import MLflowTracking
from .base import MLOpsTool, current_options
from .ctlearn_options import described_classes

__all__ = ["TOOL_SECTIONS", "DataConfigTool", "TaskConfigTool", "data_classes", "glob_inputs",
           "network_and_data_classes"]

#: the sections of the package's task tools; every task tool checks them all, key by key
TOOL_SECTIONS = ("TrainTool", "PredictTool", "ReportTool", "ImageCacheTool")

_OWNED = "is set from the Project section ({}); set that instead"


def data_classes():
    """dl1-data-handler's configurable classes (the reader, its cuts, the image mapper) and the example index."""
    from dl1_data_handler.image_mapper import ImageMapper
    from dl1_data_handler.reader import DLDataReader, TableQualityQuery

    from ..loading.index import ExampleIndex

    return [ExampleIndex, TableQualityQuery, *classes_with_traits(DLDataReader), *classes_with_traits(ImageMapper)]


def network_and_data_classes():
    """CTLearn's and dl1-data-handler's configurable classes: the network, the reader, the image mapper.

    Imports CTLearn (and TensorFlow): the tools that build a reader or a
    network.  Recomputed on each call: a custom model file registers its
    classes on import.
    """
    from ctlearn.core.model import CTLearnModel
    from ctlearn.tools.predict_model import PredictCTLearnModel
    from ctlearn.tools.train_model import TrainCTLearnModel

    from ..loading.loader import FastLoader

    return [FastLoader, TrainCTLearnModel, PredictCTLearnModel, *classes_with_traits(CTLearnModel), *data_classes()]


def glob_inputs(directory, patterns, key, source):
    """Sorted files of ``directory`` matching any of ``patterns``; an error if none."""
    files = sorted({p for pattern in patterns for p in PathlibPath(directory).glob(pattern) if p.is_file()})
    if not files:
        raise ConfigError(
            f"no file in {directory} matches {list(patterns)}", source=source, key=key,
        )
    return files


class TaskConfigTool(MLOpsTool):
    """A Tool driven by one task config (``--config``) plus ``--set`` overrides.

    The config is checked against the traits of every configurable class before
    anything else happens; errors name the file and key and exit with code 2.
    """

    overrides = List(
        Unicode(), default_value=[],
        help="Override a config value: --set Section.key=value (repeatable; value parsed as YAML).",
    ).tag(config=True)

    overwrite = Bool(False, help="Replace existing outputs of this run.").tag(config=True)

    skip_existing = Bool(False, help="Do nothing if the output exists (batch jobs that may run twice).").tag(
        config=True
    )

    #: options that Project owns; setting them in another section is an error (in every script's config check)
    owned_by_project = {
        "TrainCTLearnModel.input_dir_signal": _OWNED.format("Project.signal_dir"),
        "TrainCTLearnModel.file_pattern_signal": _OWNED.format("Project.signal_patterns"),
        "TrainCTLearnModel.input_dir_background": _OWNED.format("Project.background_dir"),
        "TrainCTLearnModel.file_pattern_background": _OWNED.format("Project.background_patterns"),
        "TrainCTLearnModel.reco_tasks": _OWNED.format("Project.task"),
        "TrainCTLearnModel.output_dir": _OWNED.format("Project.output_root and Project.run_name"),
        "TrainCTLearnModel.overwrite": "use the --overwrite flag",
    }

    def config_classes(self):
        """The classes whose sections this tool checks key by key (extended by the tools that need more)."""
        return list(dict.fromkeys([Project, MLflowTracking, type(self)]))

    def unchecked_sections(self):
        """Names of the sections this tool accepts without checking them (None: every other section)."""
        return set(TOOL_SECTIONS)

    def initialize(self, argv=None):
        """Patched from ctapipe 0.32 ``Tool.initialize``: our own checked YAML loading.

        Stock loading wraps every problem into "Couldn't read config file: ..."
        and accepts unknown sections silently.
        """
        # dl1-data-handler's joins of ctapipe tables repeat this for every file
        warnings.filterwarnings("ignore", category=MergeConflictWarning)
        self.parse_command_line(current_options(argv, self.renamed_options, self.log))  # (tools.base: exit 2)
        self.update_logging_config()
        if not self.config_files:
            raise ConfigError("no task config given: use --config configs/<task>.yaml")
        self.task_config = {}
        for path in self.config_files:
            content = apply_overrides(read_yaml(path), self.overrides, path)
            custom_file = (content.get("Project") or {}).get("custom_model_file")
            if custom_file:
                if not PathlibPath(custom_file).is_file():
                    raise ConfigError(f"file not found: {custom_file}", source=path, key="Project.custom_model_file")
                import_custom_model_file(custom_file)
            validate_sections(
                content, self.config_classes(), path, forbidden=self.owned_by_project,
                overridden=overridden_keys(self.overrides), unchecked=self.unchecked_sections(),
            )
            self.update_config(Config(content))
            for section, values in content.items():
                self.task_config.setdefault(section, {}).update(values or {})
        self.task_config_source = ", ".join(str(p) for p in self.config_files)
        self.update_config(self.cli_config)
        self.update_logging_config()

    def split_inputs(self, project, split):
        """Signal and background files of the config's ``train`` or ``test`` split.

        Background files belong to the type task only: in an energy or direction
        fit they would enter as if they were gammas.
        """
        source = self.task_config_source
        prefix = "" if split == "train" else "test_"
        signal_dir = getattr(project, f"{prefix}signal_dir")
        if signal_dir is None:
            raise ConfigError(f"missing: the directory of the {split} signal (gamma) files", source=source,
                              key=f"Project.{prefix}signal_dir")
        signal = glob_inputs(signal_dir, getattr(project, f"{prefix}signal_patterns"), f"Project.{prefix}signal_patterns",
                             source)
        if project.task != "type":
            return signal, []
        background_dir = getattr(project, f"{prefix}background_dir")
        if background_dir is None:
            raise ConfigError(f"the type task needs {split} background (proton) files: set Project.{prefix}background_dir",
                              source=source, key=f"Project.{prefix}background_dir")
        background = glob_inputs(background_dir, getattr(project, f"{prefix}background_patterns"),
                                 f"Project.{prefix}background_patterns", source)
        return signal, background

    def setup_project(self):
        """Build the Project component and check what it needs for any task."""
        self.project = Project(parent=self)
        if self.project.task is None:
            raise ConfigError("missing: every task config must name its task", source=self.task_config_source, key="Project.task")
        return self.project


class DataConfigTool(TaskConfigTool):
    """A task tool that builds a reader or a network: it also checks CTLearn's and dl1-data-handler's sections,
    and the other task tools' (every script refuses the configs the others refuse)."""

    def config_classes(self):
        live = [*super().config_classes(), *network_and_data_classes()]
        # the other task tools' sections, from their description (importing them would make a cycle)
        names = {cls.__name__ for cls in live}
        return list(dict.fromkeys([*live, *(cls for cls in described_classes() if cls.__name__ not in names)]))

    def unchecked_sections(self):
        return set()
