"""From cached (key, value gradient) rows to one weight shift per layer (Alg. 1, lines 5-11).

`aggregation` is 'normal' (MALMEN: normal equation over value differences) or 'sum' (MEND:
sum of the rank-one shifts). Everything runs in chunks of `chunk_size` rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from editbench.methods.hypernet.network import Editor
from editbench.methods.hypernet.solve import RidgeSystem, mean_residual, normal_equation, ridge_system

AGGREGATIONS = ("normal", "sum")


@dataclass
class LayerShift:
    """The shift of one layer `[d', d]`, its factored system (normal equation) and residuals `[n]`."""

    shift: Tensor
    system: RidgeSystem | None
    residuals: Tensor


def chunks(rows: int, size: int) -> Iterator[slice]:
    for start in range(0, rows, max(1, size)):
        yield slice(start, start + size)


def value_diffs_chunked(editor: Editor, name: str, keys: Tensor, value_grads: Tensor, chunk_size: int) -> Tensor:
    """D^T rows `[n, d']` computed chunk by chunk."""
    return torch.cat([editor.value_diffs(name, keys[c], value_grads[c]) for c in chunks(len(keys), chunk_size)])


def layer_ridge(editor: Editor, name: str, no_reg: bool) -> float:
    return 0.0 if no_reg else float(editor.ridge(name).detach())


@torch.no_grad()
def compute_shifts(editor: Editor, cache: dict[str, tuple[Tensor, Tensor]], aggregation: str, chunk_size: int,
                   solve_dtype: torch.dtype = torch.float32, no_reg: bool = False) -> dict[str, LayerShift]:
    """name -> LayerShift for every cached layer, without autograd graph."""
    out: dict[str, LayerShift] = {}
    for name, (keys, value_grads) in cache.items():
        diffs = value_diffs_chunked(editor, name, keys, value_grads, chunk_size)  # [n, d']
        if aggregation == "normal":
            system = ridge_system(keys, layer_ridge(editor, name, no_reg), solve_dtype, name)
            shift = normal_equation(keys, diffs, system)  # [d', d]
        else:
            system = None
            shift = sum(editor.summed_shift(name, keys[c], value_grads[c]) for c in chunks(len(keys), chunk_size))
        out[name] = LayerShift(shift, system, mean_residual(keys, diffs, shift))
    return out


def residual_of(shifts: dict[str, LayerShift]) -> float:
    """The Fig. 8 mean residual over all tokens of all layers."""
    return float(torch.cat([s.residuals for s in shifts.values()]).float().mean())
