"""The public Python API (`editbench.load`, `edit`, `EditOutcome`, `load_edit`, `apply_edit`, `run`)
(the README's example itself: tests/test_readme.py)."""
import re
import subprocess
import sys

import pytest
from tiny import TinyCausalTask

import editbench
from editbench import registry
from editbench.errors import EditbenchError
from editbench.provenance import model_fingerprint


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("EDITBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_public_names_are_listed_and_import_no_torch():
    for name in ("load", "edit", "EditOutcome", "load_edit", "apply_edit", "save_edit", "run", "RunSpec",
                 "EditRequest", "EditbenchError"):
        assert name in dir(editbench) and name in editbench.__all__
    check = subprocess.run([sys.executable, "-c", "import sys, editbench; dir(editbench); print('torch' in sys.modules)"],
                           capture_output=True, text=True, timeout=60)
    assert check.stdout.strip() == "False", check.stderr


def test_edit_accepts_requests_and_method_objects(cache):
    target = editbench.load(TinyCausalTask("gpt2"))
    before = model_fingerprint(target.model)
    method = registry.create("method", "ft", {"epochs": 15, "lr": 1e-2})
    facts = TinyCausalTask("gpt2").requests("eval", 3, 0)
    out = editbench.edit(target, facts, method=method)
    assert [s["id"] for s in out.scores] == [f.id for f in facts]
    assert out.record["edits"] == 3 and out.record["method"] == "ft" and set(out.deltas) == set(out.record["delta_norms"])
    out.revert()
    assert model_fingerprint(target.model) == before
    with pytest.raises(EditbenchError, match="already reverted"):
        out.revert()


@pytest.mark.parametrize("facts, message", [
    ([{"prompt": "x"}], "fact 0 is {'prompt': 'x'}: expected a dict with 'prompt' and 'target'"),
    ([{"prompt": "x", "target": "y", "answer": "z"}], "fact 0 has unknown key 'answer'"),
    ([], "no facts to edit"),
])
def test_bad_facts_are_one_line(cache, facts, message):
    with pytest.raises(EditbenchError, match=re.escape(message)):
        editbench.edit(editbench.load(TinyCausalTask("gpt2")), facts)


def test_settings_for_objects_are_refused(cache):
    with pytest.raises(EditbenchError, match="settings batch_size given for a task object"):
        editbench.load(TinyCausalTask("gpt2"), settings={"batch_size": 4})
    with pytest.raises(EditbenchError, match="settings lr given for a method object"):
        editbench.edit(editbench.load(TinyCausalTask("gpt2")), [{"prompt": "a?", "target": "b"}],
                       method=registry.create("method", "ft"), settings={"lr": 1e-3})


def test_run_with_objects_and_write_false_returns_the_record(cache):
    spec = editbench.RunSpec(method="ft", edits=4, sets={"epochs": 2}, out=str(cache / "store"))
    record = editbench.run(spec, task=TinyCausalTask("gpt2"), write=False)
    assert record["task"] == "tiny-causal" and record["edits"] == 4 and "edits_file" not in record
    assert not (cache / "store").exists()


def test_trained_editor_trains_on_the_given_facts_and_is_cached_apart(cache):
    source = TinyCausalTask("gpt2")
    train, valid = source.requests("train", 12, 0), source.requests("valid", 4, 0)
    settings = dict(rank=16, train_steps=2, lm_batch_size=4, valid_every=2, valid_edits=4, init_lr=1e-3)
    target = editbench.load(TinyCausalTask("gpt2", splits={"train": 4, "valid": 4, "eval": 4}))
    out = editbench.edit(target, source.requests("eval", 3, 0), method="malmen", settings=settings,
                         train_facts=train, valid_facts=valid)
    assert out.record["task"].startswith("tiny-causal+facts-") and out.deltas
    assert out.record["prepare_info"]["reused"] is False
    out.revert()
    again = editbench.edit(target, source.requests("eval", 3, 0), method="malmen", settings=settings,
                           train_facts=train, valid_facts=valid)
    assert again.record["prepare_info"]["reused"] is True and again.record["task"] == out.record["task"]
    view = editbench.with_training_facts(target.task, train)
    assert view.split_size("train") == 12 and view.split_size("eval") == 4 and view.tokenizer is target.task.tokenizer
    with pytest.raises(EditbenchError, match="13 train facts asked for, 12 given"):
        view.requests("train", 13, 0)
