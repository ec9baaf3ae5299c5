"""Running a model from block k on cached hidden states (the blocks below the edited ones never change).

A decoder-only LM maps ids through embeddings and blocks 0..L-1 to its head. When only modules of
blocks >= k are edited, the hidden states entering block k (`[b, t, d]`) are a fixed function of the
input ids: compute them once (`Prefix.hidden`) and later run only blocks k..L-1 and the head
(`Prefix.feeding`). Within `feeding`, blocks 0..k-1 are swapped for stand-ins that cost nothing and
return the original block's output structure; block k-1's stand-in emits the cached states, so the
model's own forward still builds the attention masks and rotary/position embeddings.

`PrefixCache` keeps those states per (prompt, answer) tuple of a task and re-pads them into any
batch the task builds (right padding: the real tokens of a row come first, and with a causal mask
their states do not depend on the padding). It applies to models that are not encoder-decoder and
whose edited modules all lie in one block list above block 0; elsewhere it runs the plain model.
"""
from __future__ import annotations

from contextlib import contextmanager, nullcontext
from typing import Any, ContextManager, Iterator, Sequence

import torch
from torch import Tensor, nn

from editbench.api import Batch, Task
from editbench.errors import EditbenchError


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


def _real_lengths(batch: Batch) -> list[int] | None:
    """Tokens per row when every row's real tokens come first (right padding); else None."""
    mask = batch.inputs.get("attention_mask")
    if mask is None:
        return [int(batch.inputs["input_ids"].shape[1])] * len(batch)
    lengths = mask.sum(-1)
    positions = torch.arange(mask.shape[1], device=mask.device)
    if not torch.equal(mask.bool(), positions < lengths[:, None]):
        return None
    return lengths.tolist()


class PrefixCache:
    """Per-tuple hidden states entering the first edited block, for the tuples of a task.

    `rows[(prompt, answer)]` holds (input ids `[n]`, hidden states `[n, d]`) of the tuple's n real
    tokens. Tuples are added on first use (`fill`), in batches of `batch_size`, until `max_bytes`
    of states are held; later tuples are computed per batch and not kept.
    """

    def __init__(self, task: Task, model: nn.Module, names: Sequence[str], batch_size: int = 64,
                 max_bytes: int = 2 << 30):
        self.task, self.model, self.batch_size, self.max_bytes = task, model, batch_size, max_bytes
        self.prefix = Prefix.of(model, names)
        self.rows: dict[tuple[str, str], tuple[Tensor, Tensor]] = {}
        self.bytes = 0

    @property
    def applies(self) -> bool:
        return self.prefix is not None

    def fill(self, pairs: Sequence[tuple[str, str]]) -> None:
        """Compute and keep the states of the tuples of `pairs` not cached yet (within `max_bytes`)."""
        if self.prefix is None:
            return
        missing = list(dict.fromkeys(p for p in pairs if tuple(p) not in self.rows))
        device = next(self.model.parameters()).device
        for start in range(0, len(missing), self.batch_size):
            if self.bytes >= self.max_bytes:
                return
            chunk = missing[start:start + self.batch_size]
            batch = self.task.batch(chunk).to(device)
            lengths = _real_lengths(batch)
            if lengths is None:
                return  # not right-padded: `feed` runs such batches through the plain model
            hidden = self.prefix.hidden(batch.inputs)  # [b, t, d]
            ids = batch.inputs["input_ids"]
            for row, (pair, n) in enumerate(zip(chunk, lengths)):
                states = hidden[row, :n].clone()
                self.rows[tuple(pair)] = (ids[row, :n].clone(), states)
                self.bytes += states.numel() * states.element_size()

    def states(self, pairs: Sequence[tuple[str, str]], batch: Batch) -> Tensor | None:
        """Hidden states `[b, t, d]` entering block k for `batch` (built from `pairs`, in order), zeros at
        padding; None when the prefix does not apply or the batch is not right-padded."""
        if self.prefix is None:
            return None
        lengths = _real_lengths(batch)
        if lengths is None:
            return None
        if any(tuple(p) not in self.rows for p in pairs):
            self.fill(pairs)
        ids = batch.inputs["input_ids"]
        cached = [self.rows.get(tuple(p)) for p in pairs]
        if any(c is None for c in cached):
            return self.prefix.hidden(batch.inputs)  # over the memory budget: compute for this batch
        width, d = ids.shape[1], cached[0][1].shape[-1]
        out = cached[0][1].new_zeros((len(pairs), width, d))
        for row, ((tuple_ids, states), n) in enumerate(zip(cached, lengths)):
            if len(tuple_ids) != n or not torch.equal(tuple_ids, ids[row, :n]):
                raise EditbenchError(f"tuple {pairs[row]!r} tokenised differently than when cached; "
                                     "expected the task's batches to be deterministic")
            out[row, :n] = states
        return out

    def feed(self, pairs: Sequence[tuple[str, str]], batch: Batch) -> ContextManager:
        """Within the block, `model(**batch.inputs)` skips the cached blocks (or runs plain where it cannot)."""
        states = self.states(pairs, batch)
        return nullcontext() if states is None else self.prefix.feeding(states)
