"""SVG plots of a task's metrics against m (matplotlib, imported only here and only when called).

One line per leaderboard label with a band of ± one std over seeds (error bars where a line has a
single m), the unedited model dashed in grey, m on a log₂ axis as in the paper's Figs. 4–9.
Rendering is made deterministic: the Agg backend, no pyplot state, fixed fonts and sizes, text kept
as text (`svg.fonttype: none`), a fixed `svg.hashsalt` for element ids and no date in the metadata.
Each SVG names the sha256 of the CSV it was drawn from (its `<dc:description>`), so a stale or
hand-edited plot is detected by its data (`editbench leaderboard --check`) without comparing bytes
that depend on the matplotlib version.
"""
from __future__ import annotations

import hashlib
import io
import math
import re

from editbench.report.series import Plot

RC = {
    "svg.hashsalt": "editbench",
    "svg.fonttype": "none",
    "font.family": "DejaVu Sans",
    "font.size": 9.0,
    "axes.titlesize": 10.0,
    "legend.fontsize": 7.0,
    "lines.linewidth": 1.5,
    "path.simplify": False,
}
GREY = "#7f7f7f"  # the unedited model
# tab10 less its grey, then the same colours with other markers: up to 27 distinguishable lines.
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#bcbd22", "#17becf")
MARKERS = ("o", "s", "^")
DATA_TAG = re.compile(r"data sha256 ([0-9a-f]{64})")
Lines = dict[str, list[tuple[int, float, float, int]]]


def data_sha256(csv_text: str) -> str:
    """The hash an SVG carries of the CSV behind it."""
    return hashlib.sha256(csv_text.encode()).hexdigest()


def embedded_sha256(svg: str) -> str | None:
    """The data hash an SVG names (None when it names none)."""
    found = DATA_TAG.search(svg)
    return found.group(1) if found else None


def render_svg(plot: Plot, task: str, lines: Lines, csv_text: str, baseline: str = "unedited") -> str:
    """The SVG text of one plot of `task`: `lines` maps a label to its [(m, mean, std, n)]."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    with matplotlib.rc_context(RC):
        figure = Figure(figsize=(8.0, 3.6))
        axes = figure.subplots()
        edited = [label for label in lines if not label.startswith(baseline)]
        values = [mean - std for points in lines.values() for _, mean, std, _ in points] + \
                 [mean for points in lines.values() for _, mean, _, _ in points]
        for label, points in lines.items():
            ms = [p[0] for p in points]
            means = [p[1] for p in points]
            stds = [p[2] for p in points]
            is_base = label.startswith(baseline)
            index = edited.index(label) if not is_base else 0
            colour = GREY if is_base else COLOURS[index % len(COLOURS)]
            marker = "o" if is_base else MARKERS[(index // len(COLOURS)) % len(MARKERS)]
            axes.plot(ms, means, "--" if is_base else "-", marker=marker, markersize=3.5, color=colour, label=label)
            if len(points) > 1:
                axes.fill_between(ms, [a - b for a, b in zip(means, stds)], [a + b for a, b in zip(means, stds)],
                                  color=colour, alpha=0.18, linewidth=0)
            elif stds[0] > 0:
                axes.errorbar(ms, means, yerr=stds, fmt="none", ecolor=colour, capsize=3)
        all_m = sorted({p[0] for points in lines.values() for p in points})
        axes.set_xscale("log", base=2)
        axes.set_xticks(all_m, [str(m) for m in all_m])
        axes.minorticks_off()
        if len(all_m) == 1:
            axes.set_xlim(all_m[0] / 2, all_m[0] * 2)
        if plot.log_y and values and min(values) > 0 and all(math.isfinite(v) for v in values):
            axes.set_yscale("log")
        axes.set_xlabel("m (facts edited at once)")
        axes.set_ylabel(plot.ylabel)
        axes.set_title(f"{task}: {plot.title}")
        axes.grid(True, linewidth=0.4, alpha=0.5)
        axes.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        figure.subplots_adjust(left=0.08, right=0.58, bottom=0.14, top=0.9)
        buffer = io.StringIO()
        figure.savefig(buffer, format="svg", metadata={
            "Date": None, "Creator": "editbench leaderboard", "Title": f"{task}: {plot.title}",
            "Description": f"data sha256 {data_sha256(csv_text)}"})
    return buffer.getvalue()
