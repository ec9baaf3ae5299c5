"""The results store: one JSON line per run in `<out>/runs.jsonl`, per-edit outcomes beside it.

`editbench run` writes to a personal store by default (`default_store()`: `$EDITBENCH_RESULTS`,
else `$XDG_DATA_HOME/editbench/results`, i.e. `~/.local/share/editbench/results`); the project's
curated `results/` is written only with an explicit `--out results`. `prepare_store` creates the
folder and checks it is writable before a run does any work.

Writes are atomic: a new line is appended by writing the whole file anew to a temporary file
and renaming it (under an advisory lock), so a crash never leaves a half-written record, and a
failed run leaves no file at all. A corrupt line, or a record that does not follow the schema
below (`check_record`), is skipped with a warning naming the file and the line when reading.

Record schema (at least these keys; metrics are fractions in [0, 1] unless `editbench.metrics.RANGES`
says otherwise (perplexity, differences), null when not available):
    {"run_id", "timestamp", "method", "task", "edits", "seed",
     "config": {"method": {...}, "task": {...}},
     "pre": {"es", "gs", "ls", "retention", "es_exact", "gs_exact", "ls_exact"}, "post": {...},
     "train_seconds", "edit_seconds", "peak_memory_bytes",
     "phases": {"load"|"prepare"|"evaluate_pre"|"edit"|"evaluate_post": {"seconds", "peak_memory_bytes", ...}},
     "method_stats": {...}, "prepare_info": {...}, "device", "dtype", "versions": {...}, "commit", "code",
     "model_fingerprint", "data_sha256": {...}, "edits_file"}

`commit` is the code's git hash, ending in "-dirty" for an uncommitted tree (null when unknown):
such runs never reach the leaderboards. `code` is `source.source_hash` of the run's method and task at
that commit: a hash of the files the run executes (commits that change none of them share it), by
which the leaderboards pool runs. `prepare_info` is what `Method.prepare` returned; the
leaderboards read its optional `checkpoint` (the trained artifact used), `reused` (bool) and
`one_off_seconds` (what building that artifact cost, also when it was reused).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from editbench.errors import EditbenchError
from editbench.files import write_atomic

log = logging.getLogger(__name__)

RUNS_FILE = "runs.jsonl"
EDITS_DIR = "edits"
METRIC_KEYS = ("es", "gs", "ls")  # the keys every `pre` / `post` must hold (a number in [0, 1] or null)


def default_store() -> Path:
    """The personal results store: `$EDITBENCH_RESULTS`, else `$XDG_DATA_HOME/editbench/results`."""
    if os.environ.get("EDITBENCH_RESULTS"):
        return Path(os.environ["EDITBENCH_RESULTS"]).expanduser()
    data_home = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data_home) / "editbench" / "results"


def prepare_store(out: Path) -> list[Path]:
    """Create `out` (and parents) and check that a file can be written there; returns the folders
    it created (for the caller to remove if the run fails). `EditbenchError` when it cannot."""
    out = Path(out).expanduser()
    missing = []
    folder = out
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    if not folder.is_dir():
        raise EditbenchError(f"--out {str(out)!r} cannot be a results folder: {folder} is a file")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=out):
            pass
        runs = out / RUNS_FILE
        if runs.exists() and not os.access(runs, os.W_OK):
            raise PermissionError(f"{runs} is read-only")
    except OSError as exc:
        remove_created(missing)
        raise EditbenchError(f"--out {str(out)!r} is not writable ({exc.strerror or exc})") from None
    return missing


def remove_created(folders: list[Path]) -> None:
    """Remove the folders `prepare_store` created, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            break


def check_record(record: Any) -> str | None:
    """Why `record` is not a usable run record (None when it is): the keys the leaderboards read."""
    from editbench.metrics import metric_range

    if not isinstance(record, dict):
        return "not a JSON object"
    for key in ("method", "task"):
        if not isinstance(record.get(key), str) or not record[key]:
            return f"{key!r} is missing or not a name"
    edits = record.get("edits")
    if not isinstance(edits, int) or isinstance(edits, bool) or edits < 1:
        return f"'edits' is {edits!r}, expected an integer >= 1"
    for side in ("pre", "post"):
        metrics = record.get(side)
        if not isinstance(metrics, dict):
            return f"{side!r} is missing (expected the metrics before/after the edit)"
        for key in METRIC_KEYS:
            if key not in metrics:
                return f"{side}.{key} is missing"
        for key, value in metrics.items():
            if value is None:
                continue
            low, high = metric_range(key)
            if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) \
                    or not low <= value <= high:
                expected = "a fraction in [0, 1]" if (low, high) == (0.0, 1.0) else f"a number in [{low:g}, {high:g}]"
                return f"{side}.{key} is {value!r}, expected {expected} or null"
    for key in ("train_seconds", "edit_seconds", "peak_memory_bytes"):
        value = record.get(key)
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool)
                                  or not math.isfinite(value) or value < 0):
            return f"{key!r} is {value!r}, expected a non-negative number"
    return None


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


def run_files(folder: Path) -> list[Path]:
    """The `*.jsonl` files directly under `folder`; `EditbenchError` when the folder is missing
    or holds none (so that nothing is ever rendered from a mistyped path)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise EditbenchError(f"results folder {str(folder)!r} does not exist (expected a folder holding {RUNS_FILE})")
    files = sorted(folder.glob("*.jsonl"))
    if not files:
        raise EditbenchError(f"results folder {str(folder)!r} holds no *.jsonl file (expected {RUNS_FILE})")
    return files


def read_runs(folder: Path) -> list[dict[str, Any]]:
    """All records of every `*.jsonl` directly under `folder` (which must hold at least one); a corrupt
    line or a record that fails `check_record` is skipped with a warning naming file and line."""
    records = []
    for path in run_files(folder):
        for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except ValueError as exc:
                log.warning(f"skipping {path}:{number}: not JSON ({exc})")
                continue
            problem = check_record(record)
            if problem:
                log.warning(f"skipping {path}:{number}: not a run record: {problem}")
                continue
            records.append(record)
    return records


def add_source_hashes(out: Path, source_hash: Callable[[dict[str, Any]], str | None]) -> int:
    """Give every record of `out/runs.jsonl` from a clean commit that has no `code` the hash of the
    source it ran (`source_hash(record)`, e.g. `source.source_hash` of its method, task and commit):
    records written before the field existed. The file is rewritten atomically under the store's lock, every other byte of a
    record kept; returns how many records got one."""
    out = Path(out)
    runs = out / RUNS_FILE
    with _locked(out):
        lines = runs.read_text(encoding="utf-8").splitlines()
        added = 0
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            record = json.loads(line)
            commit = record.get("commit")
            if "code" in record or not commit or str(commit).endswith("-dirty"):
                continue
            record["code"] = source_hash(record)
            lines[i] = json.dumps(record, sort_keys=True)
            added += 1
        if added:
            write_atomic(runs, "".join(line + "\n" for line in lines).encode())
    return added
