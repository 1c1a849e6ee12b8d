"""pyproject.toml, constraints.txt and ctlearn.yml pin the same versions."""

import re
import tomllib

import yaml

from .conftest import REPO


def _normalise(name):
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lines):
    pins = {}
    for line in lines:
        match = re.match(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;#]+)", line)
        if match:
            pins[_normalise(match.group(1))] = match.group(2)
    return pins


def test_pyproject_constraints_and_conda_env_agree():
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    extras = pyproject["project"]["optional-dependencies"]
    declared = _pins(pyproject["project"]["dependencies"] + extras["test"] + extras["mlflow"])
    locked = _pins((REPO / "constraints.txt").read_text().splitlines())
    conda = yaml.safe_load((REPO / "ctlearn.yml").read_text())
    pip_section = next(d["pip"] for d in conda["dependencies"] if isinstance(d, dict))
    conda_pins = _pins(pip_section)

    assert declared, "pyproject declares no pinned dependency"
    for name, version in declared.items():
        assert locked.get(name) == version, f"{name}: pyproject {version}, constraints {locked.get(name)}"
        assert conda_pins.get(name) == version, f"{name}: pyproject {version}, ctlearn.yml {conda_pins.get(name)}"
    assert set(conda_pins) == set(declared), "ctlearn.yml pins a package pyproject.toml does not"
    python = next(d for d in conda["dependencies"] if isinstance(d, str) and d.startswith("python="))
    assert python == "python=3.12" and pyproject["project"]["requires-python"] == "==3.12.*"


def test_the_stack_is_what_is_pinned():
    from importlib.metadata import version

    locked = _pins((REPO / "constraints.txt").read_text().splitlines())
    for name in ("ctlearn", "tensorflow", "keras", "ctapipe", "dl1-data-handler", "pyirf"):
        assert version(name) == locked[name], name
