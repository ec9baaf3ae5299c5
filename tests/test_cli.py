"""The CLI end to end through a throw-away plug-in distribution installed with pip.

The plug-in registers a task (a tiny random GPT-2 with synthetic facts) and a method through the
same entry-point groups as the built-ins; `editbench list` and `editbench run` must find them.
"""
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from datadir import data_dir

TESTS = Path(__file__).resolve().parent

PLUGIN_MODULE = '''
"""A third-party plug-in for editbench (test fixture)."""
from editbench.api import EditResult, Method
from editbench.modules import add_to_weight, get_module, weight_of
from tiny import TinyCausalTask


class PluginTask(TinyCausalTask):
    name = "plugin-tiny"
    description = "plug-in task: tiny GPT-2 with synthetic facts"

    def __init__(self, config=None, data_dir=None):
        super().__init__("gpt2", config=config)


class ScaleDown(Method):
    """Shrinks the FT modules by 1 %: a real (if useless) weight edit with known deltas."""
    name = "plugin-scale"
    description = "plug-in method: scale the edited weights by 0.99"

    def edit(self, task, model, requests):
        deltas = {}
        for name in task.edit_modules("ft"):
            module = get_module(model, name)
            deltas[name] = -0.01 * weight_of(module).detach().clone()
            add_to_weight(module, deltas[name])
        return EditResult(deltas, {"scaled_modules": float(len(deltas))})
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"
[project]
name = "editbench-test-plugin"
version = "0.0.1"
[project.entry-points."editbench.tasks"]
plugin-tiny = "editbench_test_plugin:PluginTask"
[project.entry-points."editbench.methods"]
plugin-scale = "editbench_test_plugin:ScaleDown"
[tool.setuptools]
py-modules = ["editbench_test_plugin"]
'''


@pytest.fixture(scope="module")
def plugin_env(tmp_path_factory):
    root = tmp_path_factory.mktemp("plugin")
    (root / "pkg").mkdir()
    (root / "pkg" / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (root / "pkg" / "editbench_test_plugin.py").write_text(textwrap.dedent(PLUGIN_MODULE))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(root / "site"), str(root / "pkg")], check=True, capture_output=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(root / "site"), str(TESTS), env.get("PYTHONPATH", "")])
    env["EDITBENCH_CACHE"] = str(root / "cache")
    return env


def editbench(env, *args):
    return subprocess.run([sys.executable, "-m", "editbench.cli", *args], env=env, capture_output=True, text=True,
                          timeout=300)


def test_list_shows_plugins_next_to_builtins(plugin_env):
    proc = editbench(plugin_env, "list")
    assert proc.returncode == 0, proc.stderr
    assert "plugin-tiny" in proc.stdout and "plug-in task" in proc.stdout
    assert "plugin-scale" in proc.stdout and "ft " in proc.stdout and "zsre-smollm2" in proc.stdout


def test_run_records_a_full_result(plugin_env, tmp_path):
    out = tmp_path / "store"
    proc = editbench(plugin_env, "run", "--method", "plugin-scale", "--task", "plugin-tiny", "--edits", "4",
                     "--seed", "3", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    (record,) = [json.loads(line) for line in (out / "runs.jsonl").read_text().splitlines()]
    for key in ("method", "task", "edits", "seed", "config", "pre", "post", "train_seconds", "edit_seconds",
                "peak_memory_bytes", "device", "versions", "commit", "data_sha256", "phases"):
        assert key in record, key
    assert record["method"] == "plugin-scale" and record["edits"] == 4 and record["seed"] == 3
    for side in ("pre", "post"):
        assert set(record[side]) >= {"es", "gs", "ls", "retention"}
        assert all(v is None or 0.0 <= v <= 1.0 for v in record[side].values())
    assert record["pre"]["retention"] == 1.0
    assert record["peak_memory_bytes"] > 0 and record["phases"]["edit"]["seconds"] >= 0
    assert record["method_stats"] == {"scaled_modules": 6.0}
    edits = [json.loads(line) for line in (out / record["edits_file"]).read_text().splitlines()]
    assert len(edits) == 4 and {"request", "pre", "post"} <= set(edits[0])


def test_ft_runs_on_the_plugin_task(plugin_env, tmp_path):
    proc = editbench(plugin_env, "run", "--method", "ft", "--task", "plugin-tiny", "--edits", "8",
                     "--set", "epochs=20", "--set", "lr=1e-2", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    record = json.loads((tmp_path / "runs.jsonl").read_text())
    assert record["config"]["method"]["epochs"] == 20
    assert record["post"]["es"] > record["pre"]["es"] + 0.2


@pytest.mark.parametrize("args, message", [
    (["--method", "nope"], "unknown method 'nope'"),
    (["--task", "plugin-tin"], "did you mean 'plugin-tiny'"),
    (["--edits", "0"], "--edits 0 must be at least 1"),
    (["--edits", "33"], "--edits 33 is larger than the eval split of plugin-tiny (32 requests)"),
    (["--set", "lr"], "bad --set 'lr': expected KEY=VALUE"),
    (["--set", "epochs=many"], "bad --set epochs='many'"),
    (["--device", "tpu"], "--device 'tpu' is not one of"),
])
def test_bad_input_is_one_line_and_writes_nothing(plugin_env, tmp_path, args, message):
    base = ["run", "--method", "ft", "--task", "plugin-tiny", "--edits", "2", "--out", str(tmp_path / "store")]
    proc = editbench(plugin_env, *base, *args)
    assert proc.returncode == 2
    assert message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr
    assert not (tmp_path / "store").exists()


def test_missing_model_path_is_one_line(plugin_env, tmp_path):
    env = dict(plugin_env, EDITBENCH_DATA=str(data_dir()))
    proc = editbench(env, "run", "--task", "zsre-smollm2", "--set", "model=/no/such/model", "--out", str(tmp_path / "s"))
    assert proc.returncode == 2, proc.stderr
    assert "model path '/no/such/model' does not exist" in proc.stderr.strip().splitlines()[-1]
    assert not (tmp_path / "s").exists()


def test_help_is_fast_and_has_examples(plugin_env):
    proc = editbench(plugin_env, "run", "--help")
    assert proc.returncode == 0 and "editbench run --method malmen" in proc.stdout
    check = subprocess.run([sys.executable, "-c", "import sys, editbench.cli; print('torch' in sys.modules)"],
                           capture_output=True, text=True, env=plugin_env)
    assert check.stdout.strip() == "False"


def test_list_imports_no_plugin_nor_torch_and_is_fast(plugin_env):
    code = ("import sys, time; from editbench.cli import main; t = time.perf_counter(); "
            "main(['list'], standalone_mode=False); "
            "print('SECONDS', time.perf_counter() - t); "
            "print('LOADED', 'torch' in sys.modules, any(m.startswith(('editbench.methods.', 'editbench.tasks.')) "
            "for m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=plugin_env, timeout=120)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "LOADED False False" in lines, proc.stdout
    assert float(next(line for line in lines if line.startswith("SECONDS")).split()[1]) < 1.0
    # descriptions come from the source without importing: the same text the classes carry
    assert "  malmen-no-reg        MALMEN ablation: lambda = 0" in proc.stdout
    assert "plugin-scale" in proc.stdout and "plug-in method: scale the edited weights by 0.99" in proc.stdout


def test_leaderboard_check_imports_no_torch():
    """Rendering and checking the leaderboards reads JSON records only: no torch, no plug-in."""
    root = Path(__file__).resolve().parents[1]
    code = ("import sys; from editbench.cli import main; "
            "main(['leaderboard', '--check'], standalone_mode=False); "
            "print('LOADED', 'torch' in sys.modules, any(m.startswith(('editbench.methods.', 'editbench.tasks.')) "
            "for m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "LOADED False False" in proc.stdout.splitlines(), proc.stdout


def test_list_descriptions_match_the_classes():
    from editbench.registry import available, describe, load

    for kind in ("method", "task"):
        assert describe(kind) == [(name, load(kind, name).description) for name in available(kind)]


@pytest.fixture
def cli_runner(monkeypatch):
    import logging

    from click.testing import CliRunner

    from editbench.logs import set_level

    monkeypatch.setenv("EDITBENCH_DATA", str(data_dir()))
    yield CliRunner()
    set_level(logging.WARNING)


MISSING_MODEL = ["run", "--task", "zsre-smollm2", "--set", "model=/no/such/model"]


def test_default_shows_only_the_error_and_verbose_shows_progress(cli_runner, tmp_path):
    from editbench.cli import main

    quiet = cli_runner.invoke(main, [*MISSING_MODEL, "--out", str(tmp_path / "a")])
    assert quiet.exit_code == 2 and quiet.stderr.strip().splitlines() == [
        "editbench: error: model path '/no/such/model' does not exist"]
    verbose = cli_runner.invoke(main, ["-v", *MISSING_MODEL, "--out", str(tmp_path / "b")])
    assert verbose.exit_code == 2
    assert verbose.stderr.strip().splitlines() == ["editbench: loading zsre-smollm2",
                                                   "editbench: error: model path '/no/such/model' does not exist"]
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_debug_gives_the_traceback_instead_of_one_line(cli_runner, tmp_path):
    from editbench.cli import main
    from editbench.errors import EditbenchError

    result = cli_runner.invoke(main, ["--debug", *MISSING_MODEL, "--out", str(tmp_path / "a")])
    assert isinstance(result.exception, EditbenchError) and "does not exist" in str(result.exception)
    assert result.exit_code == 1 and "editbench: error:" not in result.stderr
    assert "editbench: loading zsre-smollm2" in result.stderr  # DEBUG shows the INFO messages too
    assert "editbench: ft config {" in result.stderr and "zsre-smollm2 config {" in result.stderr  # and its own
    proc = subprocess.run([sys.executable, "-m", "editbench.cli", "--debug", *MISSING_MODEL, "--out",
                           str(tmp_path / "b")], capture_output=True, text=True,
                          env=dict(os.environ, EDITBENCH_DATA=str(data_dir())), timeout=300)
    assert proc.returncode == 1 and "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith("EditbenchError: model path '/no/such/model' does not exist")


def test_apply_without_out_model_or_score_has_nothing_to_do(cli_runner, tmp_path):
    from editbench.cli import main

    result = cli_runner.invoke(main, ["apply", "--task", "zsre-smollm2", "--edit", str(tmp_path / "edit")])
    assert result.exit_code == 2 and result.stderr.strip().splitlines() == [
        "editbench: error: nothing to do: give --out-model DIR (the edited model) and/or --score"]
