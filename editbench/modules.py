"""Linear modules as `[d_out, d_in]` maps, whatever their storage (GPT-2 `Conv1D` is `[d_in, d_out]`),
and weight shifts that can be taken back bit-exactly.

Adding a shift rounds: in bf16, `(W + S) - S` differs from `W` in a quarter of the entries when
`S` is as large as `W`. So `add_to_weight` keeps what restores `W` exactly (the reference MEMIT
keeps the original weights, `return_orig_weights`; we keep them sparsely where we can) and a
later `add_to_weight(module, S, sign=-1)` / `apply_deltas(model, deltas, sign=-1)` restores them,
provided nothing else changed the weight in between (else it subtracts, as before).
"""
from __future__ import annotations

import contextlib
import weakref
from dataclasses import dataclass
from typing import Iterable, Iterator

import torch
from torch import Tensor, nn

from editbench.errors import EditbenchError


def get_module(model: nn.Module, name: str) -> nn.Module:
    try:
        return model.get_submodule(name)
    except AttributeError:
        raise EditbenchError(f"model has no module {name!r}") from None


def is_transposed(module: nn.Module) -> bool:
    """True for modules storing the weight as `[d_in, d_out]` (transformers' GPT-2 `Conv1D`)."""
    if isinstance(module, nn.Linear):
        return False
    if type(module).__name__ == "Conv1D" and hasattr(module, "nf"):
        return True
    raise EditbenchError(f"module of type {type(module).__name__} is not a linear layer")


def weight_of(module: nn.Module) -> Tensor:
    """The weight as a `[d_out, d_in]` view (shares storage with the parameter)."""
    return module.weight.T if is_transposed(module) else module.weight


def shape_of(module: nn.Module) -> tuple[int, int]:
    """(d_out, d_in) of a linear module."""
    d_out, d_in = weight_of(module).shape
    return int(d_out), int(d_in)


@dataclass
class Undo:
    """What restores one weight bit-exactly after an add (all in the parameter's storage layout).

    Sparse form (the shift was added as given): the original weight is `fl(W' - shift)` except at
    the flat positions `index: [k]`, where it is `values: [k]`; `shift` is a weak reference to the
    caller's tensor (the caller keeps it, e.g. in `EditResult.deltas`). Full form (the shift had
    to be cast or scaled first, which would cost a weight-sized copy anyway): `values` is the whole
    original weight and `index` is None.
    """

    version: int  # the parameter's `_version` right after the add; any later in-place change voids this
    norm: float  # float64 norm of the shift as added (to check that a revert takes back this shift)
    values: Tensor
    index: Tensor | None = None
    shift: "weakref.ref[Tensor] | None" = None


_UNDO = "_editbench_undo"  # module attribute: the stack of `Undo`s of the adds not yet taken back
_KEEP = [True]  # False inside `no_undo()`


@contextlib.contextmanager
def no_undo() -> Iterator[None]:
    """Adds inside this block remember nothing (no memory for an exact revert): for callers that
    never take an edit back, e.g. a benchmark run measuring the edit's peak memory."""
    _KEEP.append(False)
    try:
        yield
    finally:
        _KEEP.pop()


def _bits(t: Tensor) -> Tensor:
    """`t` viewed as integers of the same width (compares -0.0 / 0.0 and NaN payloads bitwise)."""
    return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


def _stack(module: nn.Module) -> list[Undo]:
    """The live `Undo`s of `module`; emptied when the weight was changed since the last one."""
    stack = module.__dict__.setdefault(_UNDO, [])
    if stack and stack[-1].version != module.weight._version:
        stack.clear()
    return stack


def _storage_shift(module: nn.Module, shift: Tensor) -> Tensor:
    """`shift: [d_out, d_in]` in the parameter's layout, dtype and device (the same tensor when
    nothing needs changing)."""
    w = module.weight
    if tuple(shift.shape) != tuple(weight_of(module).shape):
        raise EditbenchError(f"shift of shape {tuple(shift.shape)} for a weight of shape {tuple(weight_of(module).shape)}")
    stored = shift.T if is_transposed(module) else shift
    return stored.to(device=w.device, dtype=w.dtype)


def _norm(t: Tensor) -> float:
    return float(torch.linalg.vector_norm(t, dtype=torch.float64))


@torch.no_grad()
def add_to_weight(module: nn.Module, shift: Tensor, sign: float = 1.0) -> Undo | None:
    """W <- W + sign * shift, with `shift: [d_out, d_in]` in any dtype/device.

    sign=1 adds and remembers how to take the shift back exactly (returns that `Undo`; nothing
    inside `no_undo()`); sign=-1 takes back the last add of this module bit-exactly when the weight
    is unchanged since and `shift` is that add's shift (up to casting), else subtracts. Any other
    sign just adds.
    """
    w = module.weight
    stored = _storage_shift(module, shift)
    stack = _stack(module)
    if sign == -1.0 and stack:
        undo = stack[-1]
        if abs(_norm(stored) - undo.norm) <= 1e-3 * max(undo.norm, 1e-30):
            _restore(module, undo, stored)
            stack.pop()
            if stack:  # the weight is again exactly what the previous add left
                stack[-1].version = w._version
            return None
    if sign != 1.0 or not _KEEP[-1]:
        w.add_(stored, alpha=sign)
        stack.clear()
        return None
    shared = stored.untyped_storage().data_ptr() == shift.untyped_storage().data_ptr()  # no copy was made
    if shared and w.is_contiguous():
        new = w + stored
        # Where fl(fl(W + S) - S) is not W bitwise, keep W's value.
        index = (_bits(new - stored) != _bits(w)).view(-1).nonzero().squeeze(1)
        undo = Undo(0, _norm(stored), w.view(-1)[index],
                    index.to(torch.int32) if w.numel() < 2**31 else index, weakref.ref(shift))
        w.copy_(new)
        del new
    else:
        undo = Undo(0, _norm(stored), w.detach().clone())
        w.add_(stored)
    undo.version = w._version
    stack.append(undo)
    return undo


def _restore(module: nn.Module, undo: Undo, stored: Tensor) -> None:
    """Put back the weight `undo` remembers; `stored` is the revert's shift in storage layout."""
    w = module.weight
    if undo.index is None:
        w.copy_(undo.values)
        return
    added = undo.shift() if undo.shift is not None else None
    # The shift as added; if the caller let it go, the revert's equal-norm one (the same values in practice).
    w.sub_(_storage_shift(module, added) if added is not None else stored)
    w.view(-1)[undo.index.long()] = undo.values


def apply_deltas(model: nn.Module, deltas: dict[str, Tensor], sign: float = 1.0) -> dict[str, Undo | None]:
    """Add (sign=1) or take back exactly (sign=-1, see `add_to_weight`) the weight shifts a method
    returned; returns each module's `Undo` (None when taking back)."""
    return {name: add_to_weight(get_module(model, name), shift, sign) for name, shift in deltas.items()}


def snapshot(model: nn.Module, names: Iterable[str]) -> dict[str, Tensor]:
    """Copies of the `[d_out, d_in]` weights of `names` (to diff or restore after an edit)."""
    return {n: weight_of(get_module(model, n)).detach().clone() for n in names}


@torch.no_grad()
def restore(model: nn.Module, saved: dict[str, Tensor]) -> None:
    """Copy a `snapshot` back, and forget the `Undo`s of those modules (frees their memory)."""
    for name, weight in saved.items():
        module = get_module(model, name)
        weight_of(module).copy_(weight)
        module.__dict__.pop(_UNDO, None)
