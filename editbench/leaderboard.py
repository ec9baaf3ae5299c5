"""The leaderboards' core: which runs are one experiment, and their statistics.

Only runs of the same experiment are pooled: one row per (edits m, rounds, method, resolved config,
dtype, device, model, data, code, libraries), mean ± std over its runs (seeds). `code` is the
record's source hash (`editbench.source`: the files its run executes; commits that change none of
them share it; the commit for a record without one) and `libraries` the torch and transformers versions. Fields that do not change
results (`IGNORED`: the scoring batch size, and the method's `seed`, which follows the run seed) do
not split rows; a method field that follows the run's m (`follows_m`: a trained editor's training
m, when no preset or `--set` fixes it) is shown as `m`, so the same experiment at several m keeps
one label (one line in the plots). A row's label names what sets it apart from the other rows of its method.
A task's table shows each method at the code of its newest run (`split_by_newest_code`); the runs
at a method's earlier code are listed apart. Runs from a dirty or unknown tree are never shown
(skipped with a warning; `editbench leaderboard --check` fails on them). Every block of one m (and
rounds) opens with the unedited model's scores.

`COLUMNS` declares each column's record path, direction, format and heading; optional columns
(CounterFact probability scores, perplexity, the mean residual) appear only where a task's runs
have them. Rendering lives in `editbench.report` (tables, plot data, plots, HTML page).
"""
from __future__ import annotations

import hashlib
import json
import logging
from typing import Any, Iterable, NamedTuple

log = logging.getLogger(__name__)

UNEDITED = "unedited"


class Column(NamedTuple):
    """One leaderboard column: where a run keeps it, which way is better, how it is shown."""
    path: tuple[str, ...]  # path in the record (post-edit side for metrics)
    direction: str  # "higher" or "lower" is better
    fmt: str
    heading: str
    optional: bool = False  # shown only when some run of the task has it
    baseline: bool = False  # the unedited row has it too (read from `pre`)


COLUMNS: dict[str, Column] = {
    "es": Column(("post", "es"), "higher", "{:.3f}", "ES", baseline=True),
    "gs": Column(("post", "gs"), "higher", "{:.3f}", "GS", baseline=True),
    "ls": Column(("post", "ls"), "higher", "{:.3f}", "LS", baseline=True),
    "retention": Column(("post", "retention"), "higher", "{:.3f}", "retention", baseline=True),
    "es_exact": Column(("post", "es_exact"), "higher", "{:.3f}", "ES exact", baseline=True),
    "cf_efficacy": Column(("post", "cf_efficacy"), "higher", "{:.3f}", "CF efficacy", True, True),
    "cf_paraphrase": Column(("post", "cf_paraphrase"), "higher", "{:.3f}", "CF paraphrase", True, True),
    "cf_neighbourhood": Column(("post", "cf_neighbourhood"), "higher", "{:.3f}", "CF neighbourhood", True, True),
    "ppl": Column(("post", "ppl"), "lower", "{:.2f}", "ppl", True, True),
    "one_off": Column(("one_off",), "lower", "{:.1f}", "one-off s"),
    "edit_seconds": Column(("edit_seconds",), "lower", "{:.1f}", "edit s"),
    "peak_gib": Column(("peak_memory_bytes",), "lower", "{:.2f}", "edit peak GiB"),
    "mean_residual": Column(("method_stats", "mean_residual"), "lower", "{:.3g}", "mean residual", True),
}
# (config part, field) that never split a group: scoring batch size; the method seed follows the
# run seed (each seed of a trained editor is an independently trained editor, see `spread`).
IGNORED = {("task", "batch_size"), ("method", "seed")}
FOLLOWS_M = "m"  # the shown value of a method field that follows the run's number of edits

Stats = tuple[float, float, int]  # (mean, std, count of known values); count 0: not available


def is_dirty(record: dict[str, Any]) -> bool:
    """True for a run from an uncommitted (`-dirty`) or unknown tree."""
    commit = record.get("commit")
    return not commit or str(commit).endswith("-dirty")


def committed(records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], int]:
    """(runs from a clean committed tree, number of the others)."""
    records = list(records)
    clean = [r for r in records if not is_dirty(r)]
    return clean, len(records) - len(clean)


def warn_dirty(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The committed runs of `records`, with a warning on stderr naming how many were skipped."""
    clean, skipped = committed(records)
    if skipped:
        log.warning(f"skipping {skipped} run(s) from a dirty or unknown tree (commit null or "
                    "'-dirty'): re-run them from a clean commit")
    return clean


def code_of(record: dict[str, Any]) -> str:
    """The code a run executed: its source hash, else its commit ('' when neither is known)."""
    return str(record.get("code") or record.get("commit") or "")


def split_by_newest_code(records: list[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(the runs of each (task, method) at the code of its newest run, the runs at other code).

    The newest run is the one with the latest `timestamp` (ties: the larger code, so the split
    does not depend on the order of the store). What a leaderboard shows as a method's results is
    its latest measured code; older code's runs stay in the store as its history.
    """
    newest: dict[tuple[str, str], tuple[str, str]] = {}
    for r in records:
        key, stamp = (r["task"], r["method"]), (str(r.get("timestamp") or ""), code_of(r))
        if key not in newest or stamp > newest[key]:
            newest[key] = stamp
    current = [r for r in records if code_of(r) == newest[r["task"], r["method"]][1]]
    earlier = [r for r in records if code_of(r) != newest[r["task"], r["method"]][1]]
    return current, earlier


def rounds(record: dict[str, Any]) -> int:
    """Rounds of sequential editing (1: one batch of m edits, the default and older records)."""
    value = record.get("rounds")
    return int(value) if isinstance(value, int) and not isinstance(value, bool) and value >= 1 else 1


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


def value(record: dict[str, Any], path: tuple[str, ...]) -> float | None:
    """The number at `path` in `record` (`("one_off",)`: `one_off_seconds`; peak memory in GiB)."""
    if path == ("one_off",):
        return one_off_seconds(record)
    found: Any = record
    for key in path:
        found = found.get(key) if isinstance(found, dict) else None
    if not isinstance(found, (int, float)) or isinstance(found, bool):
        return None
    return float(found) / 2**30 if path == ("peak_memory_bytes",) else float(found)


def _short_hash(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:8]


def follows_m(records: list[dict[str, Any]]) -> set[str]:
    """The method fields that follow the run's m in `records` (runs of one method): equal to the
    run's `edits` in every run, over at least two different m (a trained editor's training m when no
    preset or `--set` fixes it). A field that merely equals m at one m is not among them."""
    if len({r["edits"] for r in records}) < 2:
        return set()
    fields = set.intersection(*(set((r.get("config") or {}).get("method") or {}) for r in records))
    return {key for key in fields
            if all(r["config"]["method"][key] == r["edits"] and not isinstance(r["config"]["method"][key], bool)
                   for r in records)}


def settings(record: dict[str, Any], following: set[str] = frozenset()) -> dict[str, str]:
    """Everything that makes two runs of a method the same experiment, as display strings:
    `method.KEY` / `task.KEY` of the resolved configs (less `IGNORED`), dtype, device, model,
    data, code (the source hash, else the commit) and libraries (torch, transformers). The method
    fields in `following` (`follows_m`) read `FOLLOWS_M`."""
    out = {}
    config = record.get("config") or {}
    for part in ("method", "task"):
        for key, setting in sorted((config.get(part) or {}).items()):
            if (part, key) in IGNORED:
                continue
            if part == "method" and key in following:
                out[f"{part}.{key}"] = FOLLOWS_M
            else:
                out[f"{part}.{key}"] = (setting or "''") if isinstance(setting, str) else json.dumps(setting)
    out["dtype"] = str(record.get("dtype") or "")
    out["device"] = str(record.get("device") or "")
    out["model"] = str(record.get("model_fingerprint") or "")[:8]
    out["data"] = _short_hash(record.get("data_sha256") or {})
    out["code"] = code_of(record)[:7]
    libraries = record.get("versions") or {}
    out["libraries"] = " ".join(f"{name} {libraries.get(name, '?')}" for name in ("torch", "transformers"))
    return out


def _differing(groups: list[dict[str, str]], skip: set[str]) -> list[str]:
    keys = sorted({k for g in groups for k in g} - skip)
    return [k for k in keys if len({g.get(k) for g in groups}) > 1]


def _labels(settings_of: dict[Any, dict[str, str]], name_of: dict[Any, str], several_codes: bool) -> dict[Any, str]:
    """Group id -> `name (key=value, ...) @code`, naming the settings in which the groups of the
    same name differ (the source hash when the table holds several)."""
    labels = {}
    for name in set(name_of.values()):
        ids = [i for i in settings_of if name_of[i] == name]
        keys = _differing([settings_of[i] for i in ids], {"code"})
        shorts = [k.partition(".")[2] or k for k in keys]
        for i in ids:
            parts = [f"{short if shorts.count(short) == 1 else key}={settings_of[i].get(key, '')}"
                     for key, short in zip(keys, shorts)]
            label = name + (f" ({', '.join(parts)})" if parts else "")
            labels[i] = label + (f" @{settings_of[i]['code']}" if several_codes and settings_of[i].get("code") else "")
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


def stats(values: Iterable[float | None]) -> Stats:
    """(mean, population std, count) of the known values (None and NaN left out)."""
    known = [v for v in values if v is not None and v == v]
    if not known:
        return float("nan"), 0.0, 0
    mean = sum(known) / len(known)
    std = (sum((v - mean) ** 2 for v in known) / len(known)) ** 0.5
    return mean, std, len(known)


def _with_rounds(label: str, count: int) -> str:
    return label if count == 1 else f"{label} [{count} rounds]"


def _pre_scores(record: dict[str, Any]) -> tuple:
    return tuple(value(record, ("pre",) + column.path[1:]) for column in COLUMNS.values() if column.baseline)


def _baselines(groups: dict[tuple, list[dict[str, Any]]]) -> dict[tuple, list[dict[str, Any]]]:
    """The unedited model of each group: the same settings less the method's and less the source
    hash (the methods' code differs, the model they scored does not). Runs at source hashes whose
    pre-edit scores disagree on a seed (the scoring changed) stay apart: each set of agreeing
    hashes is one baseline, keyed (and labelled) by its hashes joined with '+'."""
    pooled: dict[tuple, dict[str, list[dict[str, Any]]]] = {}  # baseline key -> code -> runs
    for (edits, count, _, items), runs in groups.items():
        rest = tuple((k, v) for k, v in items if not k.startswith("method.") and k != "code")
        pooled.setdefault((edits, count, rest), {}).setdefault(dict(items)["code"], []).extend(runs)
    out: dict[tuple, list[dict[str, Any]]] = {}
    for (edits, count, rest), by_code in pooled.items():
        agreeing: list[tuple[list[str], dict[Any, tuple]]] = []  # (codes, seed -> pre-edit scores)
        for code in sorted(by_code):
            scores = {r.get("seed"): _pre_scores(r) for r in by_code[code]}
            home = next((group for group in agreeing
                         if all(group[1].get(seed, pre) == pre for seed, pre in scores.items())), None)
            if home is None:
                agreeing.append(([code], dict(scores)))
            else:
                home[0].append(code)
                home[1].update(scores)
        for codes, _ in agreeing:
            key = rest if len(agreeing) == 1 else tuple(sorted(rest + (("code", "+".join(codes)),)))
            out[edits, count, key] = [r for code in codes for r in by_code[code]]
    return out


def task_rows(records: list[dict[str, Any]], task: str, label_code: bool = False) -> list[dict[str, Any]]:
    """Rows of one task's leaderboard, sorted by (m, rounds), the unedited baselines first in
    each block. A row: {"m", "rounds", "label", "method", "baseline", "runs", "spread",
    "cells": {column: Stats}}; the baseline rows' cells hold the `baseline` columns (from `pre`).
    Labels name the code (`@hash`) where the rows hold several, or always with `label_code`."""
    records = [r for r in records if r["task"] == task]
    following = {name: follows_m([r for r in records if r["method"] == name]) for name in {r["method"] for r in records}}
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        key = (int(r["edits"]), rounds(r), r["method"], tuple(sorted(settings(r, following[r["method"]]).items())))
        groups.setdefault(key, []).append(r)
    baselines = _baselines(groups)
    several_codes = label_code or len({dict(key[3])["code"] for key in groups}) > 1
    group_labels = _labels({k: dict(k[3]) for k in groups}, {k: k[2] for k in groups}, several_codes)
    base_codes = label_code or len({dict(key[2]).get("code") for key in baselines}) > 1
    base_labels = _labels({k: dict(k[2]) for k in baselines}, {k: UNEDITED for k in baselines}, base_codes)

    rows = []
    for base_key, runs in baselines.items():
        by_seed: dict[Any, list[dict[str, Any]]] = {}
        for r in runs:  # one sample per seed: every method scored the same unedited model on it
            by_seed.setdefault(r.get("seed"), []).append(r)
        cells = {}
        for name, column in COLUMNS.items():
            if column.baseline:
                pre = ("pre",) + column.path[1:]
                per_seed = [stats(value(r, pre) for r in rs) for rs in by_seed.values()]
                cells[name] = stats(mean if count else None for mean, _, count in per_seed)
        rows.append({"m": base_key[0], "rounds": base_key[1], "label": _with_rounds(base_labels[base_key], base_key[1]),
                     "method": UNEDITED, "baseline": True, "runs": len(by_seed),
                     "spread": "sample" if len(by_seed) > 1 else "–", "cells": cells})
    for key, runs in groups.items():
        cells = {name: stats(value(r, column.path) for r in runs) for name, column in COLUMNS.items()}
        cells["one_off"] = stats(_artifact_costs(runs))
        rows.append({"m": key[0], "rounds": key[1], "label": _with_rounds(group_labels[key], key[1]),
                     "method": key[2], "baseline": False, "runs": len(runs), "spread": spread(runs), "cells": cells})
    rows.sort(key=lambda row: (row["m"], row["rounds"], not row["baseline"], row["label"]))
    return rows


def shown_columns(rows: list[dict[str, Any]]) -> list[str]:
    """The columns of a table: every non-optional one, and the optional ones some row has."""
    return [name for name, column in COLUMNS.items()
            if not column.optional or any(row["cells"].get(name, (0, 0, 0))[2] for row in rows)]


def best(rows: list[dict[str, Any]]) -> dict[tuple[int, int, str], float]:
    """(m, rounds, column) -> the best mean among the edited rows of that block (only where at
    least two rows have the column: a lone row is not "best")."""
    out = {}
    for block in sorted({(row["m"], row["rounds"]) for row in rows}):
        edited = [row for row in rows if (row["m"], row["rounds"]) == block and not row["baseline"]]
        for name, column in COLUMNS.items():
            means = [row["cells"][name][0] for row in edited if row["cells"][name][2]]
            if len(means) > 1:
                out[(*block, name)] = max(means) if column.direction == "higher" else min(means)
    return out


def is_best(row: dict[str, Any], name: str, best_of: dict[tuple[int, int, str], float]) -> bool:
    """Whether `row`'s mean in column `name` is the best of its block (never for a baseline)."""
    key = (row["m"], row["rounds"], name)
    cell = row["cells"].get(name)
    return not row["baseline"] and key in best_of and bool(cell and cell[2]) and cell[0] == best_of[key]
