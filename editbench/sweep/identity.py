"""What makes two runs the same experiment for a sweep: method, task, edits m, seed, device kind
(cpu / cuda), dtype, the resolved value of every `--set` the run was given, and rounds.

A planned run's `--set` strings are resolved the way `editbench run` resolves them (routed to the
method's or the task's config, converted to the field's type, over the task's preset), so
`lr=1e-4` and `lr=0.0001` are the same run; a stored record's are read back from its `overrides`
(which keys were given) and its resolved `config` (their values). A record whose overrides hold a
key the run does not set is another experiment.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from typing import Any

from editbench.sweep.grid import SweepRun

SCOPES = ("method", "task")


@dataclasses.dataclass(frozen=True)
class Identity:
    """`sets`: ("method.FIELD" | "task.FIELD", JSON of the resolved value) pairs, sorted."""

    method: str
    task: str
    edits: int
    seed: int
    device: str
    dtype: str
    sets: tuple[tuple[str, str], ...] = ()
    rounds: int = 1

    def slug(self) -> str:
        """A file name for this run's log: readable, unique (a hash of the settings when there are any)."""
        name = f"{self.method}_{self.task}_m{self.edits}_s{self.seed}_{self.device}_{self.dtype}"
        if self.rounds != 1:
            name += f"_r{self.rounds}"
        if self.sets:
            readable = "_".join(f"{key.partition('.')[2]}={value}" for key, value in self.sets)
            digest = hashlib.sha256(json.dumps(self.sets).encode()).hexdigest()[:8]
            name += "_" + re.sub(r"[^A-Za-z0-9.=+-]+", "-", readable)[:60] + "-" + digest
        return name


def device_kind(device: str) -> str:
    """'cpu' or 'cuda' for a `--device` value ('auto' is resolved on this machine)."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return "cuda" if device.startswith("cuda") else device


def canonical(value: Any) -> str:
    """A resolved setting as comparable text (tuples and lists alike, floats by value)."""
    return json.dumps(value, sort_keys=True, default=str)


class Resolver:
    """Identities of planned runs: resolves their `--set` values through the registered classes
    (loaded once per name); an unknown method, task or setting raises `EditbenchError`."""

    def __init__(self) -> None:
        self._classes: dict[tuple[str, str], type] = {}

    def load_class(self, kind: str, name: str) -> type:
        from editbench import registry

        if (kind, name) not in self._classes:
            self._classes[kind, name] = registry.load(kind, name)
        return self._classes[kind, name]

    def check_names(self, run: SweepRun) -> None:
        """`EditbenchError` (unknown ..., did you mean) for a method or task that is not registered."""
        self.load_class("method", run.method)
        self.load_class("task", run.task)

    def identity(self, run: SweepRun) -> Identity:
        return Identity(run.method, run.task, run.edits, run.seed, device_kind(run.device), run.dtype,
                        self.resolve_sets(run), run.rounds or 1)

    def resolve_sets(self, run: SweepRun) -> tuple[tuple[str, str], ...]:
        if not run.sets:
            return ()
        from editbench.config import build_config, split_overrides

        method_cls, task_cls = self.load_class("method", run.method), self.load_class("task", run.task)
        method_sets, task_sets = split_overrides(dict(run.sets), method_cls, task_cls)
        linked = {field: getattr(run, attr) for field, attr in getattr(method_cls, "follows_run", {}).items()}
        _, preset = task_cls.preset_for(method_cls)
        method_config = build_config(method_cls.Config, {**linked, **preset, **method_sets}, f"method {run.method}")
        task_config = build_config(task_cls.Config, task_sets, f"task {run.task}")
        pairs = [(f"method.{k}", canonical(getattr(method_config, k))) for k in method_sets]
        pairs += [(f"task.{k}", canonical(getattr(task_config, k))) for k in task_sets]
        return tuple(sorted(pairs))


def record_identity(record: dict[str, Any]) -> Identity:
    """The identity of a stored run record (older records: dtype float32, one round)."""
    config = record.get("config") or {}
    pairs = []
    for key, given in (record.get("overrides") or {}).items():
        scope, dot, field = key.partition(".")
        if not (dot and scope in SCOPES):
            scope, field = ("method" if key in (config.get("method") or {}) else "task"), key
        pairs.append((f"{scope}.{field}", canonical((config.get(scope) or {}).get(field, given))))
    device = str(record.get("device") or "cpu")
    rounds = record.get("rounds")
    return Identity(record["method"], record["task"], int(record["edits"]), int(record.get("seed", 0)),
                    "cpu" if device.startswith("cpu") else "cuda", str(record.get("dtype") or "float32"),
                    tuple(sorted(pairs)), rounds if isinstance(rounds, int) and rounds >= 1 else 1)
