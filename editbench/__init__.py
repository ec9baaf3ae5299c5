"""editbench: a benchmark harness for massive knowledge editing of language models.

The contracts are `editbench.api.Task` and `editbench.api.Method`; built-in and third-party
implementations register through the entry-point groups `editbench.tasks` and `editbench.methods`.
Importing this package is cheap: torch is loaded only when the API is used.
"""
from __future__ import annotations

__version__ = "0.1.0"

_API = {"Task", "Method", "EditRequest", "Batch", "TupleOutcome", "RequestOutcome", "EditResult",
        "TaskConfig", "MethodConfig", "ROLES"}


def __getattr__(name: str):
    if name in _API:
        from editbench import api

        return getattr(api, name)
    raise AttributeError(f"module 'editbench' has no attribute {name!r}")
