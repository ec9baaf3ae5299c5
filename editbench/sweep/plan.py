"""The plan of a sweep: every run of the grids with its decision against the results store.

- `done`: a record of the same identity is in the store (finished earlier) at the code the run would
  execute now (its `code`, `editbench.source.source_hash`, is this checkout's; a record without
  one, from a dirty tree or written before the field existed, counts too): skipped;
- `skip`: not started, with a stated reason (a preset's `[[skip]]`, or m above the task's eval split);
- `redo`: its log exists but no record does (interrupted, or failed earlier): run again;
- `run`: never started, or recorded only at other code (a change to a file the run executes): run
  again at this code (the old record stays: the leaderboards show it as another row).

Records are written atomically at the end of a run (`editbench.results`), so a run killed at any
point has either its whole record or none, and the plan neither loses nor duplicates one.

Runs that share a one-off artifact (a task's prepared model such as the fine-tuned FEVER
classifier; a method's statistics or trained editor on a task, e.g. MEMIT's covariances) must
not build it twice at once: `order` puts the first run of each (method, task) first, and
`ArtifactGate` lets the other runs of a task, or of a (method, task), start only once one run
holding the same key has finished (the caches then serve the rest).
"""
from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any, Callable, Iterable

from editbench.errors import EditbenchError
from editbench.sweep.grid import Grid, SweepRun, expand
from editbench.sweep.identity import Identity, Resolver, record_identity

LOGS_DIR = "logs"
DECISIONS = ("run", "redo", "done", "skip")


@dataclasses.dataclass
class PlannedRun:
    run: SweepRun
    identity: Identity
    decision: str  # one of DECISIONS
    reason: str = ""  # done: the stored run_id; skip: why; redo: what was found
    log: Path | None = None

    @property
    def to_run(self) -> bool:
        return self.decision in ("run", "redo")

    def artifact_keys(self) -> tuple[tuple[str, ...], ...]:
        """What this run may build for others: the task's prepared model, the method's state on the task."""
        return ("task", self.run.task), ("method", self.run.method, self.run.task)

    def describe(self) -> str:
        why = f" ({self.reason})" if self.reason else ""
        return f"{self.decision:<4}  {self.run.label()}{why}"


def store_records(out: Path) -> list[dict[str, Any]]:
    """Records of `out/runs.jsonl` (none when the store does not exist yet)."""
    from editbench.results import RUNS_FILE, read_runs

    return read_runs(Path(out)) if (Path(out) / RUNS_FILE).is_file() else []


def stored_records(out: Path) -> dict[Identity, list[dict[str, Any]]]:
    """Records of `out/runs.jsonl` by identity (an empty dict when the store does not exist yet)."""
    found: dict[Identity, list[dict[str, Any]]] = {}
    for record in store_records(out):
        found.setdefault(record_identity(record), []).append(record)
    return found


class SplitSizes:
    """Eval split size of each task (with its `task.` settings), or None where the task cannot be
    built here (its data missing): such a run is planned anyway and reports its own error."""

    def __init__(self, data_dir: str | None = None):
        self.data_dir = data_dir
        self._sizes: dict[tuple[str, tuple[tuple[str, str], ...]], int | None] = {}

    def of(self, run: SweepRun, task_sets: dict[str, str]) -> int | None:
        from editbench import registry

        key = (run.task, tuple(sorted(task_sets.items())))
        if key not in self._sizes:
            try:
                self._sizes[key] = registry.create("task", run.task, task_sets, data_dir=self.data_dir).split_size("eval")
            except (EditbenchError, OSError):
                self._sizes[key] = None
        return self._sizes[key]


def task_sets(run: SweepRun, resolver: Resolver) -> dict[str, str]:
    """The `--set` values of `run` that go to its task's config."""
    from editbench.config import split_overrides

    if not run.sets:
        return {}
    return split_overrides(dict(run.sets), resolver.load_class("method", run.method), resolver.load_class("task", run.task))[1]


class CurrentCode:
    """The source hash each (method, task) run would record from this checkout now (None without git)."""

    def __init__(self) -> None:
        self._hashes: dict[tuple[str, str], str | None] = {}

    def __call__(self, method: str, task: str) -> str | None:
        if (method, task) not in self._hashes:
            from editbench.source import source_hash

            self._hashes[method, task] = source_hash(method, task)
        return self._hashes[method, task]


def make_plan(grids: Iterable[Grid], out: Path, resolver: Resolver | None = None,
              sizes: SplitSizes | None = None,
              code: Callable[[str, str], str | None] | None = None) -> list[PlannedRun]:
    """Every distinct run of `grids` with its decision against the store `out`, in execution order.
    `code(method, task)`: the source hash a run would record now (default: this checkout's)."""
    resolver = resolver or Resolver()
    sizes = sizes or SplitSizes()
    code = code or CurrentCode()
    stored = stored_records(out)
    planned: list[PlannedRun] = []
    seen: set[Identity] = set()
    for grid in grids:
        for run in expand(grid):
            resolver.check_names(run)
            identity = resolver.identity(run)
            if identity in seen:
                continue
            seen.add(identity)
            log = Path(out) / LOGS_DIR / f"{identity.slug()}.log"
            planned.append(_decide(run, identity, log, grid, stored, sizes, resolver, code(run.method, run.task)))
    return order(planned)


def _decide(run: SweepRun, identity: Identity, log: Path, grid: Grid, stored: dict[Identity, list[dict[str, Any]]],
            sizes: SplitSizes, resolver: Resolver, code: str | None) -> PlannedRun:
    skip = next((s for s in grid.skips if s.matches(run)), None)
    current = [r for r in stored.get(identity, []) if code is None or r.get("code") in (None, code)]
    if current:
        newest = max(current, key=lambda r: str(r.get("timestamp", "")))
        return PlannedRun(run, identity, "done", f"recorded as {newest.get('run_id')}", log)
    stale = ("recorded at other code (" + ", ".join(sorted({str(r.get("code")) for r in stored[identity]}))
             + f"), run at this code ({code})") if identity in stored else ""
    if skip is not None:
        return PlannedRun(run, identity, "skip", skip.reason, log)
    size = sizes.of(run, task_sets(run, resolver))
    if size is not None and run.edits * (run.rounds or 1) > size:
        facts = f"m = {run.edits}" + (f" x {run.rounds} rounds" if run.rounds and run.rounds > 1 else "")
        return PlannedRun(run, identity, "skip", f"{facts} exceeds the eval split of {run.task} ({size} requests)", log)
    if log.exists() and not stale:
        return PlannedRun(run, identity, "redo", "a log but no record: interrupted or failed earlier", log)
    return PlannedRun(run, identity, "run", stale, log)


def order(planned: list[PlannedRun]) -> list[PlannedRun]:
    """Runs to start first: the first of each (method, task), in grid order; then the others."""
    seen: set[tuple[str, ...]] = set()
    first, rest = [], []
    for item in planned:
        key = item.artifact_keys()[1]
        if item.to_run and key not in seen:
            seen.add(key)
            first.append(item)
        else:
            rest.append(item)
    return first + rest


class ArtifactGate:
    """May a run start now? Only when, for each of its artifact keys, a run holding that key has
    finished (the artifact is built) or no running run holds it (this run builds it)."""

    def __init__(self) -> None:
        self.built: set[tuple[str, ...]] = set()
        self.building: dict[tuple[str, ...], int] = {}

    def may_start(self, item: PlannedRun) -> bool:
        return all(key in self.built or not self.building.get(key) for key in item.artifact_keys())

    def started(self, item: PlannedRun) -> None:
        for key in item.artifact_keys():
            self.building[key] = self.building.get(key, 0) + 1

    def finished(self, item: PlannedRun) -> None:
        for key in item.artifact_keys():
            self.building[key] -= 1
            self.built.add(key)
