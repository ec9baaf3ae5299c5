"""Named splits of edit requests: the `Task` data methods shared by the built-in tasks.

A task using `SplitRequests` defines `_load()`, returning its splits by name (at least
`public_splits`) and filling `self._files` (data file name -> path) as it reads them.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from editbench.api import EditRequest
from editbench.errors import EditbenchError
from editbench.tasks.common.sampling import sample


class SplitRequests:
    """`split_size`, `requests` and `data_files` over the splits returned by `self._load()`."""

    public_splits: tuple[str, ...] = ("train", "valid", "eval")
    _files: dict[str, Path]

    def _split(self, split: str) -> list[Any]:
        if split not in self.public_splits:
            raise EditbenchError(f"unknown split {split!r}; expected one of {', '.join(self.public_splits)}")
        return self._load()[split]

    def split_size(self, split: str) -> int:
        return len(self._split(split))

    def requests(self, split: str, count: int, seed: int) -> list[EditRequest]:
        return sample(self._split(split), count, seed, what=f"{self.name} {split} split")

    def data_files(self) -> dict[str, Path]:
        self._load()
        others = super().data_files() if hasattr(super(), "data_files") else {}  # e.g. the perplexity text
        return {**others, **self._files}
