"""Alg. 2 (economic) meta-gradient == concatenated (MEND-style) meta-gradient, float64, tiny GPT-2."""
import copy

import pytest
import torch

from editbench.methods.hypernet.meta import EditorSetup, meta_gradient
from editbench.methods.hypernet.network import Editor
from editbench.methods.hypernet.training import meta_batch
from editbench.modules import get_module, shape_of
from tiny import TinyCausalTask, tiny_causal


@pytest.fixture(scope="module")
def task():
    return TinyCausalTask("gpt2", model=tiny_causal("gpt2", dtype=torch.float64))


def random_editor(model, names, seed=0):
    torch.manual_seed(seed)
    editor = Editor({n: shape_of(get_module(model, n)) for n in names}, rank=6, blocks=2, init_lr=0.05).double()
    with torch.no_grad():
        for p in editor.nets.parameters():
            p.add_(0.05 * torch.randn_like(p))
        editor.log_ridge.copy_(torch.linspace(-1.0, 0.5, len(names)))
    return editor


def meta_grads(editor, task, step, setup, mode):
    editor = copy.deepcopy(editor)  # running statistics are updated once per call
    stats = meta_gradient(editor, task, task.model, step, setup, mode)
    return {n: torch.zeros_like(p) if p.grad is None else p.grad.clone() for n, p in editor.named_parameters()}, stats


def assert_same_grads(got, expected):
    assert got.keys() == expected.keys()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-7, atol=1e-12, msg=name)
    assert any(float(g.abs().max()) > 0 for g in expected.values())


@pytest.mark.parametrize("role,answer_only,aggregation", [
    ("malmen", True, "normal"),  # MALMEN
    ("mend", False, "sum"),  # MEND: two weight shapes, all tokens
    ("malmen", True, "sum"),  # malmen-sum-shifts
])
def test_economic_equals_concatenated(task, role, answer_only, aggregation):
    names = task.edit_modules(role)
    requests = task.requests("train", 5, seed=1)
    step = meta_batch(requests, seed=0)
    editor = random_editor(task.model, names)
    base = dict(names=names, answer_only=answer_only, aggregation=aggregation, solve_dtype=torch.float64)
    reference, ref_stats = meta_grads(editor, task, step, EditorSetup(**base, lm_batch_size=64, chunk_size=10**6),
                                      "concatenated")
    for batch, chunk in [(64, 10**6), (1, 11), (3, 32)]:
        got, stats = meta_grads(editor, task, step, EditorSetup(**base, lm_batch_size=batch, chunk_size=chunk),
                                "economic")
        assert stats["meta_loss"] == pytest.approx(ref_stats["meta_loss"], rel=1e-10)
        assert_same_grads(got, reference)
    got, _ = meta_grads(editor, task, step, EditorSetup(**base, lm_batch_size=2, chunk_size=3), "concatenated")
    assert_same_grads(got, reference)


def test_meta_gradient_leaves_the_model_unchanged(task):
    names = task.edit_modules("malmen")
    before = {k: v.clone() for k, v in task.model.state_dict().items()}
    flags = [p.requires_grad for p in task.model.parameters()]
    editor = random_editor(task.model, names)
    meta_grads(editor, task, meta_batch(task.requests("train", 4, seed=2), 0),
               EditorSetup(names=names, solve_dtype=torch.float64, lm_batch_size=3), "economic")
    for k, v in task.model.state_dict().items():
        assert torch.equal(v, before[k]), k
    assert flags == [p.requires_grad for p in task.model.parameters()]
    assert all(p.grad is None for p in task.model.parameters())
