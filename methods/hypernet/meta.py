"""One meta-gradient of the editor (Sec. 4.2): economic (Alg. 2) or concatenated (Fig. 1).

L_meta = L_gen + lambda_loc * L_loc, L_gen the mean NLL per answer token of the equivalent tuples,
L_loc the mean KL(p_pre || p_post) per answer position of the unrelated tuples. Both are sums
divided by the total token counts, so any LM batch split gives the same value and gradient.
After a call, the editor parameters' `.grad` hold d L_meta / d theta (accumulated).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn
from torch.nn import functional as F

from editbench.api import Batch, Task
from editbench.methods.hypernet.capture import answer_logprobs, answer_nll, capture, grad_only_on
from editbench.methods.hypernet.network import Editor
from editbench.methods.hypernet.shifts import chunks, compute_shifts, residual_of
from editbench.methods.hypernet.solve import normal_equation_autograd, ridge_grad, value_diff_grads, weight_grad_solve
from editbench.modules import get_module, is_transposed, weight_of


@dataclass
class MetaBatch:
    """Tuples of one meta-training step: edits (x_i, y_i), equivalents (x^e, y^e), unrelated (x^u, y^u)."""

    edits: list[tuple[str, str]]
    equivalents: list[tuple[str, str]]
    unrelated: list[tuple[str, str]]


@dataclass
class EditorSetup:
    """How the editor edits: which layers, which tokens, how shifts are aggregated."""

    names: list[str]
    answer_only: bool = True
    aggregation: str = "normal"
    no_reg: bool = False
    lm_batch_size: int = 64
    chunk_size: int = 4096
    solve_dtype: torch.dtype = torch.float32
    loc_coef: float = 1.0


def _batches(task: Task, pairs: Sequence[tuple[str, str]], size: int, device) -> list[Batch]:
    return [task.batch(pairs[s:s + size]).to(device) for s in range(0, len(pairs), size)]


def _answer_count(batches: Sequence[Batch]) -> int:
    return max(1, sum(int((b.labels != -100).sum()) for b in batches))


@torch.no_grad()
def reference_logprobs(task: Task, model: nn.Module, batches: Sequence[Batch]) -> list[Tensor]:
    """Pre-edit log-probabilities at the answer positions of each batch: [k, V] each."""
    return [answer_logprobs(task, model, b) for b in batches]


def _batch_loss(task: Task, model: nn.Module, batch: Batch, pre: Tensor | None) -> Tensor:
    """Summed NLL (pre is None) or summed KL(pre || post) over the batch's answer positions."""
    if pre is None:
        return answer_nll(task, model, batch)
    post = answer_logprobs(task, model, batch)  # [k, V]
    return (pre.exp() * (pre - post)).sum()


def _meta_terms(task: Task, model: nn.Module, batch_plan, coef_gen: float, coef_loc: float):
    """Yields the loss term of each LM batch (scaled so that their sum is L_meta)."""
    eq_batches, unrel_batches, pre = batch_plan
    for b in eq_batches:
        yield coef_gen * _batch_loss(task, model, b, None)
    for b, p in zip(unrel_batches, pre):
        yield coef_loc * _batch_loss(task, model, b, p)


def _plan(task: Task, model: nn.Module, step: MetaBatch, setup: EditorSetup):
    device = next(model.parameters()).device
    eq = _batches(task, step.equivalents, setup.lm_batch_size, device)
    unrel = _batches(task, step.unrelated, setup.lm_batch_size, device)
    pre = reference_logprobs(task, model, unrel)
    coef_gen = 1.0 / _answer_count(eq) if eq else 0.0
    coef_loc = setup.loc_coef / _answer_count(unrel) if unrel else 0.0
    return (eq, unrel, pre), coef_gen, coef_loc


def meta_gradient(editor: Editor, task: Task, model: nn.Module, step: MetaBatch, setup: EditorSetup,
                  mode: str = "economic") -> dict[str, float]:
    """Accumulate d L_meta / d theta into the editor's `.grad`; returns loss and residual stats."""
    cache = capture(task, model, setup.names, step.edits, setup.answer_only, setup.lm_batch_size)
    for name, (keys, value_grads) in cache.items():
        editor.observe(name, keys, value_grads)  # running statistics: once per step, before any pass
    if mode == "economic":
        return _economic(editor, task, model, cache, step, setup)
    if mode == "concatenated":
        return _concatenated(editor, task, model, cache, step, setup)
    raise ValueError(f"unknown training mode {mode!r}")


def _economic(editor, task, model, cache, step, setup) -> dict[str, float]:
    shifts = compute_shifts(editor, cache, setup.aggregation, setup.chunk_size, setup.solve_dtype, setup.no_reg)
    plan, coef_gen, coef_loc = _plan(task, model, step, setup)
    # (iv)-(v): L_meta through the edited LM, gradient accumulated on the edited weights only.
    modules = [get_module(model, n) for n in setup.names]
    originals = [weight_of(m).detach().clone() for m in modules]
    meta_loss = 0.0
    try:
        with grad_only_on(model, [m.weight for m in modules]):
            for m in modules:
                m.weight.grad = None
            with torch.no_grad():
                for name, m in zip(setup.names, modules):
                    weight_of(m).add_(shifts[name].shift.to(m.weight.dtype))
            for term in _meta_terms(task, model, plan, coef_gen, coef_loc):
                term.backward()
                meta_loss += float(term.detach())
            weight_grads = {n: (m.weight.grad.T if is_transposed(m) else m.weight.grad).clone()
                            for n, m in zip(setup.names, modules)}  # [d', d]
    finally:
        with torch.no_grad():
            for m, w in zip(modules, originals):
                weight_of(m).copy_(w)
                m.weight.grad = None
    # (vi)-(vii): re-run the editor with graph, chunk by chunk, and back-propagate <grad_D, D>.
    for name, (keys, value_grads) in cache.items():
        grad_w = weight_grads[name].to(keys.dtype)
        layer = shifts[name]
        if setup.aggregation == "normal":
            solved = weight_grad_solve(grad_w, layer.system)  # M: [d', d]
            diff_grads = value_diff_grads(solved, keys).to(keys.dtype)  # Theorem 1, rows [n, d']
            if not setup.no_reg:
                index = editor.index(name)
                d_ridge = ridge_grad(solved, layer.shift) * editor.ridge(name).detach().to(solved.dtype)  # Theorem 2, dL/dtheta
                grad = torch.zeros_like(editor.log_ridge)
                grad[index] = d_ridge.to(grad.dtype)
                editor.log_ridge.grad = grad if editor.log_ridge.grad is None else editor.log_ridge.grad + grad
            for c in chunks(len(keys), setup.chunk_size):
                diffs = editor.value_diffs(name, keys[c], value_grads[c])  # [c, d']
                (diffs * diff_grads[c]).sum().backward()
        else:
            for c in chunks(len(keys), setup.chunk_size):
                # <grad_W, S*_c> with S*_c = -eta grad~_V U~^T, without forming S*_c.
                pseudo_keys, pseudo_grads = editor.pseudo(name, keys[c], value_grads[c])
                proxy = -editor.lr[editor.index(name)] * ((pseudo_grads @ grad_w) * pseudo_keys).sum()
                proxy.backward()
    return {"meta_loss": meta_loss, "mean_residual": residual_of(shifts)}


def _concatenated(editor, task, model, cache, step, setup) -> dict[str, float]:
    plan, coef_gen, coef_loc = _plan(task, model, step, setup)
    shifts: dict[str, Tensor] = {}
    for name, (keys, value_grads) in cache.items():
        if setup.aggregation == "normal":
            diffs = editor.value_diffs(name, keys, value_grads)  # [n, d'], graph kept
            ridge = torch.zeros((), dtype=keys.dtype) if setup.no_reg else editor.ridge(name).to(keys.dtype)
            shifts[name] = normal_equation_autograd(keys, diffs, ridge)
        else:
            shifts[name] = editor.summed_shift(name, keys, value_grads)
    handles = []
    for name, shift in shifts.items():
        def add_shift(module, args, output, shift=shift):
            return output + F.linear(args[0], shift.to(output.dtype))  # (W + S*) u
        handles.append(get_module(model, name).register_forward_hook(add_shift))
    try:
        with grad_only_on(model, []):
            total = sum(_meta_terms(task, model, plan, coef_gen, coef_loc))
            total.backward()
    finally:
        for h in handles:
            h.remove()
    return {"meta_loss": float(total.detach())}
