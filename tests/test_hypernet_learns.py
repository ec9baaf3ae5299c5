"""The editor learns from the state users start in: the default (A.6) initialisation and settings.

These tests failed on the relu blocks (`B`, `b`, `A` and the scale never received a gradient) and
would fail on any editor whose parameters stay where they start.
"""
import copy

import pytest
import torch

from editbench.methods.hypernet.capture import answer_nll, capture, grad_only_on
from editbench.methods.hypernet.meta import EditorSetup, meta_gradient
from editbench.methods.hypernet.training import make_optimizer, meta_batch
from editbench.methods.malmen import Malmen
from editbench.methods.mend import Mend
from editbench.modules import get_module, is_transposed
from tiny import TinyCausalTask, tiny_causal

# Zero at the default init by construction (B = 0 makes dL/dA and dL/dscale vanish): they receive a
# gradient from the second step on, once B has moved.
ZERO_AT_INIT = ("down", "scale")


@pytest.fixture(scope="module")
def task():
    return TinyCausalTask("gpt2", model=tiny_causal("gpt2", dtype=torch.float64))


def default_editor(cls, task):
    """The editor exactly as `prepare` builds it from the default config (A.6 initialisation)."""
    method = cls()
    return method, method.build_editor(task, task.model).double()


def grads_of(editor):
    return {n: (torch.zeros_like(p) if p.grad is None else p.grad.clone()) for n, p in editor.named_parameters()}


def test_default_init_is_the_references(task):
    _, editor = default_editor(Malmen, task)
    for net in editor.nets.values():
        for block in net.blocks:
            assert torch.equal(block.up, torch.zeros_like(block.up)) and torch.equal(block.bias, torch.zeros_like(block.bias))
            # A ~ N(0, 1), no 1/sqrt(width) scaling
            assert float(block.down.detach().std()) == pytest.approx(1.0, abs=0.05)
            assert torch.equal(block.scale, torch.ones_like(block.scale))
    torch.testing.assert_close(editor.lr.detach(), torch.full_like(editor.lr, Malmen.Config().init_lr), rtol=1e-6, atol=0)
    assert torch.all(editor.log_ridge == 0)


@pytest.mark.parametrize("cls", [Malmen, Mend])
def test_one_meta_gradient_reaches_the_blocks_from_the_default_init(task, cls):
    method, editor = default_editor(cls, task)
    setup = method.setup(task, task.model)
    setup.solve_dtype = torch.float64
    step = meta_batch(task.requests("train", 6, seed=3), seed=0)
    meta_gradient(editor, task, task.model, step, setup)
    grads = grads_of(editor)
    for name, grad in grads.items():
        if name.endswith(ZERO_AT_INIT):
            assert float(grad.abs().max()) == 0.0, name
        elif not (cls is Mend and name == "log_ridge"):  # the sum of shifts has no ridge
            assert float(grad.abs().max()) > 0.0, f"{name} receives no meta-gradient at the default init"
    # after one optimiser step every block parameter, A and the scale included, gets a gradient
    optimizer = make_optimizer(editor, method.config)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    meta_gradient(editor, task, task.model, meta_batch(task.requests("train", 6, seed=4), seed=1), setup)
    for name, grad in grads_of(editor).items():
        if not (cls is Mend and name == "log_ridge"):
            assert float(grad.abs().max()) > 0.0, f"{name} receives no meta-gradient after one step"


def validation_loss(editor, task, setup, step):
    editor = copy.deepcopy(editor)
    return meta_gradient(editor, task, task.model, step, setup)["meta_loss"]


def test_meta_training_moves_every_parameter_and_lowers_the_validation_loss(task):
    config = Malmen.Config(meta_lr=1e-3, lr_meta_lr=1e-3)  # default init; a larger meta lr for 10 steps
    method = Malmen(config)
    editor = method.build_editor(task, task.model).double()
    setup = method.setup(task, task.model)
    setup.solve_dtype = torch.float64
    valid = meta_batch(task.requests("valid", 8, seed=0), seed=0)
    start = copy.deepcopy(editor.state_dict())
    before = validation_loss(editor, task, setup, valid)
    optimizer = make_optimizer(editor, config)
    for step in range(10):
        optimizer.zero_grad(set_to_none=True)
        meta_gradient(editor, task, task.model, meta_batch(task.requests("train", 8, seed=step), seed=step), setup)
        torch.nn.utils.clip_grad_norm_(editor.parameters(), config.max_grad_norm)
        optimizer.step()
    after = validation_loss(editor, task, setup, valid)
    for name, param in editor.named_parameters():
        assert not torch.equal(param, start[name]), f"{name} did not move in 10 meta-steps"
    assert after < before - 0.1, (before, after)  # about 4.60 -> 4.41 (ln 98 = 4.58: the random LM)


def test_cached_keys_and_value_gradients_reproduce_the_weight_gradient(task):
    """sum_j grad_v_j u_j^T over every token = dL/dW from autograd (Sec. 4.1); answer-only rows are a subset."""
    model, names = task.model, task.edit_modules("malmen")
    pairs = [(r.prompt, r.target) for r in task.requests("train", 5, seed=0)]
    cache = capture(task, model, names, pairs, answer_only=False, batch_size=2)
    weights = [get_module(model, n).weight for n in names]
    with grad_only_on(model, weights):
        loss = sum(answer_nll(task, model, task.batch(pairs[s:s + 2])) for s in range(0, len(pairs), 2))
        autograd = torch.autograd.grad(loss, weights)
    for name, grad in zip(names, autograd):
        keys, value_grads = cache[name]
        expected = grad.T if is_transposed(get_module(model, name)) else grad  # GPT-2's Conv1D stores [d, d']
        torch.testing.assert_close(value_grads.T @ keys, expected, rtol=1e-9, atol=1e-12)
    answer = capture(task, model, names, pairs, answer_only=True, batch_size=2)
    for name in names:  # each answer key among every token's keys (to rounding: the passes pack differently)
        nearest = torch.cdist(answer[name][0], cache[name][0], compute_mode="donot_use_mm_for_euclid_dist").min(-1).values
        assert float(nearest.max()) <= 1e-9 * float(cache[name][0].norm(dim=-1).max())
        assert 0 < len(answer[name][0]) < len(cache[name][0])


def test_economic_equals_concatenated_from_the_default_init(task):
    method, editor = default_editor(Malmen, task)
    names = task.edit_modules("malmen")
    step = meta_batch(task.requests("train", 5, seed=1), seed=0)
    grads = {}
    for mode, batch, chunk in [("concatenated", 64, 10**6), ("economic", 2, 7)]:
        copy_ = copy.deepcopy(editor)
        setup = EditorSetup(names=names, solve_dtype=torch.float64, lm_batch_size=batch, chunk_size=chunk)
        meta_gradient(copy_, task, task.model, step, setup, mode)
        grads[mode] = grads_of(copy_)
    assert any(float(g.abs().max()) > 0 for g in grads["concatenated"].values())
    for name, grad in grads["concatenated"].items():
        torch.testing.assert_close(grads["economic"][name], grad, rtol=1e-7, atol=1e-14, msg=name)
