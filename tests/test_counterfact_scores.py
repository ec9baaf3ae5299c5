"""CounterFact as MEMIT reports it: every paraphrase and neighbourhood prompt of a ROME-layout record
is kept, and the probability comparisons (efficacy, paraphrase, neighbourhood, their magnitudes)
match a computation made here one tuple at a time with `Task.nll`."""
import json
import math
from statistics import fmean

import pytest
import torch
from tiny import TinyCausalTask, tiny_causal

from editbench.metrics import RANGES, TASK_METRICS, aggregate
from editbench.results import check_record
from editbench.tasks.common.records import read_records
from editbench.tasks.common.scoring import answer_nll
from editbench.tasks.counterfact.data import parse_request
from editbench.tasks.counterfact.scores import counterfact_scores


def rome_record(case, subject, new, true, paraphrases, neighbours):
    return {"case_id": case,
            "requested_rewrite": {"prompt": "{} works in the city of", "subject": subject,
                                  "target_new": {"str": new}, "target_true": {"str": true}},
            "paraphrase_prompts": paraphrases, "neighborhood_prompts": neighbours}


@pytest.fixture
def rome_requests(tmp_path):
    records = [
        rome_record(0, "Anna Berg", "rome", "oslo", ["Anna Berg is employed in", "The office of Anna Berg is in"],
                    [f"Person {i} works in the city of" for i in range(10)]),
        rome_record(1, "Carl Dahl", "lima", "kyiv", ["Carl Dahl goes to work in", "Carl Dahl commutes to"],
                    [f"Worker {i} is based in" for i in range(7)]),
        rome_record(2, "Eve Fox", "pune", "riga", ["Eve Fox has a job in"], ["Bob works in"]),
    ]
    path = tmp_path / "counterfact.json"
    path.write_text(json.dumps(records))
    return [parse_request(r) for r in read_records(path)]


def test_rome_records_keep_every_paraphrase_and_neighbourhood_prompt(rome_requests):
    first = rome_requests[0]
    assert first.prompt == "Anna Berg works in the city of" and first.target == "rome" and first.original == "oslo"
    assert first.equivalents == ("Anna Berg is employed in", "The office of Anna Berg is in")
    assert len(first.unrelated) == 10 and all(answer == "oslo" for _, answer in first.unrelated)
    assert [len(r.unrelated) for r in rome_requests] == [10, 7, 1]


def test_gs_and_ls_pool_every_tuple(rome_requests):
    task = TinyCausalTask("gpt2")
    model = tiny_causal("gpt2")
    outcomes = task.evaluate(model, rome_requests)
    assert [len(o.unrelated) for o in outcomes] == [10, 7, 1] and [len(o.equivalents) for o in outcomes] == [2, 2, 1]
    from editbench.metrics import token_accuracy

    scores = aggregate(outcomes)
    unrelated = [t for o in outcomes for t in o.unrelated]
    assert scores["ls"] == pytest.approx(fmean(token_accuracy(t) for t in unrelated))  # 18 tuples pooled


def nll_one_by_one(task, model, prompt, answer):
    with torch.no_grad():
        return float(task.nll(model, task.batch([(prompt, answer)])))


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_scores_match_probabilities_computed_one_tuple_at_a_time(rome_requests, arch):
    task = TinyCausalTask(arch)
    model = tiny_causal(arch)
    with torch.no_grad():  # a confident model, so that the comparisons are not all ties
        model.get_output_embeddings().weight.mul_(30.0)
    scores = counterfact_scores(task, model, rome_requests, batch_size=4)

    expected = {}
    groups = {"efficacy": lambda r: [r.prompt], "paraphrase": lambda r: list(r.equivalents),
              "neighbourhood": lambda r: [p for p, _ in r.unrelated]}
    for group, prompts_of in groups.items():
        wins, gaps = [], []
        for r in rome_requests:
            p_new = [math.exp(-nll_one_by_one(task, model, p, r.target)) for p in prompts_of(r)]
            p_true = [math.exp(-nll_one_by_one(task, model, p, r.original)) for p in prompts_of(r)]
            if group == "neighbourhood":
                wins.append(fmean(float(t > n) for n, t in zip(p_new, p_true)))
                gaps.append(fmean(t - n for n, t in zip(p_new, p_true)))
            else:
                wins.append(fmean(float(n > t) for n, t in zip(p_new, p_true)))
                gaps.append(fmean(n - t for n, t in zip(p_new, p_true)))
        expected[f"cf_{group}"] = fmean(wins)
        expected[f"cf_{group}_magnitude"] = fmean(gaps)
    assert set(scores) == set(expected)
    for key, value in expected.items():
        assert scores[key] == pytest.approx(value, abs=1e-6), key
    assert 0.0 < scores["cf_neighbourhood"] < 1.0 or 0.0 < scores["cf_efficacy"] < 1.0  # not all ties
    assert all(key in TASK_METRICS for key in scores)


def test_answer_nll_does_not_depend_on_the_batch_size(rome_requests):
    task = TinyCausalTask("gptj")
    model = tiny_causal("gptj")
    pairs = [(p, r.original) for r in rome_requests for p, _ in r.unrelated]
    one = answer_nll(task, model, pairs, batch_size=1)
    assert answer_nll(task, model, pairs, batch_size=5) == pytest.approx(one, rel=1e-5)
    assert len(one) == 18


def test_requests_without_a_true_target_score_none():
    from editbench.api import EditRequest

    task = TinyCausalTask("gpt2")
    request = EditRequest(id="x", prompt="Where is it?", target="here")
    scores = counterfact_scores(task, tiny_causal("gpt2"), [request], batch_size=4)
    assert scores == {key: None for key in scores} and "cf_efficacy" in scores


def test_records_with_task_scores_pass_the_schema_check():
    record = {"method": "ft", "task": "counterfact-smollm2", "edits": 4,
              "pre": {"es": 0.1, "gs": 0.2, "ls": 0.3, "cf_efficacy_magnitude": -0.4, "ppl": 25.0},
              "post": {"es": 1.0, "gs": 0.5, "ls": 0.3, "cf_efficacy": 1.0, "ppl": 31.5}}
    assert check_record(record) is None
    bad = {**record, "post": {**record["post"], "ppl": 0.5}}
    assert "post.ppl is 0.5" in check_record(bad)
    assert set(RANGES) - {"drawdown"} <= set(TASK_METRICS)
