"""Sequential editing (`--rounds T`, `editbench.sequential`) on tiny models: the second round edits the
model the first round left (checked against edits made by hand, one after the other), the T rounds
edit disjoint facts and the run is scored on all T·m of them, T = 1 is the plain single edit."""
import copy
import json

import pytest
import torch
from test_cli import editbench, plugin_env  # noqa: F401  (the plug-in task as a registered name)
from tiny import TinyCausalTask, tiny_causal

from editbench.errors import EditbenchError
from editbench.methods.ft import FineTune, FineTuneConfig
from editbench.methods.memit import Memit, MemitConfig
from editbench.metrics import aggregate
from editbench.modules import get_module, weight_of
from editbench.runner import RunSpec, execute, run
from editbench.measure import PhaseStats
from editbench.sequential import add_deltas, combined_phase, split_rounds

M = 4
FT = dict(epochs=3, lr=1e-2)
MEMIT_TINY = dict(prefixes=MemitConfig().prefixes[:1], steps=4, weight_decay=0.0, clamp_norm_factor=4.0,
                  update_weight=1.0, stats_samples=20)


@pytest.fixture
def corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("\n".join(f"Paragraph {i}: the {i}th town has {i * 7} houses and a river." for i in range(30)))
    return str(path)


def make_method(name, corpus, tmp_path):
    if name == "ft":
        return FineTune(FineTuneConfig(**FT))
    return Memit(MemitConfig(**MEMIT_TINY, stats_corpus=corpus, stats_dir=str(tmp_path / "stats")))


def weights(model, names):
    return {name: weight_of(get_module(model, name)).detach().clone() for name in names}


@pytest.mark.parametrize("method_name", ["ft", "memit"])
def test_two_rounds_compose_like_edits_made_one_after_the_other(method_name, corpus, tmp_path):
    task = TinyCausalTask("gpt2")
    model = tiny_causal("gpt2")
    by_hand_model = copy.deepcopy(model)
    method = make_method(method_name, corpus, tmp_path)
    names = method.modules(task, model)
    before = weights(model, names)

    spec = RunSpec(method=method_name, edits=M, rounds=2, eval_each_round=True, seed=3)
    outcome = execute(spec, method=method, task=task, model=model, write=False)
    record = outcome.record

    # By hand: the same 2·m facts, the first m edited, then the next m on the edited model.
    facts = task.requests("eval", 2 * M, 3)
    assert [row["request"]["id"] for row in outcome.per_edit] == [r.id for r in facts]
    by_hand = make_method(method_name, corpus, tmp_path)
    by_hand.prepare(task, by_hand_model, tmp_path / "by-hand")
    first = by_hand.edit(task, by_hand_model, facts[:M])
    after_first = task.evaluate(by_hand_model, facts[:M])
    second = by_hand.edit(task, by_hand_model, facts[M:])

    rounds = outcome.round_deltas
    assert len(rounds) == 2
    for name in names:
        torch.testing.assert_close(rounds[0][name], first.deltas[name])
        torch.testing.assert_close(rounds[1][name], second.deltas[name])
        # the run's weights are the hand-made ones, and the summed shifts are what the rounds added
        torch.testing.assert_close(weight_of(get_module(model, name)), weight_of(get_module(by_hand_model, name)))
        torch.testing.assert_close(outcome.deltas[name], weights(model, [name])[name] - before[name],
                                   atol=1e-5, rtol=1e-4)

    # The second round saw the first round's weights: edited on the unedited model it differs.
    alone = make_method(method_name, corpus, tmp_path)
    fresh = tiny_causal("gpt2")
    alone.prepare(task, fresh, tmp_path / "alone")
    on_unedited = alone.edit(task, fresh, facts[M:])
    assert any(not torch.allclose(on_unedited.deltas[n], second.deltas[n], atol=1e-6) for n in names)

    # Scored on all 2·m facts after the last round; per-round scores on the facts edited so far.
    assert record["rounds"] == 2 and record["edits"] == M and len(outcome.per_edit) == 2 * M
    assert [row["round"] for row in outcome.per_edit] == [1] * M + [2] * M
    per_round = record["per_round"]
    assert [row["round"] for row in per_round] == [1, 2] and [row["edits"] for row in per_round] == [M, M]
    assert record["edit_seconds"] == pytest.approx(sum(row["edit_seconds"] for row in per_round))
    assert record["peak_memory_bytes"] == max(row["peak_memory_bytes"] for row in per_round)
    pre_first = task.evaluate(tiny_causal("gpt2"), facts[:M])
    expected = aggregate(after_first, pre_first)
    for key in ("es", "gs", "ls", "retention"):
        assert per_round[0]["scores"][key] == pytest.approx(expected[key])
    assert per_round[1]["scores"] == record["post"]


def test_one_round_is_the_single_edit(tmp_path):
    task = TinyCausalTask("llama")
    model, by_hand_model = tiny_causal("llama"), tiny_causal("llama")
    spec = RunSpec(method="ft", edits=M, seed=1)
    outcome = execute(spec, method=FineTune(FineTuneConfig(**FT)), task=task, model=model, write=False)
    facts = task.requests("eval", M, 1)
    pre = task.evaluate(by_hand_model, facts)
    result = FineTune(FineTuneConfig(**FT)).edit(task, by_hand_model, facts)
    post = task.evaluate(by_hand_model, facts)
    record = outcome.record
    assert record["rounds"] == 1 and record["edits"] == M and len(record["per_round"]) == 1
    assert record["pre"] == aggregate(pre) and record["post"] == aggregate(post, pre)
    assert record["edit_seconds"] == record["per_round"][0]["edit_seconds"]
    assert "scores" not in record["per_round"][0]
    for name, delta in result.deltas.items():
        assert torch.equal(outcome.deltas[name], delta)
        assert torch.equal(outcome.round_deltas[0][name], delta)


def test_edits_times_rounds_larger_than_the_split_is_one_line():
    spec = RunSpec(method="ft", edits=20, rounds=2)
    with pytest.raises(EditbenchError, match=r"--edits 20 x --rounds 2 = 40 facts is larger than the eval split "
                                             r"of tiny-causal \(32 requests\)"):
        run(spec, task=TinyCausalTask("gpt2"), write=False)
    with pytest.raises(EditbenchError, match="--rounds 0 must be at least 1"):
        run(RunSpec(method="ft", edits=2, rounds=0), task=TinyCausalTask("gpt2"), write=False)


def test_given_facts_must_cut_into_equal_rounds():
    task = TinyCausalTask("gpt2")
    facts = task.requests("eval", 5, 0)
    with pytest.raises(EditbenchError, match=r"5 facts cannot be cut into --rounds 2 rounds"):
        run(RunSpec(method="ft", rounds=2), task=task, requests=facts, write=False)


def test_split_rounds_is_disjoint_and_in_order():
    items = list(range(12))
    chunks = split_rounds(items, 3)
    assert chunks == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9, 10, 11]]
    assert sum(chunks, []) == items


def test_add_deltas_sums_per_module_without_changing_its_inputs():
    a = {"x": torch.ones(2, 2)}
    b = {"x": torch.full((2, 2), 2.0), "y": torch.zeros(1, 3)}
    total = add_deltas(a, b)
    assert torch.equal(total["x"], torch.full((2, 2), 3.0)) and torch.equal(total["y"], torch.zeros(1, 3))
    assert torch.equal(a["x"], torch.ones(2, 2))


def test_combined_phase_sums_time_and_keeps_the_highest_peak():
    phases = [PhaseStats(seconds=1.5, peak_memory_bytes=10, peak_rss_bytes=10, start_memory_bytes=4,
                         peak_above_start_bytes=6),
              PhaseStats(seconds=2.0, peak_memory_bytes=30, peak_rss_bytes=30, start_memory_bytes=9,
                         peak_above_start_bytes=21)]
    combined = combined_phase(phases)
    assert combined.seconds == 3.5 and combined.peak_memory_bytes == 30 and combined.peak_above_start_bytes == 21
    assert combined.start_memory_bytes == 4 and combined.peak_gpu_torch_bytes is None


def test_cli_rounds_prints_and_records_each_round(plugin_env, tmp_path):  # noqa: F811
    proc = editbench(plugin_env, "run", "--method", "plugin-scale", "--task", "plugin-tiny", "--edits", "3",
                     "--rounds", "2", "--eval-each-round", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "m = 3 x 2 rounds" in proc.stdout and "round 1: edit" in proc.stdout and "round 2: edit" in proc.stdout
    record = json.loads((tmp_path / "runs.jsonl").read_text())
    assert record["rounds"] == 2 and record["edits"] == 3
    assert [set(row) >= {"edit_seconds", "scores"} for row in record["per_round"]] == [True, True]
    edits = [json.loads(line) for line in (tmp_path / record["edits_file"]).read_text().splitlines()]
    assert [row["round"] for row in edits] == [1, 1, 1, 2, 2, 2]
    assert len({row["request"]["id"] for row in edits}) == 6  # disjoint rounds

    too_many = editbench(plugin_env, "run", "--method", "ft", "--task", "plugin-tiny", "--edits", "17",
                         "--rounds", "2", "--out", str(tmp_path / "none"))
    assert too_many.returncode == 2 and len(too_many.stderr.strip().splitlines()) == 1
    assert "--edits 17 x --rounds 2 = 34 facts is larger than the eval split of plugin-tiny (32 requests)" in too_many.stderr
    assert not (tmp_path / "none").exists()


def test_the_commit_is_read_at_the_start_and_a_change_during_the_run_marks_it_dirty(monkeypatch, tmp_path):
    task, model = TinyCausalTask("gpt2"), tiny_causal("gpt2")
    spec = RunSpec(method="ft", edits=M, seed=0)
    calls = iter(["a" * 40, "a" * 40])
    monkeypatch.setattr("editbench.provenance.git_commit", lambda root=None: next(calls))
    monkeypatch.setattr("editbench.source.source_hash", lambda method, task, commit: f"code-of-{commit[:4]}")
    record = execute(spec, method=FineTune(FineTuneConfig(**FT)), task=task, model=model, write=False).record
    assert record["commit"] == "a" * 40 and record["code"] == "code-of-aaaa"
    calls = iter(["a" * 40, "b" * 40])  # someone committed (or edited the tree) while it ran
    record = execute(spec, method=FineTune(FineTuneConfig(**FT)), task=task, model=tiny_causal("gpt2"), write=False).record
    assert record["commit"] == "a" * 40 + "-dirty" and record["code"] is None
