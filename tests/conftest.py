import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests/tiny.py and friends; the data folder: datadir.py


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory, monkeypatch):
    """Each test session writes editbench's cache into a temporary folder, except model files."""
    if "EDITBENCH_CACHE" not in os.environ:
        monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def pytest_terminal_summary(terminalreporter):
    """After `pytest -m benchmark`: the table of every (method, phase, model, m) measured in this run
    (`benchmarks/report.py`; `python benchmarks/report.py FILE.json` prints it from a saved run)."""
    report = sys.modules.get("report")
    if report is None or not getattr(report, "ROWS", None):
        return
    terminalreporter.write_sep("=", "editbench benchmarks: time and peak memory")
    terminalreporter.write_line(report.table(report.ROWS))
