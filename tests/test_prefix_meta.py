"""The meta-gradient and key capture on cached lower blocks == on the whole model (float64, tiny LMs)."""
import copy

import pytest
import torch

from editbench.methods.hypernet.capture import capture
from editbench.methods.hypernet.meta import EditorSetup, meta_gradient
from editbench.methods.hypernet.training import meta_batch
from editbench.prefix import PrefixCache
from test_hypernet_meta import random_editor
from tiny import TinyCausalTask, tiny_causal


def plain(task, names):
    """A cache that never applies: every pass runs the whole model."""
    cache = PrefixCache(task.model, names)
    cache.prefix = None
    return cache


@pytest.fixture(scope="module", params=["gpt2", "gptj", "llama"])
def task(request):
    return TinyCausalTask(request.param, model=tiny_causal(request.param, dtype=torch.float64))


def edited(task, role="malmen", blocks=(2, 3)):
    return [n for n in task.edit_modules(role) if any(f".{b}." in n for b in blocks)]


def grads_of(editor, task, step, setup, mode, prefix):
    editor = copy.deepcopy(editor)
    stats = meta_gradient(editor, task, task.model, step, setup, mode, prefix=prefix)
    return {n: torch.zeros_like(p) if p.grad is None else p.grad.clone() for n, p in editor.named_parameters()}, stats


@pytest.mark.parametrize("mode", ["economic", "concatenated"])
def test_meta_gradient_with_cached_prefix_equals_the_plain_one(task, mode):
    names = edited(task)
    setup = EditorSetup(names=names, solve_dtype=torch.float64, lm_batch_size=3)
    editor = random_editor(task.model, names)
    shared = PrefixCache(task.model, names)
    assert shared.applies and shared.prefix.first == 2
    for seed in (1, 2, 1):  # later steps reuse tuples (and pre-edit log-probs) cached by earlier ones
        step = meta_batch(task.requests("train", 6, seed=seed), seed)
        expected, expected_stats = grads_of(editor, task, step, setup, mode, plain(task, names))
        got, stats = grads_of(editor, task, step, setup, mode, shared)
        assert stats["meta_loss"] == pytest.approx(expected_stats["meta_loss"], rel=1e-10)
        for name in expected:
            torch.testing.assert_close(got[name], expected[name], rtol=1e-8, atol=1e-13, msg=name)
        assert any(float(g.abs().max()) > 0 for g in expected.values())
    assert len(shared.rows) > 6
    assert sum(key[0] == "pre-edit answer logprobs" for key in shared.derived) >= 6


def test_capture_with_cached_prefix_equals_the_plain_one(task):
    names = edited(task, "mend", (1, 2, 3))  # two FFN linears per block, from block 1
    pairs = [(r.prompt, r.target) for r in task.requests("train", 5, seed=3)]
    expected = capture(task, task.model, names, pairs, False, 2, plain(task, names))
    got = capture(task, task.model, names, pairs, False, 2, PrefixCache(task.model, names))
    for name in names:
        for a, b in zip(got[name], expected[name]):
            torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-12)


def test_answer_logits_are_the_logits_at_the_answer_positions(task):
    pairs = [(r.prompt, r.target) for r in task.requests("train", 4, seed=4)]
    batch = task.batch(pairs)
    with torch.no_grad():
        expected = task.logits(task.model, batch)[batch.labels != -100]
        got = task.answer_logits(task.model, batch)
    assert got.shape == (int((batch.labels != -100).sum()), expected.shape[-1])
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)


def test_validation_on_the_cache_scores_like_the_whole_model(task):
    from editbench.methods.hypernet.training import validate

    names = edited(task)
    setup = EditorSetup(names=names, solve_dtype=torch.float64)
    editor = random_editor(task.model, names)
    requests = task.requests("valid", 4, seed=0)
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    expected = validate(editor, task, task.model, requests, setup)
    cache = PrefixCache(task.model, names)
    for _ in range(2):  # filling, then served from the cache
        got = validate(editor, task, task.model, requests, setup, cache)
        assert got == pytest.approx(expected, rel=1e-9)
    assert len(cache.rows) >= 4
    assert all(torch.equal(v, before[k]) for k, v in task.model.state_dict().items())
