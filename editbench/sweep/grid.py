"""A sweep's grid and its expansion into runs: methods x tasks x edit counts x seeds x `--set` values.

A `Grid` holds lists of values per axis; `expand` gives one `SweepRun` per combination, in the
order methods, tasks, edit counts, seeds, `--set` values (the first axis varies slowest). A
`--set` grid maps a key to its values: `lr=1e-5,1e-4` on the command line (commas split values
except inside brackets, so `layers=[20,21,22]` is one value) or `lr = [1e-5, 1e-4]` in a preset.
"""
from __future__ import annotations

import dataclasses
import itertools
import json
from typing import Any, Iterable

from editbench.errors import EditbenchError


@dataclasses.dataclass(frozen=True)
class Skip:
    """Runs not to start, with the reason stated (e.g. an ablation the paper reports as failing):
    `method` and, when given, only on `task`."""

    method: str
    reason: str
    task: str | None = None

    def matches(self, run: "SweepRun") -> bool:
        return run.method == self.method and self.task in (None, run.task)


@dataclasses.dataclass(frozen=True)
class SweepRun:
    """One `editbench run` of a sweep. `sets`: (KEY, VALUE) pairs as `--set KEY=VALUE` strings,
    sorted by key; `rounds`: passed as `--rounds` when given (sequential editing)."""

    method: str
    task: str
    edits: int
    seed: int
    device: str = "cpu"
    dtype: str = "float32"
    sets: tuple[tuple[str, str], ...] = ()
    rounds: int | None = None

    def run_args(self) -> list[str]:
        """The arguments of `editbench run` for this run (without `--out` and the sweep's common options)."""
        args = ["--method", self.method, "--task", self.task, "--edits", str(self.edits), "--seed", str(self.seed),
                "--device", self.device, "--dtype", self.dtype]
        for key, value in self.sets:
            args += ["--set", f"{key}={value}"]
        if self.rounds is not None:
            args += ["--rounds", str(self.rounds)]
        return args

    def label(self) -> str:
        """`ft zsre-smollm2 m=16 seed 0 [lr=1e-4]`: the run in one short phrase."""
        extra = [f"{k}={v}" for k, v in self.sets]
        if self.rounds is not None:
            extra.append(f"rounds={self.rounds}")
        if (self.device, self.dtype) != ("cpu", "float32"):
            extra[:0] = [self.device, self.dtype]
        return f"{self.method} {self.task} m={self.edits} seed {self.seed}" + (f" [{', '.join(extra)}]" if extra else "")


@dataclasses.dataclass
class Grid:
    """Axes of a sweep; every combination is one run. `sets`: KEY -> the values it takes."""

    methods: list[str]
    tasks: list[str]
    edits: list[int]
    seeds: list[int] = dataclasses.field(default_factory=lambda: [0])
    sets: dict[str, list[str]] = dataclasses.field(default_factory=dict)
    device: str = "cpu"
    dtype: str = "float32"
    rounds: list[int] | None = None
    skips: list[Skip] = dataclasses.field(default_factory=list)

    def check(self, where: str) -> None:
        """`EditbenchError` naming the first empty or bad axis of this grid (`where` names the grid)."""
        for axis in ("methods", "tasks", "edits", "seeds"):
            if not getattr(self, axis):
                raise EditbenchError(f"{where}: no {axis} given (expected at least one value)")
        for axis in ("edits", "seeds", "rounds"):
            for value in getattr(self, axis) or []:
                low = 0 if axis == "seeds" else 1
                if not isinstance(value, int) or isinstance(value, bool) or value < low:
                    raise EditbenchError(f"{where}: {axis} value {value!r} is not an integer >= {low}")
        for key, values in self.sets.items():
            if not values:
                raise EditbenchError(f"{where}: --set {key} has no value (expected KEY=V1[,V2...])")


def expand(grid: Grid) -> list[SweepRun]:
    """Every combination of `grid`'s axes, as runs (the methods axis varies slowest)."""
    keys = sorted(grid.sets)
    runs = []
    for method, task, edits, seed, values, rounds in itertools.product(
            grid.methods, grid.tasks, grid.edits, grid.seeds,
            itertools.product(*(grid.sets[k] for k in keys)), grid.rounds or [None]):
        runs.append(SweepRun(method, task, edits, seed, grid.device, grid.dtype, tuple(zip(keys, values)), rounds))
    return runs


def split_values(text: str) -> list[str]:
    """`"a,b"` -> `["a", "b"]`; commas inside brackets do not split (`"[1,2],[3]"` -> two values)."""
    values, depth, current = [], 0, ""
    for char in text:
        if char in "[({":
            depth += 1
        elif char in "])}":
            depth -= 1
        if char == "," and depth == 0:
            values.append(current.strip())
            current = ""
        else:
            current += char
    values.append(current.strip())
    return [v for v in values if v]


def parse_ints(text: str, option: str) -> list[int]:
    """`"16,64"` -> `[16, 64]`; `EditbenchError` naming `option` for a value that is not an integer."""
    values = []
    for item in split_values(text):
        try:
            values.append(int(item))
        except ValueError:
            raise EditbenchError(f"bad {option} value {item!r}: expected integers separated by commas") from None
    return values


def parse_set_grid(items: Iterable[str]) -> dict[str, list[str]]:
    """`["lr=1e-5,1e-4", "epochs=3"]` -> `{"lr": ["1e-5", "1e-4"], "epochs": ["3"]}`."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise EditbenchError(f"bad --set {item!r}: expected KEY=VALUE or KEY=V1,V2,...")
        values = split_values(value)
        if not values:
            raise EditbenchError(f"bad --set {item!r}: no value after '=' (expected KEY=V1[,V2...])")
        out[key.strip()] = values
    return out


def as_set_value(value: Any) -> str:
    """A preset's TOML value as the `--set` string `editbench run` parses (lists as JSON)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, dict)):
        return json.dumps(value, separators=(",", ":"))
    return str(value)
