"""Slow: MALMEN on the embedded zsre-smollm2 task, a bounded meta-training run then m = 64 edits.

    EDITBENCH_DATA=../shared/data python -m pytest -m slow tests/test_malmen_smollm2.py -s

Budget by environment (defaults = the method's embedded-task defaults): EDITBENCH_MALMEN_STEPS,
EDITBENCH_MALMEN_TRAIN_EDITS. The trained editor is cached under EDITBENCH_MALMEN_CACHE when set.
Reference at the same m (FT, m = 32, measured): ES 0.15 -> 0.52, GS 0.20 -> 0.51.
"""
import json
import os
import time
from pathlib import Path

import pytest

from editbench.metrics import aggregate
from editbench.methods.malmen import Malmen

pytestmark = pytest.mark.slow


def test_malmen_lifts_es_and_gs_on_zsre_smollm2(tmp_path):
    if not os.environ.get("EDITBENCH_DATA"):
        pytest.skip("EDITBENCH_DATA is not set (point it at the shared data folder)")
    from editbench.tasks.zsre import ZsreSmolLM2

    task = ZsreSmolLM2()
    model = task.load_model()
    defaults = Malmen.Config()
    config = Malmen.Config(train_steps=int(os.environ.get("EDITBENCH_MALMEN_STEPS", defaults.train_steps)),
                           train_edits=int(os.environ.get("EDITBENCH_MALMEN_TRAIN_EDITS", defaults.train_edits)))
    method = Malmen(config)
    cache = Path(os.environ.get("EDITBENCH_MALMEN_CACHE", tmp_path))
    started = time.perf_counter()
    info = method.prepare(task, model, cache)
    train_seconds = time.perf_counter() - started
    requests = task.requests("eval", 64, seed=0)
    pre = aggregate(task.evaluate(model, requests))
    result = method.edit(task, model, requests)
    post = aggregate(task.evaluate(model, requests))
    report = {"prepare": {k: v for k, v in info.items() if k != "history"}, "train_seconds": train_seconds,
              "pre": pre, "post": post, "stats": result.stats}
    print(json.dumps(report, indent=2, default=str))
    assert post["es"] > pre["es"] + 0.1 and post["gs"] > pre["gs"] + 0.05, report
