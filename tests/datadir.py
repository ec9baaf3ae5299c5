"""The real data folder for tests: `$EDITBENCH_DATA` only (no guessed relative path).

`data_root()` is None when it is unset or not a folder (for `skipif` marks); `data_dir()` skips
the calling test with the reason.
"""
import os
from pathlib import Path

import pytest

UNSET = "EDITBENCH_DATA is not set: point it at the data folder (zsre/, counterfact/, nq/, fever/)"


def data_root() -> Path | None:
    folder = os.environ.get("EDITBENCH_DATA", "")
    # Absolute, so that a test that changes directory still finds it (CI sets ../shared/data).
    return Path(folder).resolve() if folder and Path(folder).is_dir() else None


def skip_reason() -> str:
    folder = os.environ.get("EDITBENCH_DATA", "")
    return UNSET if not folder else f"EDITBENCH_DATA={folder} is not a folder"


def data_dir() -> Path:
    """`$EDITBENCH_DATA`, or skip the test saying why."""
    root = data_root()
    if root is None:
        pytest.skip(skip_reason())
    return root
