"""The benchmark table: one line per (method, phase, model, dtype, m) with wall time and peak memory.

    python benchmarks/report.py .benchmarks/run.json                 # one run
    python benchmarks/report.py .benchmarks/old.json .benchmarks/run.json   # the second vs the first

Reads pytest-benchmark JSON files (`--benchmark-json`, each benchmark's `extra_info` holds the row
of `benchmarks/points.py`, or several under `points`) or the GPU sweep's JSON (`{"rows": [...]}`). Given two files, adds the
ratios new / old of time and peak memory for the points both measured (runs of two commits).
The pytest suite prints the same table at its end (`tests/conftest.py`) from `ROWS`.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

KEY = ["method", "phase", "model", "dtype", "m"]
ROWS: list[dict[str, Any]] = []  # filled by `record` during a pytest run


def record(benchmark, point: dict[str, Any], **context) -> dict[str, Any]:
    """Store `point` (plus `context`: model, dtype, ...) in the benchmark's extra_info (the JSON) and `ROWS`."""
    full = {**context, **point}
    benchmark.extra_info.update(full)
    ROWS.append(full)
    return full


def frame(rows: list[dict[str, Any]]):
    """The rows as a DataFrame: KEY columns, wall and CPU seconds, peak MiB, peak above the phase's start MiB."""
    import pandas as pd

    df = pd.DataFrame(rows)
    for column in KEY:
        if column not in df:
            df[column] = None
    mib = 2 ** 20
    df["peak_mib"] = df.get("peak_memory_bytes", pd.Series(dtype=float)) / mib
    df["above_start_mib"] = df.get("peak_above_start_bytes", pd.Series(dtype=float)) / mib
    if "peak_gpu_nvml_bytes" in df and df["peak_gpu_nvml_bytes"].notna().any():
        df["nvml_mib"] = df["peak_gpu_nvml_bytes"] / mib
    columns = KEY + ["seconds", "cpu_seconds", "peak_mib", "above_start_mib"] + (["nvml_mib"] if "nvml_mib" in df else [])
    for column in columns:
        if column not in df:  # rows of older runs or of other benchmarks
            df[column] = None
    columns += [c for c in ("error",) if c in df]
    return df[columns].sort_values(KEY[:-1], kind="stable").reset_index(drop=True)


def table(rows: list[dict[str, Any]]) -> str:
    """A markdown table of `rows` (pandas + tabulate)."""
    return frame(rows).to_markdown(index=False, floatfmt=".3g")


def rows_of(path: Path) -> list[dict[str, Any]]:
    """The rows of a pytest-benchmark JSON file or of a GPU sweep's JSON file."""
    data = json.loads(Path(path).read_text())
    if "rows" in data:
        return data["rows"]
    rows = []
    for bench in data.get("benchmarks", []):
        info = bench.get("extra_info") or {}
        # A benchmark of several points (Fig. 9) lists them under `points`.
        for point in info.get("points", [info] if info else []):
            rows.append({**{k: v for k, v in info.items() if k != "points"}, **point, "name": bench["name"]})
    return rows


def compare(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> str:
    """new / old ratios of time and peak memory per (method, phase, model, dtype, m) in both."""
    a, b = frame(old), frame(new)
    for df in (a, b):
        df[KEY] = df[KEY].astype(str)
    both = a.merge(b, on=KEY, suffixes=("_old", "_new"))
    both["time_ratio"] = both["seconds_new"] / both["seconds_old"]
    both["peak_ratio"] = both["peak_mib_new"] / both["peak_mib_old"]
    return both[KEY + ["seconds_old", "seconds_new", "time_ratio", "peak_mib_old", "peak_mib_new", "peak_ratio"]] \
        .to_markdown(index=False, floatfmt=".3g")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="+", type=Path, help="one JSON file, or two to compare (old, new)")
    args = parser.parse_args(argv)
    if len(args.files) > 2:
        parser.error("give one file, or two to compare")
    runs = [rows_of(p) for p in args.files]
    if not all(runs):
        print(f"no benchmark rows in {', '.join(str(p) for p, r in zip(args.files, runs) if not r)}", file=sys.stderr)
        return 1
    print(table(runs[-1]) if len(runs) == 1 else compare(*runs))
    return 0


if __name__ == "__main__":
    sys.exit(main())
