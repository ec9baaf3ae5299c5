"""Sweep presets: TOML files, the shipped ones under `editbench/sweep/grids/`, or a user's file.

A preset's top-level keys give one grid; `[[grid]]` tables give several, each taking the
top-level keys as defaults (e.g. the ablations with fewer edit counts than the main methods):

    # What the grid reproduces (paper table/figure), the command that runs it, its expected duration.
    description = "one line for `editbench sweep --list-presets`"
    methods = ["ft", "memit"]          # registered method names
    tasks = ["zsre-smollm2"]
    edits = [16, 64]                   # m; a value above a task's eval split is skipped with the reason
    seeds = [0, 1, 2]
    device = "cpu"                     # optional (cpu), dtype optional (float32)
    rounds = [1, 5]                    # optional: sequential editing, passed as --rounds
    [set]                              # optional --set grid: a list gives the values, a scalar one value
    lr = [1e-5, 1e-4]                  # a list-valued setting as a string: layers = "[20,21,22]"
    [[skip]]                           # runs not started, the reason shown by --dry-run and the summary
    method = "malmen-no-reg"
    reason = "lambda = 0: U U^T singular at m < d (paper Table 1: no result on BERT)"
    [compare]                          # optional, for --compare: |new - committed| allowed per method
    tolerance = 0.0                    # default for every method (0: exactly equal)
    methods = { malmen = 0.02 }        # per method

Unknown keys are errors naming the file and the key.
"""
from __future__ import annotations

import dataclasses
import difflib
import tomllib
from importlib import resources
from pathlib import Path
from typing import Any

from editbench.errors import EditbenchError
from editbench.sweep.grid import Grid, Skip, as_set_value

GRID_KEYS = {"methods", "tasks", "edits", "seeds", "device", "dtype", "rounds", "set", "skip"}
TOP_KEYS = GRID_KEYS | {"description", "grid", "compare"}


@dataclasses.dataclass
class Tolerance:
    """How far a new metric may lie from the committed one in `--compare` (0: exactly equal)."""

    default: float = 0.0
    methods: dict[str, float] = dataclasses.field(default_factory=dict)

    def of(self, method: str) -> float:
        return self.methods.get(method, self.default)


@dataclasses.dataclass
class Preset:
    name: str
    path: Path | None
    description: str
    grids: list[Grid]
    tolerance: Tolerance = dataclasses.field(default_factory=Tolerance)


def shipped() -> dict[str, Any]:
    """The presets shipped with editbench: name -> the resource of its TOML file."""
    folder = resources.files("editbench.sweep") / "grids"
    return {entry.name[:-5]: entry for entry in sorted(folder.iterdir(), key=lambda e: e.name)
            if entry.name.endswith(".toml")}


def load_preset(name_or_file: str) -> Preset:
    """A shipped preset by name, or a TOML file (a path ending in .toml or an existing file)."""
    path = Path(name_or_file).expanduser()
    if name_or_file.endswith(".toml") or path.is_file():
        if not path.is_file():
            raise EditbenchError(f"--preset {name_or_file!r}: no such file (expected a TOML preset file)")
        return parse_preset(path.read_text(encoding="utf-8"), path.stem, path)
    known = shipped()
    if name_or_file not in known:
        close = difflib.get_close_matches(name_or_file, known, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise EditbenchError(f"unknown preset {name_or_file!r}{hint}; known presets: {', '.join(known)} "
                             "(or a FILE.toml)")
    return parse_preset(known[name_or_file].read_text(encoding="utf-8"), name_or_file, None)


def parse_preset(text: str, name: str, path: Path | None = None) -> Preset:
    """A `Preset` from TOML text; `EditbenchError` naming the preset and the bad key or value."""
    where = f"preset {str(path or name)!r}"
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise EditbenchError(f"{where} is not valid TOML ({exc})") from None
    _check_keys(data, TOP_KEYS, where)
    tables = data.get("grid", [{}])
    if not isinstance(tables, list) or not all(isinstance(t, dict) for t in tables):
        raise EditbenchError(f"{where}: 'grid' must be an array of tables ([[grid]])")
    grids = []
    for number, table in enumerate(tables, 1):
        grid_where = where if "grid" not in data else f"{where}, [[grid]] {number}"
        _check_keys(table, GRID_KEYS, grid_where)
        merged = {**{k: v for k, v in data.items() if k in GRID_KEYS}, **table}
        grids.append(_grid(merged, grid_where))
    return Preset(name, path, str(data.get("description", "")), grids, _tolerance(data.get("compare", {}), where))


def _check_keys(table: dict[str, Any], allowed: set[str], where: str) -> None:
    unknown = sorted(set(table) - allowed)
    if unknown:
        raise EditbenchError(f"{where}: unknown key {unknown[0]!r} (expected one of {', '.join(sorted(allowed))})")


def _list(value: Any, kind: type, key: str, where: str) -> list[Any]:
    values = value if isinstance(value, list) else [value]
    for item in values:
        if not isinstance(item, kind) or isinstance(item, bool):
            raise EditbenchError(f"{where}: {key} value {item!r} is not {'an integer' if kind is int else 'a string'}")
    return values


def _grid(table: dict[str, Any], where: str) -> Grid:
    sets = table.get("set", {})
    if not isinstance(sets, dict):
        raise EditbenchError(f"{where}: 'set' must be a table of KEY = value or [values]")
    skips = []
    for entry in table.get("skip", []):
        if not isinstance(entry, dict) or not {"method", "reason"} <= set(entry) or set(entry) - {"method", "task", "reason"}:
            raise EditbenchError(f"{where}: each [[skip]] needs method and reason (and optionally task), got {entry!r}")
        skips.append(Skip(str(entry["method"]), str(entry["reason"]), entry.get("task")))
    grid = Grid(
        methods=_list(table.get("methods", []), str, "methods", where),
        tasks=_list(table.get("tasks", []), str, "tasks", where),
        edits=_list(table.get("edits", []), int, "edits", where),
        seeds=_list(table.get("seeds", [0]), int, "seeds", where),
        sets={str(k): [as_set_value(v) for v in (vs if isinstance(vs, list) else [vs])] for k, vs in sets.items()},
        device=str(table.get("device", "cpu")),
        dtype=str(table.get("dtype", "float32")),
        rounds=_list(table["rounds"], int, "rounds", where) if "rounds" in table else None,
        skips=skips,
    )
    grid.check(where)
    return grid


def _tolerance(table: Any, where: str) -> Tolerance:
    if not isinstance(table, dict) or set(table) - {"tolerance", "methods"}:
        raise EditbenchError(f"{where}: [compare] takes tolerance = NUMBER and methods = {{METHOD = NUMBER}}")
    values = {"default": table.get("tolerance", 0.0), **dict(table.get("methods", {}))}
    for key, value in values.items():
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0 <= value:
            raise EditbenchError(f"{where}: [compare] tolerance {key} = {value!r} is not a number >= 0")
    default = float(values.pop("default"))
    return Tolerance(default, {k: float(v) for k, v in values.items()})
