"""Aggregating value differences into one shift, and its manual gradients (Sec. 4.1, 4.2).

Row layout: `keys: [n, d]` holds U^T, `value_diffs: [n, d']` holds D^T, a shift is `[d', d]`.
- normal equation: S* = D U^T (U U^T + lambda I)^{-1}, solved with a Cholesky factor of the
  `d x d` system (no explicit inverse);
- Theorem 1: grad_D = grad_W (U U^T + lambda I)^{-1} U;
- Theorem 2: dL/dlambda = -tr(grad_W (U U^T + lambda I)^{-1} S*^T).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from editbench.errors import EditbenchError


@dataclass
class RidgeSystem:
    """Cholesky factor of `U U^T + lambda I` (`[d, d]`) for one layer."""

    factor: Tensor
    ridge: float

    def solve(self, rhs: Tensor) -> Tensor:
        """(U U^T + lambda I)^{-1} rhs, rhs: [d, k] -> [d, k] (in the factor's dtype)."""
        return torch.cholesky_solve(rhs.to(self.factor.dtype), self.factor)


def ridge_system(keys: Tensor, ridge: float, dtype: torch.dtype = torch.float32, name: str = "layer") -> RidgeSystem:
    """Factor `U U^T + lambda I` for keys `[n, d]`; a singular system (lambda = 0) is a clear error."""
    n, d = keys.shape
    _refuse_singular(n, d, ridge, name)
    factor, info = _cholesky(keys.to(dtype).T @ keys.to(dtype), ridge)  # U U^T: [d, d]
    if int(info) != 0 and dtype != torch.float64:
        # Keys with outlier magnitudes (e.g. the first token's massive activations, which the
        # cache-all-tokens ablation keeps) make U U^T + lambda I numerically indefinite in fp32.
        factor, info = _cholesky(keys.to(torch.float64).T @ keys.to(torch.float64), ridge)
    return _checked(factor, info, ridge, name)


def gram_system(gram: Tensor, rows: int, ridge: float, name: str = "layer") -> RidgeSystem:
    """Factor `U U^T + lambda I` from an accumulated `U U^T` (`[d, d]`, summed over `rows` keys),
    as `ridge_system` does from the keys. When fp32 is numerically indefinite the fallback
    factors the float64 copy of the fp32 sum (the keys are gone), not a float64 sum."""
    _refuse_singular(rows, gram.shape[0], ridge, name)
    factor, info = _cholesky(gram.clone(), ridge)
    if int(info) != 0 and gram.dtype != torch.float64:
        factor, info = _cholesky(gram.to(torch.float64), ridge)
    return _checked(factor, info, ridge, name)


def _refuse_singular(n: int, d: int, ridge: float, name: str) -> None:
    if ridge <= 0 and n < d:
        raise EditbenchError(
            f"{name}: U U^T is singular ({n} cached keys < key size {d}) and lambda = 0; "
            "the normal equation has no unique solution (use malmen, with a learned ridge)")


def _cholesky(gram: Tensor, ridge: float) -> tuple[Tensor, Tensor]:
    """Cholesky factor of `gram + ridge I` (`gram` [d, d] is modified in place)."""
    gram.diagonal().add_(ridge)
    return torch.linalg.cholesky_ex(gram)


def _checked(factor: Tensor, info: Tensor, ridge: float, name: str) -> RidgeSystem:
    if int(info) != 0:
        raise EditbenchError(f"{name}: U U^T + {ridge:g} I is not positive definite (singular keys); "
                             "the normal equation has no unique solution (a float32 sum of repeated or "
                             "outlying keys can be: use solve_dtype=float64)")
    return RidgeSystem(factor, float(ridge))


def normal_equation(keys: Tensor, value_diffs: Tensor, system: RidgeSystem) -> Tensor:
    """S* = D U^T (U U^T + lambda I)^{-1}: keys [n, d], value_diffs [n, d'] -> [d', d]."""
    rhs = keys.to(system.factor.dtype).T @ value_diffs.to(system.factor.dtype)  # U D^T: [d, d']
    return solve_shift(rhs, system, value_diffs.dtype)


def solve_shift(rhs: Tensor, system: RidgeSystem, dtype: torch.dtype) -> Tensor:
    """S* from `rhs` = U D^T ([d, d'], possibly summed over batches of rows) -> [d', d] in `dtype`."""
    return system.solve(rhs).T.to(dtype)  # A symmetric: (A^{-1} U D^T)^T = D U^T A^{-1}


def dual_shift(keys: Tensor, value_diffs: Tensor, ridge: float, dtype: torch.dtype = torch.float32,
               name: str = "layer") -> Tensor:
    """S* = D (U^T U + lambda I_n)^{-1} U^T: keys [n, d], value_diffs [n, d'] -> [d', d].

    The same S* as `normal_equation` (push-through identity: (U U^T + lambda I_d)^{-1} U =
    U (U^T U + lambda I_n)^{-1}), from an `n x n` system: cheaper when there are fewer rows n than
    key dimensions d (an edit of m = 64 on SmolLM2: n ~ 230, d = 1536). The fp32 -> float64
    fallback is `ridge_system`'s.
    """
    n, d = keys.shape
    _refuse_singular(n, d, ridge, name)
    if n == 0:
        return value_diffs.new_zeros((value_diffs.shape[1], d))
    rows = keys.to(dtype)
    factor, info = _cholesky(rows @ rows.T, ridge)  # U^T U + lambda I: [n, n]
    if int(info) != 0 and dtype != torch.float64:
        rows = keys.to(torch.float64)
        factor, info = _cholesky(rows @ rows.T, ridge)
    _checked(factor, info, ridge, name)
    solved = torch.cholesky_solve(value_diffs.to(factor.dtype), factor)  # (U^T U + lambda I)^{-1} D^T: [n, d']
    return (solved.T @ rows).to(value_diffs.dtype)  # [d', d]


def normal_equation_autograd(keys: Tensor, value_diffs: Tensor, ridge: Tensor) -> Tensor:
    """The same S* with autograd through D and lambda (the concatenated, MEND-style graph)."""
    d = keys.shape[1]
    gram = keys.T @ keys + ridge * torch.eye(d, dtype=keys.dtype, device=keys.device)  # [d, d]
    return torch.linalg.solve(gram, keys.T @ value_diffs).T  # [d', d]


def weight_grad_solve(weight_grad: Tensor, system: RidgeSystem) -> Tensor:
    """M = grad_W (U U^T + lambda I)^{-1}: [d', d] -> [d', d] (Alg. 2)."""
    return system.solve(weight_grad.T).T.to(weight_grad.dtype)


def value_diff_grads(solved_grad: Tensor, keys: Tensor) -> Tensor:
    """Theorem 1, rows: grad_D^T = U^T M^T, solved_grad M: [d', d], keys [n, d] -> [n, d']."""
    return keys.to(solved_grad.dtype) @ solved_grad.T


def ridge_grad(solved_grad: Tensor, shift: Tensor) -> Tensor:
    """Theorem 2: dL/dlambda = -tr(M S*^T) = -<M, S*>."""
    return -(solved_grad * shift.to(solved_grad.dtype)).sum()


def mean_residual(keys: Tensor, value_diffs: Tensor, shift: Tensor) -> Tensor:
    """Fig. 8: per-token ||S* u_j - d_j|| / ||d_j||, returned as the vector [n]."""
    residual = keys @ shift.T - value_diffs  # [n, d']
    return residual.norm(dim=-1) / value_diffs.norm(dim=-1).clamp_min(torch.finfo(value_diffs.dtype).tiny)
