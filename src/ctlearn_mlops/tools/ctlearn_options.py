"""The options of CTLearn's TensorFlow classes, described so that a config can be checked without importing them.

``generate_report.py`` builds no network, and reading a config or making a
report does not import TensorFlow; yet it must refuse the configs that
training refuses (one validation for every script that reads a task config).
CTLearn's model classes and tools import TensorFlow, so their options are
described in ``ctlearn_options.json`` (option name, trait kind, limits,
choices) and rebuilt here as classes with the same names and traits, which
``config.validate_sections`` checks like the real ones.

``ctlearn-mlops-describe-options`` (``cli.describe_options``) rewrites the
description from the installed CTLearn (0.10.4) and the package's tools;
tests/test_config.py checks that it still matches, so an upgrade that
changes an option fails a test, not a user.  The tools that build a
network check the live classes; this module imports none of them.
"""

import json
import sys
from pathlib import Path

import traitlets
from ctapipe.core import Component, Tool
from ctapipe.core import traits as ctapipe_traits

from .._compat import list_trait_parts

__all__ = ["DESCRIPTION_FILE", "described_classes", "describe", "option_classes", "own_classes", "write_description"]

DESCRIPTION_FILE = Path(__file__).with_name("ctlearn_options.json")
_PACKAGES = ("ctapipe", "ctlearn", "ctlearn_mlops", "dl1_data_handler")


def own_classes(classes):
    """``classes`` without those of custom model files (the description holds the packages' own)."""
    return [cls for cls in classes if cls.__module__.split(".")[0] in _PACKAGES]


def _describe_trait(trait):
    """A JSON-able description of a config trait (the kinds CTLearn's options use)."""
    common = {"allow_none": bool(trait.allow_none)}
    if isinstance(trait, ctapipe_traits.ComponentName):
        # the packages' own classes; a custom model file adds its own when imported (``_build_trait``)
        values = [name for name, cls in trait.cls.non_abstract_subclasses().items()
                  if cls.__module__.split(".")[0] in _PACKAGES]
        return {"kind": "component", "base": [trait.cls.__module__, trait.cls.__name__], "values": sorted(values),
                **common}
    if isinstance(trait, ctapipe_traits.Path):
        return {"kind": "path", "exists": trait.exists, "directory_ok": trait.directory_ok, "file_ok": trait.file_ok,
                **common}
    if isinstance(trait, traitlets.CaselessStrEnum):
        return {"kind": "choice_caseless", "values": list(trait.values), **common}
    if isinstance(trait, traitlets.Enum):
        return {"kind": "choice", "values": list(trait.values), **common}
    for kind, trait_type in (("bool", traitlets.Bool), ("int", traitlets.Int), ("float", traitlets.Float)):
        if isinstance(trait, trait_type):
            limits = {} if kind == "bool" else {"min": trait.min, "max": trait.max}
            return {"kind": kind, **limits, **common}
    if isinstance(trait, traitlets.Unicode):
        return {"kind": "text", **common}
    if isinstance(trait, traitlets.List):
        item, minlen, maxlen = list_trait_parts(trait)
        return {"kind": "list", "item": None if item is None else _describe_trait(item), "minlen": minlen,
                "maxlen": None if maxlen == sys.maxsize else maxlen, **common}
    if isinstance(trait, traitlets.Dict):
        return {"kind": "dict", **common}
    raise TypeError(f"no description for a {type(trait).__name__} option")


def describe(classes):
    """{class name: {"tool": bool, "options": {name: description}}}; a Tool's generic options are left out."""
    generic = set(Tool.class_traits(config=True))
    description = {}
    for cls in classes:
        is_tool = issubclass(cls, Tool)
        options = {name: _describe_trait(trait) for name, trait in sorted(cls.class_traits(config=True).items())
                   if not (is_tool and name in generic)}
        description[cls.__name__] = {"tool": is_tool, "options": options}
    return description


def _build_trait(spec):
    kind, allow_none = spec["kind"], spec["allow_none"]
    if kind == "choice":
        return traitlets.Enum(spec["values"], allow_none=allow_none)
    if kind == "component":
        module, name = spec["base"]
        values = list(spec["values"])
        if module in sys.modules:  # loaded anyway (a custom model file): its subclasses are choices too
            values += [v for v in getattr(sys.modules[module], name).non_abstract_subclasses() if v not in values]
        return traitlets.Enum(values, allow_none=allow_none)
    if kind == "choice_caseless":
        return traitlets.CaselessStrEnum(spec["values"], allow_none=allow_none)
    if kind == "path":
        # the default of a described Path is None: allowed, or the trait would warn about it
        return ctapipe_traits.Path(exists=spec["exists"], directory_ok=spec["directory_ok"], file_ok=spec["file_ok"],
                                   allow_none=True)
    if kind == "bool":
        return traitlets.Bool(allow_none=allow_none)
    if kind in ("int", "float"):
        trait_type = traitlets.Int if kind == "int" else traitlets.Float
        return trait_type(min=spec["min"], max=spec["max"], allow_none=allow_none)
    if kind == "text":
        return traitlets.Unicode(allow_none=allow_none)
    if kind == "list":
        item = None if spec["item"] is None else _build_trait(spec["item"])
        return traitlets.List(item, minlen=spec["minlen"], maxlen=spec["maxlen"] or sys.maxsize, allow_none=allow_none)
    if kind == "dict":
        return traitlets.Dict(allow_none=allow_none)
    raise ValueError(f"{DESCRIPTION_FILE}: unknown option kind {kind!r}")


def described_classes():
    """Classes named and configured as CTLearn's, rebuilt from ``ctlearn_options.json`` (no TensorFlow)."""
    description = json.loads(DESCRIPTION_FILE.read_text())
    return [
        type(name, (Tool if spec["tool"] else Component,),
             {option: _build_trait(trait).tag(config=True) for option, trait in spec["options"].items()})
        for name, spec in description.items()
    ]


def option_classes():
    """The described classes, and the models of a custom model file once it is imported (its own section)."""
    described = described_classes()
    model_module = sys.modules.get("ctlearn.core.model")
    if model_module is None:
        return described
    names = {cls.__name__ for cls in described}
    custom = [cls for cls in ctapipe_traits.classes_with_traits(model_module.CTLearnModel) if cls.__name__ not in names]
    return [*described, *custom]


def write_description(classes):
    """Write ``ctlearn_options.json`` for ``classes`` (the packages' own)."""
    DESCRIPTION_FILE.write_text(json.dumps(describe(own_classes(classes)), indent=1, sort_keys=True) + "\n")
    return DESCRIPTION_FILE
