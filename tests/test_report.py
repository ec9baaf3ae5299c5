"""Reports: tables with m as a dimension, the data behind the plots, the SVGs, the HTML page and
`editbench leaderboard --check` on each kind of artefact."""
import re
import shutil
from pathlib import Path

import pytest

from editbench import leaderboard as lb
from editbench import report
from editbench.report import html, plots, series
from test_leaderboard import cell, leaderboard_cli, record, rows, table_rows

ROOT = Path(__file__).resolve().parents[1]


def scaling_runs():
    """Methods a and b at m = 8 and 32, two seeds each; b degrades with m, a does not."""
    runs = []
    for edits in (8, 32):
        for seed in (0, 1):
            runs.append(record("a", seed, 0.8 + seed / 10, 2.0 + edits / 8, edits=edits, pre_es=0.1 + seed / 10))
            runs.append(record("b", seed, 0.95 - edits / 100, 1.0, edits=edits, pre_es=0.1 + seed / 10))
    return runs


def test_blocks_per_m_with_their_baseline_and_best():
    table = report.render(scaling_runs(), draw=False)["t.md"]
    found = table_rows(table)
    assert [(r[0], r[1]) for r in found] == [("unedited", "8"), ("a", "8"), ("b", "8"),
                                             ("unedited", "32"), ("a", "32"), ("b", "32")]
    by_block = {(r[0], r[1]): r for r in found}
    es = 4  # label, m, n, spread, ES
    assert by_block[("a", "8")][es] == "0.850 ± 0.050"
    assert by_block[("b", "8")][es] == "**0.870 ± 0.000**"  # the best ES at m = 8 ...
    assert by_block[("a", "32")][es] == "**0.850 ± 0.050**"  # ... and a at m = 32
    assert by_block[("b", "32")][es] == "0.630 ± 0.000"
    assert by_block[("unedited", "32")][2:5] == ["2", "sample", "0.150 ± 0.050"]


def test_rounds_split_blocks_and_are_named():
    runs = [record("a", 0, 0.5, 2.0), {**record("a", 0, 0.3, 4.0), "rounds": 2}, record("b", 0, 0.6, 2.0)]
    table = report.render(runs, draw=False)["t.md"]
    assert rows(table)["a [2 rounds]"][2:4] == ["–", "0.300"]  # a lone row in its block: not bold
    assert rows(table)["a"][3] == "0.500"
    assert cell(table, "b", "ES") == "**0.600**"
    assert "unedited [2 rounds]" in rows(table)


def headings(table):
    header = next(line for line in table.splitlines() if line.startswith("| method "))
    return [h.strip() for h in header.strip("|").split("|")]


def test_optional_columns_appear_only_with_their_metrics():
    plain = report.render([record("a", 0, 0.5, 2.0)], draw=False)["t.md"]
    assert headings(plain) == ["method", "m", "n", "spread", "ES", "GS", "LS", "retention", "ES exact", "one-off s",
                               "edit s", "edit peak GiB"]
    runs = [record("a", s, 0.5, 2.0) for s in (0, 1)] + [record("b", 0, 0.5, 2.0)]
    for r, (efficacy, ppl) in zip(runs, ((0.6, 20.0), (0.8, 22.0), (0.9, 30.0))):
        r["pre"] = {**r["pre"], "cf_efficacy": 0.1, "ppl": 19.0}
        r["post"] = {**r["post"], "cf_efficacy": efficacy, "ppl": ppl}
    runs[2]["method_stats"] = {"mean_residual": 0.01}
    table = report.render(runs, draw=False)["t.md"]
    columns = headings(table)
    assert {"CF efficacy", "ppl", "mean residual"} <= set(columns) and "CF paraphrase" not in columns
    row_a, row_b, base = rows(table)["a"], rows(table)["b"], rows(table)["unedited"]
    assert row_a[columns.index("CF efficacy") - 1] == "0.700 ± 0.100"
    assert row_b[columns.index("CF efficacy") - 1] == "**0.900**"  # higher is better
    assert row_a[columns.index("ppl") - 1] == "**21.00 ± 1.00**"  # lower is better
    assert base[columns.index("ppl") - 1] == "19.00 ± 0.00"  # the unedited model's perplexity
    assert row_b[columns.index("mean residual") - 1] == "0.01" and row_a[columns.index("mean residual") - 1] == "n/a"
    assert "- `ppl`: WikiText-2 perplexity" in table and "- `cf_efficacy`: CounterFact efficacy" in table


def test_a_field_that_follows_m_keeps_one_label_but_one_that_equals_m_once_does_not():
    follows = [record("h", 0, 0.5, 2.0, edits=m, method_config={"train_edits": m, "batch": 32}) for m in (8, 32)]
    table = report.render(follows, draw=False)["t.md"]
    assert [r[0] for r in table_rows(table) if r[0] != "unedited"] == ["h", "h"]
    assert lb.follows_m(follows) == {"train_edits"}  # batch equals m = 32 at one m only
    fixed = follows + [record("h", 0, 0.5, 2.0, edits=32, method_config={"train_edits": 8, "batch": 32})]
    assert lb.follows_m(fixed) == set()
    labels = [r[0] for r in table_rows(report.render(fixed, draw=False)["t.md"]) if r[0] != "unedited"]
    assert labels == ["h (train_edits=8)", "h (train_edits=32)", "h (train_edits=8)"]  # m = 8, then m = 32


def test_plot_data_is_the_table_per_label_and_m():
    files = report.render(scaling_runs(), draw=False)
    lines = series.from_csv(files["plots/t-es.csv"])
    assert lines["a"] == [(8, pytest.approx(0.85), pytest.approx(0.05), 2), (32, pytest.approx(0.85), pytest.approx(0.05), 2)]
    assert [p[1] for p in lines["b"]] == pytest.approx([0.87, 0.63])
    assert [p[1] for p in lines["unedited"]] == pytest.approx([0.15, 0.15])  # the baseline is a line of the ES plot
    times = series.from_csv(files["plots/t-edit_seconds.csv"])
    assert set(times) == {"a", "b"}  # no baseline in cost plots
    assert [p[1] for p in times["a"]] == pytest.approx([3.0, 6.0])
    assert "plots/t-gs.csv" not in files  # GS is null for this task: no plot
    assert "plots/t-mean_residual.csv" not in files  # no method reports it
    assert series.to_csv(lines) == files["plots/t-es.csv"]


def test_svgs_are_deterministic_name_their_data_and_render_one_m():
    runs = [record("a", s, 0.5 + s / 10, 2.0) for s in (0, 1)] + [record("b", 0, 0.9, 1.0)]
    first = report.render(runs)
    second = report.render(runs)
    svg = first["plots/t-es.svg"]
    assert svg == second["plots/t-es.svg"]  # same bytes from the same data
    assert plots.embedded_sha256(svg) == plots.data_sha256(first["plots/t-es.csv"])
    assert "<dc:date>" not in svg and "<path" in svg
    assert ">a<" in svg and ">b<" in svg and ">unedited<" in svg  # the legend, text kept as text
    assert first["index.html"] == second["index.html"]


def test_svg_bytes_are_the_same_in_another_process():
    """Element ids come from the fixed hash salt, not from a per-process random one."""
    import subprocess
    import sys

    script = ("import sys; from editbench.report import plots, series; "
              "lines = {'a': [(8, 0.5, 0.1, 2), (32, 0.4, 0.0, 1)], 'unedited': [(8, 0.1, 0.0, 1), (32, 0.1, 0.0, 1)]}; "
              "sys.stdout.write(plots.render_svg(series.PLOTS['es'], 't', lines, series.to_csv(lines)))")
    lines = {"a": [(8, 0.5, 0.1, 2), (32, 0.4, 0.0, 1)], "unedited": [(8, 0.1, 0.0, 1), (32, 0.1, 0.0, 1)]}
    here = plots.render_svg(series.PLOTS["es"], "t", lines, series.to_csv(lines))
    there = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert there == here and 'clip-path="url(#' in here


def test_html_page_is_one_file_with_every_table_plot_and_the_paper():
    files = report.render(scaling_runs() + [record("c", 0, 0.7, 1.0, task="u")])
    page = files["index.html"]
    assert page.count("<svg") == sum(name.endswith(".svg") for name in files)
    assert not re.search(r"<(script|link|img|iframe)\b|\bsrc=|url\((?!#)", page)  # no external assets
    assert "<?xml" not in page and "<!DOCTYPE svg" not in page
    assert '<section id="t">' in page and '<section id="u">' in page
    assert "<td><strong>0.870 ± 0.000</strong></td>" in page  # b's best ES at m = 8, as in the markdown
    assert "Table 2: GPT-J (6B) on zsRE, m = 8192" in page and "not run (needs GPU)" in page


def write_boards(tmp_path, runs):
    from editbench.results import write_run

    for r in runs:
        write_run(tmp_path / "results", r, [])
    assert leaderboard_cli(tmp_path).exit_code == 0
    return tmp_path / "boards"


@pytest.mark.parametrize("name, edit", [
    ("t.md", lambda text: text.replace("0.850 ± 0.050", "0.950 ± 0.050", 1)),  # a table
    ("plots/t-es.csv", lambda text: text.replace("\nb,8,", "\nb,16,", 1)),  # the data behind a plot
    ("index.html", lambda text: text.replace("<td>0.630 ± 0.000</td>", "<td>0.730 ± 0.000</td>", 1)),  # the page's table
    ("index.html", lambda text: text.replace("data sha256 ", "data sha256 0", 1)),  # a plot inlined in the page
    ("plots/t-es.svg", lambda text: text.replace("data sha256 ", "data sha256 0", 1)),  # a plot drawn from other data
    ("paper.md", lambda text: text.replace("99.7 (0.2)", "99.9 (0.2)", 1)),  # the paper comparison
])
def test_check_fails_on_each_hand_edited_artefact(tmp_path, name, edit):
    boards = write_boards(tmp_path, scaling_runs())
    assert leaderboard_cli(tmp_path, "--check").exit_code == 0
    path = boards / name
    edited = edit(path.read_text())
    assert edited != path.read_text()
    path.write_text(edited)
    checked = leaderboard_cli(tmp_path, "--check")
    assert checked.exit_code == 1 and name in checked.stderr


def test_check_names_missing_and_stale_plots_and_write_removes_them(tmp_path):
    boards = write_boards(tmp_path, scaling_runs())
    (boards / "plots" / "t-es.csv").unlink()
    (boards / "plots" / "old-es.csv").write_text("series,m,mean,std,n\n")
    checked = leaderboard_cli(tmp_path, "--check")
    assert checked.exit_code == 1 and "plots/old-es.csv" in checked.stderr and "plots/t-es.csv" in checked.stderr
    assert leaderboard_cli(tmp_path).exit_code == 0
    assert not (boards / "plots" / "old-es.csv").exists() and (boards / "plots" / "t-es.csv").is_file()
    assert leaderboard_cli(tmp_path, "--check").exit_code == 0


def test_committed_leaderboards_are_up_to_date(tmp_path):
    """What CI checks, on a copy of the committed outputs (`--check` must pass on them as committed)."""
    if not (ROOT / "results" / "runs.jsonl").is_file():
        pytest.skip("no committed results")
    shutil.copytree(ROOT / "leaderboards", tmp_path / "boards")
    shutil.copytree(ROOT / "results", tmp_path / "results", ignore=shutil.ignore_patterns("edits"))
    checked = leaderboard_cli(tmp_path, "--check")
    assert checked.exit_code == 0, checked.stderr


def test_svg_element_drops_the_xml_prologue():
    svg = '<?xml version="1.0"?>\n<!DOCTYPE svg PUBLIC "x"\n "y">\n<svg a="1"><g/></svg>\n'
    assert html.svg_element(svg) == '<svg a="1"><g/></svg>'
    assert html.inline("**0.5** & `x`") == "<strong>0.5</strong> &amp; <code>x</code>"


def test_best_ignores_lone_rows_and_baselines():
    rows_ = lb.task_rows([record("a", 0, 0.5, 2.0)], "t")
    assert lb.best(rows_) == {}
    assert not any(lb.is_best(row, "es", {(8, 1, "es"): 0.1}) for row in rows_ if row["baseline"])
