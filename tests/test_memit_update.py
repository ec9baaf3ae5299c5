"""MEMIT's closed-form layer update (Eq. 14) against lstsq, and its reduction to ROME's rank-one update."""
import torch

from editbench.methods.memit.update import memit_update


def test_update_is_the_least_squares_solution():
    g = torch.Generator().manual_seed(0)
    d_in, d_out, n, ridge = 12, 7, 5, 3.0
    keys = torch.randn(d_in, n, generator=g, dtype=torch.float64)  # K: [d_in, n]
    residuals = torch.randn(d_out, n, generator=g, dtype=torch.float64)  # R: [d_out, n]
    root = torch.randn(d_in, d_in, generator=g, dtype=torch.float64)  # L
    covariance = root @ root.T / d_in  # C = L Lᵀ
    delta = memit_update(keys, residuals, covariance, ridge)
    # ‖Δ K − R‖² + λ tr(Δ C Δᵀ) = ‖Δ [K, √λ L] − [R, 0]‖²: an ordinary least-squares problem in Δᵀ.
    design = torch.cat([keys, (ridge / d_in) ** 0.5 * root], dim=1)  # [d_in, n + d_in]
    wanted = torch.cat([residuals, torch.zeros(d_out, d_in, dtype=torch.float64)], dim=1)  # [d_out, n + d_in]
    reference = torch.linalg.lstsq(design.T, wanted.T).solution.T  # [d_out, d_in]
    assert delta.shape == (d_out, d_in)
    torch.testing.assert_close(delta, reference, rtol=1e-9, atol=1e-10)


def test_float32_inputs_are_solved_in_float64():
    g = torch.Generator().manual_seed(1)
    keys, residuals = torch.randn(6, 3, generator=g), torch.randn(4, 3, generator=g)
    delta = memit_update(keys, residuals, torch.eye(6), 2.0)
    assert delta.dtype == torch.float64
    expected = residuals.double() @ keys.double().T @ torch.linalg.inv(2.0 * torch.eye(6, dtype=torch.float64) + keys.double() @ keys.double().T)
    torch.testing.assert_close(delta, expected)


def test_without_covariance_one_request_gives_rome_rank_one_update():
    g = torch.Generator().manual_seed(2)
    key = torch.randn(9, 1, generator=g, dtype=torch.float64)  # k: [d_in, 1]
    residual = torch.randn(5, 1, generator=g, dtype=torch.float64)  # r: [d_out, 1]
    delta = memit_update(key, residual, torch.zeros(9, 9, dtype=torch.float64), 15000.0)
    torch.testing.assert_close(delta, residual @ key.T / (key.T @ key))  # r kᵀ / (kᵀ k)
    torch.testing.assert_close(delta @ key, residual)  # Δ k = r exactly
    assert torch.linalg.matrix_rank(delta) == 1
