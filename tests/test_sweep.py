"""`editbench sweep`: grids, presets, identities, the skip/redo plan, the artifact gate, and real sweeps
of `editbench run` processes on a plug-in task (a tiny random GPT-2 with synthetic facts).

The plug-in is registered through the `editbench.tasks` / `editbench.methods` entry-point groups
by a `.dist-info` folder on PYTHONPATH (what pip would install), so the runs are the real CLI.
"""
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from editbench.errors import EditbenchError
from editbench.sweep.compare import differences
from editbench.sweep.grid import Grid, Skip, SweepRun, expand, parse_set_grid, split_values
from editbench.sweep.identity import Resolver, record_identity
from editbench.sweep.plan import ArtifactGate, PlannedRun, make_plan
from editbench.sweep.presets import load_preset, parse_preset, shipped

TESTS = Path(__file__).resolve().parent

PLUGIN = '''
"""Sweep test plug-in: a tiny task, a cheap method (optionally pausing), and a method that always fails."""
import dataclasses
import time

from editbench.api import EditResult, Method, MethodConfig
from editbench.errors import EditbenchError
from editbench.modules import add_to_weight, get_module, weight_of
from tiny import TinyCausalTask


class SweepTask(TinyCausalTask):
    name = "sweep-tiny"
    description = "sweep test task: tiny GPT-2 with synthetic facts (32 eval requests)"

    def __init__(self, config=None, data_dir=None):
        super().__init__("gpt2", config=config)


@dataclasses.dataclass
class ScaleConfig(MethodConfig):
    factor: float = dataclasses.field(default=0.01, metadata={"help": "fraction of W subtracted"})
    pause: float = dataclasses.field(default=0.0, metadata={"help": "seconds to wait in the edit"})


class Scale(Method):
    name = "sweep-scale"
    description = "sweep test method: W -= factor * W on the FT modules"
    Config = ScaleConfig

    def edit(self, task, model, requests):
        time.sleep(self.config.pause)
        deltas = {}
        for name in task.edit_modules("ft"):
            module = get_module(model, name)
            deltas[name] = -self.config.factor * weight_of(module).detach().clone()
            add_to_weight(module, deltas[name])
        return EditResult(deltas, {"factor": self.config.factor})


class Broken(Method):
    name = "sweep-broken"
    description = "sweep test method: fails in the edit"

    def edit(self, task, model, requests):
        raise EditbenchError("sweep-broken fails on purpose")
'''


@pytest.fixture(scope="session")
def sweep_env(tmp_path_factory):
    """Environment whose editbench sees the plug-in (through a .dist-info entry_points.txt)."""
    site = tmp_path_factory.mktemp("sweep-plugin")
    (site / "editbench_sweep_plugin.py").write_text(textwrap.dedent(PLUGIN))
    info = site / "editbench_sweep_plugin-0.0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: editbench-sweep-plugin\nVersion: 0.0.1\n")
    (info / "entry_points.txt").write_text(
        "[editbench.tasks]\nsweep-tiny = editbench_sweep_plugin:SweepTask\n\n"
        "[editbench.methods]\nsweep-scale = editbench_sweep_plugin:Scale\nsweep-broken = editbench_sweep_plugin:Broken\n")
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(site), str(TESTS), env.get("PYTHONPATH", "")])
    env["EDITBENCH_CACHE"] = str(site / "cache")
    env["OMP_NUM_THREADS"] = "1"
    return env


@pytest.fixture
def plugin_importable(sweep_env, monkeypatch):
    """The plug-in registered in this process too (for planning without a subprocess)."""
    for path in reversed(sweep_env["PYTHONPATH"].split(os.pathsep)[:2]):
        monkeypatch.syspath_prepend(path)
    import importlib

    importlib.invalidate_caches()


def sweep(env, *args, timeout=240):
    return subprocess.run([sys.executable, "-m", "editbench.cli", "sweep", *args], env=env, capture_output=True,
                          text=True, timeout=timeout)


def records(store: Path) -> list[dict]:
    path = store / "runs.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


# -- grid -------------------------------------------------------------------------------------------

def test_grid_expands_every_combination_methods_slowest():
    grid = Grid(["a", "b"], ["t"], [16, 64], [0, 1, 2], sets={"lr": ["1e-5", "1e-4"]})
    runs = expand(grid)
    assert len(runs) == 2 * 2 * 3 * 2 and len(set(runs)) == len(runs)
    assert runs[0] == SweepRun("a", "t", 16, 0, sets=(("lr", "1e-5"),))
    assert runs[1].sets == (("lr", "1e-4"),) and {r.method for r in runs[:12]} == {"a"}
    assert runs[0].run_args()[-2:] == ["--set", "lr=1e-5"]


def test_set_values_split_on_commas_outside_brackets():
    assert split_values("1e-5, 1e-4") == ["1e-5", "1e-4"]
    assert split_values("[20,21,22],[3]") == ["[20,21,22]", "[3]"]
    assert parse_set_grid(["lr=1e-5,1e-4", "layers=[1,2]"]) == {"lr": ["1e-5", "1e-4"], "layers": ["[1,2]"]}
    with pytest.raises(EditbenchError, match="expected KEY=VALUE"):
        parse_set_grid(["lr"])
    with pytest.raises(EditbenchError, match="no value"):
        parse_set_grid(["lr="])


# -- presets ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(shipped()))
def test_every_shipped_preset_parses_and_says_how_to_run_it(name):
    preset = load_preset(name)
    assert preset.grids and preset.description
    text = shipped()[name].read_text()
    assert text.startswith("# ") and f"editbench sweep --preset {name}" in text
    assert "duration" in text.split("description")[0].lower()  # the opening comment states the expected time


def test_embedded_preset_covers_the_issue_grid():
    preset = load_preset("embedded")
    runs = {run for grid in preset.grids for run in expand(grid)}
    assert {r.task for r in runs} == {"zsre-smollm2", "counterfact-smollm2", "fever-minilm"}
    assert {r.method for r in runs} >= {"ft", "malmen", "mend", "memit", "malmen-sum-shifts", "malmen-cache-all",
                                        "malmen-first-fc", "malmen-no-reg"}
    assert {r.edits for r in runs} == {16, 64, 256, 512} and {r.seed for r in runs} == {0, 1, 2}
    skips = [s for grid in preset.grids for s in grid.skips]
    assert any(s.method == "malmen-no-reg" and s.task is None and s.reason for s in skips)


def test_preset_grids_take_top_level_defaults_and_unknown_keys_fail(tmp_path):
    preset = parse_preset(textwrap.dedent("""
        # test
        seeds = [3]
        [set]
        lr = [1e-5, 1e-4]
        layers = "[1,2]"
        [[grid]]
        methods = ["ft"]
        tasks = ["t"]
        edits = [8]
        [[grid]]
        methods = ["memit"]
        tasks = ["t"]
        edits = [16]
        seeds = [0, 1]
        [compare]
        tolerance = 0.0
        methods = { malmen = 0.02 }
    """), "t")
    assert [g.seeds for g in preset.grids] == [[3], [0, 1]]
    assert preset.grids[0].sets == {"lr": ["1e-05", "0.0001"], "layers": ["[1,2]"]}
    assert preset.tolerance.of("malmen") == 0.02 and preset.tolerance.of("ft") == 0.0
    with pytest.raises(EditbenchError, match="unknown key 'method'"):
        parse_preset('method = ["ft"]', "bad")
    with pytest.raises(EditbenchError, match="edits value 'x' is not an integer"):
        parse_preset('methods = ["ft"]\ntasks = ["t"]\nedits = ["x"]', "bad")
    with pytest.raises(EditbenchError, match="unknown preset 'embeded'.*did you mean 'embedded'"):
        load_preset("embeded")
    with pytest.raises(EditbenchError, match="no such file"):
        load_preset(str(tmp_path / "missing.toml"))


# -- identity and plan ------------------------------------------------------------------------------

def test_set_values_resolve_through_the_config(plugin_importable):
    resolver = Resolver()
    a = resolver.identity(SweepRun("sweep-scale", "sweep-tiny", 4, 0, sets=(("factor", "1e-2"),)))
    b = resolver.identity(SweepRun("sweep-scale", "sweep-tiny", 4, 0, sets=(("method.factor", "0.01"),)))
    c = resolver.identity(SweepRun("sweep-scale", "sweep-tiny", 4, 0, sets=(("factor", "0.02"),)))
    assert a == b != c
    assert a.sets == (("method.factor", "0.01"),)
    record = {"method": "sweep-scale", "task": "sweep-tiny", "edits": 4, "seed": 0, "dtype": "float32",
              "device": "cpu (x86_64, 1 threads, unknown)", "overrides": {"factor": "1e-2"},
              "config": {"method": {"factor": 0.01, "pause": 0.0, "layers": ""}, "task": {"batch_size": 8}}}
    assert record_identity(record) == a
    assert record_identity({**record, "overrides": {}}) != a  # a run without --set is another experiment
    assert record_identity({**record, "rounds": 3}) != a
    with pytest.raises(EditbenchError, match="neither 'sweep-scale' nor 'sweep-tiny' has this option"):
        resolver.identity(SweepRun("sweep-scale", "sweep-tiny", 4, 0, sets=(("nope", "1"),)))


def test_plan_decides_done_redo_skip_and_run(plugin_importable, tmp_path):
    grid = Grid(["sweep-scale", "sweep-broken"], ["sweep-tiny"], [4, 64], [0, 1],
                skips=[Skip("sweep-broken", "fails by design")])
    store = tmp_path / "store"
    first = make_plan([grid], store)
    assert len(first) == 8
    decisions = {(p.run.method, p.run.edits, p.run.seed): (p.decision, p.reason) for p in first}
    assert decisions["sweep-broken", 4, 0] == ("skip", "fails by design")
    assert decisions["sweep-scale", 64, 0] == ("skip", "m = 64 exceeds the eval split of sweep-tiny (32 requests)")
    assert decisions["sweep-scale", 4, 0] == ("run", "")
    done, interrupted = [p for p in first if p.run.method == "sweep-scale" and p.run.edits == 4]
    store.mkdir()
    record = {"run_id": "r1", "timestamp": "2026-01-01T00:00:00+00:00", "method": "sweep-scale", "task": "sweep-tiny",
              "edits": 4, "seed": done.run.seed, "dtype": "float32", "device": "cpu (x)", "overrides": {},
              "config": {"method": {}, "task": {}}, "pre": {"es": 0.0, "gs": 0.0, "ls": 0.0},
              "post": {"es": 0.5, "gs": 0.0, "ls": 0.0}}
    (store / "runs.jsonl").write_text(json.dumps(record) + "\n")
    interrupted.log.parent.mkdir(parents=True)
    interrupted.log.write_text("# a run killed before its record\n")
    again = {(p.run.method, p.run.edits, p.run.seed): (p.decision, p.reason) for p in make_plan([grid], store)}
    assert again["sweep-scale", 4, done.run.seed] == ("done", "recorded as r1")
    assert again["sweep-scale", 4, interrupted.run.seed][0] == "redo"


def test_a_record_at_other_code_is_run_again(plugin_importable, tmp_path):
    """`done` means recorded at the code the run would execute now; a record at other code (a change
    to a file the run imports) is run again, one without a code (dirty tree, older store) counts."""
    grid = Grid(["sweep-scale"], ["sweep-tiny"], [4], [0])
    store = tmp_path / "store"
    store.mkdir()
    record = {"run_id": "r1", "timestamp": "2026-01-01T00:00:00+00:00", "method": "sweep-scale", "task": "sweep-tiny",
              "edits": 4, "seed": 0, "dtype": "float32", "device": "cpu (x)", "overrides": {},
              "config": {"method": {}, "task": {}}, "pre": {"es": 0.0, "gs": 0.0, "ls": 0.0},
              "post": {"es": 0.5, "gs": 0.0, "ls": 0.0}}

    def decide(stored_code, current_code):
        (store / "runs.jsonl").write_text(json.dumps({**record, "code": stored_code}) + "\n")
        [planned] = make_plan([grid], store, code=lambda method, task: current_code)
        return planned.decision, planned.reason

    assert decide("aaaa", "aaaa") == ("done", "recorded as r1")
    assert decide("aaaa", "bbbb") == ("run", "recorded at other code (aaaa), run at this code (bbbb)")
    assert decide(None, "bbbb") == ("done", "recorded as r1")
    assert decide("aaaa", None) == ("done", "recorded as r1")  # no git here: identity alone


def test_duplicate_runs_in_a_grid_are_planned_once(plugin_importable, tmp_path):
    grid = Grid(["sweep-scale"], ["sweep-tiny"], [4, 4], [0], sets={"factor": ["0.01", "1e-2"]})
    assert len(make_plan([grid], tmp_path)) == 1


def _planned(method, task, edits=4):
    from editbench.sweep.identity import Identity

    run = SweepRun(method, task, edits, 0)
    return PlannedRun(run, Identity(method, task, edits, 0, "cpu", "float32"), "run")


def test_order_starts_the_first_run_of_each_method_and_task_first():
    from editbench.sweep.plan import order

    memit_8, memit_16, ft_8 = _planned("memit", "zsre", 8), _planned("memit", "zsre", 16), _planned("ft", "zsre", 8)
    done = _planned("ft", "fever")
    done.decision = "done"
    assert order([memit_8, memit_16, done, ft_8]) == [memit_8, ft_8, memit_16, done]


def test_artifact_gate_lets_one_run_build_each_artifact():
    gate = ArtifactGate()
    memit_a, memit_b = _planned("memit", "zsre", 8), _planned("memit", "zsre", 16)
    ft_zsre, ft_fever = _planned("ft", "zsre"), _planned("ft", "fever")
    assert gate.may_start(memit_a)
    gate.started(memit_a)
    assert not gate.may_start(memit_b)  # the statistics are being computed by memit_a
    assert not gate.may_start(ft_zsre)  # the task's prepared model too
    assert gate.may_start(ft_fever)
    gate.finished(memit_a)
    assert gate.may_start(memit_b) and gate.may_start(ft_zsre)


# -- real sweeps ------------------------------------------------------------------------------------

GRID = ["--method", "sweep-scale", "--task", "sweep-tiny", "--edits", "2,4", "--set", "factor=0.01,0.02"]


@pytest.fixture(scope="module")
def finished(sweep_env, tmp_path_factory):
    """A sweep of 4 real runs (2 at once), run once for the tests that read its store."""
    store = tmp_path_factory.mktemp("finished") / "store"
    proc = sweep(sweep_env, *GRID, "--out", str(store), "--jobs", "2")
    return store, proc


def test_sweep_runs_each_run_in_its_own_process_and_resumes(sweep_env, finished):
    store, proc = finished
    assert proc.returncode == 0, proc.stderr
    found = records(store)
    assert sorted((r["edits"], r["config"]["method"]["factor"]) for r in found) == [
        (2, 0.01), (2, 0.02), (4, 0.01), (4, 0.02)]
    assert len({r["run_id"] for r in found}) == 4 and all(r["overrides"] for r in found)
    logs = sorted((store / "logs").glob("*.log"))
    assert len(logs) == 4 and all(log.read_text().startswith("# ") for log in logs)
    assert proc.stdout.count("ok   sweep-scale sweep-tiny") == 4 and "ES 0.000->" in proc.stdout  # one line per run
    assert "4/4" in proc.stderr  # the progress bar
    again = sweep(sweep_env, *GRID, "--set", "factor=1e-2,2e-2", "--out", str(store))  # same values, other spelling
    assert again.returncode == 0 and "4 done" in again.stdout
    assert len(records(store)) == 4


def test_a_failed_run_is_reported_and_the_sweep_goes_on(sweep_env, tmp_path):
    store = tmp_path / "store"
    proc = sweep(sweep_env, "--method", "sweep-broken,sweep-scale", "--task", "sweep-tiny", "--edits", "2",
                 "--out", str(store), "--jobs", "2")
    assert proc.returncode == 1
    assert [r["method"] for r in records(store)] == ["sweep-scale"]
    assert "1 of 2 runs failed" in proc.stderr
    assert "sweep-broken sweep-tiny m=2 seed 0: exit 2: editbench: error: sweep-broken fails on purpose" in proc.stderr


def runs_writing_to(store: Path) -> list[int]:
    """Pids of live `editbench run` processes whose --out is `store` (Linux /proc)."""
    pids = []
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            args = cmdline.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"run" in args and str(store).encode() in args:
            pids.append(int(cmdline.parent.name))
    return pids


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc; the child's parent-death signal is Linux's")
@pytest.mark.parametrize("kill", [signal.SIGTERM, signal.SIGKILL])
def test_killed_sweep_resumes_without_losing_or_duplicating(sweep_env, tmp_path, kill):
    store = tmp_path / "store"
    args = ["--method", "sweep-scale", "--task", "sweep-tiny", "--edits", "2", "--seeds", "0,1,2",
            "--set", "pause=3", "--out", str(store)]
    proc = subprocess.Popen([sys.executable, "-m", "editbench.cli", "sweep", *args], env=sweep_env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not records(store) and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    assert len(records(store)) == 1, "the first run did not finish"
    while len(list((store / "logs").glob("*.log"))) < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    time.sleep(1.0)  # the second run is under way
    assert len(records(store)) == 1, "the second run finished before the kill (pause too short)"
    proc.send_signal(kill)
    proc.communicate(timeout=60)
    assert proc.returncode != 0
    # No orphan run goes on: the killed run never writes its record behind the resumed sweep's back.
    deadline = time.monotonic() + 30
    while runs_writing_to(store) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not runs_writing_to(store)
    assert len(records(store)) == 1
    dry = sweep(sweep_env, *args, "--dry-run")
    assert "1 done" in dry.stdout and "redo" in dry.stdout, dry.stdout
    assert "run-hours for 2 run(s)" in dry.stdout  # the two left, priced from the first run's record
    resumed = sweep(sweep_env, *args)
    assert resumed.returncode == 0, resumed.stderr
    seeds = sorted(r["seed"] for r in records(store))
    assert seeds == [0, 1, 2]  # each identity exactly once


def test_dry_run_and_bad_input(sweep_env, tmp_path):
    store = tmp_path / "store"
    dry = sweep(sweep_env, "--method", "sweep-scale", "--task", "sweep-tiny", "--edits", "2,64", "--out", str(store),
                "--dry-run")
    assert dry.returncode == 0
    assert "run   sweep-scale sweep-tiny m=2 seed 0" in dry.stdout
    assert "1 run(s) without a recorded run of their method and task not priced" in dry.stdout  # an empty store
    assert "skip  sweep-scale sweep-tiny m=64 seed 0 (m = 64 exceeds the eval split" in dry.stdout
    assert not store.exists()
    for args, message in ((["--method", "sweep-scal", "--task", "sweep-tiny", "--edits", "2"], "did you mean 'sweep-scale'"),
                          (["--method", "sweep-scale", "--task", "sweep-tiny", "--edits", "two"], "bad --edits value 'two'"),
                          (["--task", "sweep-tiny"], "needs --preset NAME or --method"),
                          (["--preset", "nope"], "unknown preset 'nope'")):
        proc = sweep(sweep_env, *args, "--out", str(store), "--dry-run")
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1


def test_list_presets_shows_run_counts(sweep_env):
    proc = sweep(sweep_env, "--list-presets")
    assert proc.returncode == 0
    lines = {line.split()[0]: line for line in proc.stdout.splitlines()}
    assert set(lines) == set(shipped())
    assert " 5 runs" in lines["ci"] and "288 runs" in lines["embedded"]


def test_compare_fails_on_a_tampered_or_missing_committed_record(sweep_env, finished, tmp_path):
    store, committed = finished[0], tmp_path / "committed"
    args = [*GRID, "--out", str(store)]
    committed.mkdir()
    lines = (store / "runs.jsonl").read_text().splitlines()
    (committed / "runs.jsonl").write_text("\n".join(lines) + "\n")
    same = sweep(sweep_env, *args, "--compare", str(committed))
    assert same.returncode == 0 and "compared 4 runs" in same.stdout and "all equal" in same.stdout
    tampered = json.loads(lines[0])
    tampered["post"]["es"] = 1.0 if tampered["post"]["es"] != 1.0 else 0.5
    (committed / "runs.jsonl").write_text(json.dumps(tampered) + "\n" + lines[1] + "\n")  # one tampered, two missing
    proc = sweep(sweep_env, *args, "--compare", str(committed))
    assert proc.returncode == 1
    diffs = [line for line in proc.stderr.splitlines() if line.startswith("differs: ")]
    assert len(diffs) == 3
    assert sum(f"m={tampered['edits']} seed 0 [factor=" in line and ": post.es = " in line and "tolerance 0" in line
               for line in diffs) == 1
    assert sum("no committed record of this run" in line for line in diffs) == 2
    assert len(records(store)) == 4  # comparing ran nothing


def test_compare_tolerance_from_the_preset(plugin_importable, tmp_path):
    from editbench.sweep.presets import Tolerance

    grid = Grid(["sweep-scale"], ["sweep-tiny"], [2], [0])
    base = {"run_id": "x", "timestamp": "t", "method": "sweep-scale", "task": "sweep-tiny", "edits": 2, "seed": 0,
            "dtype": "float32", "device": "cpu (x)", "overrides": {}, "config": {"method": {}, "task": {}},
            "pre": {"es": 0.25, "gs": None, "ls": 0.5}, "post": {"es": 0.75, "gs": None, "ls": 0.5}}
    for folder, es in (("new", 0.75), ("old", 0.76)):
        (tmp_path / folder).mkdir()
        (tmp_path / folder / "runs.jsonl").write_text(json.dumps({**base, "post": {**base["post"], "es": es}}) + "\n")
    planned = make_plan([grid], tmp_path / "new")
    assert len(differences(planned, tmp_path / "new", tmp_path / "old", Tolerance())) == 1
    assert differences(planned, tmp_path / "new", tmp_path / "old", Tolerance(0.0, {"sweep-scale": 0.02})) == []


def test_ray_executor_without_ray_is_one_line(sweep_env, tmp_path):
    blocker = tmp_path / "no-ray" / "ray"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('no ray here')\n")
    env = dict(sweep_env, PYTHONPATH=os.pathsep.join([str(blocker.parent), sweep_env["PYTHONPATH"]]))
    proc = sweep(env, "--method", "sweep-scale", "--task", "sweep-tiny", "--edits", "2", "--out", str(tmp_path / "s"),
                 "--executor", "ray")
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == (
        "editbench: error: --executor ray needs Ray, which is not installed: pip install 'editbench[ray]'")
    assert not (tmp_path / "s" / "runs.jsonl").exists()
