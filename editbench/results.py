"""The results store: one JSON line per run in `<out>/runs.jsonl`, per-edit outcomes beside it.

Writes are atomic: a new line is appended by writing the whole file anew to a temporary file
and renaming it (under an advisory lock), so a crash never leaves a half-written record, and a
failed run leaves no file at all. A corrupt line is skipped with a warning when reading.

Record schema (at least these keys; metrics are fractions in [0, 1], null when not available):
    {"run_id", "timestamp", "method", "task", "edits", "seed",
     "config": {"method": {...}, "task": {...}},
     "pre": {"es", "gs", "ls", "retention", "es_exact", "gs_exact", "ls_exact"}, "post": {...},
     "train_seconds", "edit_seconds", "peak_memory_bytes",
     "phases": {"load"|"prepare"|"evaluate_pre"|"edit"|"evaluate_post": {"seconds", "peak_memory_bytes", ...}},
     "method_stats": {...}, "prepare_info": {...}, "device", "dtype", "versions": {...}, "commit",
     "model_fingerprint", "data_sha256": {...}, "edits_file"}

`commit` is the code's git hash, ending in "-dirty" for an uncommitted tree (null when unknown):
such runs never reach the leaderboards. `prepare_info` is what `Method.prepare` returned; the
leaderboards read its optional `checkpoint` (the trained artifact used), `reused` (bool) and
`one_off_seconds` (what building that artifact cost, also when it was reused).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import sys
from pathlib import Path
from typing import Any, Iterator

from editbench.files import write_atomic

RUNS_FILE = "runs.jsonl"
EDITS_DIR = "edits"


@contextlib.contextmanager
def _locked(folder: Path) -> Iterator[None]:
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / ".lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def write_run(out: Path, record: dict[str, Any], per_edit: list[dict[str, Any]]) -> Path:
    """Write the per-edit file, then append `record` to `out/runs.jsonl`; returns the runs file."""
    out = Path(out)
    with _locked(out):
        edits_path = out / EDITS_DIR / f"{record['run_id']}.jsonl"
        edits_path.parent.mkdir(parents=True, exist_ok=True)
        write_atomic(edits_path, "".join(json.dumps(row, sort_keys=True) + "\n" for row in per_edit).encode())
        record = {**record, "edits_file": str(edits_path.relative_to(out))}
        runs = out / RUNS_FILE
        existing = runs.read_text(encoding="utf-8") if runs.exists() else ""
        if existing and not existing.endswith("\n"):
            existing += "\n"
        write_atomic(runs, (existing + json.dumps(record, sort_keys=True) + "\n").encode())
    return runs


def read_runs(folder: Path) -> list[dict[str, Any]]:
    """All records of every `*.jsonl` directly under `folder`; corrupt lines are skipped with a warning."""
    records = []
    for path in sorted(Path(folder).glob("*.jsonl")):
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
                if not isinstance(record, dict) or "method" not in record or "task" not in record:
                    raise ValueError("not a run record")
            except ValueError as exc:
                print(f"editbench: warning: skipping {path}:{number}: {exc}", file=sys.stderr)
                continue
            records.append(record)
    return records
