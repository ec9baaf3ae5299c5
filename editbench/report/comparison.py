"""Our numbers beside the paper's (`editbench.report.paper`) where the setting matches.

A paper value matches the leaderboard rows of the same task (dataset and model), method and m, from
one batch of edits (rounds = 1). ES/GS/LS are shown in percent with the std in brackets, as the paper
prints them; a time is the one-off cost plus the edit, in hours. Where no run matches, the paper's
value stands alone with "not run (needs GPU)" (or why editbench cannot run it): nothing is filled in.
"""
from __future__ import annotations

from typing import Any

from editbench.report import paper

NOT_RUN = "not run (needs GPU)"
SETTING = ["task (model)", "m", "variant (editbench method)"]
_METRIC = {"es": "ES %", "gs": "GS %", "ls": "LS %", "hours": "time h", "es_sequence": "ES (sequence)",
           "drawdown": "drawdown"}


def _paper_cell(value: paper.PaperValue) -> str:
    if value.value is None:
        return f"– ({value.note})"
    if value.metric in ("es", "gs", "ls"):
        return f"{value.value:.1f}" + (f" ({value.std:.1f})" if value.std is not None else "")
    return f"{value.value:g}"


def _our_cell(metric: str, row: dict[str, Any]) -> str | None:
    cells = row["cells"]
    if metric in ("es", "gs", "ls"):
        mean, std, count = cells[metric]
        return None if not count else f"{100 * mean:.1f}" + (f" ({100 * std:.1f})" if count > 1 else "")
    if metric == "hours":
        one_off, edit = cells["one_off"], cells["edit_seconds"]
        if not one_off[2] or not edit[2]:
            return None
        return f"{(one_off[0] + edit[0]) / 3600:.2f}"
    return None


def ours(value: paper.PaperValue, rows_of: dict[str, list[dict[str, Any]]]) -> str:
    """Our number(s) for the setting of `value` (one per matching leaderboard row, with n and its
    label), else why there is none."""
    matches = [row for row in rows_of.get(value.task or "", [])
               if not row["baseline"] and row["rounds"] == 1 and row["method"] == value.method and row["m"] == value.m]
    found = [(row, _our_cell(value.metric, row)) for row in matches]
    shown = [f"{text} (n={row['runs']}, {row['label']})" for row, text in found if text is not None]
    if shown:
        return "; ".join(shown)
    return NOT_RUN if value.task else f"not runnable ({value.note})"


def comparison_tables(rows_of: dict[str, list[dict[str, Any]]]) -> list[tuple[str, list[str], list[list[str]]]]:
    """(title, headings, rows) per table of the paper: a row per setting (task, m, variant), a
    "paper" and an "ours" column per metric; `rows_of` maps a task to its leaderboard rows."""
    out = []
    for table, title in paper.TABLES.items():
        values = [v for v in paper.VALUES if v.table == table]
        metrics = list(dict.fromkeys(v.metric for v in values))
        settings = list(dict.fromkeys((v.task, v.model, v.m, v.variant, v.method) for v in values))
        headings = SETTING + [f"{_METRIC[m]} {side}" for m in metrics for side in ("paper", "ours")]
        body = []
        for task, model, m, variant, method in settings:
            cells = [f"{task or '–'} ({model})", str(m), f"{variant} ({method})"]
            for metric in metrics:
                value = next((v for v in values if (v.task, v.model, v.m, v.variant, v.method, v.metric)
                              == (task, model, m, variant, method, metric)), None)
                cells += ["–", "–"] if value is None else [_paper_cell(value), ours(value, rows_of)]
            body.append(cells)
        out.append((title, headings, body))
    return out


def claim_cells(rows_of: dict[str, list[dict[str, Any]]]) -> list[list[str]]:
    """A row per figure: figure, task, the paper's m range, its claim, the m we ran there."""
    table = []
    for claim in paper.FIGURE_CLAIMS:
        ran = sorted({row["m"] for row in rows_of.get(claim.task or "", []) if not row["baseline"]})
        span = f"{claim.m_range[0]}–{claim.m_range[1]}" if claim.m_range else "–"
        ours = f"m = {', '.join(map(str, ran))} (see the {claim.task} plots)" if ran else NOT_RUN
        table.append([claim.figure, claim.task or "–", span, claim.text, ours])
    return table


def residual_ratios(rows_of: dict[str, list[dict[str, Any]]]) -> list[str]:
    """Fig. 8's claim on our runs: per task and m, 'Sum param. shifts' MR over MALMEN's MR."""
    lines = []
    for task, rows in sorted(rows_of.items()):
        edited = [row for row in rows if row["rounds"] == 1 and not row["baseline"] and row["cells"]["mean_residual"][2]]
        for ours in (row for row in edited if row["method"] == "malmen" and row["cells"]["mean_residual"][0] > 0):
            for summed in (row for row in edited if row["method"] == "malmen-sum-shifts" and row["m"] == ours["m"]):
                ratio = summed["cells"]["mean_residual"][0] / ours["cells"]["mean_residual"][0]
                lines.append(f"- {task}, m = {ours['m']}: mean residual {summed['cells']['mean_residual'][0]:.3g} "
                             f"({summed['label']}) vs {ours['cells']['mean_residual'][0]:.3g} ({ours['label']}): "
                             f"{ratio:.0f}× (the paper: about 10³× on GPT-2)")
    return lines


def render(rows_of: dict[str, list[dict[str, Any]]]) -> str:
    """The markdown page `paper.md`."""
    import pandas as pd

    lines = [
        "# Our numbers beside the paper's",
        "",
        "MALMEN (Tan, Zhang, Fu, ICLR 2024). Paper values typed from its tables and text "
        "(`editbench/report/paper.py`, each with its table and row); ours from the committed results where task "
        "(dataset and model), method and m match, one batch of edits. ES/GS/LS in percent, std in brackets (ours: "
        "over n seeds); time in hours = one-off cost (training, statistics) + edit.",
        "Generated by `editbench leaderboard`: do not edit by hand.",
        "",
    ]
    for title, headings, body in comparison_tables(rows_of):
        lines += [f"## {title}", "", pd.DataFrame(body, columns=headings).to_markdown(
            index=False, tablefmt="github", disable_numparse=True), ""]
    lines += [
        "## What the figures show (the paper prints no numbers for them)",
        "",
        pd.DataFrame(claim_cells(rows_of), columns=["figure", "task", "paper's m", "the paper says", "ours"])
        .to_markdown(index=False, tablefmt="github", disable_numparse=True),
        "",
    ]
    ratios = residual_ratios(rows_of)
    if ratios:
        lines += ["Fig. 8's cancellation on our runs (not the paper's setting where the task differs):", ""] + ratios + [""]
    lines += ["## Embedded tasks", "", paper.EMBEDDED_NOTE]
    return "\n".join(lines) + "\n"
