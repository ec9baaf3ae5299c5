"""Fault injection through the CLI, one test per row of issue 10's table.

Each row ends either in one clear line (exit code 2, nothing recorded) or in a correct result.
The runs use a throw-away plug-in (tiny random GPT-2, synthetic facts) so they take seconds; a
second test of a row that costs several runs is marked slow (each row keeps a fast one).
"""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from datadir import data_dir

TESTS = os.path.dirname(os.path.abspath(__file__))

PLUGIN = '''
"""Fault-injection plug-in: tiny GPT-2 tasks whose model comes from a cache folder in the user cache."""
from editbench.data import user_cache
from editbench.files import atomic_folder
from tiny import TinyCausalTask, tiny_causal

try:
    from editbench.files import usable_folder
except ImportError:  # editbench before issue 10: a cache folder was trusted as it was
    def usable_folder(folder):
        return (folder / "config.json").is_file()


def _cached(name, verified):
    from transformers import AutoModelForCausalLM
    folder = user_cache() / "models" / name
    if not (usable_folder(folder) if verified else (folder / "config.json").is_file()):
        with atomic_folder(folder) as staging:
            tiny_causal("gpt2").save_pretrained(staging)
    return AutoModelForCausalLM.from_pretrained(folder).eval()


class FaultTiny(TinyCausalTask):
    """Its model cache is verified against its manifest (what every cached model must do)."""
    name = "fault-tiny"
    description = "tiny GPT-2, model from a verified cache folder"
    verified = True

    def __init__(self, config=None, data_dir=None):
        super().__init__("gpt2", config=config)

    def load_model(self, device="cpu", dtype=None):
        import torch
        self.model = _cached(self.name, self.verified).to(device=device, dtype=dtype or torch.float32)
        return self.model


class FaultTinyUnverified(FaultTiny):
    """Its model cache is trusted blindly (as before issue 10): the runner's guard must catch it."""
    name = "fault-tiny-unverified"
    description = "tiny GPT-2, model from an unverified cache folder"
    verified = False
'''

PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"
[project]
name = "editbench-fault-plugin"
version = "0.0.1"
[project.entry-points."editbench.tasks"]
fault-tiny = "editbench_fault_plugin:FaultTiny"
fault-tiny-unverified = "editbench_fault_plugin:FaultTinyUnverified"
[tool.setuptools]
py-modules = ["editbench_fault_plugin"]
'''

MALMEN_TINY = ["--set", "rank=4", "--set", "train_steps=1", "--set", "valid_every=1", "--set", "valid_edits=2",
               "--set", "lm_batch_size=8", "--set", "init_lr=1e-3"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    (root / "pkg").mkdir()
    (root / "pkg" / "pyproject.toml").write_text(textwrap.dedent(PYPROJECT))
    (root / "pkg" / "editbench_fault_plugin.py").write_text(textwrap.dedent(PLUGIN))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                    "--target", str(root / "site"), str(root / "pkg")], check=True, capture_output=True)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([env.get("PYTHONPATH", ""), str(root / "site"), TESTS]).strip(os.pathsep)
    env["OMP_NUM_THREADS"] = "1"
    for var in ("EDITBENCH_RESULTS", "XDG_DATA_HOME", "EDITBENCH_OWN_DATA"):
        env.pop(var, None)
    return env


@pytest.fixture
def cache_env(env, tmp_path):
    """`env` with a fresh user cache and a home folder of its own."""
    (tmp_path / "home").mkdir()
    return dict(env, EDITBENCH_CACHE=str(tmp_path / "cache"), HOME=str(tmp_path / "home"))


def editbench(env, *args, cwd=None):
    return subprocess.run([sys.executable, "-m", "editbench.cli", *args], env=env, capture_output=True, text=True,
                          timeout=600, cwd=cwd)


def run_tiny(env, store, *args, method="ft", task="fault-tiny"):
    return editbench(env, "run", "--method", method, "--task", task, "--edits", "4", "--out", str(store), *args)


def assert_one_line(proc, message, store=None, before_load=True):
    """Exit 2, the error as the last stderr line, no traceback, nothing recorded."""
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("editbench: error: ") and message in last, last
    if before_load:  # nothing was loaded: the error is the only line
        assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    if store is not None:
        assert not (store / "runs.jsonl").exists()


def records(store):
    return [json.loads(line) for line in (store / "runs.jsonl").read_text().splitlines()]


# -- row: --set lr=1e30 (FT) ----------------------------------------------------------------------
def test_huge_learning_rate_is_stopped_not_recorded(cache_env, tmp_path):
    proc = run_tiny(cache_env, tmp_path / "s", "--set", "lr=1e30")
    assert_one_line(proc, "non-finite", tmp_path / "s", before_load=False)
    assert "in ft, " in proc.stderr and "step" in proc.stderr
    assert not (tmp_path / "s").exists()


# -- row: --dtype float16 on CPU ------------------------------------------------------------------
def test_float16_on_cpu_is_refused(cache_env, tmp_path):
    assert_one_line(run_tiny(cache_env, tmp_path / "s", "--dtype", "float16"), "--dtype float16 is not supported on CPU",
                    tmp_path / "s")


# -- row: cached model overwritten with same-size garbage ----------------------------------------
def _garbage_weights(folder):
    """Overwrite the tensor bytes of model.safetensors with random bytes, keeping its header and size."""
    path = folder / "model.safetensors"
    data = bytearray(path.read_bytes())
    header = 8 + int.from_bytes(data[:8], "little")
    data[header:] = os.urandom(len(data) - header)
    path.write_bytes(bytes(data))


def test_garbage_in_a_verified_model_cache_is_detected_and_rebuilt(cache_env, tmp_path):
    first = run_tiny(cache_env, tmp_path / "s")
    assert first.returncode == 0, first.stderr[-2000:]
    _garbage_weights(tmp_path / "cache" / "models" / "fault-tiny")
    again = run_tiny(cache_env, tmp_path / "s")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "model.safetensors is corrupt" in again.stderr and "rebuilding" in again.stderr
    a, b = records(tmp_path / "s")
    assert a["pre"] == b["pre"] and a["post"] == b["post"] and a["delta_norms"] == b["delta_norms"]
    assert a["own_data"] is False  # (the other half of test_own_data_is_recorded)


@pytest.mark.slow
def test_garbage_in_an_unverified_model_cache_stops_the_run(cache_env, tmp_path):
    assert run_tiny(cache_env, tmp_path / "s1", task="fault-tiny-unverified").returncode == 0
    _garbage_weights(tmp_path / "cache" / "models" / "fault-tiny-unverified")
    proc = run_tiny(cache_env, tmp_path / "s2", task="fault-tiny-unverified")
    assert_one_line(proc, "non-finite weights", tmp_path / "s2", before_load=False)
    assert "the loaded model, layer transformer." in proc.stderr


# -- rows: editor checkpoint overwritten with garbage / truncated ---------------------------------
@pytest.mark.parametrize("damage", ["garbage", pytest.param("truncated", marks=pytest.mark.slow)])
def test_damaged_editor_checkpoint_is_retrained_in_the_same_run(cache_env, tmp_path, damage):
    first = run_tiny(cache_env, tmp_path / "s", *MALMEN_TINY, method="malmen")
    assert first.returncode == 0, first.stderr[-2000:]
    (trained,) = records(tmp_path / "s")
    path = trained["prepare_info"]["checkpoint"]
    data = open(path, "rb").read()
    with open(path, "wb") as f:
        f.write(os.urandom(len(data)) if damage == "garbage" else data[:len(data) // 2])
    again = run_tiny(cache_env, tmp_path / "s", *MALMEN_TINY, method="malmen")
    assert again.returncode == 0, again.stderr[-2000:]
    assert "SafetensorError" not in again.stderr and "Traceback" not in again.stderr
    warned = [line for line in again.stderr.splitlines() if line.startswith(f"editbench: warning: {path} is corrupt (")]
    assert len(warned) == 1 and warned[0].endswith(": retraining"), again.stderr[-2000:]
    last = records(tmp_path / "s")[-1]
    assert last["prepare_info"]["reused"] is False  # retrained, never loaded from the damaged file
    assert last["post"] == trained["post"] and last["delta_norms"] == trained["delta_norms"]  # the same editor
    from editbench.files import read_artifact
    assert "train_seconds" in read_artifact(path)[1]  # a sound checkpoint in its place


# -- rows: settings out of range (epochs=-1, batch_size=0, lr=-1, lr=nan) ------------------------
@pytest.mark.parametrize("setting, message", [
    ("epochs=-1", "bad --set epochs=-1 for method ft"),
    ("method.batch_size=0", "bad --set batch_size=0 for method ft"),
    ("lr=-1", "bad --set lr=-1.0 for method ft"),
    ("lr=nan", "bad --set lr=nan for method ft"),
    ("task.batch_size=0", "bad --set batch_size=0 for task fault-tiny"),
    ("task.batch_size=-3", "bad --set batch_size=-3 for task fault-tiny: expected a finite number >= 1"),
])
def test_out_of_range_settings_stop_before_the_model_loads(cache_env, tmp_path, setting, message):
    assert_one_line(run_tiny(cache_env, tmp_path / "s", "--set", setting), message, tmp_path / "s")
    assert not (tmp_path / "s").exists()


def test_a_model_folder_transformers_cannot_load_is_one_line(cache_env, tmp_path):
    (tmp_path / "empty").mkdir()
    env = dict(cache_env, EDITBENCH_DATA=str(data_dir()))
    proc = editbench(env, "run", "--task", "zsre-smollm2", "--set", f"model={tmp_path / 'empty'}", "--out",
                     str(tmp_path / "s"))
    assert_one_line(proc, f"cannot load the model set by model='{tmp_path / 'empty'}'", tmp_path / "s",
                    before_load=False)
    assert not (tmp_path / "s").exists()


# -- row: --out under a file, or not writable -----------------------------------------------------
def test_out_under_a_file_fails_before_the_model_loads(cache_env, tmp_path):
    (tmp_path / "f").write_text("x")
    assert_one_line(run_tiny(cache_env, tmp_path / "f" / "s"), "is a file")


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_fails_before_the_model_loads(cache_env, tmp_path):
    (tmp_path / "ro").mkdir(mode=0o500)
    assert_one_line(run_tiny(cache_env, tmp_path / "ro" / "s"), "is not writable")


# -- row: a data file whose sha256 differs from DATA.md ------------------------------------------
def _edited_data(folder):
    shared = data_dir()
    for sub in ("zsre", "nq"):
        (folder / sub).mkdir(parents=True)
        for f in (shared / sub).iterdir():
            (folder / sub / f.name).write_bytes(f.read_bytes())
    path = folder / "zsre" / "zsre_mend_train_800.json"
    records_ = json.loads(path.read_text())
    key = next(k for k, v in records_[0].items() if isinstance(v, str))
    records_[0][key] += " edited"  # one answer edited
    path.write_text(json.dumps(records_))


def test_edited_data_file_is_an_error_naming_both_hashes(cache_env, tmp_path):
    _edited_data(tmp_path / "data")
    proc = editbench(cache_env, "run", "--task", "zsre-smollm2", "--data-dir", str(tmp_path / "data"),
                     "--out", str(tmp_path / "s"))
    assert_one_line(proc, "zsre_mend_train_800.json has sha256 ", tmp_path / "s")
    assert "expected b4ee6022a6af72816a44dfa0f7f9e800921d71ef4254f51d6d9d6c60c86a2406" in proc.stderr
    assert "--own-data" in proc.stderr


def test_own_data_is_recorded(cache_env, tmp_path):
    assert run_tiny(cache_env, tmp_path / "s", "--own-data").returncode == 0
    assert [r["own_data"] for r in records(tmp_path / "s")] == [True]  # False: the model-cache test above


# -- row: --data-dir empty or missing while EDITBENCH_DATA is set ---------------------------------
@pytest.mark.parametrize("kind", ["missing", "empty"])
def test_empty_or_missing_data_dir_is_an_error(cache_env, tmp_path, kind):
    folder = tmp_path / "d"
    if kind == "empty":
        folder.mkdir()
    env = dict(cache_env, EDITBENCH_DATA=str(data_dir()))
    proc = editbench(env, "run", "--task", "zsre-smollm2", "--data-dir", str(folder), "--out", str(tmp_path / "s"))
    assert_one_line(proc, "does not exist" if kind == "missing" else "is not in --data-dir", tmp_path / "s")


# -- row: SIGKILL while the de-quantised model or a statistics file is being written -------------
def test_the_next_start_removes_staging_left_by_a_killed_writer(cache_env, tmp_path):
    from editbench.files import _HOST

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True).stdout.strip()
    models = tmp_path / "cache" / "models"
    staging = models / f".smollm2-135m-instruct-f32.staging-{_HOST}-{dead}-abcd1234"
    staging.mkdir(parents=True)
    (staging / "model.safetensors").write_bytes(b"\0" * 1000)
    stats = tmp_path / "cache" / "statistics" / f".layer.safetensors.tmp-{_HOST}-{dead}-xyz"
    stats.parent.mkdir(parents=True)
    stats.write_bytes(b"\0" * 100)
    proc = run_tiny(cache_env, tmp_path / "s", "--edits", "0")  # even a run refused at once cleans up
    assert proc.returncode == 2
    assert not staging.exists() and not stats.exists()


# -- rows: malformed records, --results MISSING --------------------------------------------------
def test_leaderboard_skips_malformed_records_naming_file_and_line(env, tmp_path):
    good = {"method": "ft", "task": "t", "edits": 4, "seed": 0, "commit": "0" * 40, "device": "cpu",
            "pre": {"es": 0.1, "gs": None, "ls": 0.5}, "post": {"es": 0.9, "gs": None, "ls": 0.5}}
    lines = [good, {**good, "edits": "many"}, {k: v for k, v in good.items() if k not in ("pre", "post")},
             {**good, "seed": 1}]
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / "runs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in lines))
    proc = editbench(env, "leaderboard", "--results", str(tmp_path / "results"), "--out", str(tmp_path / "lb"))
    assert proc.returncode == 0, proc.stderr
    assert "runs.jsonl:2: not a run record: 'edits' is 'many'" in proc.stderr
    assert "runs.jsonl:3: not a run record: 'pre' is missing" in proc.stderr
    table = (tmp_path / "lb" / "t.md").read_text()
    assert "| ft " in table and " 2 " in table.split("| ft ")[1].split("\n")[0]  # the two good seeds only


def test_leaderboard_from_a_missing_folder_rewrites_nothing(env, tmp_path):
    (tmp_path / "lb").mkdir()
    (tmp_path / "lb" / "README.md").write_text("# Leaderboards\n\nkeep me\n")
    for args in ([], ["--check"]):
        proc = editbench(env, "leaderboard", "--results", str(tmp_path / "MISSING"), "--out", str(tmp_path / "lb"),
                         *args)
        assert_one_line(proc, "results folder")
    assert (tmp_path / "lb" / "README.md").read_text() == "# Leaderboards\n\nkeep me\n"


# -- row: the quick start writes into the committed results/ -------------------------------------
def test_quick_start_writes_to_the_personal_store_not_results(cache_env, tmp_path):
    work = tmp_path / "checkout"
    work.mkdir()
    proc = editbench(cache_env, "run", "--method", "ft", "--task", "fault-tiny", "--edits", "2", cwd=work)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert not (work / "results").exists()
    store = tmp_path / "home" / ".local" / "share" / "editbench" / "results"
    assert len(records(store)) == 1 and str(store / "runs.jsonl") in proc.stdout  # the run says where it is recorded
    proc = editbench(dict(cache_env, EDITBENCH_RESULTS=str(tmp_path / "mine")), "run", "--method", "ft",
                     "--task", "fault-tiny", "--edits", "2", cwd=work)
    assert proc.returncode == 0 and len(records(tmp_path / "mine")) == 1
