"""Linear modules as `[d_out, d_in]` maps, whatever their storage (GPT-2 `Conv1D` is `[d_in, d_out]`)."""
from __future__ import annotations

from typing import Iterable

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


@torch.no_grad()
def add_to_weight(module: nn.Module, shift: Tensor, sign: float = 1.0) -> None:
    """W <- W + sign * shift, with `shift: [d_out, d_in]` in any dtype/device."""
    w = weight_of(module)
    w.add_(shift.to(device=w.device, dtype=w.dtype), alpha=sign)


def apply_deltas(model: nn.Module, deltas: dict[str, Tensor], sign: float = 1.0) -> None:
    """Add (sign=1) or remove (sign=-1) the weight shifts returned by a method."""
    for name, shift in deltas.items():
        add_to_weight(get_module(model, name), shift, sign)


def snapshot(model: nn.Module, names: Iterable[str]) -> dict[str, Tensor]:
    """Copies of the `[d_out, d_in]` weights of `names` (to diff or restore after an edit)."""
    return {n: weight_of(get_module(model, n)).detach().clone() for n in names}
