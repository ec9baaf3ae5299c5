"""Real models on real data (slow: `pytest -m slow`): the embedded twins edit with FT at m = 32."""

import pytest

from datadir import data_dir

pytestmark = pytest.mark.slow


@pytest.fixture
def real_env(monkeypatch):
    data = data_dir()
    monkeypatch.setenv("EDITBENCH_DATA", str(data))
    # Models (wheels, de-quantised SmolLM2, prepared classifiers) live in the real user cache.
    monkeypatch.delenv("EDITBENCH_CACHE", raising=False)


def _mean(values):
    values = list(values)
    return sum(values) / len(values)


def _token_accuracy(outcome):
    return sum(p == g for p, g in zip(outcome.predicted, outcome.gold)) / len(outcome.gold)


@pytest.mark.parametrize("task_name", ["fever-minilm", "counterfact-smollm2"])
def test_ft_at_m32_raises_edit_success(real_env, task_name):
    from editbench.methods.ft import FineTune
    from editbench.tasks.counterfact import CounterfactSmolLM2
    from editbench.tasks.fever import FeverMiniLM

    task = {"fever-minilm": FeverMiniLM, "counterfact-smollm2": CounterfactSmolLM2}[task_name]()
    model = task.load_model()
    requests = task.requests("eval", 32, seed=0)
    before = _mean(_token_accuracy(o.edit) for o in task.evaluate(model, requests))
    FineTune().edit(task, model, requests)
    after = _mean(_token_accuracy(o.edit) for o in task.evaluate(model, requests))
    assert after > before
