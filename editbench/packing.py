"""Running spans of a causal LM batch's rows packed end to end, with no padding between them.

A right-padded batch of rows of different lengths computes every padded position, and each row's
last token, whose output no loss reads. `Packing` instead places a span `[begin_r, end_r)` of each
row r one after another in a few sequences ("bins", `[B, L]`), with position ids restarting at each
row's own positions and a 4D attention mask that lets a token attend only to the earlier tokens of
its own row, to an opening run before (a transformers KV `cache`, as in generation) and to a start
shared by every row (`shared_start.Start`). A causal decoder's states at position p of a row depend
on that row's tokens 0..p alone, so every packed position holds the same states as in the padded
batch. The extra attention over a bin's other rows is masked out; it costs about 2·h·d_head·L
FLOPs per token and layer, a few percent of the block's matmuls for bins of ~128 tokens.

It applies to decoder-only transformers LMs whose forward takes `position_ids`, a 4D float mask
and a `cache` (`shared_start.can_share`); a batch whose rows are not right-padded does not pack.
"""
from __future__ import annotations

import inspect
import math
from dataclasses import dataclass
from typing import Mapping, Sequence

import torch
from torch import Tensor, nn

from editbench.shared_start import Start, expanded_cache

BIN_TOKENS = 128  # tokens per bin: more pads less, but attends over more masked-out tokens


def bins_by_length(spans: Mapping[int, Sequence[int]], target: int = BIN_TOKENS) -> list[list[int]]:
    """Rows (keys of `spans`: each row's span lengths, one per pass) in ceil(tokens / target) bins: the
    longest row first, each into the bin where it adds least to the padded width summed over the
    passes (the fewest tokens so far on a tie); each bin in row order."""
    count = max(1, math.ceil(sum(map(sum, spans.values())) / target)) if spans else 0
    bins: list[list[int]] = [[] for _ in range(count)]
    loads = [[0] * len(next(iter(spans.values()))) for _ in range(count)] if spans else []
    for row in sorted(spans, key=lambda r: -sum(spans[r])):
        widths = [max(load[p] for load in loads) for p in range(len(spans[row]))]

        def added(i: int) -> tuple[int, int]:
            grown = sum(max(w, loads[i][p] + n) for p, (w, n) in enumerate(zip(widths, spans[row])))
            return grown, sum(loads[i])

        best = min(range(count), key=added)
        loads[best] = [load + n for load, n in zip(loads[best], spans[row])]
        bins[best].append(row)
    return [sorted(b) for b in bins if b]


@dataclass
class Packing:
    """Where spans of the rows sit in the bins: `row` and `position` `[B, L]` of every packed token
    (`row` -1 and `position` 0 at the bins' padding)."""

    row: Tensor
    position: Tensor

    @classmethod
    def of(cls, spans: Mapping[int, tuple[int, int]], bins: Sequence[Sequence[int]], device: torch.device,
           extra: int = 0) -> "Packing":
        """Tokens `begin..end-1` of row r (`spans[r]`) laid out in `bins`, in order, each bin padded
        to the longest one plus `extra` columns."""
        width = max((sum(spans[r][1] - spans[r][0] for r in b) for b in bins), default=0) + extra
        row = torch.full((len(bins), width), -1, dtype=torch.long)
        position = torch.zeros((len(bins), width), dtype=torch.long)
        for i, members in enumerate(bins):
            column = 0
            for r in members:
                begin, end = spans[r]
                row[i, column:column + end - begin] = r
                position[i, column:column + end - begin] = torch.arange(begin, end)
                column += end - begin
        return cls(row.to(device), position.to(device))

    @property
    def real(self) -> Tensor:
        """`[B, L]` True at packed tokens, False at padding."""
        return self.row >= 0

    def take(self, values: Tensor, fill: int | float | bool) -> Tensor:
        """`values: [b, T, ...]` of the padded batch at the packed tokens `[B, L, ...]` (`fill` at padding)."""
        out = values[self.row.clamp(min=0), self.position]
        return out.masked_fill(~self.real.view(*self.real.shape, *([1] * (out.dim() - 2))), fill)


def attention_mask(queries: Packing, keys: Sequence[Packing], shared: int, dtype: torch.dtype) -> Tensor:
    """Additive mask `[B, 1, L_q, shared + sum L_k]` (0: attend; the dtype's minimum: not) for the
    `queries` attending to `shared` start positions, then the tokens of `keys` in cache order (the
    last of which is `queries` itself). A token attends to the start and to its own row's tokens at
    positions up to its own; a padding token attends to everything (its output is never read)."""
    rows = torch.cat([k.row for k in keys], 1)  # [B, K]
    positions = torch.cat([k.position for k in keys], 1)
    allowed = (rows[:, None, :] == queries.row[:, :, None]) & (positions[:, None, :] <= queries.position[:, :, None])
    allowed |= ~queries.real[:, :, None]
    allowed = torch.cat([allowed.new_ones((*allowed.shape[:2], shared)), allowed], -1)
    mask = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return mask.masked_fill_(~allowed, torch.finfo(dtype).min)[:, None]


def packed_inputs(ids: Tensor, queries: Packing, keys: Sequence[Packing], shared: int, dtype: torch.dtype) -> dict[str, Tensor]:
    """`model(**...)` arguments for the packed `queries` of `ids: [b, T]` (see `attention_mask`)."""
    return {"input_ids": queries.take(ids, 0), "position_ids": queries.position,
            "attention_mask": attention_mask(queries, keys, shared, dtype)}


def run_opening(model: nn.Module, ids: Tensor, opening: Packing, start: Start | None) -> object:
    """Run the packed `opening` tokens of `ids: [b, T]` after `start` (None: from position 0) without
    graph; returns the transformers cache holding the start's and the opening's keys and values
    (bin by bin), for the tokens that come next."""
    bins = int(opening.row.shape[0])
    shared = start.length if start is not None else 0
    if start is not None:
        cache = expanded_cache(model, start.layers, bins)
    else:
        from transformers import DynamicCache

        cache = DynamicCache(config=model.config)
    if opening.row.shape[1] == 0:
        return cache
    dtype = next(model.parameters()).dtype
    kwargs = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    with torch.no_grad():
        model(**packed_inputs(ids, opening, [opening], shared, dtype), cache=cache, use_cache=True, **kwargs)
    return cache


def right_padded(inputs: dict[str, Tensor]) -> bool:
    """True when `inputs` hold only `input_ids` `[b, T]` and an `attention_mask` whose ones come first."""
    ids, mask = inputs.get("input_ids"), inputs.get("attention_mask")
    if set(inputs) != {"input_ids", "attention_mask"} or not isinstance(ids, Tensor) or ids.dim() != 2:
        return False
    positions = torch.arange(mask.shape[1], device=mask.device)
    return bool(torch.equal(mask.bool(), positions < mask.sum(-1, keepdim=True)))
