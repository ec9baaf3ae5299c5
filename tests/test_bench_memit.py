"""Benchmarks (pytest -m benchmark): MEMIT's statistics (key covariances, one corpus pass) and its
edit as m grows, on a tiny random GPT-2 with a small synthetic corpus (`benchmarks/points.py`).

Settings for a tiny model as `tests/test_memit.py` explains (one context prefix, 8 z steps,
lambda = 1): the costs' shape in m, not MEMIT's published GPT-J numbers.
"""
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import points  # noqa: E402
import report  # noqa: E402

from editbench.methods.memit import Memit, MemitConfig  # noqa: E402
from tiny import TinyCausalTask  # noqa: E402

TINY = dict(prefixes=MemitConfig().prefixes[:1], steps=8, weight_decay=0.0, clamp_norm_factor=4.0, update_weight=1.0)


def corpus(folder: Path, texts: int = 200) -> str:
    path = folder / "corpus.txt"
    path.write_text("\n".join(f"Paragraph {i}: the {i}th town has {i * 7} houses and a river." for i in range(texts)))
    return str(path)


@pytest.mark.benchmark(group="memit-statistics-tiny")
@pytest.mark.parametrize("samples", [50, 200])
def test_memit_statistics_tiny(benchmark, samples, tmp_path):
    task = TinyCausalTask("gpt2")
    model = task.load_model()
    config = MemitConfig(**TINY, stats_corpus=corpus(tmp_path), stats_samples=samples)

    def fresh():  # a new statistics folder per round: every round computes them
        folder = tmp_path / f"stats-{len(list(tmp_path.glob('stats-*')))}"
        return (Memit(MemitConfig(**{**config.__dict__, "stats_dir": str(folder)})), task, model, folder), {}

    point = benchmark.pedantic(points.memit_statistics_point, setup=fresh, rounds=2)
    report.record(benchmark, point, model="tiny-gpt2", dtype="float32")
    assert point["finite"] and point["positive_diagonal"] and point["peak_memory_bytes"] > 0
    assert point["computed"] == point["layers"] == len(task.edit_modules("memit"))


@pytest.mark.benchmark(group="memit-edit-tiny")
@pytest.mark.parametrize("m", [4, 16, 64])
def test_memit_edit_tiny(benchmark, m, tmp_path):
    task = TinyCausalTask("gpt2", splits={"eval": m})
    model = task.load_model()
    method = Memit(MemitConfig(**TINY, stats_corpus=corpus(tmp_path, 50), stats_samples=50, stats_dir=str(tmp_path)))
    method.prepare(task, model, tmp_path)
    requests = task.requests("eval", m, seed=0)
    point = benchmark.pedantic(lambda: points.edit_point(method, task, model, requests), rounds=2, warmup_rounds=0)
    report.record(benchmark, point, model="tiny-gpt2", dtype="float32")
    assert point["finite"] and point["peak_memory_bytes"] > 0
    assert point["changed_fraction"] > 0.5, point
    assert point["target_shift_norm"] > 0  # the z optimisation moved the targets
