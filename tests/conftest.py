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
