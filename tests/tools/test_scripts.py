"""Every script runs as `python scripts/<name>.py` (no broken __main__ guard)."""

import subprocess
import sys

import pytest

from ..conftest import REPO

SCRIPTS = sorted(p for p in (REPO / "scripts").rglob("*.py"))


def _help_problem(script):
    result = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=300)
    if result.returncode != 0:
        return f"{script.relative_to(REPO)}: exit {result.returncode}: {result.stderr[-1000:]}"
    if not ("options" in result.stdout.lower() and len(result.stdout) > 200):
        return f"{script.relative_to(REPO)}: no options described: {result.stdout[-500:]}"
    if "Starting:" in result.stderr or "Finished" in result.stderr:
        return f"{script.relative_to(REPO)}: the tool's start and end lines around its help: {result.stderr[-500:]}"
    return None


def test_every_script_has_a_help():
    from concurrent.futures import ThreadPoolExecutor

    assert len(SCRIPTS) >= 10
    # two at a time: each is a new interpreter importing its tool
    with ThreadPoolExecutor(2) as pool:
        problems = [p for p in pool.map(_help_problem, SCRIPTS) if p]
    assert not problems, "\n".join(problems)


def test_every_script_has_a_console_script_with_the_same_entry():
    import importlib
    import re
    import tomllib

    entries = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["scripts"]
    targets = {}
    for command, target in entries.items():
        module, function = target.split(":")
        assert callable(getattr(importlib.import_module(module), function)), command
        targets[function] = command
    for script in SCRIPTS:
        called = re.search(r"^from ctlearn_mlops\.cli import (\w+)$", script.read_text(), re.M)
        assert called, f"{script.relative_to(REPO)} does not start through ctlearn_mlops.cli"
        assert called.group(1) in targets, f"{script.relative_to(REPO)}: no console script runs cli.{called.group(1)}"
    documented = (REPO / "docs" / "options.md").read_text()
    for command in entries:
        assert f"`{command}`" in documented, f"docs/options.md does not list {command}"


def test_an_old_option_spelling_still_works_with_a_warning(tmp_path):
    # compare_models.py: --output-root is now --reports-root
    result = subprocess.run([sys.executable, REPO / "scripts" / "compare_models.py", "--task", "energy", "--all",
                             "--models-root", tmp_path / "models", "--output-root", tmp_path / "reports"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert "--output-root is now --reports-root" in result.stderr
    # parsed: the refusal is about the runs, not the option
    assert result.returncode == 2 and "need at least two runs to compare" in result.stderr, result.stderr[-2000:]


@pytest.mark.parametrize("argv, expected", [
    (["compute_irf.py", "--input", "missing.dl2.h5"], "missing.dl2.h5: does not exist"),
    (["compute_irf.py", "--gamma-efficiency", "1.5"], "gamma_efficiency"),
    (["compare_models.py", "--task", "energie", "--all"], "not the str 'energie'"),
    (["list_runs.py", "--frobnicate", "3"], "unknown option --frobnicate"),
])
def test_a_bad_option_is_a_config_error_and_warn_silences_the_start(argv, expected, tmp_path):
    result = subprocess.run([sys.executable, REPO / "scripts" / argv[0], *argv[1:], "--log-level", "WARN"],
                            capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 2 and expected in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr and "Bad config" not in result.stderr
    assert "INFO" not in result.stderr  # --log-level applies from the first line ("Starting")
    assert not list(tmp_path.iterdir())
