"""Teacher-forced scoring of requests, shared by every architecture."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from editbench.api import EditRequest, RequestOutcome, Task, TupleOutcome


def tuples_of(requests: Sequence[EditRequest]) -> list[tuple[str, str]]:
    """All (prompt, answer) tuples of the requests, in the order `outcomes_of` expects."""
    pairs: list[tuple[str, str]] = []
    for r in requests:
        pairs.append((r.prompt, r.target))
        pairs.extend((e, r.target) for e in r.equivalents)
        pairs.extend(r.unrelated)
    return pairs


@torch.no_grad()
def score_tuples(task: Task, model: nn.Module, pairs: Sequence[tuple[str, str]], batch_size: int) -> list[TupleOutcome]:
    """Argmax of the model at every answer position of each tuple, batched."""
    device = next(model.parameters()).device
    outcomes: list[TupleOutcome] = []
    for start in tqdm(range(0, len(pairs), batch_size), desc="scoring", leave=False, disable=None):
        batch = task.batch(pairs[start:start + batch_size]).to(device)
        answer = batch.labels != -100  # [b, t]
        predicted = task.answer_logits(model, batch).argmax(-1).tolist()  # [k], row-major over `answer`
        gold = batch.labels[answer].tolist()
        end = 0
        for count in answer.sum(-1).tolist():
            outcomes.append(TupleOutcome(predicted[end:end + count], gold[end:end + count]))
            end += count
    return outcomes


def evaluate_requests(task: Task, model: nn.Module, requests: Sequence[EditRequest], batch_size: int) -> list[RequestOutcome]:
    """Score every tuple of every request and regroup the outcomes per request."""
    was_training = model.training
    model.eval()
    flat = iter(score_tuples(task, model, tuples_of(requests), batch_size))
    model.train(was_training)
    return [
        RequestOutcome(
            edit=next(flat),
            equivalents=[next(flat) for _ in r.equivalents],
            unrelated=[next(flat) for _ in r.unrelated],
        )
        for r in requests
    ]
