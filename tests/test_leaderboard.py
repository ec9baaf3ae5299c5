import subprocess
import sys

from editbench import report
from editbench.leaderboard import one_off_seconds
from editbench.results import write_run

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def record(method, seed, es, edit_seconds, task="t", edits=8, commit=COMMIT, method_config=None, task_config=None,
           prepare_info=None, pre_es=0.1, train_seconds=1.0):
    return {"run_id": f"{method}-{seed}-{task}-{edits}-{es}", "method": method, "task": task, "edits": edits,
            "seed": seed, "device": "cpu", "dtype": "float32", "commit": commit,
            "config": {"method": {"seed": seed, **(method_config or {})},
                       "task": {"batch_size": 32, **(task_config or {})}},
            "pre": {"es": pre_es, "gs": None, "ls": 0.5, "retention": 1.0, "es_exact": 0.0},
            "post": {"es": es, "gs": None, "ls": 0.5, "retention": 0.9, "es_exact": es},
            "prepare_info": prepare_info if prepare_info is not None else {},
            "train_seconds": train_seconds, "edit_seconds": edit_seconds, "peak_memory_bytes": 2**30}


def render(records):
    """The rendered files (stand-in plots: these tests read the tables)."""
    return report.render(records, draw=False)


def table_rows(table):
    """The cells of every row of a rendered markdown table, label first."""
    return [[c.strip() for c in line.strip("|").split("|")]
            for line in table.splitlines() if line.startswith("| ") and not line.startswith("| method ")]


def rows(table):
    """Label -> the cells after the label (labels unique in the table)."""
    return {cells[0]: cells[1:] for cells in table_rows(table)}


HEAD = ["m", "n", "spread", "ES", "GS", "LS", "retention", "ES exact", "one-off s", "edit s", "peak"]


def cell(table, label, column):
    return rows(table)[label][HEAD.index(column)]


def test_mean_std_over_seeds_and_best_marked():
    files = render([record("a", 0, 0.5, 2.0), record("a", 1, 0.7, 4.0), record("b", 0, 0.9, 10.0)])
    table = files["t.md"]
    assert rows(table)["a"][:4] == ["8", "2", "sample", "0.600 ± 0.100"]
    assert cell(table, "b", "ES") == "**0.900**"  # b has the best ES
    assert cell(table, "a", "edit s") == "**3.0 ± 1.0**"  # a has the lowest edit time
    assert cell(table, "a", "GS") == "n/a"  # GS not available for this task
    assert "(t.md)" in files["README.md"]


def test_check_detects_stale_and_extra_tables(tmp_path):
    files = render([record("a", 0, 0.5, 2.0)])
    report.write(files, tmp_path)
    assert report.check(files, tmp_path) == []
    (tmp_path / "t.md").write_text("edited by hand\n")
    (tmp_path / "old.md").write_text("stale\n")
    assert report.check(files, tmp_path) == ["old.md", "t.md"]


def leaderboard_cli(tmp_path, *args):
    """`editbench leaderboard` in-process on `tmp_path/results` -> `tmp_path/boards`."""
    from click.testing import CliRunner

    from editbench.cli import main

    return CliRunner().invoke(main, ["leaderboard", "--results", str(tmp_path / "results"),
                                     "--out", str(tmp_path / "boards"), *args])


def test_cli_check_exit_codes(tmp_path):
    write_run(tmp_path / "results", record("a", 0, 0.5, 2.0), [])
    assert leaderboard_cli(tmp_path, "--check").exit_code == 1
    assert leaderboard_cli(tmp_path).exit_code == 0
    assert leaderboard_cli(tmp_path, "--check").exit_code == 0


def test_cli_as_a_command(tmp_path):
    write_run(tmp_path / "results", record("a", 0, 0.5, 2.0), [])
    cmd = [sys.executable, "-m", "editbench.cli", "leaderboard", "--results", str(tmp_path / "results"),
           "--out", str(tmp_path / "boards")]
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert (tmp_path / "boards" / "t.md").is_file()


def test_runs_with_different_resolved_configs_get_their_own_rows():
    # The same --set overrides (none) but different resolved configs: two experiments, never pooled.
    short = record("a", 0, 0.9, 2.0, method_config={"train_steps": 20, "lr": 1.0})
    long = record("a", 1, 0.5, 2.0, method_config={"train_steps": 60, "lr": 1.0})
    table = render([short, long])["t.md"]
    assert rows(table)["a (train_steps=20)"][1:4] == ["1", "–", "**0.900**"]
    assert rows(table)["a (train_steps=60)"][1:4] == ["1", "–", "0.500"]


def test_scoring_batch_size_and_method_seed_do_not_split_groups():
    runs = [record("a", 0, 0.5, 2.0, task_config={"batch_size": 8}), record("a", 1, 0.7, 2.0)]
    assert runs[0]["config"]["method"]["seed"] != runs[1]["config"]["method"]["seed"]
    table = render(runs)["t.md"]
    assert rows(table)["a"][1] == "2"


EARLIER = "## Runs at earlier code"


def test_runs_from_different_commits_are_not_pooled_and_the_newest_code_leads():
    newer = {**record("a", 0, 0.5, 2.0), "timestamp": "2026-01-02T00:00:00+00:00"}
    older = {**record("a", 1, 0.7, 2.0, commit="fedcba9" + "0" * 33), "timestamp": "2026-01-01T00:00:00+00:00"}
    other = {**record("b", 0, 0.9, 2.0, commit="fedcba9" + "0" * 33), "timestamp": "2025-01-01T00:00:00+00:00"}
    files = render([older, newer, other])
    current, earlier = files["t.md"].split(EARLIER)
    assert rows(current)["a @0123456"][1:4] == ["1", "–", "0.500"]  # the newest run's code, not the larger hash
    assert rows(current)["b @fedcba9"][1:4] == ["1", "–", "**0.900**"]  # b's newest code, however old
    assert rows(earlier)["a @fedcba9"][1:4] == ["1", "–", "0.700"]  # not pooled with the newer code
    assert "unedited" in rows(current)  # both codes scored the unedited model identically: one baseline row
    plotted = files["plots/t-es.csv"]
    assert "0.5" in plotted and "0.7" not in plotted  # earlier code is not plotted
    assert "t.md): 2 runs (and 1 at earlier code)" in files["README.md"]
    assert "1 run(s) at earlier code" in files["index.html"]
    assert EARLIER not in render([newer, other])["t.md"]  # no earlier code: no second table


def test_the_newest_code_does_not_depend_on_the_order_of_the_store():
    a = record("a", 0, 0.5, 2.0)
    b = record("a", 1, 0.7, 2.0, commit="fedcba9" + "0" * 33)  # no timestamps: the larger code leads
    assert render([a, b])["t.md"] == render([b, a])["t.md"]
    assert rows(render([a, b])["t.md"].split(EARLIER)[0])["a"][3] == "0.700"


def test_the_unedited_row_is_split_by_code_only_where_the_pre_edit_scores_differ():
    a = {**record("a", 0, 0.5, 2.0), "code": "aaaaaaa00000"}
    b = {**record("b", 0, 0.7, 2.0), "code": "bbbbbbb00000"}
    assert [label for label in rows(render([a, b])["t.md"]) if label.startswith("unedited")] == ["unedited"]
    rescored = {**b, "pre": {**b["pre"], "es": 0.2}}  # another scoring of the same model and seed
    labels = [label for label in rows(render([a, rescored])["t.md"]) if label.startswith("unedited")]
    assert labels == ["unedited @aaaaaaa", "unedited @bbbbbbb"]


def test_dirty_runs_are_skipped_with_a_warning(capsys):
    runs = [record("a", 0, 0.5, 2.0), record("a", 1, 0.1, 2.0, commit=COMMIT + "-dirty"),
            record("a", 2, 0.1, 2.0, commit=None)]
    table = render(runs)["t.md"]
    assert rows(table)["a"][1:4] == ["1", "–", "0.500"]
    assert "skipping 2 run(s) from a dirty or unknown tree" in capsys.readouterr().err
    assert render(runs[1:]) == {"README.md": "# Leaderboards\n\nNo results yet.\n"}


def test_cli_check_fails_on_dirty_records(tmp_path):
    write_run(tmp_path / "results", record("a", 0, 0.5, 2.0), [])
    write_run(tmp_path / "results", record("a", 1, 0.6, 2.0, commit=COMMIT + "-dirty"), [])
    written = leaderboard_cli(tmp_path)
    assert written.exit_code == 0 and "skipping 1 run(s)" in written.stderr
    assert "| a " in (tmp_path / "boards" / "t.md").read_text()
    checked = leaderboard_cli(tmp_path, "--check")
    assert checked.exit_code == 1 and "1 run(s) from a dirty or unknown tree" in checked.stderr


def test_one_off_cost_of_a_reuse_comes_from_its_artifact_never_its_own_zero():
    built = {"checkpoint": "e1.safetensors", "reused": False, "one_off_seconds": 200.0}
    reused = {"checkpoint": "e1.safetensors", "reused": True, "one_off_seconds": 200.0}
    unknown = {"checkpoint": "e2.safetensors", "reused": True}
    old_fresh = {"checkpoint": "e3.safetensors", "reused": False}  # no one_off_seconds: its prepare time
    runs = [record("a", 0, 0.5, 2.0, prepare_info=reused, train_seconds=0.0),
            record("a", 1, 0.5, 2.0, prepare_info=reused, train_seconds=0.0),
            record("b", 0, 0.5, 2.0, prepare_info=unknown, train_seconds=0.0),
            record("c", 0, 0.5, 2.0, prepare_info=old_fresh, train_seconds=150.0),
            record("ft", 0, 0.5, 2.0, prepare_info={}, train_seconds=0.0)]
    table = render(runs)["t.md"]
    assert cell(table, "a", "one-off s") == "200.0"
    assert cell(table, "b", "one-off s") == "n/a"
    assert cell(table, "c", "one-off s") == "150.0"
    assert cell(table, "ft", "one-off s") == "**0.0**"  # FT prepares nothing: a genuine 0
    assert one_off_seconds(record("a", 0, 0.5, 2.0, prepare_info=built, train_seconds=210.0)) == 200.0


def test_spread_says_whether_each_seed_trained_its_own_editor():
    shared = [record("a", s, 0.5 + s / 10, 2.0, prepare_info={"checkpoint": "one", "one_off_seconds": 100.0})
              for s in range(2)]
    independent = [record("b", s, 0.5 + s / 10, 2.0,
                          prepare_info={"checkpoint": f"e{s}", "one_off_seconds": 100.0 + 20 * s})
                   for s in range(2)]
    table = render(shared + independent + [record("ft", 0, 0.4, 1.0), record("ft", 1, 0.4, 1.0)])["t.md"]
    assert cell(table, "a", "spread") == "sample"
    assert cell(table, "b", "spread") == "sample + editor"
    assert cell(table, "ft", "spread") == "sample"
    assert cell(table, "a", "one-off s") == "100.0"  # one shared editor: one cost
    assert cell(table, "b", "one-off s") == "110.0 ± 10.0"  # two editors: their mean ± std
    assert "independently trained" in table


def test_unedited_row_averages_pre_over_the_seeds():
    runs = [record("a", 0, 0.5, 2.0, pre_es=0.1), record("a", 1, 0.7, 2.0, pre_es=0.3),
            record("b", 0, 0.9, 3.0, pre_es=0.1), record("a", 0, 0.5, 2.0, edits=16, pre_es=0.2)]
    table = render(runs)["t.md"]
    found = table_rows(table)
    assert [(r[0], r[1]) for r in found] == [("unedited", "8"), ("a", "8"), ("b", "8"), ("unedited", "16"), ("a", "16")]
    assert found[0][2:5] == ["2", "sample", "0.200 ± 0.100"]  # seed 0 counted once, though two methods ran it
    assert found[0][-3:] == ["–", "–", "–"]  # no costs for the unedited model
    assert found[3][2:5] == ["1", "–", "0.200"]
    assert cell(table, "b", "ES") == "**0.900**"  # the baseline never takes part in the best marking
    assert "`unedited`" in table


def test_runs_pool_by_source_hash_and_split_by_libraries():
    """Two commits with the same source hash are one experiment; another source hash or transformers
    version is another row (labelled by its hash when the table holds several)."""
    a = {**record("a", 0, 0.5, 2.0), "code": "c0de00000000", "versions": {"torch": "2.13.0", "transformers": "5.24.0"}}
    b = {**record("a", 1, 0.7, 4.0, commit="f" * 40), "code": "c0de00000000", "versions": a["versions"]}
    assert rows(render([a, b])["t.md"])["a"][:4] == ["8", "2", "sample", "0.600 ± 0.100"]
    other = {**b, "run_id": "other", "code": "0ther0000000"}
    newer = {**b, "run_id": "newer", "versions": {"torch": "2.13.0", "transformers": "5.25.0"}}
    current, earlier = render([a, other])["t.md"].split(EARLIER)  # no timestamps: the larger code leads
    assert "a" in rows(current) and "a @0ther00" in rows(earlier)
    assert any(label.startswith("a (libraries=torch 2.13.0 transformers 5.25.0)") for label in rows(render([a, newer])["t.md"]))
