"""editbench: a benchmark harness for massive knowledge editing of language models.

The Python API (see the README's "Python API"):
    load(task, model=..., settings=...) -> Loaded          a task and its model
    edit(target, facts, method=..., settings=..., train_facts=...) -> EditOutcome(deltas, scores, record)
    EditOutcome.revert() / .save(folder, model=False)      take back bit-exactly / keep the edit
    load_edit(folder) -> SavedEdit; apply_edit(model, folder, sign=1)
    run(RunSpec(...), method=..., task=..., model=..., write=False) -> record (the benchmark runner)

The contracts are `editbench.api.Task` and `editbench.api.Method`; built-in and third-party
implementations register through the entry-point groups `editbench.tasks` and `editbench.methods`.
Importing this package is cheap: torch is loaded only when the API is used.
"""
from __future__ import annotations

from editbench import logs as _logs

__version__ = "0.1.0"
_logs.install()  # messages of every editbench.* module: stderr, warnings and up unless -v / --debug

# Public name -> the module that defines it (imported on first use).
_LAZY = {
    **{name: "editbench.api" for name in ("Task", "Method", "EditRequest", "Batch", "TupleOutcome", "RequestOutcome",
                                          "EditResult", "TaskConfig", "MethodConfig", "ROLES")},
    **{name: "editbench.editing" for name in ("load", "edit", "Loaded", "EditOutcome", "as_request",
                                              "with_training_facts")},
    **{name: "editbench.edits" for name in ("save_edit", "load_edit", "apply_edit", "SavedEdit")},
    **{name: "editbench.runner" for name in ("run", "RunSpec")},
    "EditbenchError": "editbench.errors",
}
__all__ = sorted(_LAZY)


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'editbench' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LAZY))
