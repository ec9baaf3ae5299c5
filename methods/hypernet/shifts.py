"""From cached (key, value gradient) rows to one weight shift per layer (Alg. 1, lines 5-11).

`aggregation` is 'normal' (MALMEN: normal equation over value differences) or 'sum' (MEND:
sum of the rank-one shifts). Everything runs in chunks of `chunk_size` rows.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from editbench.guard import check_finite
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


@dataclass
class GroupRows:
    """The cached rows of all layers of one shape group, stacked: keys [N, d], value_grads [N, d'],
    layer [N] (position in the group), and each layer's slice of the rows."""

    key: str
    names: list[str]
    keys: Tensor
    value_grads: Tensor
    layer: Tensor
    slices: dict[str, slice]


def stack_groups(editor: Editor, cache: dict[str, tuple[Tensor, Tensor]]) -> list[GroupRows]:
    """Stack the cached rows of the layers sharing a hyper-network, to run it once per group."""
    out = []
    for key, members in editor.groups.items():
        names = [n for n in members if n in cache]
        if not names:
            continue
        sizes = [len(cache[n][0]) for n in names]
        starts = [sum(sizes[:i]) for i in range(len(sizes))]
        device = cache[names[0]][0].device
        layer = torch.cat([torch.full((size,), members.index(n), dtype=torch.long, device=device)
                           for n, size in zip(names, sizes)])
        out.append(GroupRows(key, names, torch.cat([cache[n][0] for n in names]),
                             torch.cat([cache[n][1] for n in names]), layer,
                             {n: slice(a, a + size) for n, a, size in zip(names, starts, sizes)}))
    return out


def layer_ridge(editor: Editor, name: str, no_reg: bool) -> float:
    return 0.0 if no_reg else float(editor.ridge(name).detach())


@torch.no_grad()
def compute_shifts(editor: Editor, cache: dict[str, tuple[Tensor, Tensor]], aggregation: str, chunk_size: int,
                   solve_dtype: torch.dtype = torch.float32, no_reg: bool = False) -> dict[str, LayerShift]:
    """name -> LayerShift for every cached layer, without autograd graph (one net pass per shape group)."""
    out: dict[str, LayerShift] = {}
    for group in stack_groups(editor, cache):
        net = editor.nets[group.key]
        rows = len(group.keys)
        pseudo = [net(group.keys[c], group.value_grads[c], group.layer[c]) for c in chunks(rows, chunk_size)]
        pseudo_keys = torch.cat([p[0] for p in pseudo])  # [N, d]
        pseudo_grads = torch.cat([p[1] for p in pseudo])  # [N, d']
        lr = editor.rows_lr(group.key, group.layer)  # [N, 1]
        diffs_all = -lr * (pseudo_keys * group.keys).sum(-1, keepdim=True) * pseudo_grads  # d_j, [N, d']
        for name in group.names:
            rows_of = group.slices[name]
            keys, diffs = group.keys[rows_of], diffs_all[rows_of]
            if aggregation == "normal":
                system = ridge_system(keys, layer_ridge(editor, name, no_reg), solve_dtype, name)
                shift = normal_equation(keys, diffs, system)  # [d', d]
            else:
                system = None
                shift = -editor.lr[editor.index(name)] * pseudo_grads[rows_of].T @ pseudo_keys[rows_of]  # [d', d]
            check_finite(shift, "shift", f"hyper-network {aggregation} aggregation", layer=name,
                         hint="the editor, the cached keys or the solve hold NaN/Inf (try solve_dtype=float64)")
            out[name] = LayerShift(shift, system, mean_residual(keys, diffs, shift))
    return {n: out[n] for n in cache}


def residual_of(shifts: dict[str, LayerShift]) -> float:
    """The Fig. 8 mean residual over all tokens of all layers."""
    return float(torch.cat([s.residuals for s in shifts.values()]).float().mean())
