"""Every script runs as `python scripts/<name>.py` (no broken __main__ guard)."""

import subprocess
import sys

import pytest

from .conftest import REPO

SCRIPTS = sorted(p for p in (REPO / "scripts").rglob("*.py"))


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: str(p.relative_to(REPO)))
def test_script_help(script):
    result = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "options" in result.stdout.lower() and len(result.stdout) > 200
