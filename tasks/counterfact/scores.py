"""CounterFact's probability-comparison scores, as MEMIT (Meng et al. 2023, Sec. 5.2) reports them.

P(answer | prompt) = exp(-mean token NLL of the answer's tokens after the prompt), teacher forced in
the task's prompt format (`tasks.common.scoring.answer_nll`), for the new target and the true one:
- efficacy: edit prompts with P(new) > P(true); paraphrase: the same on the equivalent prompts;
- neighbourhood: neighbourhood (unrelated) prompts with P(true) > P(new);
- `*_magnitude`: the mean of P(new) - P(true) (neighbourhood: P(true) - P(new)).
Each is averaged over a record's prompts, then over the records (as MEMIT's `summarize`), so a
record with ten neighbourhood prompts weighs as much as one with one. Definitions:
`editbench.metrics.TASK_METRICS`.
"""
from __future__ import annotations

import math
from statistics import fmean
from typing import Any, Sequence

from editbench.api import EditRequest
from editbench.tasks.common.scoring import answer_nll

GROUPS = ("efficacy", "paraphrase", "neighbourhood")


def prompts_by_group(request: EditRequest) -> dict[str, list[str]]:
    """The request's edit, paraphrase and neighbourhood prompts."""
    return {"efficacy": [request.prompt], "paraphrase": list(request.equivalents),
            "neighbourhood": [prompt for prompt, _ in request.unrelated]}


def counterfact_scores(task: Any, model: Any, requests: Sequence[EditRequest], batch_size: int) -> dict[str, float | None]:
    """`cf_<group>` and `cf_<group>_magnitude` for the groups of `GROUPS`, over the requests that know
    their true target (`original`); None for a group without prompts."""
    known = [r for r in requests if r.original]
    pairs = [(prompt, answer) for r in known for prompts in prompts_by_group(r).values() for prompt in prompts
             for answer in (r.target, r.original)]
    nll = iter(answer_nll(task, model, pairs, batch_size))
    success: dict[str, list[float]] = {group: [] for group in GROUPS}
    magnitude: dict[str, list[float]] = {group: [] for group in GROUPS}
    for r in known:
        for group, prompts in prompts_by_group(r).items():
            wins, gaps = [], []
            for _ in prompts:
                nll_new, nll_true = next(nll), next(nll)
                sign = -1.0 if group == "neighbourhood" else 1.0
                # Compared as NLLs (as MEMIT does): exp(-NLL) of two unlikely answers can both round to 0.
                wins.append(float(sign * (nll_true - nll_new) > 0))
                gaps.append(sign * (math.exp(-nll_new) - math.exp(-nll_true)))
            if prompts:
                success[group].append(fmean(wins))
                magnitude[group].append(fmean(gaps))
    scores: dict[str, float | None] = {}
    for group in GROUPS:
        scores[f"cf_{group}"] = fmean(success[group]) if success[group] else None
        scores[f"cf_{group}_magnitude"] = fmean(magnitude[group]) if magnitude[group] else None
    return scores
