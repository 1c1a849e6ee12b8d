"""Report directories: written whole, readable as the run directories are."""

import os
import stat

import pytest

from ctlearn_mlops.reporting.document import atomic_directory


@pytest.mark.parametrize("umask", [0o022, 0o027])
def test_a_report_directory_gets_the_mode_of_the_umask(umask, tmp_path):
    import ctlearn_mlops.rundir as rundir

    old = os.umask(umask)
    rundir._umask.cache_clear()
    try:
        with atomic_directory(tmp_path / "report") as tmp:
            (tmp / "report.html").write_text("<html></html>")
    finally:
        os.umask(old)
        rundir._umask.cache_clear()
    assert stat.S_IMODE((tmp_path / "report").stat().st_mode) == 0o777 & ~umask
    assert (tmp_path / "report" / "report.html").exists()
