"""Benchmarks (pytest -m benchmark): one meta-training step of MALMEN and MEND as m grows, on a tiny
random GPT-2, memory-economic (Alg. 2) and concatenated back-propagation (the paper's Fig. 9 axes).

Each point is one `meta_gradient` call on a fresh prefix cache (`benchmarks/points.py`); its row
(time, peak memory, m) lands in the benchmark's extra_info. Fig. 9's memory check of the edit is
`test_bench_fig9.py`; `benchmarks/fig9.py` measures meta-steps in fresh processes up to m = 4096.
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import points  # noqa: E402
import report  # noqa: E402

from editbench.methods.malmen import Malmen  # noqa: E402
from editbench.methods.mend import Mend  # noqa: E402
from tiny import TinyCausalTask  # noqa: E402

POINTS = [(mode, m) for mode, ms in (("economic", (16, 256, 1024)), ("concatenated", (16, 256))) for m in ms]


@pytest.mark.benchmark(group="meta-step-tiny")
@pytest.mark.parametrize("method_cls", [Malmen, Mend], ids=["malmen", "mend"])
@pytest.mark.parametrize(("mode", "m"), POINTS, ids=[f"{mode}-{m}" for mode, m in POINTS])
def test_meta_step_tiny(benchmark, method_cls, mode, m):
    task = TinyCausalTask("gpt2", splits={"train": m, "valid": 4, "eval": 4})
    model = task.load_model()
    runner = points.hypernet(method_cls, task, model, training_mode=mode)
    point = benchmark.pedantic(lambda: points.meta_step_point(runner, task, model, m, mode), rounds=2, warmup_rounds=0)
    report.record(benchmark, point, model="tiny-gpt2", dtype="float32")
    assert point["finite"] and point["peak_memory_bytes"] > 0
    assert point["grads_nonzero"] > 0  # the meta-gradient reached the editor
