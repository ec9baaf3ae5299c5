"""One meta-gradient of the editor (Sec. 4.2): economic (Alg. 2) or concatenated (Fig. 1).

L_meta = L_gen + lambda_loc * L_loc, L_gen the mean NLL per answer token of the equivalent tuples,
L_loc the mean KL(p_pre || p_post) per answer position of the unrelated tuples. Both are sums
divided by the total token counts, so any LM batch split gives the same value and gradient.
After a call, the editor parameters' `.grad` hold d L_meta / d theta (accumulated).

Every LM pass runs from the first edited block on hidden states cached per tuple (`PrefixCache`):
pass one cache for a whole training run to compute the unchanging lower blocks once per tuple.
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
from editbench.methods.hypernet.shifts import chunks, compute_shifts, residual_of, stack_groups
from editbench.methods.hypernet.solve import normal_equation_autograd, ridge_grad, value_diff_grads, weight_grad_solve
from editbench.modules import get_module, is_transposed, weight_of
from editbench.prefix import PrefixCache


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


def _reference(prefix: PrefixCache, pairs: Sequence[tuple[str, str]], batch: Batch, compute) -> Tensor:
    """Pre-edit log-probabilities `[k, V]` of an unrelated batch, kept per tuple in `prefix.derived`
    (the unedited model never changes during meta-training); `compute(batch)` computes them."""
    keys = [("pre-edit answer logprobs", tuple(p)) for p in pairs]
    if all(k in prefix.derived for k in keys):
        return torch.cat([prefix.derived[k] for k in keys])
    pre = compute(batch)
    for key, rows in zip(keys, pre.split((batch.labels != -100).sum(-1).tolist())):
        prefix.keep(key, rows)
    return pre


def _batch_loss(task: Task, model: nn.Module, batch: Batch, pre: Tensor | None) -> Tensor:
    """Summed NLL (pre is None) or summed KL(pre || post) over the batch's answer positions."""
    if pre is None:
        return answer_nll(task, model, batch)
    post = answer_logprobs(task, model, batch)  # [k, V]
    return (pre.exp() * (pre - post)).sum()


def _meta_terms(task: Task, model: nn.Module, plan, reference, prefix: PrefixCache):
    """Yields the loss term of each LM batch, scaled so that their sum is L_meta.

    `reference(batch)` gives the pre-edit log-probabilities of an unrelated batch.
    """
    eq_batches, unrel_batches, coef_gen, coef_loc, _ = plan
    for b in eq_batches:
        with prefix.feed(b):
            term = coef_gen * _batch_loss(task, model, b, None)
        yield term
    for b in unrel_batches:
        pre = reference(b)  # before the edited pass: its shared opening is run with the edited weights
        with prefix.feed(b):
            term = coef_loc * _batch_loss(task, model, b, pre)
        yield term


def _by_length(pairs: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    return sorted(pairs, key=lambda p: len(p[0]) + len(p[1]))  # batches of similar lengths: less padding


def _plan(task: Task, model: nn.Module, step: MetaBatch, setup: EditorSetup):
    """(equivalent batches, unrelated batches, 1 / #gen tokens, lambda_loc / #loc tokens, the tuples of
    each unrelated batch by `id(batch)`)."""
    device = next(model.parameters()).device
    eq = _batches(task, _by_length(step.equivalents), setup.lm_batch_size, device)
    unrelated = _by_length(step.unrelated)
    unrel = _batches(task, unrelated, setup.lm_batch_size, device)
    tuples = {id(b): unrelated[i * setup.lm_batch_size:(i + 1) * setup.lm_batch_size] for i, b in enumerate(unrel)}
    coef_gen = 1.0 / _answer_count(eq) if eq else 0.0
    coef_loc = setup.loc_coef / _answer_count(unrel) if unrel else 0.0
    return eq, unrel, coef_gen, coef_loc, tuples


def meta_gradient(editor: Editor, task: Task, model: nn.Module, step: MetaBatch, setup: EditorSetup,
                  mode: str = "economic", prefix: PrefixCache | None = None) -> dict[str, float]:
    """Accumulate d L_meta / d theta into the editor's `.grad`; returns loss and residual stats.

    `prefix`: hidden states of the tuples below the first edited block, kept across calls (built
    for this call when None)."""
    if mode not in ("economic", "concatenated"):
        raise ValueError(f"unknown training mode {mode!r}")
    if prefix is None:
        prefix = PrefixCache(model, setup.names)
    cache = capture(task, model, setup.names, step.edits, setup.answer_only, setup.lm_batch_size, prefix)
    for name, (keys, value_grads) in cache.items():
        editor.observe(name, keys, value_grads)  # running statistics: once per step, before any pass
    if mode == "economic":
        return _economic(editor, task, model, cache, step, setup, prefix)
    return _concatenated(editor, task, model, cache, step, setup, prefix)


def _economic(editor, task, model, cache, step, setup, prefix) -> dict[str, float]:
    shifts = compute_shifts(editor, cache, setup.aggregation, setup.chunk_size, setup.solve_dtype, setup.no_reg)
    plan = _plan(task, model, step, setup)
    # (iv)-(v): L_meta through the edited LM, gradient accumulated on the edited weights only.
    modules = [get_module(model, n) for n in setup.names]
    originals = [weight_of(m).detach().clone() for m in modules]
    edited = [w + shifts[n].shift.to(w.dtype) for n, w in zip(setup.names, originals)]

    def load(weights):
        with torch.no_grad():
            for m, w in zip(modules, weights):
                weight_of(m).copy_(w)

    def compute_reference(batch):  # pre-edit distribution, one batch at a time
        load(originals)
        try:
            with prefix.feed(batch, graph=False):
                return reference_logprobs(task, model, [batch])[0]
        finally:
            load(edited)

    def reference(batch):
        return _reference(prefix, plan[4][id(batch)], batch, compute_reference)

    meta_loss = 0.0
    try:
        with grad_only_on(model, [m.weight for m in modules]):
            for m in modules:
                m.weight.grad = None
            load(edited)
            for term in _meta_terms(task, model, plan, reference, prefix):
                term.backward()
                meta_loss += float(term.detach())
            weight_grads = {n: _weight_grad(m) for n, m in zip(setup.names, modules)}  # [d', d]
    finally:
        load(originals)
        for m in modules:
            m.weight.grad = None
    # (vi)-(vii): re-run the editor with graph, chunk by chunk over the stacked rows of each shape
    # group, and back-propagate the proxy loss.
    for group in stack_groups(editor, cache):
        if setup.aggregation == "normal":
            diff_grads = torch.empty_like(group.value_grads)  # grad_D^T rows, [N, d']
            for name in group.names:
                layer = shifts[name]
                solved = weight_grad_solve(weight_grads[name].to(group.keys.dtype), layer.system)  # M: [d', d]
                diff_grads[group.slices[name]] = value_diff_grads(solved, group.keys[group.slices[name]])  # Theorem 1
                if not setup.no_reg:
                    _add_ridge_grad(editor, name, ridge_grad(solved, layer.shift))  # Theorem 2
            for c in chunks(len(group.keys), setup.chunk_size):
                diffs = editor.rows_value_diffs(group.key, group.keys[c], group.value_grads[c], group.layer[c])
                (diffs * diff_grads[c]).sum().backward()  # sum_j <grad_d_j, d_j>
        else:
            positions = {n: editor.groups[group.key].index(n) for n in group.names}
            for c in chunks(len(group.keys), setup.chunk_size):
                # <grad_W, S*_c> with S*_c = -eta grad~_V U~^T, row by row: -eta grad~_v_j^T grad_W u~_j.
                layer = group.layer[c]
                pseudo_keys, pseudo_grads = editor.nets[group.key](group.keys[c], group.value_grads[c], layer)
                lr = editor.rows_lr(group.key, layer)  # [c, 1]
                proxy = 0.0
                for name, position in positions.items():
                    rows = layer == position
                    grad_w = weight_grads[name].to(group.keys.dtype)  # [d', d]
                    proxy = proxy - (lr[rows] * (pseudo_grads[rows] @ grad_w) * pseudo_keys[rows]).sum()
                proxy.backward()
    return {"meta_loss": meta_loss, "mean_residual": residual_of(shifts)}


def _weight_grad(module: nn.Module) -> Tensor:
    """grad of L_meta w.r.t. the module's weight as `[d', d]` (zero when no tuple reached it)."""
    grad = module.weight.grad
    if grad is None:
        return torch.zeros_like(weight_of(module))
    return (grad.T if is_transposed(module) else grad).clone()


def _add_ridge_grad(editor: Editor, name: str, d_ridge: Tensor) -> None:
    """Accumulate dL/dtheta = lambda dL/dlambda (lambda = exp(theta)) into `editor.log_ridge.grad`."""
    grad = torch.zeros_like(editor.log_ridge)
    grad[editor.index(name)] = (d_ridge * editor.ridge(name).detach().to(d_ridge.dtype)).to(grad.dtype)
    editor.log_ridge.grad = grad if editor.log_ridge.grad is None else editor.log_ridge.grad + grad


def _concatenated(editor, task, model, cache, step, setup, prefix) -> dict[str, float]:
    plan = _plan(task, model, step, setup)
    pre = {}
    for b in plan[1]:
        with prefix.feed(b, graph=False):
            pre[id(b)] = _reference(prefix, plan[4][id(b)], b, lambda b: reference_logprobs(task, model, [b])[0])
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
            total = sum(_meta_terms(task, model, plan, lambda b: pre[id(b)], prefix))
            total.backward()
    finally:
        for h in handles:
            h.remove()
    return {"meta_loss": float(total.detach())}
