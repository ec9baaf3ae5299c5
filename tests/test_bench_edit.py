"""The edit step of MALMEN and MEND (Alg. 1) as m grows, and the streamed edit's exactness.

Benchmarks (`pytest -m benchmark --benchmark-enable`): edit time and peak memory vs m on a tiny
random GPT-2, untrained editor (`benchmarks/points.py`); MEMIT's are in `test_bench_memit.py`, the
embedded model's in `test_bench_smollm2.py`, Fig. 9's memory check in `test_bench_fig9.py`.

Default suite: the edit streams over LM batches (`StreamedShifts`) and must give the shifts of
`compute_shifts` over all rows at once (float64, several LM batch sizes).
"""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import points  # noqa: E402
import report  # noqa: E402

from editbench.methods.hypernet.capture import capture  # noqa: E402
from editbench.methods.hypernet.shifts import compute_shifts, residual_of  # noqa: E402
from editbench.methods.malmen import Malmen, MalmenCacheAll  # noqa: E402
from editbench.methods.mend import Mend  # noqa: E402
from editbench.modules import snapshot  # noqa: E402
from tiny import TinyCausalTask  # noqa: E402

METHODS = {"malmen": Malmen, "mend": Mend}


@pytest.mark.benchmark(group="edit-tiny")
@pytest.mark.parametrize("method", ["malmen", "mend"])
@pytest.mark.parametrize("m", [16, 256, 1024])
def test_edit_tiny(benchmark, method, m):
    task = TinyCausalTask("gpt2", splits={"eval": m})
    model = task.load_model()
    runner = points.hypernet(METHODS[method], task, model)
    requests = task.requests("eval", m, seed=0)
    point = benchmark.pedantic(lambda: points.edit_point(runner, task, model, requests), rounds=2, warmup_rounds=1)
    report.record(benchmark, point, model="tiny-gpt2", dtype="float32")
    assert point["finite"] and point["peak_memory_bytes"] > 0
    assert point["changed_fraction"] > 0.5, point  # every edited layer moves (identity editor, eta 1e-3)
    assert point["cached_tokens"] >= m


def _editor_away_from_identity(method, task, model):
    """An untrained editor whose blocks and normalisation are not the identity (a real test of d_j)."""
    torch.manual_seed(1)
    with torch.no_grad():
        for block in (b for net in method.editor.nets.values() for b in net.blocks):
            block.up.normal_(0, 0.05)
            block.bias.normal_(0, 0.05)
    setup = method.setup(task, model)
    pairs = [(r.prompt, r.target) for r in task.requests("train", 8, 3)]
    for name, (keys, grads) in capture(task, model, setup.names, pairs, setup.answer_only, 8).items():
        method.editor.observe(name, keys, grads)


# Not malmen-no-reg: with lambda = 0 the tiny model's U U^T is nearly singular and any change in
# the order of the sums moves its solution by far more than rounding.
@pytest.mark.parametrize("method_cls", [Malmen, Mend, MalmenCacheAll])
@pytest.mark.parametrize("lm_batch_size", [1, 5, 64])
def test_streamed_edit_equals_all_rows_at_once(method_cls, lm_batch_size):
    task = TinyCausalTask("gpt2", splits={"train": 16, "eval": 32})
    model = task.load_model(dtype=torch.float64)
    method = points.hypernet(method_cls, task, model, lm_batch_size=lm_batch_size, solve_dtype="float64")
    _editor_away_from_identity(method, task, model)
    setup = method.setup(task, model)
    requests = task.requests("eval", 32, seed=0)
    # Today's path, independently: every row cached at once, then `compute_shifts`.
    cache = capture(task, model, setup.names, [(r.prompt, r.target) for r in requests], setup.answer_only, 64)
    reference = compute_shifts(method.editor, cache, setup.aggregation, setup.chunk_size, torch.float64, setup.no_reg)
    before = snapshot(model, setup.names)
    result = method.edit(task, model, requests)
    assert list(result.deltas) == list(reference)
    for name, layer in reference.items():
        assert layer.shift.abs().max() > 0
        torch.testing.assert_close(result.deltas[name], layer.shift, rtol=1e-9, atol=1e-12 * float(layer.shift.abs().max()))
        torch.testing.assert_close(snapshot(model, [name])[name] - before[name], layer.shift, rtol=1e-6, atol=1e-15)
    # Fewer rows than the residual sample's bound: the mean residual is the same number.
    assert result.stats["mean_residual"] == pytest.approx(residual_of(reference), rel=1e-9)
    assert result.stats["cached_tokens"] == len(next(iter(cache.values()))[0])


def test_streamed_residual_is_measured_on_a_bounded_sample():
    from editbench.methods.hypernet.shifts import StreamedShifts

    task = TinyCausalTask("gpt2", splits={"eval": 24})
    model = task.load_model(dtype=torch.float64)
    method = points.hypernet(Malmen, task, model, solve_dtype="float64")
    setup = method.setup(task, model)
    pairs = [(r.prompt, r.target) for r in task.requests("eval", 24, 0)]
    full = StreamedShifts(method.editor, "normal", 4096, torch.float64)
    bounded = StreamedShifts(method.editor, "normal", 4096, torch.float64, residual_rows=7)
    for start in range(0, 24, 5):
        cache = capture(task, model, setup.names, pairs[start:start + 5], True, 5)
        full.add(cache)
        bounded.add(cache)
    a, b = full.finish(), bounded.finish()
    for name in a:
        torch.testing.assert_close(a[name].shift, b[name].shift, rtol=0, atol=0)
        assert len(b[name].residuals) == 7 and len(a[name].residuals) == full.rows[name] > 7
        torch.testing.assert_close(b[name].residuals, a[name].residuals[:7])
