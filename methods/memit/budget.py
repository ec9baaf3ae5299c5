"""How many requests MEMIT optimises together: z batches sized by a memory budget.

The memory of one z step is what autograd keeps for the backward pass (the activations of the
blocks above the edited block, for every padded token of every row) plus the logits `[k, V]` at the
k positions the losses read (answer tokens, one per essence row) and their gradient. It is linear
in the padded tokens of a batch, so one probe (a forward pass of one request's rows, counting the
bytes autograd saves) gives the bytes per padded token, and
requests are grouped greedily, in order, so that each batch's padded tokens stay within the budget.
"""
from __future__ import annotations

from typing import Callable, Sequence

import torch
from torch import Tensor, nn


def autograd_bytes(model: nn.Module, forward: Callable[[], Tensor]) -> tuple[Tensor, int]:
    """Run `forward` and count the bytes of the tensors autograd saves for backward (parameters excluded)."""
    parameters = {p.untyped_storage().data_ptr() for p in model.parameters()}
    seen: dict[int, int] = {}

    def pack(tensor: Tensor) -> Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in parameters:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        result = forward()
    return result, sum(seen.values())


def group_by_budget(rows: Sequence[int], widths: Sequence[int], bytes_per_token: float, budget_bytes: float,
                    cap: int) -> list[range]:
    """Consecutive groups of requests, each at most `cap` long, whose padded tokens fit the budget.

    rows[i], widths[i]: request i's row count and longest row. A group's padded tokens are
    Σ rows × max width. A request that alone exceeds the budget forms a group of its own.
    """
    groups, start, count, width = [], 0, 0, 0
    for i, (r, w) in enumerate(zip(rows, widths)):
        grown = (count + r) * max(width, w) * bytes_per_token
        if i > start and (grown > budget_bytes or i - start >= cap):
            groups.append(range(start, i))
            start, count, width = i, 0, 0
        count, width = count + r, max(width, w)
    groups.append(range(start, len(rows)))
    return groups
