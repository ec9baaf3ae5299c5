"""Faithfulness of the shared hyper-network math: normal equation, sum of shifts, Theorems 1-2."""
import pytest
import torch

from editbench.errors import EditbenchError
from editbench.methods.hypernet.checkpoint import load_editor, save_editor
from editbench.methods.hypernet.network import Editor
from editbench.methods.hypernet.shifts import StreamedShifts, compute_shifts
from editbench.methods.hypernet.solve import (dual_shift, mean_residual, normal_equation, normal_equation_autograd,
                                              ridge_grad, ridge_system, value_diff_grads, weight_grad_solve)



@pytest.fixture(autouse=True)
def _float64():
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def random_editor(shapes, seed=0, lr=1e-2):
    torch.manual_seed(seed)
    editor = Editor(shapes, rank=8, blocks=2, init_lr=lr).double()
    with torch.no_grad():
        for block_params in editor.nets.parameters():
            block_params.add_(0.1 * torch.randn_like(block_params))
    return editor


@pytest.mark.parametrize("n,d,d_out,ridge", [(40, 12, 7, 0.5), (5, 12, 7, 2.0), (11, 12, 7, 1e-3), (0, 12, 7, 1.0)])
def test_dual_form_equals_the_normal_equation(n, d, d_out, ridge):
    torch.manual_seed(1)
    keys, diffs = torch.randn(n, d), torch.randn(n, d_out)
    expected = normal_equation(keys, diffs, ridge_system(keys, ridge, torch.float64))  # [d', d]
    got = dual_shift(keys, diffs, ridge, torch.float64)
    assert got.shape == (d_out, d)
    torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-10)
    with pytest.raises(EditbenchError, match="singular"):
        dual_shift(keys[:5], diffs[:5], 0.0, torch.float64)


@pytest.mark.parametrize("batches", [[3, 4], [3, 4, 9, 2]])  # 7 rows <= d = 12 (dual), 18 rows > d (summed)
def test_streamed_shifts_keep_rows_then_sum_them(batches):
    shapes = {"a": (5, 12), "b": (5, 12)}
    editor = random_editor(shapes, seed=3)
    torch.manual_seed(2)
    parts = [{n: (torch.randn(k, 12), torch.randn(k, 5)) for n in shapes} for k in batches]
    for part in parts:
        for name, (keys, grads) in part.items():
            editor.observe(name, keys, grads)
    stream = StreamedShifts(editor, "normal", 4096, torch.float64)
    for part in parts:
        stream.add(part)
    summed = sum(batches) > 12
    assert bool(stream.sums) == summed and bool(stream.kept) != summed
    got = stream.finish()
    whole = {n: (torch.cat([p[n][0] for p in parts]), torch.cat([p[n][1] for p in parts])) for n in shapes}
    expected = compute_shifts(editor, whole, "normal", 4096, torch.float64)
    for name in shapes:
        torch.testing.assert_close(got[name].shift, expected[name].shift, rtol=1e-9, atol=1e-12)
        assert float(expected[name].shift.abs().max()) > 0


@pytest.mark.parametrize("n,d,d_out,ridge", [(40, 12, 7, 0.5), (5, 12, 7, 2.0), (30, 12, 7, 1e-3)])
def test_normal_equation_matches_lstsq(n, d, d_out, ridge):
    torch.manual_seed(0)
    keys, diffs = torch.randn(n, d), torch.randn(n, d_out)
    shift = normal_equation(keys, diffs, ridge_system(keys, ridge, torch.float64))  # [d', d]
    # min ||S U - D||^2 + lambda ||S||^2  ==  lstsq on [U^T; sqrt(lambda) I] S^T = [D^T; 0]
    design = torch.cat([keys, ridge ** 0.5 * torch.eye(d)])
    target = torch.cat([diffs, torch.zeros(d, d_out)])
    expected = torch.linalg.lstsq(design, target).solution.T
    torch.testing.assert_close(shift, expected, rtol=1e-9, atol=1e-10)


def test_sum_of_shifts_equals_explicit_rank_one_sum():
    editor = random_editor({"layer": (6, 9)})
    keys, grads = torch.randn(11, 9), torch.randn(11, 6)
    editor.observe("layer", keys, grads)
    shift = editor.summed_shift("layer", keys, grads)
    pseudo_keys, pseudo_grads = editor.pseudo("layer", keys, grads)
    explicit = sum(-editor.lr[0] * torch.outer(pseudo_grads[j], pseudo_keys[j]) for j in range(11))  # sum_j S_j
    torch.testing.assert_close(shift, explicit)
    # and d_j = S_j u_j (Appendix A.2)
    diffs = editor.value_diffs("layer", keys, grads)
    for j in range(11):
        torch.testing.assert_close(diffs[j], -editor.lr[0] * torch.outer(pseudo_grads[j], pseudo_keys[j]) @ keys[j])


def test_theorems_1_and_2_match_autograd():
    torch.manual_seed(1)
    n, d, d_out = 15, 10, 6
    keys = torch.randn(n, d)
    diffs = torch.randn(n, d_out, requires_grad=True)
    log_ridge = torch.tensor(0.3, requires_grad=True)
    weight_grad = torch.randn(d_out, d)  # an arbitrary g's gradient grad_W
    shift = normal_equation_autograd(keys, diffs, log_ridge.exp())
    (shift * weight_grad).sum().backward()  # g(S) = <grad_W, S>
    system = ridge_system(keys, float(log_ridge.detach().exp()), torch.float64)
    solved = weight_grad_solve(weight_grad, system)
    torch.testing.assert_close(value_diff_grads(solved, keys), diffs.grad)  # Theorem 1
    d_theta = ridge_grad(solved, shift.detach()) * log_ridge.exp()  # Theorem 2, chained through exp
    torch.testing.assert_close(d_theta, log_ridge.grad)


def test_singular_system_without_ridge_is_a_clear_error():
    keys = torch.randn(4, 10)
    with pytest.raises(EditbenchError, match="singular"):
        ridge_system(keys, 0.0, torch.float64, "layer")
    keys = torch.cat([torch.randn(20, 5), torch.zeros(20, 1)], 1)  # n >= d but rank-deficient
    with pytest.raises(EditbenchError, match="singular|positive definite"):
        ridge_system(keys, 0.0, torch.float64, "layer")


def test_normal_equation_residual_below_sum_of_shifts():
    editor = random_editor({"layer": (8, 24)}, lr=1e-2)
    torch.manual_seed(3)
    keys, grads = torch.randn(16, 24, dtype=torch.float64), torch.randn(16, 8, dtype=torch.float64)
    editor.observe("layer", keys, grads)
    cache = {"layer": (keys, grads)}
    with torch.no_grad():
        editor.log_ridge.fill_(-6.0)
    # medians: a token whose value difference is ~0 (u~ . u ~ 0) has an unbounded relative residual
    normal = float(compute_shifts(editor, cache, "normal", 5, torch.float64)["layer"].residuals.median())
    summed = float(compute_shifts(editor, cache, "sum", 5, torch.float64)["layer"].residuals.median())
    assert normal < 0.05 < summed, (normal, summed)


def test_mean_residual_definition():
    keys, shift = torch.randn(5, 4), torch.randn(3, 4)
    diffs = keys @ shift.T
    assert float(mean_residual(keys, diffs, shift).max()) < 1e-12
    torch.testing.assert_close(mean_residual(keys, 2 * diffs, shift), torch.full((5,), 0.5))


def test_identity_at_initialisation():
    editor = Editor({"a": (6, 9), "b": (6, 9), "c": (9, 6)}, rank=1920, blocks=2, init_lr=1e-6).double()
    assert set(editor.groups) == {"6x9", "9x6"} and editor.groups["6x9"] == ["a", "b"]
    assert editor.nets["6x9"].blocks[0].down.shape == (15, 15)  # rank capped by the width d + d'
    keys, grads = torch.randn(7, 9), torch.randn(7, 6)
    editor.observe("a", keys, grads)
    pseudo_keys, pseudo_grads = editor.pseudo("a", keys, grads)
    norm = editor.nets["6x9"].norm
    std = (norm.m2 / (norm.count - 1) + norm.eps).sqrt()
    torch.testing.assert_close(torch.cat([pseudo_keys, pseudo_grads], 1), (torch.cat([keys, grads], 1) - norm.mean) / std)
    torch.testing.assert_close(editor.ridge("a"), torch.tensor(1.0))


def test_running_norm_matches_batch_statistics():
    editor = Editor({"a": (3, 4)}, rank=4, blocks=1, init_lr=1e-6).double()
    rows = torch.randn(50, 7) * 3 + 1
    for part in rows.split([10, 1, 39]):
        editor.observe("a", part[:, :4], part[:, 4:])
    norm = editor.nets["3x4"].norm
    torch.testing.assert_close(norm.mean, rows.mean(0))
    torch.testing.assert_close(norm.m2 / (norm.count - 1), rows.var(0))


def test_checkpoint_round_trip(tmp_path):
    shapes = {"a": (6, 9), "b": (9, 6)}
    editor = random_editor(shapes, seed=5)
    editor.observe("a", torch.randn(7, 9), torch.randn(7, 6))
    save_editor(editor, tmp_path / "e.safetensors", {"steps": 3})
    other = Editor(shapes, rank=8, blocks=2, init_lr=1e-6).double()
    assert load_editor(other, tmp_path / "e.safetensors") == {"steps": 3}
    for (k, v), (k2, v2) in zip(editor.state_dict().items(), other.state_dict().items()):
        assert k == k2 and torch.equal(v, v2)
    assert not list(tmp_path.glob(".*tmp*"))


def test_ridge_system_falls_back_to_float64_for_outlier_keys(monkeypatch):
    """When fp32 Cholesky of U U^T + lambda I fails (keys with huge outliers, as the first token's
    activations in cache-all-tokens), the system is factored in float64 and the solve is right."""
    from editbench.methods.hypernet import solve

    g = torch.Generator().manual_seed(0)
    keys = torch.randn(8, 64, generator=g, dtype=torch.float32) * 3e4
    value_diffs = torch.randn(8, 16, generator=g, dtype=torch.float32)
    real = torch.linalg.cholesky_ex
    dtypes = []

    def fp32_fails(a):
        dtypes.append(a.dtype)
        factor, info = real(a)
        return factor, (info + 1 if a.dtype == torch.float32 else info)

    monkeypatch.setattr(solve.torch.linalg, "cholesky_ex", fp32_fails)
    system = solve.ridge_system(keys, 1.0, torch.float32)
    assert dtypes == [torch.float32, torch.float64] and system.factor.dtype == torch.float64
    shift = solve.normal_equation(keys, value_diffs, system)
    k64, d64 = keys.double(), value_diffs.double()
    expected = torch.linalg.solve(k64.T @ k64 + torch.eye(64, dtype=torch.float64), k64.T @ d64).T
    assert shift.dtype == torch.float32
    assert torch.allclose(shift.double(), expected, rtol=1e-4, atol=1e-9)


def test_streamed_sum_of_repeated_large_keys_needs_float64_which_cache_all_uses():
    """Keys of rank 32 < d = 64 at scale 100 (as every token's keys, with a chat template's opening
    repeated in every request): their float32 `U U^T` plus a small ridge is numerically indefinite,
    even factored as a float64 copy; summed in float64 it is solved, and equals the direct solve."""
    from editbench.methods.malmen import MalmenCacheAll

    g = torch.Generator().manual_seed(0)
    keys = (torch.randn(400, 32, generator=g) @ torch.randn(32, 64, generator=g)) * 100  # [n, d], rank 32
    grads = torch.randn(400, 8, generator=g)
    editor = random_editor({"layer": (8, 64)}, seed=1)
    editor.observe("layer", keys, grads)
    with torch.no_grad():
        editor.log_ridge.fill_(0.0)  # lambda = 1
    parts = [{"layer": (k, v)} for k, v in zip(keys.float().split(50), grads.float().split(50))]
    stream32 = StreamedShifts(editor.float(), "normal", 4096, torch.float32)
    for part in parts:
        stream32.add(part)
    with pytest.raises(EditbenchError, match="solve_dtype=float64"):
        stream32.finish()
    stream64 = StreamedShifts(editor.float(), "normal", 4096, torch.float64)
    for part in parts:
        stream64.add(part)
    got = stream64.finish()["layer"].shift
    # The same float32 rows at once, the system factored from float64 keys (`ridge_system`).
    expected = compute_shifts(editor, {"layer": (keys.float(), grads.float())}, "normal", 4096, torch.float64)["layer"].shift
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-8)
    assert MalmenCacheAll().config.solve_dtype == "float64" and MalmenCacheAll().answer_only is False
    assert MalmenCacheAll.Config().solve_dtype == "float64"
