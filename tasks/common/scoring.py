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
        predicted = task.logits(model, batch).argmax(-1)  # [b, t]
        answer = batch.labels != -100
        for row in range(len(batch)):
            mask = answer[row]
            outcomes.append(TupleOutcome(predicted[row][mask].tolist(), batch.labels[row][mask].tolist()))
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
