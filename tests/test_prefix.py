"""editbench.prefix: running a model from block k on cached hidden states == running the whole model."""
import pytest
import torch

from editbench.errors import EditbenchError
from editbench.prefix import Prefix, PrefixCache, locate_blocks
from editbench.tasks.common.layers import modules_for
from tiny import LAYERS, TinyCausalTask, tiny_causal
from tiny_models_extra import tiny_bert, tiny_t5

PAIRS = [("Where does Abc live?", "paris"), ("Hi", "x"), ("What is the capital of a place?", "some long answer"),
         ("Q?", "yes")]


@pytest.fixture(scope="module", params=["gpt2", "gptj", "llama"])
def task(request):
    return TinyCausalTask(request.param, model=tiny_causal(request.param, dtype=torch.float64))


def real_logits(task, batch):
    """Logits at the attended positions: [n_real, V] (padding positions are never read)."""
    return task.logits(task.model, batch)[batch.inputs["attention_mask"][:, :-1].bool()]


@pytest.mark.parametrize("first", [1, 2, 3])
def test_cached_prefix_gives_the_full_model_logits(task, first):
    names = [n for n in task.edit_modules("malmen") if f".{first}." in n or f".{first + 1}." in n]
    prefix = Prefix.of(task.model, names)
    assert prefix is not None and prefix.first == first
    batch = task.batch(PAIRS)  # right-padded: rows of 9 to 36 tokens
    assert (batch.inputs["attention_mask"] == 0).any()
    expected = real_logits(task, batch)
    hidden = prefix.hidden(batch.inputs)
    calls = []
    handle = prefix.blocks[0].register_forward_hook(lambda *a: calls.append(1))
    try:
        with prefix.feeding(hidden):
            got = real_logits(task, batch)
            assert all(type(prefix.blocks[i]).__name__ == "_StandIn" for i in range(first))
    finally:
        handle.remove()
    assert not calls  # the original lower blocks did not run
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    assert all(type(prefix.blocks[i]).__name__ != "_StandIn" for i in range(LAYERS))  # restored
    # Feeding other states changes the output: the stand-in really injects them.
    with prefix.feeding(hidden + torch.randn_like(hidden)):
        assert not torch.allclose(real_logits(task, batch), expected)


def test_per_sequence_cache_repads_into_any_batch(task):
    names = task.edit_modules("malmen")[2:]  # blocks 2, 3
    cache = PrefixCache(task.model, names)
    assert cache.applies and cache.prefix.first == 2
    cache.states(task.batch(PAIRS[:3]).inputs)
    assert len(cache.rows) == 3
    # A batch mixing cached sequences with a new one, in another order and another padding width.
    pairs = [PAIRS[3], PAIRS[1], PAIRS[0]]
    batch = task.batch(pairs)
    expected = real_logits(task, batch)
    with cache.feed(batch):
        got = real_logits(task, batch)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    assert len(cache.rows) == 4
    states = cache.states(batch.inputs)
    assert states.shape[:2] == batch.inputs["input_ids"].shape
    n = int(batch.inputs["attention_mask"][1].sum())  # "Hi x": the shortest row
    assert n < states.shape[1] and float(states[1, n:].abs().max()) == 0.0  # padding stays zero


def test_gradients_through_the_cached_path_match(task):
    names = task.edit_modules("malmen")[1:]
    cache = PrefixCache(task.model, names)
    batch = task.batch(PAIRS)
    weight = task.model.get_submodule(names[0]).weight

    def grad():
        weight.grad = None
        task.nll(task.model, batch, reduction="sum").backward()
        return weight.grad.clone()

    expected = grad()
    with cache.feed(batch):
        got = grad()
    weight.grad = None
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-12)


def test_active_cache_serves_a_task_evaluation(task):
    names = task.edit_modules("malmen")[2:]
    requests = task.requests("valid", 3, seed=0)
    expected = task.evaluate(task.model, requests)
    cache = PrefixCache(task.model, names)
    lower = []
    handle = task.model.get_submodule(cache.prefix.path)[0].register_forward_hook(lambda *a: lower.append(1))
    try:
        with cache.active():
            first = task.evaluate(task.model, requests)
            runs = len(lower)  # filling the cache runs the lower blocks once per new batch
            again = task.evaluate(task.model, requests)
    finally:
        handle.remove()
    assert first == expected and again == expected
    assert runs > 0 and len(lower) == runs  # the second evaluation ran on the cache only
    assert len(cache.rows) == sum(1 + len(r.equivalents) + len(r.unrelated) for r in requests)
    assert all(type(b).__name__ != "_StandIn" for b in task.model.get_submodule(cache.prefix.path))


def test_over_the_memory_budget_nothing_is_kept(task):
    cache = PrefixCache(task.model, task.edit_modules("malmen")[2:], max_bytes=0)
    batch = task.batch(PAIRS)
    expected = real_logits(task, batch)
    with cache.feed(batch):
        torch.testing.assert_close(real_logits(task, batch), expected, rtol=1e-10, atol=1e-10)
    assert not cache.rows


def test_where_the_prefix_does_not_apply():
    t5 = tiny_t5(layers=2)
    assert locate_blocks(t5, ["encoder.block.1.layer.1.DenseReluDense.wo"]) is None  # encoder-decoder
    gpt2 = tiny_causal("gpt2")
    assert locate_blocks(gpt2, modules_for("gpt2", LAYERS, "malmen")) is None  # block 0 is edited
    assert locate_blocks(gpt2, ["lm_head"]) is None  # not inside a block list
    assert locate_blocks(gpt2, ["transformer.h.3.mlp.c_proj", "transformer.h.2.mlp.c_fc"]) == ("transformer.h", 2)
    assert locate_blocks(tiny_bert(layers=2), ["encoder.layer.1.output.dense"]) == ("encoder.layer", 1)


def test_plain_path_where_the_prefix_does_not_apply():
    task = TinyCausalTask("gpt2", model=tiny_causal("gpt2", dtype=torch.float64))
    cache = PrefixCache(task.model, modules_for("gpt2", LAYERS, "malmen"))  # includes block 0
    assert not cache.applies
    batch = task.batch(PAIRS)
    expected = real_logits(task, batch)
    with cache.feed(batch), cache.active():
        torch.testing.assert_close(real_logits(task, batch), expected, rtol=0, atol=0)
    assert not cache.rows


def test_feeding_before_hidden_is_a_clear_error():
    prefix = Prefix.of(tiny_causal("llama"), ["model.layers.2.mlp.down_proj"])
    with pytest.raises(EditbenchError, match="before any"):
        with prefix.feeding(torch.zeros(1, 2, 32)):
            pass
