"""Running a model from block k on cached hidden states (the blocks below the edited ones never change).

A decoder-only LM maps ids through embeddings and blocks 0..L-1 to its head. When only modules of
blocks >= k are edited, the hidden states entering block k (`[b, t, d]`) are a fixed function of the
input ids: compute them once (`Prefix.hidden`) and later run only blocks k..L-1 and the head
(`Prefix.feeding`). Within `feeding`, blocks 0..k-1 are swapped for stand-ins that cost nothing and
return the original block's output structure; block k-1's stand-in emits the cached states, so the
model's own forward still builds the attention masks and rotary/position embeddings.

`PrefixCache` keeps those states per tokenised sequence and re-pads them into any batch (right
padding: the real tokens of a row come first, and with a causal mask their states do not depend on
the padding). It applies to models that are not encoder-decoder and
whose edited modules all lie in one block list above block 0; elsewhere it runs the plain model.

`PrefixCache.feed` also runs the tokens that open every row of a batch once (`shared_start`: a chat
template's system turn), for the blocks it runs and for the cached ones: the lower blocks' keys
and values of such an opening are kept like the states (`starts`).
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager, nullcontext
from typing import Any, ContextManager, Hashable, Iterator, Sequence

import torch
from torch import Tensor, nn

from editbench.api import Batch
from editbench.errors import EditbenchError
from editbench.shared_start import (MIN_SHARED, can_share, expanded_cache, lower_states, run_rows, run_start, serving,
                                    shared_length)


class _ReachedBlock(Exception):
    """Raised by a pre-hook of block k to stop the forward once its input is known."""

    def __init__(self, hidden: Tensor):
        super().__init__("reached block")
        self.hidden = hidden


def _hidden_arg(args: tuple, kwargs: dict) -> Tensor:
    hidden = args[0] if args else kwargs.get("hidden_states")
    if not isinstance(hidden, Tensor):
        raise EditbenchError(f"a block got {type(hidden).__name__} as hidden states; expected a tensor [b, t, d]")
    return hidden


def locate_blocks(model: nn.Module, names: Sequence[str]) -> tuple[str, int] | None:
    """(name of the block list holding every module of `names`, lowest block index k among them), or
    None where the prefix cannot be cached: encoder-decoder models (the decoder's lower blocks read the
    edited encoder), modules outside one block list, or k = 0 (nothing to skip)."""
    if not names or getattr(getattr(model, "config", None), "is_encoder_decoder", False):
        return None
    found: set[tuple[str, int]] = set()
    for name in names:
        parts = name.split(".")
        hit = None
        for i in range(len(parts) - 1, 0, -1):  # the innermost ModuleList ancestor
            parent = ".".join(parts[:i])
            if parts[i].isdigit() and isinstance(model.get_submodule(parent), nn.ModuleList):
                hit = (parent, int(parts[i]))
                break
        if hit is None:
            return None
        found.add(hit)
    lists = {path for path, _ in found}
    first = min(index for _, index in found)
    if len(lists) != 1 or first == 0:
        return None
    return lists.pop(), first


class _StandIn(nn.Module):
    """Replaces a skipped block: returns its input hidden states, or `emit` (block k-1), as a tensor or
    as the 1-tuple-plus-Nones the original block returned (`arity` elements; 0 = a bare tensor)."""

    def __init__(self, emit: Tensor | None, arity: int):
        super().__init__()
        self.emit, self.arity = emit, arity

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        hidden = _hidden_arg(args, kwargs)
        out = hidden if self.emit is None else self.emit
        if out.shape[:-1] != hidden.shape[:-1]:
            raise EditbenchError(f"cached hidden states of shape {tuple(out.shape)} fed to a batch of shape "
                                 f"{tuple(hidden.shape)}; expected the same [b, t]")
        out = out.to(hidden.dtype)
        return out if self.arity == 0 else (out,) + (None,) * (self.arity - 1)


class Prefix:
    """Blocks 0..k-1 of `model`'s block list `path`: compute their output once, then skip them."""

    def __init__(self, model: nn.Module, path: str, first: int):
        self.model, self.path, self.first = model, path, first
        self.blocks: nn.ModuleList = model.get_submodule(path)
        self.arity: int | None = None  # output structure of a block: 0 = tensor, n = n-tuple

    @classmethod
    def of(cls, model: nn.Module, names: Sequence[str]) -> "Prefix | None":
        """The prefix below the first block holding `names`; None where it does not apply (`locate_blocks`)."""
        where = locate_blocks(model, names)
        return None if where is None else cls(model, *where)

    @torch.no_grad()
    def hidden(self, inputs: dict[str, Tensor]) -> Tensor:
        """Hidden states entering block k for `model(**inputs)`, `[b, t, d]`, running embeddings and
        blocks 0..k-1 only."""
        def stop(module, args, kwargs):
            raise _ReachedBlock(_hidden_arg(args, kwargs))

        def structure(module, args, output):
            self.arity = 0 if isinstance(output, Tensor) else len(output)

        handles = [self.blocks[self.first].register_forward_pre_hook(stop, with_kwargs=True),
                   self.blocks[self.first - 1].register_forward_hook(structure)]
        try:
            self.model(**inputs)
        except _ReachedBlock as reached:
            return reached.hidden.detach()
        finally:
            for h in handles:
                h.remove()
        raise EditbenchError(f"block {self.first} of {self.path} never ran in the model's forward")

    @contextmanager
    def feeding(self, hidden: Tensor) -> Iterator[None]:
        """Within the block, `model(**inputs)` (inputs of the same `[b, t]`) takes `hidden: [b, t, d]`
        as the input of block k and skips blocks 0..k-1."""
        if self.arity is None:
            raise EditbenchError("Prefix.feeding before any Prefix.hidden call (the block output structure is unknown)")
        originals = [self.blocks[i] for i in range(self.first)]
        try:
            for i in range(self.first):
                self.blocks[i] = _StandIn(hidden if i == self.first - 1 else None, self.arity)
            yield
        finally:
            for i, block in enumerate(originals):
                self.blocks[i] = block


def _real_lengths(inputs: dict[str, Tensor]) -> list[int] | None:
    """Tokens per row when every row's real tokens come first (right padding); else None."""
    ids = inputs["input_ids"]
    mask = inputs.get("attention_mask")
    if mask is None:
        return [int(ids.shape[1])] * int(ids.shape[0])
    lengths = mask.sum(-1)
    positions = torch.arange(mask.shape[1], device=mask.device)
    if not torch.equal(mask.bool(), positions < lengths[:, None]):
        return None
    return lengths.tolist()


def _own_opening(inputs: dict[str, Tensor], limit: int | None) -> int:
    """`limit` when every row's first `limit` tokens are real and leave it at least one more (else 0,
    as for fewer than `MIN_SHARED` tokens)."""
    ids = inputs.get("input_ids")
    if limit is None or limit < MIN_SHARED or not isinstance(ids, Tensor) or ids.dim() != 2:
        return 0
    mask = inputs.get("attention_mask")
    lengths = [int(ids.shape[1])] * int(ids.shape[0]) if mask is None else mask.sum(-1).tolist()
    if min(lengths) <= limit or (mask is not None and not bool(mask[:, :limit].bool().all())):
        return 0
    return int(limit)


class PrefixCache:
    """Hidden states entering the first edited block, kept per tokenised sequence.

    `rows[ids]` holds the states `[n, d]` of a sequence of n real tokens (`ids`, a tuple of token
    ids). Sequences are added on first use, a batch at a time, until `max_bytes` of states are
    held; later ones are computed per batch and not kept. `feed(batch)` runs one batch on the cache;
    within `active()` every forward of the model on `input_ids` (e.g. a task's scoring) does.
    `derived` keeps what callers compute once from the unedited model (`keep`), in the same budget.

    `skip_lower=False` keeps no states (every pass runs the whole model) but still shares the
    opening tokens of a batch (`feed`); `share_starts=False` never does.
    """

    def __init__(self, model: nn.Module, names: Sequence[str], max_bytes: int = 2 << 30, skip_lower: bool = True,
                 share_starts: bool = True):
        self.model, self.max_bytes = model, max_bytes
        self.prefix = Prefix.of(model, names) if skip_lower else None
        self.shares = share_starts and can_share(model)
        self.rows: dict[tuple[int, ...], Tensor] = {}
        # Shared openings (token ids) -> (keys and values of the blocks below k, states entering block k [1, P, d]).
        self.starts: dict[tuple[int, ...], tuple[list[tuple[Tensor, Tensor]], Tensor]] = {}
        self.derived: dict[Hashable, Tensor] = {}  # callers' per-sequence results of the unedited model
        self.bytes = 0
        self._busy = False  # set while the cache runs the model itself (no re-entry through `active`)
        self._feeding = 0  # `feed` blocks open: `active` leaves their calls alone
        self._last_start: tuple[Any, Any] = (None, None)  # (opening, lower skipped, parameter versions), its Start

    @property
    def applies(self) -> bool:
        return self.prefix is not None

    def keep(self, key: Hashable, value: Tensor) -> bool:
        """Keep a copy of `value`, a result of the unedited model, as `derived[key]` (within `max_bytes`)."""
        if self.bytes >= self.max_bytes:
            return False
        self.derived[key] = value.detach().clone()
        self.bytes += value.numel() * value.element_size()
        return True

    def states(self, inputs: dict[str, Tensor]) -> Tensor | None:
        """Hidden states `[b, t, d]` entering block k for `model(**inputs)`, zeros at padding; None when
        the prefix does not apply or the rows are not right-padded."""
        if self.prefix is None or "input_ids" not in inputs:
            return None
        lengths = _real_lengths(inputs)
        if lengths is None:
            return None
        ids = inputs["input_ids"]
        keys = [tuple(row[:n]) for row, n in zip(ids.tolist(), lengths)]
        missing = [row for row, key in enumerate(keys) if key not in self.rows]
        if missing:
            self._busy = True
            try:
                if self.bytes >= self.max_bytes:
                    return self.prefix.hidden(inputs)  # over budget: computed for this batch only
                index = torch.tensor(missing, device=ids.device)
                sub = {k: v.index_select(0, index) if isinstance(v, Tensor) and v.shape[:1] == ids.shape[:1] else v
                       for k, v in inputs.items()}
                hidden = self._lower_hidden(sub)  # [len(missing), t, d]
            finally:
                self._busy = False
            for i, row in enumerate(missing):
                kept = hidden[i, :lengths[row]].clone()
                self.rows[keys[row]] = kept
                self.bytes += kept.numel() * kept.element_size()
        first = self.rows[keys[0]]
        out = first.new_zeros((len(keys), ids.shape[1], first.shape[-1]))
        for row, (key, n) in enumerate(zip(keys, lengths)):
            out[row, :n] = self.rows[key]
        return out

    def _lower_hidden(self, inputs: dict[str, Tensor]) -> Tensor:
        """States entering block k `[b, t, d]`, the rows' shared opening (if any) run once."""
        length = shared_length(inputs) if self.shares else 0
        if length == 0:
            return self.prefix.hidden(inputs)
        ids = inputs["input_ids"]
        lower, opening = self._start_below(ids[0, :length])
        rest = self.prefix.hidden({**inputs, "input_ids": ids[:, length:], "use_cache": True,
                                   "cache": expanded_cache(self.model, lower, ids.shape[0])})  # [b, t - P, d]
        return torch.cat([opening.expand(ids.shape[0], -1, -1), rest], 1)

    def _start_below(self, ids: Tensor) -> tuple[list[tuple[Tensor, Tensor]], Tensor]:
        """Keys and values of the blocks below k and the states entering block k `[1, P, d]` of the
        opening `ids: [P]` (kept in `starts`, within `max_bytes`)."""
        key = tuple(ids.tolist())
        if key in self.starts:
            return self.starts[key]
        was_busy, self._busy = self._busy, True
        try:
            with torch.no_grad():
                found = lower_states(self.model, ids[None], self.prefix.hidden)
        finally:
            self._busy = was_busy
        size = sum(t.numel() * t.element_size() for pair in found[0] for t in pair) + found[1].numel() * found[1].element_size()
        if self.bytes + size <= self.max_bytes:
            self.starts[key] = found
            self.bytes += size
        return found

    @contextmanager
    def feed(self, batch: Batch, limit: int | None = None, graph: bool = True, own_openings: bool = False) -> Iterator[int]:
        """Within the block, `model(**batch.inputs)` skips the cached blocks (or runs plain where it cannot).

        Yields P, the opening tokens that run before the rest (at most `limit`, 0 when none): hooks
        inside the blocks see positions P.. only. The opening is the tokens shared by every row, run
        once (`shared_start`). `graph=False`: no gradient is taken through the opening (its keys and
        values are computed without graph). `own_openings` (with `graph=False`, on the plain model):
        each row's own tokens before `limit` join the opening too, run as one batch without graph, so
        the graph and the backward pass cover positions `limit`.. only (a causal model's earlier
        positions never depend on later ones, so nothing at `limit`.. changes).
        """
        length = shared_length(batch.inputs, limit) if self.shares else 0
        states = self.states(batch.inputs)
        own = length
        if own_openings and not graph and states is None and self.shares:
            own = max(length, _own_opening(batch.inputs, limit))
        self._feeding += 1
        with ExitStack() as stack:
            stack.callback(self._done_feeding)
            start = None
            if length:
                ids = batch.inputs["input_ids"]
                # Without graph the opening's run is reused while no parameter changes (batches of one capture).
                key = (tuple(ids[0, :length].tolist()), states is not None,
                       tuple(p._version for p in self.model.parameters())) if not graph else None
                start = self._last_start[1] if key is not None and self._last_start[0] == key else None
                if start is None:
                    with torch.no_grad() if not graph else nullcontext():
                        if states is not None:
                            lower, opening = self._start_below(ids[0, :length])
                            with self.prefix.feeding(opening):
                                start = run_start(self.model, ids[:1, :length], lower)
                        else:
                            start = run_start(self.model, ids[:1, :length])
                    self._last_start = (key, start) if key is not None else (None, None)
            if own > length:
                with torch.no_grad():
                    start = run_rows(self.model, batch.inputs["input_ids"][:, length:own], start)
            if start is not None:
                stack.enter_context(serving(self.model, start))
            if states is not None:
                stack.enter_context(self.prefix.feeding(states[:, length:]))
            yield own

    def _done_feeding(self) -> None:
        self._feeding -= 1

    @contextmanager
    def active(self) -> Iterator[None]:
        """Within the block, every `model(input_ids=..., ...)` call runs on the cache (`feed`)."""
        if self.prefix is None:
            yield
            return
        opened: list[ContextManager] = []

        def before(module, args, kwargs):
            if self._busy or self._feeding or opened or args or "cache" in kwargs or "past_key_values" in kwargs:
                return  # the cache's own passes, a `feed`, a nested call, positional inputs or a KV cache: plain
            states = self.states(kwargs)
            if states is not None:
                feeding = self.prefix.feeding(states)
                feeding.__enter__()
                opened.append(feeding)

        def after(module, args, kwargs, output):
            if opened:
                opened.pop().__exit__(None, None, None)

        handles = [self.model.register_forward_pre_hook(before, with_kwargs=True),
                   self.model.register_forward_hook(after, with_kwargs=True, always_call=True)]
        try:
            yield
        finally:
            for h in handles:
                h.remove()
            while opened:
                opened.pop().__exit__(None, None, None)
