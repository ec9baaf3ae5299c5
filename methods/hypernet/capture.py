"""Caching keys u and value gradients grad_v L of the edited linear layers (Alg. 1, lines 1-4).

A forward hook keeps each module's input (the key, `[b, t, d]`) and output (the value, `[b, t, d']`);
`torch.autograd.grad` of the summed answer NLL w.r.t. the values gives the value gradients.
Only the positions selected by `task.key_mask` are kept, as rows `[n, d]` / `[n, d']`.
With a `PrefixCache` the blocks below the first edited one are skipped (their output is cached);
without cached blocks a causal decoder's passes run packed, with no padding (`editbench.packing`).
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from editbench.api import Batch, Task
from editbench.modules import get_module
from editbench.packing import Packing, bins_by_length, packed_inputs, right_padded, run_opening
from editbench.prefix import PrefixCache
from editbench.shared_start import can_share, run_start, shared_length


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


Rows = dict[str, tuple[Tensor, Tensor, Tensor]]  # name -> (keys [n, d], value grads [n, d'], row of each [n])


def capture(task: Task, model: nn.Module, names: Sequence[str], pairs: Sequence[tuple[str, str]],
            answer_only: bool, batch_size: int, prefix: PrefixCache | None = None) -> dict[str, tuple[Tensor, Tensor]]:
    """Keys and value gradients of L = -sum log p(y|x) over `pairs`: name -> ([n, d], [n, d']).

    Rows come in the order of `pairs` (each pair's key positions in order). On a causal decoder
    (`_packs`) the LM passes run on groups of `batch_size` pairs packed end to end (`_packed_pass`);
    elsewhere on batches of similar lengths (`length_batches`, at most `batch_size` pairs) to compute
    little padding (`_padded_pass`).
    `prefix`: run the LM passes on its cached lower blocks and the rows' shared opening once, up
    to the first key position (None: the whole model, every token of every row)."""
    device = next(model.parameters()).device
    keys: dict[str, list[Tensor]] = {n: [] for n in names}
    grads: dict[str, list[Tensor]] = {n: [] for n in names}
    owners: dict[str, list[Tensor]] = {n: [] for n in names}  # index in `pairs` of each row
    weights = [get_module(model, n).weight for n in names]
    whole = task.batch(pairs) if pairs else None
    packs = whole is not None and _packs(model, whole, prefix)
    batches = ([list(range(s, min(s + batch_size, len(pairs)))) for s in range(0, len(pairs), batch_size)] if packs
               else length_batches(_lengths(whole), batch_size) if whole is not None else [])
    run_pass = _packed_pass if packs else _padded_pass
    with grad_only_on(model, weights), recording(model, names) as seen:
        for indices in tqdm(batches, desc="cache keys", leave=False, disable=None if len(batches) > 4 else True):
            batch = task.batch([pairs[i] for i in indices]).to(device)
            rows = torch.tensor(indices, device=device)
            for name, (key_rows, grad_rows, row) in run_pass(task, model, names, batch, answer_only, prefix, seen).items():
                keys[name].append(_at_least_float32(key_rows))  # [n_b, d]
                grads[name].append(_at_least_float32(grad_rows))  # [n_b, d']
                owners[name].append(rows[row])  # [n_b]
            seen.clear()
    out = {}
    for n in names:
        order = torch.argsort(torch.cat(owners[n]), stable=True)  # back to the order of `pairs`
        out[n] = (torch.cat(keys[n])[order], torch.cat(grads[n])[order])
    return out


def _value_grads(task: Task, model: nn.Module, names: Sequence[str], batch: Batch,
                 seen: dict[str, tuple[Tensor, Tensor]]) -> list[Tensor]:
    """grad_v L of each module's output (`seen`, filled by the pass on `batch`) (Alg. 1, line 3)."""
    loss = answer_nll(task, model, batch)
    return list(torch.autograd.grad(loss, [seen[n][1] for n in names]))


def _padded_pass(task: Task, model: nn.Module, names: Sequence[str], batch: Batch, answer_only: bool,
                 prefix: PrefixCache | None, seen: dict[str, tuple[Tensor, Tensor]]) -> Rows:
    """One LM pass on the padded `batch` (on `prefix` when given): its keys, value gradients and rows."""
    masks = [task.key_mask(batch, name, answer_only).to(batch.labels.device) for name in names]  # [b, t] each
    opening = (prefix.feed(batch, _first_key(masks), graph=False, own_openings=True) if prefix is not None
               else nullcontext(0))
    with opening as shared:
        value_grads = _value_grads(task, model, names, batch, seen)
    out = {}
    for name, value_grad, mask in zip(names, value_grads, masks):
        mask = mask[:, shared:]  # the hooks saw positions P.. when P opening tokens ran once
        row = torch.arange(mask.shape[0], device=mask.device).repeat_interleave(mask.sum(-1))
        out[name] = (seen[name][0].detach()[mask], value_grad.detach()[mask], row)
    return out


def _packs(model: nn.Module, batch: Batch, prefix: PrefixCache | None) -> bool:
    """True where the LM passes can run packed: a causal decoder (`can_share`) on every block (no
    cached lower ones), right-padded rows whose labels `[b, T-1]` give each position's next token."""
    ids = batch.inputs.get("input_ids")
    return ((prefix is None or not prefix.applies) and can_share(model) and right_padded(batch.inputs)
            and tuple(batch.labels.shape) == (ids.shape[0], ids.shape[1] - 1))


def _packed_pass(task: Task, model: nn.Module, names: Sequence[str], batch: Batch, answer_only: bool,
                 prefix: PrefixCache | None, seen: dict[str, tuple[Tensor, Tensor]]) -> Rows:
    """The LM passes of `batch` packed (`editbench.packing`): each row's tokens before its first key
    or answer output run without graph (after the rows' shared opening, run once where `prefix`
    shares it), then its tokens up to its last key or answer output with graph. Padding and each
    row's unread last tokens never run; keys, value gradients and rows as `_padded_pass`.
    The shared opening runs once per call (one row of P tokens per `batch_size` pairs)."""
    ids = batch.inputs["input_ids"]
    masks = [task.key_mask(batch, name, answer_only).to(ids.device) for name in names]  # [b, T] each
    labels = nn.functional.pad(batch.labels, (0, 1), value=-100)  # [b, T]: position t outputs labels[:, t]
    needed = torch.stack(masks).any(0) | (labels != -100)  # [b, T]
    kept = [r for r in range(len(ids)) if bool(needed[r].any())]
    if not kept:  # no key and no answer anywhere: nothing to pack
        return _padded_pass(task, model, names, batch, answer_only, prefix, seen)
    first = {r: int(needed[r].nonzero()[0]) for r in kept}
    last = {r: int(needed[r].nonzero()[-1]) + 1 for r in kept}
    shared = shared_length(batch.inputs, min(first.values(), default=0)) if prefix is not None and prefix.shares else 0
    start = None
    if shared:
        with torch.no_grad():
            start = run_start(model, ids[:1, :shared])
    bins = bins_by_length({r: (first[r] - shared, last[r] - first[r]) for r in kept})
    opening = Packing.of({r: (shared, first[r]) for r in kept}, bins, ids.device)
    rest = Packing.of({r: (first[r], last[r]) for r in kept}, bins, ids.device, extra=1)  # + 1: logits[:, :-1]
    cache = run_opening(model, ids, opening, start)
    dtype = next(model.parameters()).dtype
    inputs = {**packed_inputs(ids, rest, [opening, rest], shared, dtype), "cache": cache, "use_cache": True}
    value_grads = _value_grads(task, model, names, Batch(inputs, rest.take(labels, -100)[:, :-1]), seen)
    out = {}
    for name, value_grad, mask in zip(names, value_grads, masks):
        packed = rest.take(mask, False)  # [B, L]
        out[name] = (seen[name][0].detach()[packed], value_grad.detach()[packed], rest.row[packed])
    return out
