"""Benchmarks (pytest -m benchmark) on the embedded SmolLM2-135M (`zsre-smollm2`, float32, CPU):
MALMEN and MEND edit and meta-step, MEMIT statistics and edit, at small m so that the whole suite
stays within 15 minutes on 2 CPU cores. Skipped, with the reason, when EDITBENCH_DATA is unset.

Hyper-network editors are untrained (`benchmarks/points.py`); MEMIT runs with the task's SmolLM2
preset and 40 WikiText-2 paragraphs of statistics (the default reads 1,000).
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import points  # noqa: E402
import report  # noqa: E402

from datadir import data_root, skip_reason  # noqa: E402
from editbench.methods.malmen import Malmen  # noqa: E402
from editbench.methods.memit import Memit, MemitConfig  # noqa: E402
from editbench.methods.mend import Mend  # noqa: E402

pytestmark = pytest.mark.skipif(data_root() is None, reason=skip_reason())
METHODS = {"malmen": Malmen, "mend": Mend}
MODEL = "smollm2-135m"
STATS_TEXTS = 40


@pytest.fixture(scope="module")
def smollm2():
    from editbench.tasks.zsre import ZsreSmolLM2

    task = ZsreSmolLM2(data_dir=data_root())
    return task, task.load_model()


@pytest.fixture(scope="module")
def memit(smollm2, tmp_path_factory):
    task, model = smollm2
    _, preset = task.preset_for(Memit)
    folder = tmp_path_factory.mktemp("memit-stats")
    return Memit(MemitConfig(**{**preset, "stats_samples": STATS_TEXTS, "stats_dir": str(folder)})), folder


@pytest.mark.benchmark(group="edit-smollm2")
@pytest.mark.parametrize("method", ["malmen", "mend"])
@pytest.mark.parametrize("m", [8, 32])
def test_edit_smollm2(benchmark, smollm2, method, m):
    task, model = smollm2
    runner = points.hypernet(METHODS[method], task, model)
    requests = task.requests("eval", m, seed=0)
    point = benchmark.pedantic(lambda: points.edit_point(runner, task, model, requests), rounds=1, warmup_rounds=0)
    report.record(benchmark, point, model=MODEL, dtype="float32")
    assert point["finite"] and point["peak_memory_bytes"] > 0
    assert point["changed_fraction"] > 0.5, point


@pytest.mark.benchmark(group="meta-step-smollm2")
@pytest.mark.parametrize("method", ["malmen", "mend"])
def test_meta_step_smollm2(benchmark, smollm2, method, m=8):
    task, model = smollm2
    runner = points.hypernet(METHODS[method], task, model)
    point = benchmark.pedantic(lambda: points.meta_step_point(runner, task, model, m), rounds=1, warmup_rounds=0)
    report.record(benchmark, point, model=MODEL, dtype="float32")
    assert point["finite"] and point["peak_memory_bytes"] > 0 and point["grads_nonzero"] > 0


@pytest.mark.benchmark(group="memit-smollm2")
def test_memit_statistics_smollm2(benchmark, smollm2, memit):
    task, model = smollm2
    method, folder = memit
    point = benchmark.pedantic(lambda: points.memit_statistics_point(method, task, model, folder), rounds=1)
    report.record(benchmark, point, model=MODEL, dtype="float32")
    assert point["finite"] and point["positive_diagonal"] and point["peak_memory_bytes"] > 0
    assert point["computed"] == point["layers"] > 0


@pytest.mark.benchmark(group="memit-smollm2")
@pytest.mark.parametrize("m", [2, 8])
def test_memit_edit_smollm2(benchmark, smollm2, memit, m):
    task, model = smollm2
    method, folder = memit
    method.prepare(task, model, folder)  # computed by the statistics benchmark, else here (untimed)
    requests = task.requests("eval", m, seed=0)
    point = benchmark.pedantic(lambda: points.edit_point(method, task, model, requests), rounds=1, warmup_rounds=0)
    report.record(benchmark, point, model=MODEL, dtype="float32")
    assert point["finite"] and point["peak_memory_bytes"] > 0
    assert point["changed_fraction"] > 0.5, point
