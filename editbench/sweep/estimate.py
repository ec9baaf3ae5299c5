"""What the runs of a plan will cost, priced from the costs its results store has recorded.

Each run to do is priced from the store's records of its task and method (at any code):
- loading: the median `load` phase of the task's runs;
- scoring before and after the edit: the task's runs (any method: all score the same requests) at
  the recorded m nearest to the run's (on a log scale), scaled linearly to its m;
- the edit: the same, from the method's runs on the task;
- the one-off artifact (a trained editor, MEMIT's statistics): its build time once per artifact
  the plan needs that no run at the code it would execute has recorded (an older code's artifact
  is not counted as cached). A trained editor is told apart by the method's `seed` and
  `train_edits` (where its config has them), priced from the nearest recorded `train_edits`,
  scaled linearly.
Sizes are `edits x rounds`. A run whose task or method has no record is not priced (counted apart).
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from typing import Any, Callable, Iterable

from editbench.leaderboard import follows_m, one_off_seconds, rounds
from editbench.sweep.plan import PlannedRun

TRAINED_KEYS = ("seed", "train_edits")  # method config fields that tell trained editors apart


@dataclass
class Estimate:
    """`seconds`: the priced runs' total, one after the other; `each`: index in the plan -> seconds."""

    seconds: float
    priced: int
    unpriced: int
    each: dict[int, float]

    def describe(self, jobs: int) -> str:
        hours = self.seconds / 3600
        text = f"estimated {hours:.1f} run-hours for {self.priced} run(s) (about {hours / max(1, jobs):.1f} h at --jobs {jobs})"
        if self.unpriced:
            text += f"; {self.unpriced} run(s) without a recorded run of their method and task not priced"
        return text + ", from the store's recorded costs"


def _phase(record: dict[str, Any], name: str) -> float | None:
    phase = (record.get("phases") or {}).get(name)
    seconds = phase.get("seconds") if isinstance(phase, dict) else None
    return float(seconds) if isinstance(seconds, (int, float)) else None


def _size(record: dict[str, Any]) -> int:
    return int(record["edits"]) * rounds(record)


def _scaled(records: list[dict[str, Any]], size: int, cost: Callable[[dict[str, Any]], float | None],
            size_of: Callable[[dict[str, Any]], int | None] = _size) -> float | None:
    """The median cost per unit of size of the records at the size nearest to `size` (log scale), times `size`."""
    known = [(size_of(r), cost(r)) for r in records]
    known = [(s, c) for s, c in known if s and c is not None]
    if not known:
        return None
    nearest = min({s for s, _ in known}, key=lambda s: (abs(math.log(s / size)), s))
    return statistics.median(c / s for s, c in known if s == nearest) * size


def _artifact(method_config: dict[str, Any]) -> tuple:
    """What tells a run's one-off artifact apart within its (method, task): a trained editor's
    (seed, train_edits); nothing for the others (statistics, or nothing built)."""
    return tuple(method_config.get(key) for key in TRAINED_KEYS) if "train_edits" in method_config else ()


def _method_config(record: dict[str, Any]) -> dict[str, Any]:
    return (record.get("config") or {}).get("method") or {}


def _train_edits(records: list[dict[str, Any]], edits: int) -> int | None:
    """The training m a new run of these records' method would use: its m where the field follows
    the run's m (`leaderboard.follows_m`), else the records' most common value (a preset's); None
    without the field."""
    values = [_method_config(r).get("train_edits") for r in records]
    if not values or any(v is None for v in values):
        return None
    return edits if "train_edits" in follows_m(records) else statistics.mode(values)


def estimate(planned: Iterable[PlannedRun], records: list[dict[str, Any]],
             code: Callable[[str, str], str | None]) -> Estimate:
    """Price the runs of `planned` to do from `records` (`code(method, task)`: the source hash a
    run would record now, as in `make_plan`)."""
    each: dict[int, float] = {}
    unpriced = 0
    built = {(r["method"], r["task"], _artifact(_method_config(r))) for r in records
             if r.get("code") is not None and r.get("code") == code(r["method"], r["task"])}
    for index, item in enumerate(planned):
        if not item.to_run:
            continue
        run, size = item.run, item.identity.edits * item.identity.rounds
        of_task = [r for r in records if r["task"] == run.task]
        of_method = [r for r in of_task if r["method"] == run.method]
        loads = [s for s in (_phase(r, "load") for r in of_task) if s is not None]
        scoring = _scaled(of_task, size, lambda r: (_phase(r, "evaluate_pre") or 0) + (_phase(r, "evaluate_post") or 0))
        edit = _scaled(of_method, size, lambda r: r.get("edit_seconds"))
        if not loads or scoring is None or edit is None:
            unpriced += 1
            continue
        seconds = statistics.median(loads) + scoring + edit
        train_edits = _train_edits(of_method, item.identity.edits)
        planned_config = {"seed": item.identity.seed, "train_edits": train_edits} if train_edits is not None else {}
        key = (run.method, run.task, _artifact(planned_config))
        if key not in built:
            built.add(key)
            if train_edits is not None:
                one_off = _scaled(of_method, train_edits, one_off_seconds, lambda r: _method_config(r).get("train_edits"))
            else:
                costs = [c for c in (one_off_seconds(r) for r in of_method) if c is not None]
                one_off = statistics.median(costs) if costs else None
            seconds += one_off or 0.0
        each[index] = seconds
    return Estimate(sum(each.values()), len(each), unpriced, each)
