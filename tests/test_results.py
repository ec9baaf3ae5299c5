import json

from editbench.results import read_runs, write_run

METRICS = {"es": 0.5, "gs": None, "ls": 0.25, "retention": 1.0}


def run_record(**fields):
    return {"method": "ft", "task": "t", "edits": 1, "pre": METRICS, "post": METRICS, **fields}


def test_append_is_atomic_and_readable(tmp_path):
    for i in range(3):
        write_run(tmp_path, run_record(run_id=f"r{i}"), [{"i": i}])
    runs = read_runs(tmp_path)
    assert [r["run_id"] for r in runs] == ["r0", "r1", "r2"]
    assert json.loads((tmp_path / runs[1]["edits_file"]).read_text()) == {"i": 1}
    assert not [p for p in tmp_path.rglob(".*") if p.name != ".lock"]  # no temporary files left


def test_corrupt_lines_are_skipped_with_a_warning(tmp_path, capsys):
    (tmp_path / "runs.jsonl").write_text(json.dumps(run_record()) + '\n{broken\n[1]\n')
    assert len(read_runs(tmp_path)) == 1
    assert "skipping" in capsys.readouterr().err
