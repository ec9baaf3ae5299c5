"""`editbench sweep --executor ray` against a local Ray cluster started by the test (slow: Ray takes
tens of seconds to start on 2 cores). The runs are the real `editbench run` processes on the sweep
test plug-in (tests/test_sweep.py), one Ray task each."""
import json

import pytest
from click.testing import CliRunner
from test_sweep import plugin_importable, records, sweep_env  # noqa: F401  (fixtures)

ray = pytest.importorskip("ray")


@pytest.mark.slow
def test_ray_executor_runs_a_small_grid(sweep_env, plugin_importable, tmp_path, monkeypatch):  # noqa: F811
    from editbench.cli import main
    from editbench.sweep.execute import RunCommand
    from editbench.sweep.identity import Identity
    from editbench.sweep.grid import SweepRun
    from editbench.sweep.plan import PlannedRun
    from editbench.sweep.ray_executor import RayExecutor

    for key in ("PYTHONPATH", "EDITBENCH_CACHE", "OMP_NUM_THREADS"):
        monkeypatch.setenv(key, sweep_env[key])  # what the Ray tasks get (the executor passes them on)
    store = tmp_path / "store"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        result = CliRunner().invoke(main, ["sweep", "--method", "sweep-scale", "--task", "sweep-tiny", "--edits", "2,3",
                                           "--seeds", "0,1", "--out", str(store), "--executor", "ray"])
        assert result.exit_code == 0, result.output
        executor = RayExecutor(RunCommand(store))
        gpu_run = PlannedRun(SweepRun("sweep-scale", "sweep-tiny", 2, 0, "cuda"),
                             Identity("sweep-scale", "sweep-tiny", 2, 0, "cuda", "float32"), "run")
        assert executor.resources(gpu_run) == {"num_gpus": 1, "num_cpus": 1}
    finally:
        ray.shutdown()
    found = records(store)
    assert sorted((r["edits"], r["seed"]) for r in found) == [(2, 0), (2, 1), (3, 0), (3, 1)]
    assert all(r["pre"]["retention"] == 1.0 and r["method_stats"] == {"factor": 0.01} for r in found)
    assert len(list((store / "logs").glob("*.log"))) == 4
    assert result.output.count("ok   sweep-scale sweep-tiny") == 4
    again = CliRunner().invoke(main, ["sweep", "--method", "sweep-scale", "--task", "sweep-tiny", "--edits", "2,3",
                                      "--seeds", "0,1", "--out", str(store), "--executor", "ray"])
    assert again.exit_code == 0 and "4 done" in again.output  # nothing left to run: Ray is not even started
    assert len((store / "runs.jsonl").read_text().splitlines()) == 4
    assert json.loads((store / "runs.jsonl").read_text().splitlines()[0])["task"] == "sweep-tiny"
