"""The README's results table (ES / GS per method and m on the SmolLM2 tasks) shows what the
committed leaderboards show: every cell is the mean ES and GS of that method's plotted series
(`leaderboards/plots/<task>-{es,gs}.csv`, rounded to 3 places), a cell names its seeds exactly when
fewer than three ran, and a dash stands where the leaderboard has no run."""
import csv
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEADER = "| method | zsRE m = 16 |"
TASKS = {"zsRE": "zsre-smollm2", "CounterFact": "counterfact-smollm2"}
SEEDS = 3


def readme_table() -> tuple[list[tuple[str, int]], dict[str, list[str]]]:
    """Columns as (task, m) and the cells of each method's row, from the README."""
    lines = (ROOT / "README.md").read_text().splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith(HEADER))
    header = [c.strip() for c in lines[start].strip("|").split("|")][1:]
    columns = []
    for name in header:
        task, m = re.fullmatch(r"(\w+) m = (\d+)", name).groups()
        columns.append((TASKS[task], int(m)))
    rows = {}
    for line in lines[start + 2:]:
        if not line.startswith("| `"):
            break
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        rows[cells[0].strip("`")] = cells[1:]
    return columns, rows


def series(task: str, metric: str) -> dict[tuple[str, int], tuple[float, int]]:
    """(method, m) -> (mean, number of runs) of one plot's data."""
    out = {}
    with open(ROOT / "leaderboards" / "plots" / f"{task}-{metric}.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            method = row["series"].split(" @")[0]
            assert (method, int(row["m"])) not in out, f"two series of {method} at m = {row['m']} in {task}"
            out[method, int(row["m"])] = (float(row["mean"]), int(row["n"]))
    return out


COLUMNS, ROWS = readme_table()


def test_the_table_has_every_method_of_the_leaderboards():
    plotted = {method for task in TASKS.values() for method, _ in series(task, "es")} - {"unedited"}
    assert plotted <= set(ROWS), f"methods missing from the README table: {sorted(plotted - set(ROWS))}"


@pytest.mark.parametrize("method", sorted(ROWS))
def test_each_cell_matches_the_leaderboard(method):
    cells = ROWS[method]
    if cells[0].startswith("not run"):
        assert all((method, m) not in series(task, "es") for task, m in COLUMNS)
        return
    assert len(cells) == len(COLUMNS)
    for (task, m), cell in zip(COLUMNS, cells):
        es, gs = series(task, "es").get((method, m)), series(task, "gs").get((method, m))
        if es is None:
            assert cell == "–", f"{method} {task} m = {m}: README shows {cell!r}, the leaderboard has no run"
            continue
        match = re.fullmatch(r"([\d.]+) / ([\d.]+)( \(seeds [^)]*\))?", cell)
        assert match, f"{method} {task} m = {m}: cell {cell!r} is not 'ES / GS'"
        assert match.group(1) == f"{es[0]:.3f}" and match.group(2) == f"{gs[0]:.3f}", (
            f"{method} {task} m = {m}: README {cell!r}, leaderboard {es[0]:.3f} / {gs[0]:.3f}")
        assert (match.group(3) is not None) == (es[1] < SEEDS), (
            f"{method} {task} m = {m}: {es[1]} runs, README cell {cell!r}")
