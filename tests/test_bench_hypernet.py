"""Benchmarks (pytest -m benchmark): one meta-training step as m grows, economic vs concatenated
(the MALMEN paper's Fig. 9), on a tiny random GPT-2; the peak memory of each point is measured in
a fresh process and stored in the benchmark's extra_info."""
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import fig9  # noqa: E402

from editbench.methods.hypernet.meta import meta_gradient  # noqa: E402
from editbench.methods.hypernet.training import meta_batch  # noqa: E402
from editbench.methods.malmen import Malmen  # noqa: E402
from editbench.methods.mend import Mend  # noqa: E402
from tiny import TinyCausalTask  # noqa: E402


@pytest.mark.benchmark(group="meta-step")
@pytest.mark.parametrize("method", ["malmen", "mend"])
@pytest.mark.parametrize("mode", ["economic", "concatenated"])
@pytest.mark.parametrize("m", [16, 256, 4096])
def test_meta_step(benchmark, method, mode, m):
    torch.manual_seed(0)
    task = TinyCausalTask("gpt2", splits={"train": m, "valid": 4, "eval": 4})
    model = task.load_model()
    cls = {"malmen": Malmen, "mend": Mend}[method]
    runner = cls(cls.Config(training_mode=mode))
    editor, setup = runner.build_editor(task, model), runner.setup(task)
    step = meta_batch(task.requests("train", m, 0), 0)
    benchmark.pedantic(lambda: meta_gradient(editor, task, model, step, setup, mode), rounds=2, warmup_rounds=0)
    benchmark.extra_info.update(fig9.measure_isolated(method, mode, m))
