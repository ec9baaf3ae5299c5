"""Running once the tokens that open every row of a batch (e.g. a chat template's system turn).

In a causal decoder the states of a row's first P tokens depend on those tokens alone. When every
row of a batch opens with the same P real tokens, the model can run them once, as a batch of one
(`Start`), and let each row's remaining tokens attend to that one copy of their keys and values
through the model's own KV `cache` argument, as in generation. Within `serving(model, start)`:

- `model(input_ids=[b, T], attention_mask=[b, T])` runs only the last T - P tokens of each row
  (positions P..T-1, attending to the start's keys and values);
- the vocabulary head still receives `[b, T, d]`: the start's own final states are put in front,
  so logits, losses and their gradients equal those of the plain forward (the start's graph is
  shared by the rows, so its gradient is their sum, as in the plain pass);
- a hook on a module inside the blocks sees `[b, T - P, ...]`: callers shift their masks by P.

`run_rows` runs each row's *own* first tokens the same way, as a batch of b, after a shared start or
from position 0: a caller that needs no gradient at those positions (the key capture, whose keys
all lie later) keeps them out of the graph, so the backward pass covers the positions after them only.

On SmolLM2 with the chat template 31 of the ~50 tokens of a zsRE prompt are the system turn.
It applies to decoder-only language models whose forward takes transformers' `cache`
(`can_share`); elsewhere `shared_length` is 0 and nothing changes.
"""
from __future__ import annotations

import inspect
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch import Tensor, nn

MIN_SHARED = 4  # fewer shared tokens do not pay for the extra pass


class _HeadReached(Exception):
    """Raised by a pre-hook of the vocabulary head: the start's states are known, its logits are not needed."""


def can_share(model: nn.Module) -> bool:
    """True for a decoder-only causal LM of transformers whose forward takes a KV `cache`.

    Families with a masked-LM variant (BERT, RoBERTa, ...) are bidirectional unless configured as
    decoders; encoder-decoder models never qualify.
    """
    config = getattr(model, "config", None)
    head = getattr(model, "get_output_embeddings", None)
    if config is None or getattr(config, "is_encoder_decoder", False) or not callable(head) or head() is None:
        return False
    try:
        from transformers.models.auto.modeling_auto import (MODEL_FOR_CAUSAL_LM_MAPPING_NAMES,
                                                            MODEL_FOR_MASKED_LM_MAPPING_NAMES)
    except ImportError:
        return False
    model_type = getattr(config, "model_type", None)
    if MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(model_type) != type(model).__name__:
        return False
    if model_type in MODEL_FOR_MASKED_LM_MAPPING_NAMES and not getattr(config, "is_decoder", False):
        return False
    return "cache" in inspect.signature(model.forward).parameters


def shared_length(inputs: dict[str, Tensor], limit: int | None = None) -> int:
    """P: the leading tokens that every row holds, all real, leaving each row at least one token of
    its own; at most `limit`. 0 for a single row, or when fewer than `MIN_SHARED` tokens are shared."""
    ids = inputs.get("input_ids")
    if not isinstance(ids, Tensor) or ids.dim() != 2 or ids.shape[0] < 2:
        return 0
    same = (ids == ids[:1]).all(0)  # [T]
    mask = inputs.get("attention_mask")
    shortest = int(ids.shape[1])
    if mask is not None:
        same &= mask.bool().all(0)
        shortest = int(mask.sum(-1).min())
    length = min(int(same.long().cumprod(0).sum()), shortest - 1)
    if limit is not None:
        length = min(length, limit)
    return length if length >= MIN_SHARED else 0


@dataclass
class Start:
    """The shared opening of a batch run once: each layer's keys and values `[1, h, P, d_head]` and
    the vocabulary head's input `[1, P, d]` at its positions."""

    length: int
    layers: list[tuple[Tensor, Tensor]]
    final: Tensor


def _cache_class():
    from transformers import DynamicCache

    return DynamicCache


def _layer_states(cache) -> list[tuple[Tensor, Tensor] | None]:
    """(keys, values) of each layer of a transformers cache; None for a layer that never ran."""
    out = []
    for layer in cache.layers:
        keys = getattr(layer, "keys", None)
        out.append((keys, layer.values) if getattr(layer, "is_initialized", False) and keys is not None
                   and keys.numel() > 0 else None)
    return out


def _run_to_head(model: nn.Module, ids: Tensor, cache, past: int = 0) -> Tensor:
    """Run `ids: [b, Q]` (all real tokens) after the `past` positions held by `cache`, filling it with
    every layer's keys and values; returns the vocabulary head's input at those positions `[b, Q, d]`."""
    seen: dict[str, Tensor] = {}

    def stop(module, args):
        seen["final"] = args[0]
        raise _HeadReached

    mask = torch.ones((ids.shape[0], past + ids.shape[1]), dtype=torch.long, device=ids.device)
    handle = model.get_output_embeddings().register_forward_pre_hook(stop)
    try:
        model(input_ids=ids, attention_mask=mask, cache=cache, use_cache=True)
    except _HeadReached:
        pass
    finally:
        handle.remove()
    return seen.get("final")


def _checked(length: int, states: list, final: Tensor | None) -> Start:
    if any(s is None for s in states) or final is None:
        from editbench.errors import EditbenchError

        raise EditbenchError(f"the shared start of {length} tokens left {sum(s is None for s in states)} "
                             "cache layers empty; expected every layer's keys and values")
    return Start(length, states, final)


def run_start(model: nn.Module, ids: Tensor, lower: Sequence[tuple[Tensor, Tensor]] = ()) -> Start:
    """Run the shared tokens `ids: [1, P]` through `model`, keeping every layer's keys and values.

    `lower`: keys and values of layers 0..len(lower)-1 computed earlier (the unchanging blocks a
    `PrefixCache` skips; within its `feeding` those layers do not run here). Runs with the
    caller's grad mode: the start's graph is kept where the caller back-propagates.
    """
    cache = _cache_class()(config=model.config)
    final = _run_to_head(model, ids, cache)
    states = _layer_states(cache)
    for i, pair in enumerate(lower):
        states[i] = pair
    return _checked(int(ids.shape[1]), states, final)


def run_rows(model: nn.Module, ids: Tensor, start: Start | None = None) -> Start:
    """Run each row's own opening tokens `ids: [b, Q]` (all real) after `start` (None: from position 0),
    keeping every layer's keys and values: a Start of `start.length + Q` tokens whose layers `[b, h, P, d_head]`
    and head input `[b, P, d]` hold one entry per row (`serving` takes it like a shared one).

    The rows' openings differ, so they run as a batch of b; with the caller's grad mode.
    """
    rows, past = int(ids.shape[0]), start.length if start is not None else 0
    cache = expanded_cache(model, start.layers, rows) if start is not None else _cache_class()(config=model.config)
    final = _run_to_head(model, ids, cache, past)
    if start is not None and final is not None:
        final = torch.cat([start.final.to(final.dtype).expand(rows, -1, -1), final], 1)
    return _checked(past + int(ids.shape[1]), _layer_states(cache), final)


def lower_states(model: nn.Module, ids: Tensor, run_to_block) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
    """Keys and values of the layers below block k and the hidden states entering block k `[1, P, d]`
    for the shared tokens `ids: [1, P]`; `run_to_block(inputs)` runs the model up to block k."""
    cache = _cache_class()(config=model.config)
    hidden = run_to_block({"input_ids": ids, "attention_mask": torch.ones_like(ids), "cache": cache, "use_cache": True})
    return [s for s in _layer_states(cache) if s is not None], hidden


def expanded_cache(model: nn.Module, layers: Sequence[tuple[Tensor, Tensor]], rows: int):
    """A fresh transformers cache holding `layers` for `rows` rows (views; each layer's first update copies)."""
    data = [(k.expand(rows, -1, -1, -1), v.expand(rows, -1, -1, -1)) for k, v in layers]
    return _cache_class()(ddp_cache_data=data, config=model.config)


@contextmanager
def serving(model: nn.Module, start: Start) -> Iterator[None]:
    """Within the block, `model(input_ids=[b, T], attention_mask=[b, T], ...)` runs tokens P.. of each
    row on `start` and returns the plain forward's `[b, T, V]` logits."""
    length = start.length
    rewritten: list[bool] = []  # one entry while a rewritten call runs

    def before(module, args, kwargs):
        ids = kwargs.get("input_ids")
        if rewritten or args or ids is None or "cache" in kwargs or "past_key_values" in kwargs:
            return None  # not a call this block rewrites (nested, positional inputs, or the caller's own cache)
        rewritten.append(True)
        rows = ids.shape[0]
        return args, {**kwargs, "input_ids": ids[:, length:], "cache": expanded_cache(model, start.layers, rows),
                      "use_cache": True}

    def after(module, args, kwargs, output):
        rewritten.clear()

    def prepend(module, args):
        if not rewritten:
            return None
        hidden = args[0]  # [b, T - P, d]
        front = start.final.to(hidden.dtype).expand(hidden.shape[0], -1, -1)  # [b, P, d]
        return (torch.cat([front, hidden], 1),) + tuple(args[1:])

    handles = [model.register_forward_pre_hook(before, with_kwargs=True),
               model.register_forward_hook(after, with_kwargs=True, always_call=True),
               model.get_output_embeddings().register_forward_pre_hook(prepend)]
    try:
        yield
    finally:
        for h in handles:
            h.remove()
