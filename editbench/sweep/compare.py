"""The reproduction check (`editbench sweep ... --compare results`): every run of the sweep must
have a record in the new store and a committed record of the same identity, with the same scores.

ES/GS/LS/retention (and their `_exact` forms), before and after the edit, must be equal within the
preset's tolerance for the method (`[compare]`: 0 by default, exactly equal, which holds for the
methods that are deterministic on CPU such as FT and MEMIT). Each difference is one line.
"""
from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from editbench.sweep.identity import Identity, record_identity
from editbench.sweep.plan import PlannedRun, stored_records
from editbench.sweep.presets import Tolerance

COMPARED = ("es", "gs", "ls", "retention", "es_exact", "gs_exact", "ls_exact")


def newest(records: list[dict[str, Any]] | None) -> dict[str, Any] | None:
    return max(records, key=lambda r: str(r.get("timestamp", ""))) if records else None


def committed_records(folder: Path) -> dict[Identity, list[dict[str, Any]]]:
    """Records of every `*.jsonl` in `folder` by identity (`EditbenchError` when it holds none)."""
    from editbench.results import read_runs

    found: dict[Identity, list[dict[str, Any]]] = {}
    for record in read_runs(Path(folder)):
        found.setdefault(record_identity(record), []).append(record)
    return found


def differences(planned: list[PlannedRun], new_store: Path, committed: Path, tolerance: Tolerance) -> list[str]:
    """One line per missing record or differing score; empty when the sweep reproduces `committed`."""
    new, old = stored_records(new_store), committed_records(committed)
    lines = []
    for item in planned:
        if item.decision == "skip":
            continue
        label = item.run.label()
        mine, theirs = newest(new.get(item.identity)), newest(old.get(item.identity))
        if mine is None:
            lines.append(f"{label}: no new record in {new_store} (the run failed)")
            continue
        if theirs is None:
            lines.append(f"{label}: no committed record of this run in {committed}")
            continue
        allowed = tolerance.of(item.run.method)
        for side in ("pre", "post"):
            for key in COMPARED:
                a, b = mine[side].get(key), theirs[side].get(key)
                if not _close(a, b, allowed):
                    lines.append(f"{label}: {side}.{key} = {a!r}, committed {b!r} "
                                 f"(run {theirs.get('run_id')}; tolerance {allowed:g})")
    return lines


def _close(a: Any, b: Any, allowed: float) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a == b if allowed == 0 else math.isclose(a, b, rel_tol=0.0, abs_tol=allowed)
