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


def test_add_source_hashes_fills_only_clean_records_without_one(tmp_path):
    from editbench.results import add_source_hashes

    lines = [{"run_id": "a", "commit": "1" * 40}, {"run_id": "b", "commit": "2" * 40 + "-dirty"},
             {"run_id": "c", "commit": "3" * 40, "code": "kept"}, {"run_id": "d", "commit": None}]
    (tmp_path / "runs.jsonl").write_text("".join(json.dumps(r, sort_keys=True) + "\n" for r in lines))
    assert add_source_hashes(tmp_path, lambda r: r["commit"][:12]) == 1
    got = [json.loads(line) for line in (tmp_path / "runs.jsonl").read_text().splitlines()]
    assert got == [{**lines[0], "code": "1" * 12}, *lines[1:]]
    assert add_source_hashes(tmp_path, lambda r: "x") == 0  # nothing left to fill
