"""Task configs: one YAML schema for every physics task.

A task config is a traitlets config whose top-level keys are class names:
``Project`` (ours: task, data, run name, output root) and the CTLearn /
dl1-data-handler components (``TrainCTLearnModel``, ``DLImageReader``,
``SingleCNN``, ``TableQualityQuery``, ...).  Any option those classes expose
is therefore usable from the YAML without code changes.

Everything is checked before any work starts: unknown sections and keys (the
valid ones are listed), wrong types, missing files.  Errors are
``ConfigError`` naming the file and the key; the tools turn them into exit
code 2.
"""

import copy
import difflib
import hashlib
import importlib.util
import logging
import math
import re
import sys
from pathlib import Path as PathlibPath

import yaml
from ctapipe.core import Component
from ctapipe.core.traits import (
    CaselessStrEnum,
    List,
    Path,
    TraitError,
    Unicode,
)

from . import TASKS
from ._compat import validate_trait
from .exceptions import ConfigError
from .output import startup_chatter_dropped

__all__ = [
    "Project",
    "VALUE_LIMITS",
    "apply_overrides",
    "check_value_limits",
    "overridden_keys",
    "import_custom_model_file",
    "read_yaml",
    "validate_sections",
]


class Project(Component):
    """What a task config says that is ours: the task, its data and where runs go."""

    task = CaselessStrEnum(
        list(TASKS), default_value=None, allow_none=True,
        help="Physics task: energy (regression), type (gamma/proton), cameradirection, skydirection.",
    ).tag(config=True)

    run_name = Unicode(
        default_value="",
        help="Name of the run directory under <output_root>/<task>/. Empty: a time stamp.",
    ).tag(config=True)

    output_root = Path(
        default_value="models", directory_ok=True, file_ok=False,
        help="Root of the run directories (runs go to <output_root>/<task>/<run_name>).",
    ).tag(config=True)

    signal_dir = Path(
        default_value=None, allow_none=True, exists=True, directory_ok=True, file_ok=False,
        help="Directory of the training DL1 files of the signal (gammas).",
    ).tag(config=True)

    signal_patterns = List(
        Unicode(), default_value=["*.h5"], help="Glob patterns of signal training files in signal_dir.",
    ).tag(config=True)

    background_dir = Path(
        default_value=None, allow_none=True, exists=True, directory_ok=True, file_ok=False,
        help="Directory of the training DL1 files of the background (protons); required by the type task.",
    ).tag(config=True)

    background_patterns = List(
        Unicode(), default_value=["*.h5"], help="Glob patterns of background training files.",
    ).tag(config=True)

    test_signal_dir = Path(
        default_value=None, allow_none=True, exists=True, directory_ok=True, file_ok=False,
        help="Directory of the held-out signal DL1 files used by test_model.py.",
    ).tag(config=True)

    test_signal_patterns = List(
        Unicode(), default_value=["*.h5"], help="Glob patterns of signal test files.",
    ).tag(config=True)

    test_background_dir = Path(
        default_value=None, allow_none=True, exists=True, directory_ok=True, file_ok=False,
        help="Directory of the held-out background DL1 files (type task).",
    ).tag(config=True)

    test_background_patterns = List(
        Unicode(), default_value=["*.h5"], help="Glob patterns of background test files.",
    ).tag(config=True)

    custom_model_file = Path(
        default_value=None, allow_none=True, exists=True, directory_ok=False, file_ok=True,
        help=(
            "Python file defining a CTLearnModel subclass (see models/custom_model_template.py). "
            "It is imported before the config is checked, so its class can be named in "
            "TrainCTLearnModel.model_type and configured in its own section."
        ),
    ).tag(config=True)


log = logging.getLogger(__name__)

#: sections renamed with the tools; the old names still work, with a warning
RENAMED_SECTIONS = {"PredictModel": "PredictTool", "TrainModel": "TrainTool"}


def _current_section(section, source):
    new = RENAMED_SECTIONS.get(section)
    if new is None:
        return section
    log.warning("%s: section %s is now called %s (the old name still works)", source, section, new)
    return new


def read_yaml(path) -> dict:
    """Read a task config file into a dict, with file-naming errors."""
    path = PathlibPath(path)
    if not path.is_file():
        raise ConfigError("config file not found", source=path)
    try:
        with path.open() as f:
            content = yaml.safe_load(f)
    except yaml.YAMLError as err:
        raise ConfigError(f"not valid YAML: {err}", source=path) from None
    except UnicodeDecodeError as err:
        raise ConfigError(f"not a YAML text file (not UTF-8: byte {err.start} cannot be read)", source=path) from None
    if content is None:
        content = {}
    if not isinstance(content, dict):
        raise ConfigError("the top level must be a mapping of sections (e.g. Project:, TrainCTLearnModel:)", source=path)
    return {_current_section(section, path): values for section, values in content.items()}


def apply_overrides(content: dict, overrides, source) -> dict:
    """Apply ``Section.key[.subkey]=value`` overrides (values parsed as YAML) to a copy of ``content``."""
    result = copy.deepcopy(content)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"--set expects Section.key=value, got {item!r}", source=source)
        dotted, raw = item.split("=", 1)
        parts = [p for p in dotted.strip().split(".") if p]
        if len(parts) < 2:
            raise ConfigError(f"--set expects Section.key=value, got {item!r}", source=source)
        parts[0] = _current_section(parts[0], f"{source} (--set)")
        try:
            value = yaml.safe_load(raw)
        except yaml.YAMLError as err:
            raise ConfigError(f"--set {dotted}: value is not valid YAML: {err}", source=source) from None
        node = result
        for part in parts[:-1]:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set {dotted}: '{part}' is not a mapping", source=source)
            node = child
        node[parts[-1]] = value
    return result


def overridden_keys(overrides):
    """The ``Section.key`` names that ``--set`` items assign."""
    return [item.split("=", 1)[0].strip() for item in overrides]


def import_custom_model_file(path):
    """Import a user's model file so that its CTLearnModel subclasses become known."""
    path = PathlibPath(path).resolve()
    # one module per file (two files named alike in different directories are two modules)
    module_name = f"ctlearn_mlops_custom_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:12]}"
    if module_name in sys.modules:
        return sys.modules[module_name]
    spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        with startup_chatter_dropped():  # the file imports Keras, so TensorFlow
            spec.loader.exec_module(module)
    except Exception as err:
        del sys.modules[module_name]
        raise ConfigError(f"could not import {path}: {type(err).__name__}: {err}", key="Project.custom_model_file") from None
    return module


def check_model_accepts_task(model_type, task, section: dict, source=None):
    """Let the model class refuse a task before anything is written (``check_config`` of custom models)."""
    from ctlearn.core.model import CTLearnModel  # imports TensorFlow: only when a model is checked

    check = getattr(CTLearnModel.non_abstract_subclasses().get(model_type), "check_config", None)
    if check is None:
        return
    try:
        check([task], dict(section))
    except ValueError as err:
        raise ConfigError(str(err), source=source, key=model_type) from None


def _suggest(name, valid):
    close = difflib.get_close_matches(name, valid, n=1)
    return f" Did you mean '{close[0]}'?" if close else ""


def _own_option_names(cls, traits):
    """Options worth listing for a section: those beyond the generic Tool ones (logging, provenance)."""
    from ctapipe.core import Tool

    if issubclass(cls, Tool):
        generic = set(Tool.class_traits(config=True))
        return sorted(name for name in traits if name not in generic)
    return sorted(traits)


def trait_error_message(err):
    # ctapipe's Path trait raises TraitError((PathError, expected, trait)): the reason is in PathError
    first = err.args[0] if err.args else None
    if hasattr(first, "reason") and hasattr(first, "path"):
        return f"{first.path}: {first.reason}"
    # an item of a list of paths: "... not the PathError '<path>': <reason>."
    nested = re.search(r"PathError '([^']*)': (.*?)\.?$", str(err))
    return f"{nested.group(1)}: {nested.group(2)}" if nested else str(err)


#: keys that ctlearn 0.10.4's TrainCTLearnModel reads from its dict-valued options: (required, optional).
#: It checks only that the required ones are present and ignores any other key without a word.
UPSTREAM_DICT_KEYS = {
    "TrainCTLearnModel.early_stopping": ({"monitor", "patience", "verbose", "restore_best_weights"}, set()),
    "TrainCTLearnModel.lr_reducing": ({"factor", "patience", "min_delta", "min_lr"}, set()),
    "TrainCTLearnModel.optimizer": ({"name", "base_learning_rate"}, {"adam_epsilon"}),
}


#: what each key of those options must hold (ctlearn 0.10.4 hands them to Keras unchecked: a wrong one fails with a
#: traceback after the run started): a kind ("number", "integer", "bool", "text") and, for numbers, the bounds
#: (low, high, whether the bounds themselves are allowed; Keras refuses a learning-rate factor of 1), for text the
#: allowed values (None: any)
UPSTREAM_DICT_VALUES = {
    "TrainCTLearnModel.optimizer": {"name": ("text", ("Adadelta", "Adam", "RMSProp", "SGD")),
                                    "base_learning_rate": ("number", (0, None, False)),
                                    "adam_epsilon": ("number", (0, None, False))},
    "TrainCTLearnModel.lr_reducing": {"factor": ("number", (0, 1, False)), "patience": ("integer", (0, None, True)),
                                      "min_delta": ("number", (0, None, True)),
                                      "min_lr": ("number", (0, None, True))},
    "TrainCTLearnModel.early_stopping": {"monitor": ("text", None), "patience": ("integer", (0, None, True)),
                                         "verbose": ("integer", (0, 2, True)),
                                         "restore_best_weights": ("bool", None)},
}

#: values ctlearn 0.10.4 accepts but cannot train with (a run without a model, a division by zero, a run
#: without end): (lowest, highest, whether the bounds themselves are allowed)
VALUE_LIMITS = {
    "TrainCTLearnModel.n_epochs": (1, 100_000, True),
    "TrainCTLearnModel.batch_size": (1, 1_000_000, True),
    "TrainCTLearnModel.validation_split": (0, 0.5, False),
}


#: sections that configure the same options under another name (our tools are subclasses of ctlearn's)
_SAME_OPTIONS_AS = {"TrainTool": "TrainCTLearnModel"}


def check_value_limits(dotted, value, source):
    """Refuse a value outside ``VALUE_LIMITS`` (every script that reads a task config, and training's final values)."""
    section, _, option = dotted.partition(".")
    limited = f"{_SAME_OPTIONS_AS.get(section, section)}.{option}"
    if limited not in VALUE_LIMITS or isinstance(value, bool) or not isinstance(value, (int, float)):
        return
    problem = _bounds_problem(value, *VALUE_LIMITS[limited])
    if problem:
        raise ConfigError(problem, source=source, key=dotted)


def _bounds_problem(value, low, high, inclusive):
    """What is wrong with a number outside (low, high) (``inclusive``: the bounds allowed; high None: none), or
    None."""
    inside = (low <= value if inclusive else low < value) and \
        (high is None or (value <= high if inclusive else value < high))
    if inside:
        return None
    if high is None:
        return f"must be {'at least' if inclusive else 'above'} {low}, got {value}"
    return f"must be {f'from {low} to {high}' if inclusive else f'above {low} and below {high}'}, got {value}"


def _check_dict_keys(dotted, value, source):
    if dotted not in UPSTREAM_DICT_KEYS or not isinstance(value, dict):
        return
    required, optional = UPSTREAM_DICT_KEYS[dotted]
    unknown = sorted(set(value) - required - optional)
    missing = sorted(required - set(value))
    if dotted == "TrainCTLearnModel.optimizer" and value.get("name") == "Adam" and "adam_epsilon" not in value:
        missing.append("adam_epsilon")
    if unknown or missing:
        problems = ([f"unknown key(s) {', '.join(unknown)} (not read by ctlearn 0.10.4)"] if unknown else []) + (
            [f"missing key(s) {', '.join(missing)}"] if missing else [])
        raise ConfigError(
            f"{'; '.join(problems)}. Keys: {', '.join(sorted(required | optional))}", source=source, key=dotted
        )
    for key, (kind, rule) in UPSTREAM_DICT_VALUES.get(dotted, {}).items():
        if key in value:
            problem = _dict_value_problem(value[key], kind, rule)
            if problem:
                raise ConfigError(problem, source=source, key=f"{dotted}.{key}")


def _dict_value_problem(value, kind, rule):
    """What is wrong with one value of a dict-valued option (``UPSTREAM_DICT_VALUES``), or None."""
    if kind == "bool":
        return None if isinstance(value, bool) else f"must be true or false, got {value!r}"
    if kind == "text":
        if not isinstance(value, str):
            return f"must be text, got {value!r}"
        return None if rule is None or value in rule else f"unknown value {value!r}; one of {', '.join(rule)}"
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind == "integer" and not (number and float(value).is_integer()):
        return f"must be a whole number, got {value!r}"
    if not number:
        # PyYAML (YAML 1.1) reads 1e-4 and 1.0e4 as text: only a number with a dot and a signed exponent is a float
        hint = " (YAML reads a number without a decimal point or without a signed exponent, e.g. 1e-4, as text: " \
               "write 1.0e-4)" if isinstance(value, str) and re.fullmatch(r"[-+]?[0-9.]+[eE][-+]?[0-9]+", value) else ""
        return f"must be a number, got {value!r}{hint}"
    if not math.isfinite(value):
        return f"must be a finite number, got {value!r}"
    return _bounds_problem(value, *rule)


def validate_sections(content: dict, classes, source, forbidden=None, overridden=(), unchecked=()):
    """Check every section and key of ``content`` against the traits of ``classes``.

    Parameters
    ----------
    classes : iterable of Configurable classes allowed as sections
    forbidden : dict mapping "Section.key" to the reason it may not be set
    overridden : "Section.key" names that came from --set (named as such in errors)
    unchecked : names of further sections accepted as they are (None: any other section)
    """
    by_name = {cls.__name__: cls for cls in classes}
    forbidden = forbidden or {}

    def origin(dotted):
        # a --set of Section.key names the file's Section and Section.key as coming from the command line
        from_set = any(dotted == o or o.startswith(f"{dotted}.") or dotted.startswith(f"{o}.") for o in overridden)
        return f"{source} (--set)" if from_set else source

    for section, values in content.items():
        if section not in by_name and (unchecked is None or section in unchecked):
            continue
        if section not in by_name:
            valid = sorted({*by_name, *unchecked})
            raise ConfigError(
                f"unknown section.{_suggest(section, valid)} Valid sections: {', '.join(valid)}.",
                source=origin(section), key=section,
            )
        if values is None:
            continue
        if not isinstance(values, dict):
            raise ConfigError("a section must be a mapping of option: value", source=origin(section), key=section)
        cls = by_name[section]
        traits = cls.class_traits(config=True)
        instance = cls.__new__(cls)  # only gives the trait validators an owner; no __init__
        for key, value in values.items():
            dotted = f"{section}.{key}"
            if dotted in forbidden:
                raise ConfigError(forbidden[dotted], source=origin(dotted), key=dotted)
            if key not in traits:
                raise ConfigError(
                    f"unknown option.{_suggest(key, list(traits))} "
                    f"Valid options of {section}: {', '.join(_own_option_names(cls, traits))}.",
                    source=origin(dotted), key=dotted,
                )
            try:
                validate_trait(traits[key], instance, value)
            except TraitError as err:
                message = trait_error_message(err).replace(f" of a {section} instance", "")
                raise ConfigError(f"invalid value {value!r}: {message}", source=origin(dotted), key=dotted) from None
            _check_dict_keys(dotted, value, origin(dotted))
            check_value_limits(dotted, value, origin(dotted))
