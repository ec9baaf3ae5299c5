"""ES/GS/LS/retention against hand-computed values."""
import pytest

from editbench.api import RequestOutcome, TupleOutcome
from editbench.metrics import DEFINITIONS, aggregate, request_metrics


def t(pred, gold):
    return TupleOutcome(list(pred), list(gold))


def test_token_fraction_and_exact_by_hand():
    post = [
        RequestOutcome(t([1, 2, 3], [1, 2, 4]), [t([5], [5]), t([6, 7], [0, 7])], [t([8, 9], [8, 9])]),
        RequestOutcome(t([1], [1]), [], [t([3, 3], [4, 4])]),
    ]
    pre = [
        RequestOutcome(t([0, 0, 0], [1, 2, 4]), [t([0], [5]), t([0, 0], [0, 7])], [t([8, 0], [8, 9])]),
        RequestOutcome(t([0], [1]), [], [t([3, 3], [4, 4])]),
    ]
    m = aggregate(post, pre)
    assert m["es"] == pytest.approx((2 / 3 + 1) / 2)
    assert m["es_exact"] == pytest.approx(0.5)
    assert m["gs"] == pytest.approx((1 + 0.5) / 2)  # mean over the two equivalent tuples
    assert m["gs_exact"] == pytest.approx(0.5)
    assert m["ls"] == pytest.approx((1 + 0) / 2)
    assert m["ls_exact"] == pytest.approx(0.5)
    assert m["retention"] == pytest.approx(3 / 4)  # positions: [8,9] vs pre [8,0]; [3,3] vs [3,3]
    assert aggregate(pre)["retention"] == 1.0
    # MEND's Table 3 metrics: exact over edit + equivalent tuples (1 of 3, then 1 of 1) and drawdown.
    assert m["es_sequence"] == pytest.approx(2 / 4)
    assert m["drawdown"] == pytest.approx(0.0 - 0.5)  # pre: no unrelated tuple exact; post: one of two
    assert aggregate(post[:1], pre[:1])["drawdown"] == pytest.approx(0.0 - 1.0)
    assert request_metrics(post[0], pre[0]) == aggregate(post[:1], pre[:1])


def test_missing_equivalents_give_none_not_a_number():
    post = [RequestOutcome(t([1], [1]), [], [])]
    m = aggregate(post)
    assert m["gs"] is None and m["ls"] is None and m["es"] == 1.0
    assert request_metrics(post[0])["gs"] is None


def test_every_metric_has_a_definition():
    assert set(aggregate([RequestOutcome(t([1], [1]))])) == set(DEFINITIONS)


def test_retention_pools_answer_positions_not_tuples():
    # Unrelated answers of 3 and 1 tokens: 1 of 3 and 1 of 1 positions unchanged.
    post = [RequestOutcome(t([1], [1]), [], [t([8, 9, 7], [8, 9, 7]), t([3], [3])])]
    pre = [RequestOutcome(t([0], [1]), [], [t([8, 0, 0], [8, 9, 7]), t([3], [3])])]
    assert aggregate(post, pre)["retention"] == pytest.approx(2 / 4)  # per tuple it would be 2/3


def test_retention_matches_a_position_count_on_random_outcomes():
    import random

    rng = random.Random(0)
    post, pre, same, positions = [], [], 0, 0
    for _ in range(20):
        after, before = [], []
        for _ in range(rng.randint(0, 3)):
            length = rng.randint(1, 6)
            gold = [rng.randrange(5) for _ in range(length)]
            a, b = [rng.randrange(3) for _ in range(length)], [rng.randrange(3) for _ in range(length)]
            after.append(t(a, gold))
            before.append(t(b, gold))
            for x, y in zip(a, b):  # independent count, position by position
                same += x == y
                positions += 1
        post.append(RequestOutcome(t([1], [1]), [], after))
        pre.append(RequestOutcome(t([1], [1]), [], before))
    assert positions > 0
    assert aggregate(post, pre)["retention"] == pytest.approx(same / positions)
    assert aggregate([RequestOutcome(t([1], [1]))])["retention"] is None  # no unrelated positions
