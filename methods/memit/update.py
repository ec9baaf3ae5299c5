"""MEMIT's batch update of one layer (Meng et al. 2023, Eq. 14).

Minimising  ‖Δ K − R‖²_F + λ tr(Δ C Δᵀ)  over Δ gives the normal equations Δ (λ C + K Kᵀ) = R Kᵀ, so

    Δ = R Kᵀ (λ C + K Kᵀ)⁻¹,   K: [d_in, n] keys, R: [d_out, n] residuals, C: [d_in, d_in].

The system is solved (never inverted) in float64 by default. When λC = 0 the matrix K Kᵀ is singular
for n < d_in: the minimum-norm solution R K⁺ is returned, which for one request is ROME's rank-one
update r kᵀ / (kᵀ k) (so that Δ k = r).
"""
from __future__ import annotations

import torch
from torch import Tensor


def memit_update(keys: Tensor, residuals: Tensor, covariance: Tensor, weight: float,
                 dtype: torch.dtype = torch.float64) -> Tensor:
    """Weight shift Δ: [d_out, d_in] from keys K: [d_in, n], residuals R: [d_out, n], covariance C: [d_in, d_in]."""
    device = keys.device
    K = keys.to(dtype)
    R = residuals.to(device, dtype)
    C = covariance.to(device, dtype)
    A = weight * C + K @ K.T  # [d_in, d_in], symmetric
    if weight == 0 or not bool(C.any()):
        adjusted = torch.linalg.pinv(A, hermitian=True) @ K  # [d_in, n]
    else:
        adjusted = torch.linalg.solve(A, K)  # [d_in, n] = (λC + KKᵀ)⁻¹ K
    return R @ adjusted.T  # [d_out, d_in]
