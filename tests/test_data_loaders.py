"""Data loaders on the real files (`$EDITBENCH_DATA`; skipped without it) and on bad records."""
import json
import time
from pathlib import Path

import pytest

from editbench.data import resolve, sha256_of
from editbench.errors import EditbenchError
from editbench.tasks.common.nq import NQ_OPEN_DEV, NQ_OPEN_EFFICIENTQA, load_nq
from editbench.tasks.common.records import read_records
from editbench.tasks.counterfact import CounterfactSmolLM2
from editbench.tasks.counterfact.data import COUNTERFACT_EDIT, COUNTERFACT_TRAIN, parse_request
from editbench.tasks.fever import FeverMiniLM
from editbench.tasks.fever.data import FEVER_DEV, load_claims, parse_claim
from editbench.tasks.zsre import ZsreGPT2, ZsreSmolLM2
from editbench.tasks.zsre.data import ZSRE_800, parse_fact

from datadir import data_root, skip_reason

DATA = data_root() or Path("/nonexistent")
needs_data = pytest.mark.skipif(not (DATA / ZSRE_800.path).is_file(),
                                reason=skip_reason() if data_root() is None else f"no {ZSRE_800.path} in {DATA}")


@pytest.fixture
def data_env(monkeypatch):
    monkeypatch.setenv("EDITBENCH_DATA", str(DATA))


@needs_data
@pytest.mark.parametrize("spec", [ZSRE_800, COUNTERFACT_TRAIN, COUNTERFACT_EDIT, FEVER_DEV, NQ_OPEN_DEV, NQ_OPEN_EFFICIENTQA])
def test_specs_match_the_files(spec, data_env):
    assert sha256_of(resolve(spec, download=False)) == spec.sha256
    assert spec.url.startswith("https://raw.githubusercontent.com/")


@needs_data
def test_zsre_splits_are_deterministic(data_env):
    first, second = ZsreSmolLM2(), ZsreGPT2()
    assert {s: first.split_size(s) for s in ("train", "valid", "eval")} == {"train": 500, "valid": 100, "eval": 200}
    assert first.requests("eval", 10, seed=3) == second.requests("eval", 10, seed=3)
    assert first.requests("eval", 10, seed=3) != first.requests("eval", 10, seed=4)
    train_ids = {r.id for r in first._split("train")}
    assert not train_ids & {r.id for r in first._split("eval")}
    request = first.requests("eval", 1, seed=0)[0]
    assert request.target == request.original and len(request.equivalents) == 1 and len(request.unrelated) == 1
    alt_task = ZsreSmolLM2(ZsreSmolLM2.Config(target="alt"))
    by_id = {r.id: r for r in first._split("eval")}
    assert sum(alt_task.split_size(s) for s in ("train", "valid", "eval")) == 798  # two records have an empty alt
    assert all(r.id in by_id and r.original == by_id[r.id].target for r in alt_task._split("eval"))


@needs_data
def test_zsre_extra_nq_unrelated(data_env):
    task = ZsreSmolLM2(ZsreSmolLM2.Config(extra_unrelated=2))
    request = task.requests("train", 1, seed=0)[0]
    assert len(request.unrelated) == 3 and all(p.endswith("?") for p, _ in request.unrelated)
    assert NQ_OPEN_DEV.path in task.data_files()


@needs_data
def test_counterfact_splits(data_env):
    task = CounterfactSmolLM2()
    assert {s: task.split_size(s) for s in ("train", "valid", "eval")} == {"train": 9500, "valid": 500, "eval": 10000}
    request = task.requests("eval", 5, seed=0)[0]
    assert request.subject in request.prompt and request.target != request.original
    assert task.requests("eval", 5, seed=0) == CounterfactSmolLM2().requests("eval", 5, seed=0)


@needs_data
def test_fever_splits(data_env):
    claims = load_claims(DATA / FEVER_DEV.path)
    assert len(claims) == 6666 and {c.label for c in claims} == {"SUPPORTS", "REFUTES"}
    task = FeverMiniLM()
    assert {s: task.split_size(s) for s in ("train", "valid", "eval")} == {"train": 2000, "valid": 300, "eval": 1200}
    requests = task.requests("eval", 8, seed=1)
    assert all(r.target != r.original and r.equivalents == () for r in requests)
    prompts = {r.prompt for r in requests}
    assert not prompts & {p for r in requests for p, _ in r.unrelated}


@needs_data
def test_nq(data_env):
    pairs = load_nq(DATA / NQ_OPEN_DEV.path)
    assert len(pairs) == 3610 and pairs[0][0][0].isupper() and pairs[0][0].endswith("?")


# -- bad records and other layouts ---------------------------------------------------------------

def write_jsonl(path, rows):
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


GOOD_ZSRE = {"subject": "A", "src": "What is A?", "rephrase": "A is what?", "answers": ["b"], "alt": "c",
             "loc": "nq question: who is x", "loc_ans": "y"}


@pytest.mark.parametrize("field,value", [("src", ""), ("answers", []), ("rephrase", 3), ("loc_ans", None)])
def test_zsre_bad_record_names_file_line_and_field(tmp_path, field, value):
    bad = dict(GOOD_ZSRE, **{field: value})
    path = write_jsonl(tmp_path / "z.jsonl", [GOOD_ZSRE, GOOD_ZSRE, bad])
    records = read_records(path)
    with pytest.raises(EditbenchError) as error:
        [parse_fact(r) for r in records]
    message = str(error.value)
    assert str(path) in message and "line 3" in message and repr(field) in message


def test_zsre_json_array_names_the_record_index(tmp_path):
    path = tmp_path / "z.json"
    path.write_text(json.dumps([GOOD_ZSRE, {k: v for k, v in GOOD_ZSRE.items() if k != "answers"}]))
    with pytest.raises(EditbenchError, match=r"record 1: field 'answers'"):
        [parse_fact(r) for r in read_records(path)]


def test_zsre_kilt_layout_and_alt_target(tmp_path):
    kilt = {"input": "Who made Q?", "output": [{"answer": "Z"}, {"answer": "Zed"}],
            "filtered_rephrases": ["Q was made by?"], "alternatives": ["W"]}
    fact = parse_fact(read_records(write_jsonl(tmp_path / "k.jsonl", [kilt]))[0])
    assert (fact.question, fact.answer, fact.rephrase, fact.alt, fact.unrelated) == ("Who made Q?", "Z", "Q was made by?", "W", None)
    assert parse_fact(read_records(write_jsonl(tmp_path / "n.jsonl", [dict(GOOD_ZSRE, alt=" ")]))[0]).alt is None


def test_invalid_json_line(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text(json.dumps(GOOD_ZSRE) + "\n{oops\n")
    with pytest.raises(EditbenchError, match="line 2"):
        read_records(path)


ROME = {"case_id": 7, "requested_rewrite": {"prompt": "{} plays the", "subject": "Ann", "target_new": {"str": "piano"},
                                             "target_true": {"str": "violin"}},
        "paraphrase_prompts": ["Ann is good at the"], "neighborhood_prompts": ["Bob plays the"]}
MEND_CF = {"case_id": 8, "prompt": "Ann plays the", "subject": "Ann", "target_new": "piano", "ground_truth": "violin",
           "rephrase_prompt": "Ann is good at the", "locality_prompt": "Bob plays the", "locality_ground_truth": "violin"}


def test_counterfact_layouts_agree(tmp_path):
    rome = parse_request(read_records(write_jsonl(tmp_path / "r.jsonl", [ROME]))[0])
    mend = parse_request(read_records(write_jsonl(tmp_path / "m.jsonl", [MEND_CF]))[0])
    assert (rome.prompt, rome.target, rome.equivalents, rome.unrelated, rome.subject, rome.original) == \
        (mend.prompt, mend.target, mend.equivalents, mend.unrelated, mend.subject, mend.original)


def test_counterfact_bad_records(tmp_path):
    bad_rome = json.loads(json.dumps(ROME))
    bad_rome["requested_rewrite"]["target_new"] = {}
    with pytest.raises(EditbenchError, match=r"line 1 requested_rewrite: field 'target_new'"):
        parse_request(read_records(write_jsonl(tmp_path / "r.jsonl", [bad_rome]))[0])
    with pytest.raises(EditbenchError, match=r"record 0: field 'subject'"):
        path = tmp_path / "m.json"
        path.write_text(json.dumps([dict(MEND_CF, subject="Zed")]))
        parse_request(read_records(path)[0])


def test_fever_layouts_and_bad_labels(tmp_path):
    rows = [{"id": 1, "claim": "A is B.", "label": "SUPPORTS"}, {"id": 2, "claim": "C.", "label": "NOT ENOUGH INFO"},
            {"id": "k", "input": "D is E.", "output": [{"answer": "REFUTES"}], "filtered_rephrases": ["E is D's."]}]
    claims = load_claims(write_jsonl(tmp_path / "f.jsonl", rows))
    assert [(c.text, c.label, c.rephrases) for c in claims] == [("A is B.", "SUPPORTS", ()), ("D is E.", "REFUTES", ("E is D's.",))]
    bad = write_jsonl(tmp_path / "b.jsonl", rows[:1] + [{"claim": "X.", "label": "MAYBE"}])
    with pytest.raises(EditbenchError, match=r"line 2: field 'label'"):
        load_claims(bad)
    with pytest.raises(EditbenchError, match=r"line 1: field 'output'"):
        parse_claim(read_records(write_jsonl(tmp_path / "o.jsonl", [{"input": "Y.", "output": []}]))[0])


def test_zsre_gptj_offline_fails_fast_with_one_line(monkeypatch, tmp_path):
    from editbench.tasks.zsre import ZsreGPTJ

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    monkeypatch.delenv("EDITBENCH_GPTJ", raising=False)
    start = time.time()
    with pytest.raises(EditbenchError) as error:
        ZsreGPTJ().load_model()
    message = str(error.value)
    assert time.time() - start < 10
    assert "\n" not in message and "EleutherAI/gpt-j-6b" in message
    assert "--set model=PATH" in message and "EDITBENCH_GPTJ=PATH" in message


def test_missing_local_model_path(monkeypatch):
    from editbench.tasks.zsre import ZsreT5XL

    with pytest.raises(EditbenchError, match="does not exist"):
        ZsreT5XL(ZsreT5XL.Config(model="/nonexistent/t5")).load_model()


@needs_data
def test_zsre_paper_scale_paths(tmp_path, data_env):
    train = write_jsonl(tmp_path / "train.jsonl", [dict(GOOD_ZSRE, src=f"What is A{i}?") for i in range(30)])
    kilt = [{"input": f"Who made Q{i}?", "output": [{"answer": "Z"}], "filtered_rephrases": ["Q was made by?"]}
            for i in range(5)]
    evaluation = write_jsonl(tmp_path / "dev.jsonl", kilt)
    task = ZsreGPT2(ZsreGPT2.Config(train_path=str(train), eval_path=str(evaluation)))
    assert {s: task.split_size(s) for s in ("train", "valid", "eval")} == {"train": 27, "valid": 3, "eval": 5}
    request = task.requests("eval", 5, seed=0)[0]
    assert request.unrelated[0] in load_nq(DATA / NQ_OPEN_DEV.path)  # KILT records take an NQ-open tuple
    assert set(task.data_files()) == {str(train), str(evaluation), NQ_OPEN_DEV.path}
    with pytest.raises(EditbenchError, match="both train_path and eval_path"):
        ZsreGPT2(ZsreGPT2.Config(train_path=str(train))).split_size("eval")


@needs_data
def test_zsre_unrelated_from_zsre_for_mends_single_edit_setting(data_env):
    """`unrelated=zsre` (MALMEN Table 3): each request's unrelated tuple is another zsRE fact."""
    from editbench.errors import EditbenchError
    from editbench.tasks.zsre import ZsreSmolLM2

    ZsreConfig = ZsreSmolLM2.Config
    task = ZsreSmolLM2(ZsreConfig(unrelated="zsre", target="alt"))
    requests = task.requests("eval", 50, seed=0)
    questions = {r.prompt for r in task._load()["train"] + task._load()["valid"] + task._load()["eval"]}
    for r in requests:
        ((prompt, answer),) = r.unrelated
        assert prompt in questions and prompt != r.prompt and answer
    with pytest.raises(EditbenchError, match="unrelated 'wiki' is not one of nq, zsre"):
        ZsreSmolLM2(ZsreConfig(unrelated="wiki"))
