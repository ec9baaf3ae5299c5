"""Markdown leaderboards per task from the results store (pandas + tabulate).

Only runs of the same experiment are pooled: one row per (edits, method, resolved config, dtype,
device, model, data, commit), mean ± std over its runs (seeds). Fields that do not change results
(`IGNORED`: the scoring batch size, and the method's `seed`, which follows the run seed) do not
split rows. A row's label names what sets it apart from the other rows of its method. Runs from a
dirty or unknown tree are never shown (skipped with a warning; `editbench leaderboard --check`
fails on them). Each table opens every block of edits with the unedited model's scores.

`COLUMNS` declares each column's direction; the best value of each column (per number of edits)
is marked in bold. Rendering is deterministic, so CI can regenerate the tables from the committed
results and compare (`editbench leaderboard --check`).
"""
from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path
from typing import Any, Iterable

from editbench.metrics import DEFINITIONS

# column -> (record path, "higher"/"lower" is better, format, heading)
COLUMNS: dict[str, tuple[tuple[str, ...], str, str, str]] = {
    "es": (("post", "es"), "higher", "{:.3f}", "ES"),
    "gs": (("post", "gs"), "higher", "{:.3f}", "GS"),
    "ls": (("post", "ls"), "higher", "{:.3f}", "LS"),
    "retention": (("post", "retention"), "higher", "{:.3f}", "retention"),
    "es_exact": (("post", "es_exact"), "higher", "{:.3f}", "ES exact"),
    "one_off": (("one_off",), "lower", "{:.1f}", "one-off s"),
    "edit_seconds": (("edit_seconds",), "lower", "{:.1f}", "edit s"),
    "peak_gib": (("peak_memory_bytes",), "lower", "{:.2f}", "edit peak GiB"),
}
METRICS = ("es", "gs", "ls", "retention", "es_exact")  # the columns the unedited row has (from `pre`)
# (config part, field) that never split a group: scoring batch size; the method seed follows the
# run seed (each seed of a trained editor is an independently trained editor, see `spread`).
IGNORED = {("task", "batch_size"), ("method", "seed")}
UNEDITED = "unedited"


def is_dirty(record: dict[str, Any]) -> bool:
    """True for a run from an uncommitted (`-dirty`) or unknown tree."""
    commit = record.get("commit")
    return not commit or str(commit).endswith("-dirty")


def committed(records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """(runs from a clean committed tree, number of the others)."""
    records = list(records)
    clean = [r for r in records if not is_dirty(r)]
    return clean, len(records) - len(clean)


def one_off_seconds(record: dict[str, Any]) -> float | None:
    """Seconds the method's one-off artifact (trained editor, statistics) cost to build.

    A reused artifact reports its build time from its provenance (`prepare_info.one_off_seconds`);
    a run that built it (or had nothing to build, like FT) reports its prepare time; a reuse that
    does not know the cost is None (shown "n/a"), never its own near-zero prepare time.
    """
    info = record.get("prepare_info") or {}
    if info.get("one_off_seconds") is not None:
        return float(info["one_off_seconds"])
    if not info or info.get("reused") is False:
        value = record.get("train_seconds")
        return None if value is None else float(value)
    return None


def _get(record: dict[str, Any], path: tuple[str, ...]) -> float | None:
    if path == ("one_off",):
        return one_off_seconds(record)
    value: Any = record
    for key in path:
        value = value.get(key) if isinstance(value, dict) else None
    if value is None:
        return None
    return float(value) / 2**30 if path == ("peak_memory_bytes",) else float(value)


def _short_hash(value: Any) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True).encode()).hexdigest()[:8]


def settings(record: dict[str, Any]) -> dict[str, str]:
    """Everything that makes two runs of a method the same experiment, as display strings:
    `method.KEY` / `task.KEY` of the resolved configs (less `IGNORED`), dtype, device, model,
    data and commit."""
    out = {}
    config = record.get("config") or {}
    for part in ("method", "task"):
        for key, value in sorted((config.get(part) or {}).items()):
            if (part, key) not in IGNORED:
                out[f"{part}.{key}"] = (value or "''") if isinstance(value, str) else json.dumps(value)
    out["dtype"] = str(record.get("dtype") or "")
    out["device"] = str(record.get("device") or "")
    out["model"] = str(record.get("model_fingerprint") or "")[:8]
    out["data"] = _short_hash(record.get("data_sha256") or {})
    out["commit"] = str(record.get("commit") or "")[:7]
    return out


def _differing(groups: list[dict[str, str]], skip: set[str]) -> list[str]:
    keys = sorted({k for g in groups for k in g} - skip)
    return [k for k in keys if len({g.get(k) for g in groups}) > 1]


def _labels(settings_of: dict[Any, dict[str, str]], name_of: dict[Any, str], several_commits: bool) -> dict[Any, str]:
    """Group id -> `name (key=value, ...) @commit`, naming the settings in which the groups of the
    same name differ (the commit's short hash when the table holds several commits)."""
    labels = {}
    for name in set(name_of.values()):
        ids = [i for i in settings_of if name_of[i] == name]
        keys = _differing([settings_of[i] for i in ids], {"commit"})
        shorts = [k.partition(".")[2] or k for k in keys]
        for i in ids:
            parts = [f"{short if shorts.count(short) == 1 else key}={settings_of[i].get(key, '')}"
                     for key, short in zip(keys, shorts)]
            label = name + (f" ({', '.join(parts)})" if parts else "")
            labels[i] = label + (f" @{settings_of[i]['commit']}" if several_commits else "")
    return labels


def spread(records: list[dict[str, Any]]) -> str:
    """What the ± of a group varies: `sample` (the evaluation sample: one shared trained artifact,
    or nothing trained), `sample + editor` (each run also trained its own editor), `unknown`."""
    if len(records) < 2:
        return "–"
    checkpoints = [(r.get("prepare_info") or {}).get("checkpoint") for r in records]
    present = [c for c in checkpoints if c]
    if not present:
        return "sample"
    if len(present) < len(checkpoints):
        return "unknown"
    return "sample" if len(set(present)) == 1 else "sample + editor"


def _artifact_costs(records: list[dict[str, Any]]) -> list[float]:
    """One-off cost per distinct trained artifact of a group (runs sharing a checkpoint count
    once); runs without a checkpoint (nothing trained, or a shared cache) count once together."""
    costs: dict[str, float] = {}
    for r in records:
        cost = one_off_seconds(r)
        if cost is not None:
            key = str((r.get("prepare_info") or {}).get("checkpoint") or "")
            costs[key] = max(cost, costs.get(key, cost))
    return list(costs.values())


def _stats(values: list[float | None]) -> tuple[float, float, int]:
    known = [v for v in values if v is not None and v == v]
    if not known:
        return float("nan"), 0.0, 0
    mean = sum(known) / len(known)
    std = (sum((v - mean) ** 2 for v in known) / len(known)) ** 0.5
    return mean, std, len(known)


def _cell(stats: tuple[float, float, int], fmt: str, best: bool) -> str:
    mean, std, count = stats
    if count == 0:  # metric not available (for this task, or an unknown one-off cost)
        return "n/a"
    text = fmt.format(mean) + (f" ± {fmt.format(std)}" if count > 1 else "")
    return f"**{text}**" if best else text


def _rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rows of one task's table: for each edits, the unedited baselines, then one row per group."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        key = (int(r["edits"]), r["method"], tuple(sorted(settings(r).items())))
        groups.setdefault(key, []).append(r)
    # The unedited model of a group: the same settings less the method's.
    baselines: dict[tuple, list[dict[str, Any]]] = {}
    for (edits, _, items), runs in groups.items():
        rest = tuple((k, v) for k, v in items if not k.startswith("method."))
        baselines.setdefault((edits, rest), []).extend(runs)
    several_commits = len({dict(items)["commit"] for _, _, items in groups}) > 1
    group_labels = _labels({k: dict(k[2]) for k in groups}, {k: k[1] for k in groups}, several_commits)
    base_labels = _labels({k: dict(k[1]) for k in baselines}, {k: UNEDITED for k in baselines}, several_commits)

    rows = []
    for base_key, runs in baselines.items():
        edits = base_key[0]
        by_seed: dict[Any, list[dict[str, Any]]] = {}
        for r in runs:  # one sample per seed: every method scored the same unedited model on it
            by_seed.setdefault(r.get("seed"), []).append(r)
        cells = {}
        for col in METRICS:
            per_seed = [_stats([_get(r, ("pre", col)) for r in rs]) for rs in by_seed.values()]
            cells[col] = _stats([m if n else None for m, _, n in per_seed])
        rows.append({"edits": edits, "label": base_labels[base_key], "baseline": True, "runs": len(by_seed),
                     "spread": "sample" if len(by_seed) > 1 else "–", "cells": cells})
    for key, runs in groups.items():
        cells = {col: _stats([_get(r, spec[0]) for r in runs]) for col, spec in COLUMNS.items()}
        cells["one_off"] = _stats(_artifact_costs(runs))
        rows.append({"edits": key[0], "label": group_labels[key], "baseline": False, "runs": len(runs),
                     "spread": spread(runs), "cells": cells})
    rows.sort(key=lambda row: (row["edits"], not row["baseline"], row["label"]))
    return rows


def render_task(records: list[dict[str, Any]], task: str) -> str:
    """Markdown table for one task's (committed) runs."""
    import pandas as pd

    rows = _rows([r for r in records if r["task"] == task])
    best: dict[tuple[int, str], float] = {}
    for edits in sorted({row["edits"] for row in rows}):
        block = [row for row in rows if row["edits"] == edits and not row["baseline"]]
        for col, (_, direction, _, _) in COLUMNS.items():
            values = [row["cells"][col][0] for row in block if row["cells"][col][2]]
            if len(values) > 1:
                best[(edits, col)] = max(values) if direction == "higher" else min(values)
    table = []
    for row in rows:
        cells = [row["label"], row["edits"], row["runs"], row["spread"]]
        for col, (_, _, fmt, _) in COLUMNS.items():
            if row["baseline"] and col not in METRICS:
                cells.append("–")
                continue
            stats = row["cells"][col]
            is_best = not row["baseline"] and (row["edits"], col) in best and stats[2] > 0 and stats[0] == best[(row["edits"], col)]
            cells.append(_cell(stats, fmt, is_best))
        table.append(cells)
    headers = ["method", "edits", "runs", "spread"] + [spec[3] for spec in COLUMNS.values()]
    devices = ", ".join(sorted({str(r.get("device", "")) for r in records if r["task"] == task}))
    lines = [
        f"# {task}",
        "",
        f"Post-edit metrics, mean ± std over runs (seeds); best per number of edits in bold. Device: {devices}.",
        "Runs are pooled only when method, resolved config (less the scoring batch size and the method seed), "
        "dtype, device, model, data and commit all agree; a label names what sets a row apart.",
        "Generated by `editbench leaderboard` from the results store: do not edit by hand.",
        "",
        pd.DataFrame(table, columns=headers).to_markdown(index=False, tablefmt="github", disable_numparse=True),
        "",
        "Columns: " + "; ".join(f"**{spec[3]}** ({spec[1]} is better)" for spec in COLUMNS.values()) + ".",
        "",
        f"- `{UNEDITED}`: the model before the edit (`pre` scores), averaged over the seeds' evaluation samples.",
        "- **spread** (what the ± varies over): `sample` = the evaluation sample only (all runs share one trained "
        "artifact, or nothing is trained); `sample + editor` = the evaluation sample and an independently trained "
        "editor per seed; `unknown` = some runs do not say which editor they used.",
        "- **one-off s**: seconds to build the method's one-off artifact (trained editor, MEMIT statistics), "
        "mean over distinct artifacts, taken from the artifact's provenance when a run reused it; "
        "n/a when a reuse does not know it.",
    ]
    lines += [f"- `{name}`: {text}" for name, (_, text) in DEFINITIONS.items()]
    return "\n".join(lines) + "\n"


def render(records: list[dict[str, Any]]) -> dict[str, str]:
    """File name -> markdown for every task with committed results, plus an index `README.md`.
    Runs from a dirty or unknown tree are skipped with a warning on stderr."""
    records, skipped = committed(records)
    if skipped:
        print(f"editbench: warning: skipping {skipped} run(s) from a dirty or unknown tree (commit null or "
              "'-dirty'): re-run them from a clean commit", file=sys.stderr)
    if not records:
        return {"README.md": "# Leaderboards\n\nNo results yet.\n"}
    tasks = sorted({r["task"] for r in records})
    files = {f"{task}.md": render_task(records, task) for task in tasks}
    index = ["# Leaderboards", "", "Generated by `editbench leaderboard` from the committed results store.", ""]
    index += [f"- [{task}]({task}.md): {sum(r['task'] == task for r in records)} runs" for task in tasks]
    files["README.md"] = "\n".join(index) + "\n"
    return files


def write(files: dict[str, str], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")


def check(files: dict[str, str], folder: Path) -> list[str]:
    """Names of the tables that differ from (or are missing in) `folder`; stale extra tables too."""
    stale = [name for name, text in files.items()
             if not (folder / name).is_file() or (folder / name).read_text(encoding="utf-8") != text]
    extra = [p.name for p in folder.glob("*.md") if p.name not in files]
    return sorted(stale + extra)
