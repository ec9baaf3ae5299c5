"""The MEND-shaped hyper-network g_theta (paper, Appendix A.1; Mitchell et al. 2022).

One `ShapeNet` per distinct weight shape `[d', d]`, shared by the layers of that shape:
`x = cat(u, grad_v)` (`[N, d + d']`) is normalised by running statistics, then each block is
`x + scale_l * clamp(x A B + b, min=0) + shift_l` with `A ~ N(0, 1)` and `B = 0` at init (the net
starts as the identity), as in the reference implementations.
Output split: pseudo key `u~: [N, d]`, pseudo value gradient `grad~_v: [N, d']`.

`Editor` holds one `ShapeNet` per shape, the per-layer step size eta and the per-layer ridge
`lambda = exp(theta)`; layers are addressed by their module name.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn


def shape_key(shape: tuple[int, int]) -> str:
    return f"{shape[0]}x{shape[1]}"


class RunningNorm(nn.Module):
    """Feature-wise running mean/std over every row seen by `observe` (Chan et al. batch update)."""

    def __init__(self, width: int, eps: float = 1e-8):
        super().__init__()
        self.eps = eps
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))
        self.register_buffer("mean", torch.zeros(width, dtype=torch.float64))
        self.register_buffer("m2", torch.zeros(width, dtype=torch.float64))

    @torch.no_grad()
    def observe(self, rows: Tensor) -> None:
        """Update with `rows: [N, width]`."""
        rows = rows.detach().to(torch.float64)
        n = rows.shape[0]
        if n == 0:
            return
        batch_mean = rows.mean(0)
        batch_m2 = ((rows - batch_mean) ** 2).sum(0)
        total = self.count + n
        delta = batch_mean - self.mean
        self.mean += delta * n / total
        self.m2 += batch_m2 + delta ** 2 * self.count * n / total
        self.count.copy_(total)

    def forward(self, rows: Tensor) -> Tensor:
        if self.count < 2:
            return rows
        std = (self.m2 / (self.count - 1) + self.eps).sqrt()
        return (rows - self.mean.to(rows.dtype)) / std.to(rows.dtype)


class LowRankBlock(nn.Module):
    """`x + scale_l * clamp(x A B + b, min=0) + shift_l`, A: [w, r] ~ N(0, 1), B: [r, w] (zero at init).

    At init `x A B + b` is exactly 0. `clamp(min=0)` passes the gradient there (its mask is `>= 0`),
    `relu` would not (`> 0`): with relu, B, b, A and the scale would never receive a gradient.
    """

    def __init__(self, width: int, rank: int, layers: int):
        super().__init__()
        self.down = nn.Parameter(torch.randn(width, rank))  # A
        self.up = nn.Parameter(torch.zeros(rank, width))  # B
        self.bias = nn.Parameter(torch.zeros(width))
        self.scale = nn.Parameter(torch.ones(layers, width))
        self.shift = nn.Parameter(torch.zeros(layers, width))

    def forward(self, x: Tensor, layer: Tensor) -> Tensor:
        """x: [N, w], layer: [N] index of each row's layer within the shape group."""
        hidden = torch.addmm(self.bias, x @ self.down, self.up).clamp(min=0)  # [N, w]
        return x + self.scale[layer] * hidden + self.shift[layer]


class ShapeNet(nn.Module):
    """g_theta for one weight shape `[d', d]`: (u, grad_v) -> (u~, grad~_v)."""

    def __init__(self, d_in: int, d_out: int, rank: int, blocks: int, layers: int):
        super().__init__()
        self.d_in, self.d_out = d_in, d_out
        width = d_in + d_out
        self.norm = RunningNorm(width)
        self.blocks = nn.ModuleList(LowRankBlock(width, min(rank, width), layers) for _ in range(blocks))

    def observe(self, keys: Tensor, value_grads: Tensor) -> None:
        self.norm.observe(torch.cat([keys, value_grads], -1))

    def forward(self, keys: Tensor, value_grads: Tensor, layer: Tensor) -> tuple[Tensor, Tensor]:
        """keys: [N, d], value_grads: [N, d'], layer: [N] -> (pseudo keys [N, d], pseudo grads [N, d'])."""
        x = self.norm(torch.cat([keys, value_grads], -1))
        for block in self.blocks:
            x = block(x, layer)
        return x[:, : self.d_in], x[:, self.d_in:]


class Editor(nn.Module):
    """All hyper-networks of one edit set, with per-layer step size eta and ridge lambda = exp(theta).

    `shapes`: module name -> (d_out, d_in). Layers sharing a shape share a `ShapeNet`.
    """

    def __init__(self, shapes: dict[str, tuple[int, int]], rank: int, blocks: int, init_lr: float,
                 init_log_ridge: float = 0.0):
        super().__init__()
        self.names = list(shapes)
        self.shapes = dict(shapes)
        self.groups: dict[str, list[str]] = {}
        for name, shape in shapes.items():
            self.groups.setdefault(shape_key(shape), []).append(name)
        self.nets = nn.ModuleDict({
            key: ShapeNet(shapes[members[0]][1], shapes[members[0]][0], rank, blocks, len(members))
            for key, members in self.groups.items()
        })
        self.lr = nn.Parameter(torch.full((len(self.names),), float(init_lr)))  # eta per layer
        self.log_ridge = nn.Parameter(torch.full((len(self.names),), float(init_log_ridge)))  # theta per layer

    def index(self, name: str) -> int:
        return self.names.index(name)

    def group_of(self, name: str) -> tuple[str, int]:
        key = shape_key(self.shapes[name])
        return key, self.groups[key].index(name)

    def ridge(self, name: str) -> Tensor:
        return self.log_ridge[self.index(name)].exp()

    def observe(self, name: str, keys: Tensor, value_grads: Tensor) -> None:
        self.nets[shape_key(self.shapes[name])].observe(keys, value_grads)

    def pseudo(self, name: str, keys: Tensor, value_grads: Tensor) -> tuple[Tensor, Tensor]:
        """(u~ [N, d], grad~_v [N, d']) for rows of layer `name`."""
        key, position = self.group_of(name)
        layer = torch.full((keys.shape[0],), position, dtype=torch.long, device=keys.device)
        return self.nets[key](keys, value_grads, layer)

    def rows_lr(self, key: str, layer: Tensor) -> Tensor:
        """eta of each row's layer, [N, 1]; `layer` indexes the layers of shape group `key`."""
        indices = torch.tensor([self.index(n) for n in self.groups[key]], device=layer.device)
        return self.lr[indices[layer]].unsqueeze(-1)

    def rows_value_diffs(self, key: str, keys: Tensor, value_grads: Tensor, layer: Tensor) -> Tensor:
        """d_j for rows of several layers of one shape group (vectorised over layers), [N, d']."""
        pseudo_keys, pseudo_grads = self.nets[key](keys, value_grads, layer)
        return -self.rows_lr(key, layer) * (pseudo_keys * keys).sum(-1, keepdim=True) * pseudo_grads

    def value_diffs(self, name: str, keys: Tensor, value_grads: Tensor) -> Tensor:
        """d_j = -eta (u~_j . u_j) grad~_v_j (Appendix A.2), rows: [N, d']."""
        pseudo_keys, pseudo_grads = self.pseudo(name, keys, value_grads)
        coefficient = -self.lr[self.index(name)] * (pseudo_keys * keys).sum(-1, keepdim=True)  # [N, 1]
        return coefficient * pseudo_grads

    def summed_shift(self, name: str, keys: Tensor, value_grads: Tensor) -> Tensor:
        """MEND's S* = -eta grad~_V U~^T = sum_j of rank-one shifts, [d', d] (Appendix A.2)."""
        pseudo_keys, pseudo_grads = self.pseudo(name, keys, value_grads)
        return -self.lr[self.index(name)] * pseudo_grads.T @ pseudo_keys
