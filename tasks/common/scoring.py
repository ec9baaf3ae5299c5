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


@torch.no_grad()
def answer_nll(task: Task, model: nn.Module, pairs: Sequence[tuple[str, str]], batch_size: int) -> list[float]:
    """Mean token negative log-likelihood of each tuple's answer after its prompt (teacher forced),
    batched by `batch_size` tuples: `exp(-value)` is the answer's probability as MEMIT scores it."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    values: list[float] = []
    for start in range(0, len(pairs), batch_size):
        batch = task.batch(pairs[start:start + batch_size]).to(device)
        answer = batch.labels != -100  # [b, t]
        log_probs = task.answer_logits(model, batch).float().log_softmax(-1)  # [k, V], row-major over `answer`
        token_nll = -log_probs.gather(-1, batch.labels[answer].unsqueeze(-1)).squeeze(-1)  # [k]
        counts = answer.sum(-1)  # [b]
        rows = torch.repeat_interleave(torch.arange(len(counts), device=device), counts)  # [k]: tuple of each token
        sums = torch.zeros(len(counts), device=device).index_add_(0, rows, token_nll)  # [b]
        values.extend((sums / counts.clamp(min=1)).tolist())
    model.train(was_training)
    return values
