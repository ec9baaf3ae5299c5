"""Reports from the results store: what `editbench leaderboard` writes into `leaderboards/`.

- `<task>.md`: the task's table, m as a dimension (`tables`), each method at the code of its newest
  run (`leaderboard.split_by_newest_code`), with links to its plots, then the runs at earlier code;
- `plots/<task>-<metric>.csv` + `.svg`: the data behind every plot and the plot (`series`, `plots`);
- `paper.md`: our numbers beside the paper's published ones (`paper`, `comparison`);
- `index.html`: all of it on one self-contained page (`html`); `README.md`: the index.

`render` returns every file's text by its path under the folder; `write` writes them (and removes
plots no longer produced); `check` names what differs in a folder: the markdown, the plot data and
the page's text exactly, an SVG by the data hash it names (its bytes depend on the matplotlib
version, its data does not). `render(draw=False)` skips matplotlib (stand-in SVGs naming the same
data hash), which is all `check` needs.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from editbench import leaderboard as lb
from editbench.files import write_atomic
from editbench.report import comparison, html, paper, series, tables
from editbench.report.plots import data_sha256, embedded_sha256

PLOTS_DIR = "plots"
EMPTY = {"README.md": "# Leaderboards\n\nNo results yet.\n"}
_SVG = re.compile(r"<svg\b.*?</svg>", re.S)


def stand_in_svg(csv_text: str) -> str:
    """What `render(draw=False)` puts in place of a plot: an empty SVG naming its data's hash."""
    return f'<svg xmlns="http://www.w3.org/2000/svg"><desc>data sha256 {data_sha256(csv_text)}</desc></svg>\n'


def render(records: list[dict[str, Any]], draw: bool = True) -> dict[str, str]:
    """Path under the leaderboards folder -> text, for every task with committed runs. Runs from a
    dirty or unknown tree are skipped with a warning on stderr."""
    from editbench.report import plots

    records = lb.warn_dirty(records)
    if not records:
        return dict(EMPTY)
    tasks = sorted({r["task"] for r in records})
    current, earlier = lb.split_by_newest_code(records)
    rows_of = {task: lb.task_rows(current, task) for task in tasks}
    files: dict[str, str] = {}
    sections = []
    for task in tasks:
        figures = []
        for metric, lines in series.task_series(rows_of[task]).items():
            stem = f"{task}-{metric}"
            csv_text = series.to_csv(lines)
            svg = plots.render_svg(series.PLOTS[metric], task, lines, csv_text) if draw else stand_in_svg(csv_text)
            files[f"{PLOTS_DIR}/{stem}.csv"] = csv_text
            files[f"{PLOTS_DIR}/{stem}.svg"] = svg
            figures.append((stem, svg))
        files[f"{task}.md"] = tables.render_task(current, task, rows_of[task], [f"{stem}.svg" for stem, _ in figures],
                                                 lb.task_rows(earlier, task, label_code=True))
        sections.append((task, _task_section(rows_of[task], figures, sum(r["task"] == task for r in earlier))))
    files["paper.md"] = comparison.render(rows_of)
    sections.append(("Our numbers beside the paper's", _paper_section(rows_of)))
    files["README.md"] = tables.render_index(current, earlier, tasks)
    files["index.html"] = html.page(sections)
    return files


def _task_section(rows: list[dict[str, Any]], figures: list[tuple[str, str]], older_runs: int) -> str:
    """The task's table (each method at its newest code), notes and plots; `older_runs`: how many
    runs at earlier code its markdown page lists besides."""
    headings, body = tables.table_cells(rows)
    baselines = {i for i, row in enumerate(rows) if row["baseline"]}
    plots = "".join(f'<figure>{html.svg_element(svg)}<figcaption><a href="{PLOTS_DIR}/{stem}.csv">data</a>'
                    f"</figcaption></figure>" for stem, svg in figures)
    notes = tables.notes(lb.shown_columns(rows))
    if older_runs:
        notes.append(f"- Each method at the code of its newest run; {older_runs} run(s) at earlier code are "
                     "listed in the task's markdown page.")
    return "\n".join([html.table(headings, body, baselines), html.note_list(notes), f'<div class="plots">{plots}</div>'])


def _paper_section(rows_of: dict[str, list[dict[str, Any]]]) -> str:
    parts = [
        '<p class="note">MALMEN (Tan, Zhang, Fu, ICLR 2024). Paper values typed from its tables and text, each with '
        "its table and row; ours where task (dataset and model), method and m match. ES/GS/LS in percent, std in "
        "brackets; time in hours = one-off cost + edit.</p>",
    ]
    for title, headings, body in comparison.comparison_tables(rows_of):
        parts += [f"<h3>{html.inline(title)}</h3>", html.table(headings, body)]
    parts += [
        "<h3>What the figures show (the paper prints no numbers for them)</h3>",
        html.table(["figure", "task", "paper's m", "the paper says", "ours"], comparison.claim_cells(rows_of)),
    ]
    ratios = comparison.residual_ratios(rows_of)
    if ratios:
        parts += ['<p class="note">Fig. 8\'s cancellation on our runs:</p>', html.note_list(ratios)]
    parts.append(f'<p class="note">{html.inline(paper.EMBEDDED_NOTE)}</p>')
    return "\n".join(parts)


def _normalised_page(text: str) -> str:
    """The page with every inline SVG reduced to the data hash it names."""
    return _SVG.sub(lambda found: f"<svg data-sha256={embedded_sha256(found.group(0))}/>", text)


def _same(name: str, expected: str, found: str) -> bool:
    if name.endswith(".svg"):
        return embedded_sha256(found) is not None and embedded_sha256(found) == embedded_sha256(expected)
    if name.endswith(".html"):
        return _normalised_page(found) == _normalised_page(expected)
    return found == expected


def _generated(folder: Path) -> list[str]:
    """The files in `folder` that `render` would write (markdown, the page, plots and their data)."""
    found = [p.name for p in folder.glob("*.md")] + [p.name for p in folder.glob("*.html")]
    if (folder / PLOTS_DIR).is_dir():
        found += [f"{PLOTS_DIR}/{p.name}" for p in (folder / PLOTS_DIR).iterdir()
                  if p.is_file() and not p.name.startswith(".")]
    return found


def check(files: dict[str, str], folder: Path) -> list[str]:
    """Paths under `folder` that differ from `files` or are missing there, and generated files
    `files` does not have (stale), sorted."""
    folder = Path(folder)
    stale = [name for name, text in files.items()
             if not (folder / name).is_file() or not _same(name, text, (folder / name).read_text(encoding="utf-8"))]
    extra = [name for name in _generated(folder) if name not in files]
    return sorted(stale + extra)


def write(files: dict[str, str], folder: Path) -> None:
    """Write `files` under `folder` (each atomically) and remove the plots it no longer has."""
    folder = Path(folder)
    (folder / PLOTS_DIR).mkdir(parents=True, exist_ok=True)
    for name, text in files.items():
        write_atomic(folder / name, text.encode("utf-8"))
    for path in (folder / PLOTS_DIR).iterdir():
        if path.is_file() and not path.name.startswith(".") and f"{PLOTS_DIR}/{path.name}" not in files:
            path.unlink()
