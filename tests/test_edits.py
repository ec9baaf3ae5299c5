"""Saved edits (`editbench.edits`): save/load with checksums, the fingerprint check, exact revert, a
fresh process reproducing the post-edit scores, and the CLI (`run --save-edit`, `apply`)."""
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from test_cli import editbench as cli, plugin_env  # noqa: F401  (the plug-in fixture: a tiny GPT-2 task)
from tiny import TinyCausalTask

import editbench
from editbench.edits import DELTAS_FILE, apply_edit, load_edit, save_edit
from editbench.errors import CorruptArtifact, EditbenchError
from editbench.provenance import model_fingerprint

TESTS = Path(__file__).resolve().parent
FACTS = [{"prompt": "Where does Ann live?", "target": "oslo", "rephrases": ["Ann lives in which town?"],
          "subject": "Ann", "unrelated": [("What is grass?", "green")]},
         {"prompt": "Where does Bob live?", "target": "rome", "subject": "Bob"}]
FT = {"epochs": 20, "lr": 1e-2}


@pytest.fixture
def edited(tmp_path, monkeypatch):
    """An FT edit of a tiny GPT-2 through the API, and its unedited fingerprint."""
    monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path / "cache"))
    target = editbench.load(TinyCausalTask("gpt2"))
    before = model_fingerprint(target.model)
    return editbench.edit(target, FACTS, method="ft", settings=FT), before


def test_save_load_round_trip(tmp_path):
    deltas = {"a.weight": torch.randn(3, 4), "b": torch.randn(2, 2, dtype=torch.bfloat16)}
    save_edit(deltas, tmp_path / "e", {"method": "x", "model_fingerprint": "f" * 64})
    saved = load_edit(tmp_path / "e")
    assert saved.info["method"] == "x" and saved.fingerprint == "f" * 64
    assert all(torch.equal(saved.deltas[k], v) for k, v in deltas.items())
    assert json.loads((tmp_path / "e" / "deltas.json").read_text())["checksum"]["bytes"] > 0


def test_corrupt_or_missing_edit_is_one_line(tmp_path):
    save_edit({"w": torch.ones(2, 2)}, tmp_path / "e", {"model_fingerprint": "f"})
    path = tmp_path / "e" / DELTAS_FILE
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(CorruptArtifact, match="deltas.safetensors"):
        load_edit(tmp_path / "e")
    with pytest.raises(EditbenchError, match="holds no saved edit"):
        load_edit(tmp_path / "nothing")
    with pytest.raises(EditbenchError, match="no weight shifts"):
        save_edit({}, tmp_path / "f", {"model_fingerprint": "f"})


def test_revert_is_exact_and_saved_edit_reapplies_bit_identically(edited, tmp_path):
    out, before = edited
    assert out.scores[0]["post"]["es"] > out.scores[0]["pre"]["es"]
    assert isinstance(out.scores[0]["predicted"], str)
    out.save(tmp_path / "e")
    edited_fp = model_fingerprint(out.model)
    out.revert()
    assert model_fingerprint(out.model) == before
    apply_edit(out.model, tmp_path / "e")
    assert model_fingerprint(out.model) == edited_fp == load_edit(tmp_path / "e").info["edited_fingerprint"]
    apply_edit(out.model, tmp_path / "e", sign=-1)
    assert model_fingerprint(out.model) == before


def test_fingerprint_mismatch_is_an_error_unless_forced(edited, tmp_path):
    out, before = edited
    out.save(tmp_path / "e")
    other = TinyCausalTask("gpt2").load_model()
    with torch.no_grad():
        other.transformer.h[0].mlp.c_fc.weight[0, 0] += 1.0
    with pytest.raises(EditbenchError) as info:
        apply_edit(other, tmp_path / "e")
    message = str(info.value)
    assert before[:16] in message and model_fingerprint(other)[:16] in message and "\n" not in message
    apply_edit(other, tmp_path / "e", force=True)


FRESH = '''
import json, sys
sys.path.insert(0, {tests!r})
from tiny import TinyCausalTask
import editbench
from editbench.metrics import aggregate
from editbench.provenance import model_fingerprint
task = TinyCausalTask("gpt2")
model = task.load_model()
saved = editbench.load_edit({folder!r})
requests = saved.requests()
pre = task.evaluate(model, requests)
editbench.apply_edit(model, saved)
post = aggregate(task.evaluate(model, requests), pre)
print(json.dumps({{"post": post, "same_weights": model_fingerprint(model) == saved.info["edited_fingerprint"]}}))
'''


def test_saved_edit_reproduces_post_scores_in_a_fresh_process(edited, tmp_path):
    out, _ = edited
    out.save(tmp_path / "e")
    script = FRESH.format(tests=str(TESTS), folder=str(tmp_path / "e"))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["same_weights"]
    assert result["post"] == out.record["post"]


def test_cli_save_edit_save_model_and_apply(plugin_env, tmp_path):  # noqa: F811
    edit, store = tmp_path / "edit", tmp_path / "store"
    proc = cli(plugin_env, "run", "--method", "ft", "--task", "plugin-tiny", "--edits", "4", "--set", "epochs=10",
               "--set", "lr=1e-2", "--out", str(store), "--save-edit", str(edit), "--save-model")
    assert proc.returncode == 0, proc.stderr
    record = json.loads((store / "runs.jsonl").read_text())
    assert record["saved_edit"] == str(edit)
    rows = [json.loads(line) for line in (store / record["edits_file"]).read_text().splitlines()]
    edit_row = rows[0]["post_outcome"]["edit"]
    assert isinstance(edit_row["predicted_text"], str) and isinstance(edit_row["gold_text"], str)
    assert edit_row["gold_text"].replace(" ", "").endswith(rows[0]["request"]["target"].replace(" ", ""))
    saved = load_edit(edit)
    assert saved.info["post"] == record["post"] and saved.info["model_fingerprint"] == record["model_fingerprint"]

    # The edited model loads with transformers alone and is the saved edit applied to the task's model.
    from transformers import AutoModelForCausalLM

    def same_weights(folder, other):
        plain = AutoModelForCausalLM.from_pretrained(folder).state_dict()
        return plain.keys() == other.keys() and all(torch.equal(plain[k], other[k]) for k in plain)

    task = TinyCausalTask("gpt2")
    model = task.load_model()
    apply_edit(model, saved)
    assert model_fingerprint(model) == saved.info["edited_fingerprint"]
    assert same_weights(edit / "model", model.state_dict())

    proc = cli(plugin_env, "apply", "--task", "plugin-tiny", "--edit", str(edit), "--out-model", str(tmp_path / "m"),
               "--score")
    assert proc.returncode == 0, proc.stderr
    assert "bit-identical" in proc.stdout and "exactly the saved run's scores" in proc.stdout
    assert same_weights(tmp_path / "m", model.state_dict())


@pytest.mark.parametrize("args, message", [
    (["--save-model"], "--save-model needs --save-edit DIR"),
    (["--save-edit", str(TESTS / "tiny.py")], "is a file (expected a new or empty folder)"),
    (["--save-edit", str(TESTS)], "is a folder holding other files"),
])
def test_bad_save_edit_is_one_line(plugin_env, tmp_path, args, message):  # noqa: F811
    proc = cli(plugin_env, "run", "--task", "plugin-tiny", "--edits", "2", "--out", str(tmp_path / "s"), *args)
    assert proc.returncode == 2 and message in proc.stderr, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "s").exists()


def test_prepare_summary_is_one_line():
    from editbench.cli import prepare_summary

    assert prepare_summary("zsre-smollm2", {}) == "zsre-smollm2: nothing to prepare"
    line = prepare_summary("fever-minilm", {"model": "m/x", "prep_claims": 10, "valid_accuracy": 0.875,
                                            "epoch_losses": [1.0], "config": {"a": 1}})
    assert line == "fever-minilm: ready (model m/x, prep_claims 10, valid_accuracy 0.875)"


def test_cli_apply_checks_the_model(plugin_env, tmp_path):  # noqa: F811
    """`apply` onto a model the edit was not made on, or `--revert` from an unedited one, is one line."""
    other = TinyCausalTask("gpt2", model=TinyCausalTask("gpt2").load_model())
    with torch.no_grad():
        other.model.transformer.h[0].mlp.c_fc.weight[0, 0] += 1.0
    out = editbench.edit(editbench.load(other), FACTS[:1], method="ft", settings={"epochs": 2})
    out.save(tmp_path / "e")
    for extra, message in (([], "was made on model"), (["--revert"], "cannot take back the edit")):
        proc = cli(plugin_env, "apply", "--task", "plugin-tiny", "--edit", str(tmp_path / "e"),
                   "--out-model", str(tmp_path / "m"), *extra)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert len(proc.stderr.strip().splitlines()) == 1 and not (tmp_path / "m").exists()
