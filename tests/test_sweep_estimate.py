"""The sweep's cost estimate (`editbench.sweep.estimate`): priced from recorded phases, scaled in m,
one-off artifacts counted once and only where no run at the current code recorded them."""
import pytest

from editbench.sweep.estimate import estimate
from editbench.sweep.grid import SweepRun
from editbench.sweep.identity import Identity
from editbench.sweep.plan import PlannedRun

CODE = "c0de00000000"


def record(method, task, edits, seed=0, edit=10.0, scoring=20.0, load=5.0, one_off=100.0, train_edits=None,
           code=CODE, reused=False):
    method_config = {"seed": seed} | ({"train_edits": train_edits} if train_edits is not None else {})
    return {"method": method, "task": task, "edits": edits, "seed": seed, "code": code,
            "config": {"method": method_config, "task": {}}, "edit_seconds": edit,
            "phases": {"load": {"seconds": load}, "evaluate_pre": {"seconds": scoring / 2},
                       "evaluate_post": {"seconds": scoring / 2}},
            "prepare_info": {"reused": reused, "one_off_seconds": one_off}}


def planned(method, task, edits, seed=0, decision="run"):
    run = SweepRun(method, task, edits, seed)
    return PlannedRun(run, Identity(method, task, edits, seed, "cpu", "float32"), decision)


def current(method, task):
    return CODE


def test_edit_and_scoring_scale_linearly_from_the_nearest_m_and_done_runs_cost_nothing():
    records = [record("ft", "t", 16, edit=16.0, scoring=32.0, one_off=0.0),
               record("ft", "t", 64, edit=128.0, scoring=64.0, one_off=0.0)]
    cost = estimate([planned("ft", "t", 256), planned("ft", "t", 32, decision="done")], records, current)
    # m = 256 is priced from m = 64 (nearest on a log scale): edit 2 s and scoring 1 s per edit
    assert cost.each == {0: pytest.approx(5.0 + 256 * 1.0 + 256 * 2.0)}
    assert (cost.priced, cost.unpriced) == (1, 0)


def test_a_trained_editor_is_paid_once_per_seed_and_not_when_the_current_code_recorded_it():
    records = [record("malmen", "t", 16, seed=0, one_off=100.0, train_edits=16),
               record("malmen", "t", 64, seed=0, one_off=400.0, train_edits=64)]
    plan = [planned("malmen", "t", 16, seed=0), planned("malmen", "t", 16, seed=1),
            planned("malmen", "t", 64, seed=1), planned("malmen", "t", 256, seed=1)]
    cost = estimate(plan, records, current)
    base = {m: 5.0 + m * (20.0 / 64 if m >= 64 else 20.0 / 16) + m * (10.0 / 64 if m >= 64 else 10.0 / 16)
            for m in (16, 64, 256)}
    assert cost.each[0] == pytest.approx(base[16])  # seed 0 at m = 16: its editor is recorded at this code
    assert cost.each[1] == pytest.approx(base[16] + 100.0)  # seed 1 trains its own editor
    assert cost.each[2] == pytest.approx(base[64] + 400.0)  # the training m follows m: another editor
    assert cost.each[3] == pytest.approx(base[256] + 400.0 * 4)  # priced from train_edits 64, scaled
    at_other_code = estimate(plan[:1], [{**r, "code": "0ther0000000"} for r in records], current)
    assert at_other_code.each[0] == pytest.approx(base[16] + 100.0)  # an older code's editor is not counted as built


def test_a_preset_fixed_training_m_shares_one_editor_across_m():
    records = [record("malmen", "t", 16, train_edits=16, one_off=100.0, code="old"),
               record("malmen", "t", 64, train_edits=16, one_off=100.0, code="old")]
    cost = estimate([planned("malmen", "t", 16), planned("malmen", "t", 256)], records, current)
    assert cost.seconds == pytest.approx(sum(cost.each.values()))
    one_off_paid = cost.each[0] - (5.0 + 16 * (20.0 / 16) + 16 * (10.0 / 16))
    assert one_off_paid == pytest.approx(100.0)  # once, at the first run
    assert cost.each[1] == pytest.approx(5.0 + 256 * (20.0 / 64) + 256 * (10.0 / 64))


def test_runs_without_records_of_their_method_and_task_are_counted_apart():
    cost = estimate([planned("ft", "t", 16), planned("mend", "t", 16)], [record("ft", "t", 16, one_off=0.0)], current)
    assert (cost.priced, cost.unpriced) == (1, 1)
    assert "1 run(s) without a recorded run of their method and task not priced" in cost.describe(jobs=2)
    assert "at --jobs 2" in cost.describe(jobs=2)
