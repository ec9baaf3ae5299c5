"""Benchmark (pytest -m benchmark --benchmark-enable): the edit step of MALMEN and MEND as m grows.

The editor is untrained (identity hyper-network): the cost of Alg. 1 (cache keys and value
gradients, run the hyper-network, solve or sum, apply) does not depend on its training. MEMIT's
edit benchmark on the same tiny model is `tests/test_memit.py::test_benchmark_edit_time`.
"""
import pytest

from editbench.measure import Phase
from editbench.methods.malmen import Malmen
from editbench.methods.mend import Mend
from editbench.modules import apply_deltas
from tiny import TinyCausalTask


@pytest.mark.benchmark(group="edit-step")
@pytest.mark.parametrize("method_cls", [Malmen, Mend], ids=["malmen", "mend"])
@pytest.mark.parametrize("m", [16, 256, 1024])
def test_edit_step(benchmark, method_cls, m):
    task = TinyCausalTask("gpt2", splits={"eval": m})
    model = task.load_model()
    method = method_cls()
    method.editor = method.build_editor(task, model)
    requests = task.requests("eval", m, seed=0)

    def edit_and_revert():
        result = method.edit(task, model, requests)
        apply_deltas(model, result.deltas, sign=-1.0)
        return result

    result = benchmark.pedantic(edit_and_revert, rounds=2, warmup_rounds=0)
    with Phase("cpu") as stats:
        edit_and_revert()
    benchmark.extra_info.update({"m": m, "peak_rss_bytes": stats.peak_rss_bytes, **result.stats})
    assert result.deltas
