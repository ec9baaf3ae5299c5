import subprocess
import sys

from editbench import leaderboard as lb
from editbench.results import write_run


def record(method, seed, es, edit_seconds, task="t", edits=8):
    return {"run_id": f"{method}-{seed}-{task}-{edits}", "method": method, "task": task, "edits": edits, "seed": seed,
            "device": "cpu", "post": {"es": es, "gs": None, "ls": 0.5, "retention": 0.9, "es_exact": es},
            "train_seconds": 1.0, "edit_seconds": edit_seconds, "peak_memory_bytes": 2**30}


def test_mean_std_over_seeds_and_best_marked():
    files = lb.render([record("a", 0, 0.5, 2.0), record("a", 1, 0.7, 4.0), record("b", 0, 0.9, 10.0)])
    table = files["t.md"]
    assert "| a        | 8       | 2       | 0.600 ± 0.100 |" in table
    assert "**0.900**" in table  # b has the best ES
    assert "**3.0 ± 1.0**" in table  # a has the lowest edit time
    assert "| **1.0**             |" in table  # one-off training: the largest value, no ± std
    assert "| n/a " in table  # GS not available for this task
    assert "(t.md)" in files["README.md"]


def test_check_detects_stale_and_extra_tables(tmp_path):
    files = lb.render([record("a", 0, 0.5, 2.0)])
    lb.write(files, tmp_path)
    assert lb.check(files, tmp_path) == []
    (tmp_path / "t.md").write_text("edited by hand\n")
    (tmp_path / "old.md").write_text("stale\n")
    assert lb.check(files, tmp_path) == ["old.md", "t.md"]


def test_cli_check_exit_codes(tmp_path):
    write_run(tmp_path / "results", record("a", 0, 0.5, 2.0), [])
    cmd = [sys.executable, "-m", "editbench.cli", "leaderboard", "--results", str(tmp_path / "results"),
           "--out", str(tmp_path / "boards")]
    assert subprocess.run(cmd + ["--check"], capture_output=True).returncode == 1
    assert subprocess.run(cmd, capture_output=True).returncode == 0
    assert subprocess.run(cmd + ["--check"], capture_output=True).returncode == 0


def test_runs_with_overrides_get_their_own_rows():
    tuned = {**record("a", 0, 0.9, 2.0), "overrides": {"train_steps": "20", "lr": "1"}}
    table = lb.render([record("a", 0, 0.5, 2.0), tuned])["t.md"]
    assert "| a (lr=1, train_steps=20) | 8 " in table and "| a                        | 8 " in table
