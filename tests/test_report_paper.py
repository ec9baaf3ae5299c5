"""The paper's numbers (`editbench.report.paper`) against the paper's text, and the comparison
table: ours only where task, method and m match; "not run" otherwise, never a filled-in number."""
import re
from pathlib import Path

import pytest

from editbench import leaderboard as lb
from editbench.report import comparison, paper
from test_leaderboard import record

PAPER = Path(__file__).resolve().parents[2] / "shared" / "papers" / "malmen-iclr2024.txt"


def paper_rows():
    """Tab-separated rows of the paper's tables: first cell -> list of rows of cells (bold removed)."""
    if not PAPER.is_file():
        pytest.skip(f"the paper's text is not at {PAPER}")
    found: dict[str, list[list[str]]] = {}
    for line in PAPER.read_text(encoding="utf-8").splitlines():
        cells = [re.sub(r"</?b>", "", c).strip() for c in line.split("\t")]
        if len(cells) > 2:
            found.setdefault(cells[0], []).append(cells)
    return found


def printed(value):
    return "–" if value.value is None else f"{value.value:.1f} ({value.std:.1f})"


def test_tables_1_and_2_are_typed_as_printed():
    rows = paper_rows()
    checked = 0
    for value in paper.VALUES:
        if value.table not in ("Table 1", "Table 2") or value.metric == "hours":
            continue
        width = 7 if value.table == "Table 1" else 5  # Table 2 also names "Cache all tokens" and "MALMEN"
        (cells,) = [c for c in rows[value.variant] if len(c) == width]
        first = 1 + (3 if value.task == "zsre-gpt2" else 0)
        column = first + ("es", "gs", "ls").index(value.metric)
        assert cells[column] == printed(value), value.source
        checked += 1
    assert checked == 2 * 5 * 3 + 2 * 3
    times = {v.variant: v.value for v in paper.VALUES if v.table == "Table 2" and v.metric == "hours"}
    assert {variant: float(rows[variant][-1][-1]) for variant in times} == times


def test_table_3_and_the_text_are_typed_as_printed():
    rows = paper_rows()
    for value in (v for v in paper.VALUES if v.table == "Table 3"):
        (cells,) = rows[str(value.m)]
        column = (1 if value.metric == "es_sequence" else 3) + (1 if "Ours" in value.source else 0)
        assert float(cells[column]) == value.value, value.source
    text = PAPER.read_text(encoding="utf-8")
    hours = {v.method: v.value for v in paper.VALUES if v.table == "Sec. 5.1"}
    assert f"takes {hours['malmen']} and {hours['memit']} hours in total (including training)" in text


def test_every_value_cites_its_table_and_row():
    for value in paper.VALUES:
        assert value.source.startswith(value.table) and value.table in paper.TABLES, value
        assert value.variant in value.source or value.table in ("Sec. 5.1", "Table 3"), value
    assert all(re.search(r"\(Sec\. 5\.\d\)\.$", claim.text) for claim in paper.FIGURE_CLAIMS)  # each names its section


def rows_of(runs):
    clean = lb.committed(runs)[0]
    return {task: lb.task_rows(clean, task) for task in {r["task"] for r in clean}}


def gpt2_table_1(runs):
    (title, headings, body), = [t for t in comparison.comparison_tables(rows_of(runs)) if t[0].startswith("Table 1")]
    return headings, {(row[0].split(" ")[0], row[2]): row for row in body}


def test_ours_beside_the_paper_only_where_task_method_and_m_match():
    runs = [record("malmen", s, es, 10.0, task="zsre-gpt2", edits=512) for s, es in ((0, 0.99), (1, 0.97))]
    runs += [record("malmen-sum-shifts", 0, 0.5, 10.0, task="zsre-gpt2", edits=256),  # another m
             {**record("malmen-first-fc", 0, 0.9, 10.0, task="zsre-gpt2", edits=512), "rounds": 2},  # sequential
             record("malmen-cache-all", 0, 0.9, 10.0, task="zsre-smollm2", edits=512)]  # another model
    headings, table = gpt2_table_1(runs)
    ours = headings.index("ES % ours")
    assert table[("zsre-gpt2", "MALMEN (malmen)")][ours] == "98.0 (1.0) (n=2, malmen)"
    assert table[("zsre-gpt2", "MALMEN (malmen)")][headings.index("ES % paper")] == "99.7 (0.2)"
    assert table[("zsre-gpt2", "MALMEN (malmen)")][headings.index("GS % ours")] == comparison.NOT_RUN  # gs null
    for variant in ("Sum param. shifts (malmen-sum-shifts)", "Edit first FC in FFN (malmen-first-fc)",
                    "Cache all tokens (malmen-cache-all)"):
        assert table[("zsre-gpt2", variant)][ours] == comparison.NOT_RUN
    assert table[("fever-bert", "No regularization (malmen-no-reg)")][headings.index("ES % paper")].startswith("– (")


def test_time_is_the_one_off_cost_plus_the_edit_in_hours():
    run = record("malmen", 0, 0.99, 1800.0, task="zsre-gptj", edits=8192,
                 prepare_info={"checkpoint": "e", "one_off_seconds": 5400.0})
    (_, headings, body), = [t for t in comparison.comparison_tables(rows_of([run])) if t[0].startswith("Table 2")]
    malmen = next(row for row in body if row[2] == "MALMEN (malmen)")
    assert malmen[headings.index("time h ours")] == "2.00 (n=1, malmen)"
    assert malmen[headings.index("time h paper")] == "4.4"


def test_embedded_tasks_are_said_to_have_no_paper_numbers():
    text = comparison.render(rows_of([record("ft", 0, 0.6, 1.0, task="zsre-smollm2", edits=64)]))
    assert paper.EMBEDDED_NOTE in text
    assert "zsre-smollm2" not in text.split("## Embedded tasks")[0]  # never set beside a paper value
