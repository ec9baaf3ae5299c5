"""ES, GS, LS (the paper's Sec. 3) and the variants we add, from teacher-forced outcomes.

Every metric of `DEFINITIONS` is a fraction in [0, 1] (`drawdown` a difference of two); `DEFINITIONS` gives each a one-line definition and whether
higher is better. Token-wise metrics average, over tuples, the fraction of answer tokens whose
argmax is right (as the official MALMEN code); `*_exact` count a tuple only when all are right.
`retention` pools positions instead: of all unrelated-prompt answer positions, the fraction whose
argmax the edit left unchanged (a long answer weighs more than a short one).
"""
from __future__ import annotations

from statistics import fmean
from typing import TYPE_CHECKING, Iterable, Sequence

if TYPE_CHECKING:  # annotations only: `editbench leaderboard` runs without importing torch
    from editbench.api import RequestOutcome, TupleOutcome

DEFINITIONS: dict[str, tuple[str, str]] = {
    "es": ("higher", "edit success: per edit prompt, fraction of target tokens that are the teacher-forced argmax; mean over prompts"),
    "gs": ("higher", "generalization success: the same on the equivalent (rephrased) prompts"),
    "ls": ("higher", "locality success: the same on the unrelated prompts against their gold answers"),
    "retention": ("higher", "locality retention: fraction of unrelated-prompt answer positions whose argmax is unchanged by the edit"),
    "es_exact": ("higher", "edit prompts whose target tokens are all the argmax"),
    "gs_exact": ("higher", "equivalent prompts whose target tokens are all the argmax"),
    "ls_exact": ("higher", "unrelated prompts whose gold answer tokens are all the argmax"),
    "es_sequence": ("higher", "MEND's sequence-wise edit success (MALMEN Table 3): edit and equivalent prompts whose target tokens are all the argmax"),
    "drawdown": ("lower", "MEND's accuracy drawdown (MALMEN Table 3): exact-match accuracy on the unrelated prompts before minus after the edit"),
}

# Scores a task adds through `Task.extra_metrics` (recorded in `pre`/`post` beside the above), with
# their range when it is not [0, 1]. The `cf_*` scores compare the probabilities of CounterFact's two
# answers as MEMIT (Meng et al. 2023) reports them: P(answer) = exp(-mean token NLL of the answer after
# the prompt); each score is the mean over records of the per-record mean over that record's prompts.
TASK_METRICS: dict[str, tuple[str, str]] = {
    "cf_efficacy": ("higher", "CounterFact efficacy score: fraction of edit prompts with P(new target) > P(true target)"),
    "cf_paraphrase": ("higher", "CounterFact paraphrase score: the same over the paraphrase (equivalent) prompts"),
    "cf_neighbourhood": ("higher", "CounterFact neighbourhood score: fraction of neighbourhood prompts with P(true target) > P(new target)"),
    "cf_efficacy_magnitude": ("higher", "mean of P(new target) - P(true target) over the edit prompts"),
    "cf_paraphrase_magnitude": ("higher", "the same over the paraphrase prompts"),
    "cf_neighbourhood_magnitude": ("higher", "mean of P(true target) - P(new target) over the neighbourhood prompts"),
    "ppl": ("lower", "WikiText-2 perplexity: exp(mean NLL) of the first `ppl_tokens` tokens of the test file, "
                     "in windows of min(512, context) tokens (the task option `ppl_tokens`; 0 disables it)"),
}
# Metrics whose values are not fractions in [0, 1]: (lowest, highest) allowed in a record.
RANGES: dict[str, tuple[float, float]] = {
    "drawdown": (-1.0, 1.0),
    "cf_efficacy_magnitude": (-1.0, 1.0),
    "cf_paraphrase_magnitude": (-1.0, 1.0),
    "cf_neighbourhood_magnitude": (-1.0, 1.0),
    "ppl": (1.0, float("inf")),
}


def metric_range(name: str) -> tuple[float, float]:
    """(lowest, highest) value metric `name` can take in a record ((0, 1) for a fraction)."""
    return RANGES.get(name, (0.0, 1.0))


def token_accuracy(outcome: TupleOutcome) -> float:
    pairs = list(zip(outcome.predicted, outcome.gold))
    return sum(p == g for p, g in pairs) / len(pairs) if pairs else 0.0


def exact(outcome: TupleOutcome) -> float:
    return float(bool(outcome.gold) and outcome.predicted == outcome.gold)


def agreement(post: TupleOutcome, pre: TupleOutcome) -> float:
    """Fraction of one tuple's answer positions whose argmax is unchanged (1.0 without positions)."""
    pairs = list(zip(post.predicted, pre.predicted))
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else 1.0


def retention(post: Sequence[TupleOutcome], pre: Sequence[TupleOutcome]) -> float | None:
    """Unchanged argmax positions over all answer positions of the tuples (None without any)."""
    pairs = [(a, b) for after, before in zip(post, pre) for a, b in zip(after.predicted, before.predicted)]
    return sum(a == b for a, b in pairs) / len(pairs) if pairs else None


def _mean(values: Iterable[float]) -> float | None:
    values = list(values)
    return fmean(values) if values else None


def request_metrics(post: RequestOutcome, pre: RequestOutcome | None = None) -> dict[str, float | None]:
    """The metrics of one request (`pre` gives retention and drawdown; without it they are neutral)."""
    return aggregate([post], [pre] if pre is not None else None)


def _drawdown(post: Sequence[TupleOutcome], pre: Sequence[TupleOutcome]) -> float | None:
    before, after = _mean(map(exact, pre)), _mean(map(exact, post))
    return None if before is None or after is None else before - after


def aggregate(post: Sequence[RequestOutcome], pre: Sequence[RequestOutcome] | None = None) -> dict[str, float | None]:
    """Metrics over all requests; tuple-level means (GS averages every equivalent tuple)."""
    pre = pre if pre is not None else post
    edit = [o.edit for o in post]
    equivalents = [t for o in post for t in o.equivalents]
    unrelated = [t for o in post for t in o.unrelated]
    pre_unrelated = [t for o in pre for t in o.unrelated]
    return {
        "es": _mean(map(token_accuracy, edit)),
        "gs": _mean(map(token_accuracy, equivalents)),
        "ls": _mean(map(token_accuracy, unrelated)),
        "retention": retention(unrelated, pre_unrelated),
        "es_exact": _mean(map(exact, edit)),
        "gs_exact": _mean(map(exact, equivalents)),
        "ls_exact": _mean(map(exact, unrelated)),
        "es_sequence": _mean(map(exact, edit + equivalents)),
        "drawdown": _drawdown(unrelated, pre_unrelated),
    }
