"""Caching keys u and value gradients grad_v L of the edited linear layers (Alg. 1, lines 1-4).

A forward hook keeps each module's input (the key, `[b, t, d]`) and output (the value, `[b, t, d']`);
`torch.autograd.grad` of the summed answer NLL w.r.t. the values gives the value gradients.
Only the positions selected by `task.key_mask` are kept, as rows `[n, d]` / `[n, d']`.
With a `PrefixCache` the blocks below the first edited one are skipped (their output is cached).
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from editbench.api import Batch, Task
from editbench.modules import get_module
from editbench.prefix import PrefixCache


def answer_logprobs(task: Task, model: nn.Module, batch: Batch) -> Tensor:
    """Log-probabilities at the answer positions `[k, V]`, at least float32 (float64 stays float64)."""
    logits = task.answer_logits(model, batch)
    return torch.log_softmax(logits.to(torch.promote_types(logits.dtype, torch.float32)), -1)


def answer_nll(task: Task, model: nn.Module, batch: Batch) -> Tensor:
    """-sum log p(y|x) over the answer tokens of the batch (Alg. 1, line 1)."""
    logprobs = answer_logprobs(task, model, batch)  # [k, V]
    return -logprobs.gather(-1, batch.labels[batch.labels != -100].unsqueeze(-1)).sum()


@contextmanager
def grad_only_on(model: nn.Module, params: Sequence[nn.Parameter]) -> Iterator[None]:
    """Within the block only `params` require grad (the rest of the LM is frozen)."""
    saved = [(p, p.requires_grad) for p in model.parameters()]
    for p, _ in saved:
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    try:
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


@contextmanager
def recording(model: nn.Module, names: Sequence[str]) -> Iterator[dict[str, tuple[Tensor, Tensor]]]:
    """Yields a dict filled at each forward with module name -> (input [b, t, d], output [b, t, d'])."""
    seen: dict[str, tuple[Tensor, Tensor]] = {}
    handles = []
    for name in names:
        def hook(module, args, output, name=name):
            seen[name] = (args[0], output)
        handles.append(get_module(model, name).register_forward_hook(hook))
    try:
        yield seen
    finally:
        for h in handles:
            h.remove()


BATCH_OVERHEAD_TOKENS = 32


def _at_least_float32(rows: Tensor) -> Tensor:
    """bf16/fp16 activations are cached in float32, the editor's dtype; float64 stays float64."""
    return rows.to(torch.promote_types(rows.dtype, torch.float32))


def _first_key(masks: Sequence[Tensor]) -> int | None:
    """The first position holding a key in any row of any mask `[b, t]` (None: no key at all)."""
    columns = [int(torch.nonzero(m.any(0))[0]) for m in masks if bool(m.any())]
    return min(columns) if columns else None


def _lengths(batch: Batch) -> list[int]:
    """Real tokens of each row (the attention mask's sum; the padded width without a mask)."""
    mask = batch.inputs.get("attention_mask")
    if mask is None:
        ids = batch.inputs["input_ids"]
        return [int(ids.shape[1])] * int(ids.shape[0])
    return mask.sum(-1).tolist()


def length_batches(lengths: Sequence[int], cap: int, overhead: int = BATCH_OVERHEAD_TOKENS) -> list[list[int]]:
    """Indices of LM batches of rows with `lengths` tokens: sorted by length, at most `cap` rows each;
    a row that would pad the rows already in its batch by more than `overhead` tokens in all (about
    what one more batch costs: its shared opening, the per-call overhead) starts a new batch."""
    batches: list[list[int]] = []
    current: list[int] = []
    width = 0
    for i in sorted(range(len(lengths)), key=lambda i: lengths[i]):
        if current and (len(current) >= cap or len(current) * (lengths[i] - width) > overhead):
            batches.append(current)
            current = []
        current.append(i)
        width = lengths[i]
    return batches + [current] if current else batches


def capture(task: Task, model: nn.Module, names: Sequence[str], pairs: Sequence[tuple[str, str]],
            answer_only: bool, batch_size: int, prefix: PrefixCache | None = None) -> dict[str, tuple[Tensor, Tensor]]:
    """Keys and value gradients of L = -sum log p(y|x) over `pairs`: name -> ([n, d], [n, d']).

    Rows come in the order of `pairs` (each pair's key positions in order). The LM passes run on
    batches of similar lengths (`length_batches`, at most `batch_size` pairs) to compute little padding.
    `prefix`: run the LM passes on its cached lower blocks and the rows' shared opening once, up
    to the first key position (None: the whole model, every token of every row)."""
    device = next(model.parameters()).device
    keys: dict[str, list[Tensor]] = {n: [] for n in names}
    grads: dict[str, list[Tensor]] = {n: [] for n in names}
    owners: dict[str, list[Tensor]] = {n: [] for n in names}  # index in `pairs` of each row
    weights = [get_module(model, n).weight for n in names]
    lengths = _lengths(task.batch(pairs)) if pairs else []
    batches = length_batches(lengths, batch_size)
    with grad_only_on(model, weights), recording(model, names) as seen:
        for indices in tqdm(batches, desc="cache keys", leave=False, disable=None if len(batches) > 4 else True):
            batch = task.batch([pairs[i] for i in indices]).to(device)
            masks = [task.key_mask(batch, name, answer_only).to(device) for name in names]  # [b, t] each
            opening = (prefix.feed(batch, _first_key(masks), graph=False, own_openings=True) if prefix is not None
                       else nullcontext(0))
            with opening as shared:
                loss = answer_nll(task, model, batch)
            outputs = [seen[n][1] for n in names]
            value_grads = torch.autograd.grad(loss, outputs)
            rows = torch.tensor(indices, device=device)
            for name, value_grad, mask in zip(names, value_grads, masks):
                mask = mask[:, shared:]  # the hooks saw positions P.. when P opening tokens ran once
                keys[name].append(_at_least_float32(seen[name][0].detach()[mask]))  # [n_b, d]
                grads[name].append(_at_least_float32(value_grad.detach()[mask]))  # [n_b, d']
                owners[name].append(rows.repeat_interleave(mask.sum(-1)))  # [n_b]
            seen.clear()
    out = {}
    for n in names:
        order = torch.argsort(torch.cat(owners[n]), stable=True)  # back to the order of `pairs`
        out[n] = (torch.cat(keys[n])[order], torch.cat(grads[n])[order])
    return out
