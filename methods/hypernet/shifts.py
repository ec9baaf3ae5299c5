"""From cached (key, value gradient) rows to one weight shift per layer (Alg. 1, lines 5-11).

`aggregation` is 'normal' (MALMEN: normal equation over value differences) or 'sum' (MEND:
sum of the rank-one shifts). Everything runs in chunks of `chunk_size` rows.

Two ways to the same shifts:
- `compute_shifts` takes every cached row at once (meta-training: Alg. 2 needs the rows again for
  the meta-gradient of D and lambda);
- `StreamedShifts` takes the rows one LM batch at a time (the edit, Alg. 1): the hyper-network's
  running normalisation is fixed while editing, so each batch's value differences are final as soon
  as its rows are cached; only `U U^T` `[d, d]` and `U D^T` `[d, d']` per layer are kept (the sum
  aggregation keeps `grad~_V U~^T` `[d', d]`), so the edit's memory does not grow with m (Fig. 9).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import torch
from torch import Tensor

from editbench.guard import check_finite
from editbench.methods.hypernet.network import Editor
from editbench.methods.hypernet.solve import (RidgeSystem, dual_shift, gram_system, mean_residual, normal_equation,
                                              ridge_system, solve_shift)

AGGREGATIONS = ("normal", "sum")


@dataclass
class LayerShift:
    """The shift of one layer `[d', d]`, its factored system (normal equation) and residuals `[n]`
    (`StreamedShifts`: of the layer's first `residual_rows` rows only)."""

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


class StreamedShifts:
    """The shifts of `compute_shifts`, fed one batch of cached rows at a time (Alg. 1, lines 5-11).

    `add(cache)` takes one LM batch's rows (name -> (keys [n_b, d], value_grads [n_b, d'])), runs
    the hyper-network on them and adds, per layer, `U U^T` ([d, d]) and `U D^T` ([d, d']) in
    `solve_dtype` (normal equation) or `grad~_V U~^T` ([d', d], sum); `finish()` solves once per
    layer. Memory: these sums plus the residual sample, whatever the number of rows.

    The mean residual (Fig. 8) needs the rows themselves: it is computed on a bounded sample, the
    first `residual_rows` rows of each layer in request order (all rows when there are fewer, as
    `compute_shifts`), not in a second LM pass.

    While a layer has no more rows than its key width d, its rows are kept instead of the sums
    (no more memory than the `[d, d]` sum) and solved in the dual form (`dual_shift`, an `n x n`
    system); past d they are folded into the sums.
    """

    def __init__(self, editor: Editor, aggregation: str, chunk_size: int, solve_dtype: torch.dtype = torch.float32,
                 no_reg: bool = False, residual_rows: int = 1024):
        self.editor, self.aggregation, self.chunk_size = editor, aggregation, chunk_size
        self.solve_dtype, self.no_reg, self.residual_rows = solve_dtype, no_reg, residual_rows
        self.rows: dict[str, int] = {}
        self.sums: dict[str, tuple[Tensor, ...]] = {}  # normal: (U U^T, U D^T); sum: (grad~_V U~^T,)
        self.kept: dict[str, list[tuple[Tensor, Tensor]]] = {}  # normal, at most d rows: (keys, value diffs)
        self.sample: dict[str, list[tuple[Tensor, Tensor]]] = {}  # first rows: (keys, value_diffs)
        self.names: list[str] = []

    @torch.no_grad()
    def add(self, cache: dict[str, tuple[Tensor, Tensor]]) -> None:
        """Fold in one batch of rows: name -> (keys [n_b, d], value_grads [n_b, d'])."""
        for name in cache:
            if name not in self.rows:
                self.names.append(name)
                self.rows[name], self.sample[name] = 0, []
        for group in stack_groups(self.editor, cache):
            net = self.editor.nets[group.key]
            pseudo = [net(group.keys[c], group.value_grads[c], group.layer[c]) for c in chunks(len(group.keys), self.chunk_size)]
            pseudo_keys = torch.cat([p[0] for p in pseudo])  # [N_b, d]
            pseudo_grads = torch.cat([p[1] for p in pseudo])  # [N_b, d']
            lr = self.editor.rows_lr(group.key, group.layer)  # [N_b, 1]
            diffs_all = -lr * (pseudo_keys * group.keys).sum(-1, keepdim=True) * pseudo_grads  # d_j, [N_b, d']
            for name in group.names:
                rows_of = group.slices[name]
                keys, diffs = group.keys[rows_of], diffs_all[rows_of]
                if self.aggregation == "normal":
                    u, dv = keys.to(self.solve_dtype), diffs.to(self.solve_dtype)
                    if name not in self.sums and self.rows[name] + len(u) <= u.shape[1]:
                        self.kept.setdefault(name, []).append((u.clone(), dv.clone()))  # still n <= d: dual form
                    else:
                        gram, rhs = self._sums(name, (u.shape[1], u.shape[1]), (u.shape[1], dv.shape[1]), like=u)
                        for ku, kdv in self.kept.pop(name, []) + [(u, dv)]:
                            gram.addmm_(ku.T, ku)  # U U^T [d, d], in place: no second [d, d] per batch
                            rhs.addmm_(ku.T, kdv)  # U D^T [d, d']
                else:
                    (total,) = self._sums(name, (pseudo_grads.shape[1], pseudo_keys.shape[1]), like=pseudo_keys)
                    total.addmm_(pseudo_grads[rows_of].T, pseudo_keys[rows_of])  # grad~_V U~^T [d', d]
                kept = sum(len(k) for k, _ in self.sample[name])
                if kept < self.residual_rows:
                    take = self.residual_rows - kept
                    self.sample[name].append((keys[:take].clone(), diffs[:take].clone()))
                self.rows[name] += len(keys)

    def _sums(self, name: str, *shapes: tuple[int, int], like: Tensor) -> tuple[Tensor, ...]:
        """The layer's running sums (zeros of `shapes` at its first batch)."""
        if name not in self.sums:
            self.sums[name] = tuple(torch.zeros(shape, dtype=like.dtype, device=like.device) for shape in shapes)
        return self.sums[name]

    @torch.no_grad()
    def finish(self) -> dict[str, LayerShift]:
        """name -> LayerShift, in the order the layers were first seen."""
        out = {}
        for name in self.names:
            keys = torch.cat([k for k, _ in self.sample[name]])  # [<= residual_rows, d]
            diffs = torch.cat([v for _, v in self.sample[name]])  # [<= residual_rows, d']
            if self.aggregation == "normal" and name in self.kept:
                rows = self.kept.pop(name)
                system = None
                shift = dual_shift(torch.cat([u for u, _ in rows]), torch.cat([dv for _, dv in rows]),
                                   layer_ridge(self.editor, name, self.no_reg), self.solve_dtype, name).to(diffs.dtype)
            elif self.aggregation == "normal":
                gram, rhs = self.sums.pop(name)  # freed layer by layer
                system = gram_system(gram, self.rows[name], layer_ridge(self.editor, name, self.no_reg), name)
                shift = solve_shift(rhs, system, diffs.dtype)  # S* = D U^T (U U^T + lambda I)^{-1}: [d', d]
            else:
                system = None
                shift = -self.editor.lr[self.editor.index(name)] * self.sums.pop(name)[0]  # [d', d]
            check_finite(shift, "shift", f"hyper-network {self.aggregation} aggregation", layer=name,
                         hint="the editor, the cached keys or the solve hold NaN/Inf (try solve_dtype=float64)")
            out[name] = LayerShift(shift, system, mean_residual(keys, diffs, shift))
        return out


def residual_of(shifts: dict[str, LayerShift]) -> float:
    """The Fig. 8 mean residual over all tokens of all layers."""
    return float(torch.cat([s.residuals for s in shifts.values()]).float().mean())
