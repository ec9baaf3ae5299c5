"""ES / GS / LS computed by hand on fake models whose argmax is known, through each task family."""
from editbench.api import EditRequest
from editbench.tasks.common.causal import CausalLMTask
from editbench.tasks.common.classifier import ClassifierTask
from editbench.tasks.common.seq2seq import Seq2SeqTask
from tiny import char_tokenizer
from tiny_models_extra import CharTaskMixin, KeywordClassifier, ShiftCausalLM, ShiftSeq2Seq


def token_fraction(outcome):
    return sum(p == g for p, g in zip(outcome.predicted, outcome.gold)) / len(outcome.gold)


def metrics(outcomes):
    """(ES, GS, LS): per-request token accuracy of the edit / equivalent / unrelated tuples, averaged."""
    es = sum(token_fraction(o.edit) for o in outcomes) / len(outcomes)
    gs = sum(token_fraction(e) for o in outcomes for e in o.equivalents) / sum(len(o.equivalents) for o in outcomes)
    ls = sum(token_fraction(u) for o in outcomes for u in o.unrelated) / sum(len(o.unrelated) for o in outcomes)
    return es, gs, ls


class FakeCausal(CharTaskMixin, CausalLMTask):
    pass


class FakeSeq2Seq(CharTaskMixin, Seq2SeqTask):
    pass


class FakeClassifier(CharTaskMixin, ClassifierTask):
    label_names = ("REFUTES", "SUPPORTS")


def test_causal_metrics_by_hand():
    # The fake LM predicts "next id = id + 1". In the char vocabulary '~' is followed by ' ' and
    # ' ' by <pad> (wraps to 0), 'a' by 'b', 'b' by 'c'. Answer " abc" = [' ', 'a', 'b', 'c'].
    # After a prompt ending in '~': [' '=ok, pad!=a, b=ok, c=ok] -> 3/4; ending in '?': '@' != ' ' -> 2/4.
    requests = [
        EditRequest(id="1", prompt="x~", target="abc", equivalents=("y?",), unrelated=(("z~", "bc"),)),
        EditRequest(id="2", prompt="q?", target="abc", equivalents=("w~", "v?"), unrelated=(("u?", "bc"),)),
    ]
    outcomes = FakeCausal().evaluate(ShiftCausalLM(), requests)
    assert [token_fraction(o.edit) for o in outcomes] == [0.75, 0.5]
    # " bc" after '~': [' ' ok, pad != b, c ok] = 2/3; after '?': 1/3.
    es, gs, ls = metrics(outcomes)
    assert es == 0.625
    assert gs == (0.5 + 0.75 + 0.5) / 3
    assert abs(ls - (2 / 3 + 1 / 3) / 2) < 1e-12


def test_seq2seq_metrics_by_hand():
    # The fake decoder predicts "decoder input id + 1"; the first decoder input is the start id 0,
    # so the first prediction is id 1 (<eos>): wrong. Then 'b' -> 'c' right, 'c' -> 'd' right.
    tok = char_tokenizer()
    requests = [EditRequest(id="1", prompt="anything", target="bcd", equivalents=("other",),
                            unrelated=(("q", "xy"),))]
    outcomes = FakeSeq2Seq().evaluate(ShiftSeq2Seq(), requests)
    assert outcomes[0].edit.gold == tok("bcd", add_special_tokens=False)["input_ids"]
    assert outcomes[0].edit.predicted == [1] + tok("cd", add_special_tokens=False)["input_ids"]
    es, gs, ls = metrics(outcomes)
    assert (es, gs, ls) == (2 / 3, 2 / 3, 1 / 2)


def test_classifier_metrics_by_hand():
    # The fake classifier says SUPPORTS exactly when the claim contains 'T'.
    task = FakeClassifier()
    model = KeywordClassifier(task.tokenizer.convert_tokens_to_ids("T"))
    requests = [
        EditRequest(id="1", prompt="T holds.", target="SUPPORTS", unrelated=(("no", "REFUTES"),)),
        EditRequest(id="2", prompt="x holds.", target="SUPPORTS", unrelated=(("T", "REFUTES"),)),
        EditRequest(id="3", prompt="y holds.", target="REFUTES", unrelated=(("T!", "SUPPORTS"),)),
    ]
    outcomes = task.evaluate(model, requests)
    assert [o.edit.predicted for o in outcomes] == [[1], [0], [0]]
    assert [o.edit.gold for o in outcomes] == [[1], [1], [0]]
    es = sum(token_fraction(o.edit) for o in outcomes) / 3
    ls = sum(token_fraction(o.unrelated[0]) for o in outcomes) / 3
    assert (es, ls) == (2 / 3, 2 / 3)
    assert all(o.equivalents == [] for o in outcomes)  # no rephrases: GS not available
