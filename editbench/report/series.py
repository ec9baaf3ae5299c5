"""The data behind every plot: per task and metric, one series per leaderboard label over m.

A series is the rows of one label (`editbench.leaderboard.task_rows`) across m: its points are
(m, mean, std, n). Quality metrics carry the unedited model as a series of its own (the baseline
the paper's curves are read against). The data is written as CSV beside each plot
(`plots/<task>-<metric>.csv`) and is what `editbench leaderboard --check` compares, so CI checks
the plots' content without depending on the plotting library's bytes.
"""
from __future__ import annotations

import csv
import io
from typing import Any, NamedTuple

from editbench import leaderboard as lb


class Plot(NamedTuple):
    """One plot of a task: a leaderboard column against m."""
    column: str  # key of `editbench.leaderboard.COLUMNS`
    title: str
    ylabel: str
    log_y: bool  # times, memory and residuals span orders of magnitude


PLOTS: dict[str, Plot] = {
    "es": Plot("es", "Edit success (ES) vs m", "ES", False),
    "gs": Plot("gs", "Generalization success (GS) vs m", "GS", False),
    "ls": Plot("ls", "Locality success (LS) vs m", "LS", False),
    "cf_efficacy": Plot("cf_efficacy", "CounterFact efficacy score vs m", "efficacy", False),
    "cf_paraphrase": Plot("cf_paraphrase", "CounterFact paraphrase score vs m", "paraphrase", False),
    "cf_neighbourhood": Plot("cf_neighbourhood", "CounterFact neighbourhood score vs m", "neighbourhood", False),
    "ppl": Plot("ppl", "WikiText-2 perplexity vs m", "perplexity", False),
    "edit_seconds": Plot("edit_seconds", "Edit time vs m", "edit seconds", True),
    "one_off": Plot("one_off", "One-off time (training, statistics) vs m", "one-off seconds", True),
    "peak_gib": Plot("peak_gib", "Peak memory of the edit vs m", "GiB", True),
    "mean_residual": Plot("mean_residual", "Mean residual (Fig. 8) vs m", "mean residual", True),
}
FIELDS = ["series", "m", "mean", "std", "n"]


def task_series(rows: list[dict[str, Any]]) -> dict[str, dict[str, list[tuple[int, float, float, int]]]]:
    """Metric -> series label -> [(m, mean, std, n)] sorted by m, for every plot of `PLOTS` that
    some row of the task has (the unedited rows only in plots of baseline columns)."""
    out: dict[str, dict[str, list[tuple[int, float, float, int]]]] = {}
    for metric, plot in PLOTS.items():
        column = lb.COLUMNS[plot.column]
        lines: dict[str, list[tuple[int, float, float, int]]] = {}
        for row in rows:
            if row["baseline"] and not column.baseline:
                continue
            mean, std, count = row["cells"].get(plot.column, (0.0, 0.0, 0))
            if count:
                lines.setdefault(row["label"], []).append((row["m"], mean, std, count))
        if any(not row["baseline"] and row["label"] in lines for row in rows):
            out[metric] = {label: sorted(points) for label, points in sorted(lines.items())}
    return out


def to_csv(lines: dict[str, list[tuple[int, float, float, int]]]) -> str:
    """The CSV of one plot: a row per point, `series,m,mean,std,n` (floats at full precision)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(FIELDS)
    for label, points in lines.items():
        for m, mean, std, count in points:
            writer.writerow([label, m, repr(mean), repr(std), count])
    return buffer.getvalue()


def from_csv(text: str) -> dict[str, list[tuple[int, float, float, int]]]:
    """`to_csv`'s inverse (series in the order they appear)."""
    lines: dict[str, list[tuple[int, float, float, int]]] = {}
    for row in csv.DictReader(io.StringIO(text)):
        lines.setdefault(row["series"], []).append((int(row["m"]), float(row["mean"]), float(row["std"]), int(row["n"])))
    return lines
