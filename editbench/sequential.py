"""Sequential editing (`editbench run --rounds T`): T rounds of m edits on the same model.

Each round's edit is made on the model as the previous rounds left it (a trained editor is the
same editor every round, as the lifelong setting of recent mass-editing work reports it); the T
rounds edit disjoint requests (the T·m facts are sampled once, then cut in order into rounds).
The run is scored on all T·m facts before the first round and after the last one; with
`eval_each_round`, also on the facts edited so far after each earlier round.

`edit_rounds` returns the weight shifts summed over the rounds (`{module: ΔW [d_out, d_in]}`: what
the whole run added, up to rounding) and one `RoundResult` per round. T = 1 is the single edit of
m facts that `editbench run` has always made.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from editbench.errors import EditbenchError
from editbench.measure import Phase, PhaseStats


@dataclass
class RoundResult:
    """One round: its requests, the method's `EditResult`, the edit phase's time and memory, and
    (with per-round evaluation) the scores on the facts edited so far."""

    requests: list[Any]
    result: Any  # EditResult: deltas {module: ΔW [d_out, d_in]} of this round, stats
    phase: PhaseStats
    scores: dict[str, Any] | None = None


@dataclass
class RoundsOutcome:
    """All rounds: the shifts summed over them and each round's result."""

    deltas: dict[str, Any]
    rounds: list[RoundResult] = field(default_factory=list)

    @property
    def stats(self) -> dict[str, float]:
        """The method's statistics of the last round (the state the run ends in)."""
        return dict(self.rounds[-1].result.stats)


def split_rounds(requests: Sequence[Any], rounds: int) -> list[list[Any]]:
    """`requests` cut in order into `rounds` disjoint rounds of equal size."""
    if rounds < 1:
        raise EditbenchError(f"--rounds {rounds} must be at least 1")
    if len(requests) % rounds:
        raise EditbenchError(f"{len(requests)} facts cannot be cut into --rounds {rounds} rounds of equal size "
                             f"(expected a multiple of {rounds})")
    size = len(requests) // rounds
    return [list(requests[i * size:(i + 1) * size]) for i in range(rounds)]


def add_deltas(total: dict[str, Any], deltas: dict[str, Any]) -> dict[str, Any]:
    """{module: ΔW} summed with another round's (a new dict; the tensors given are not changed)."""
    summed = dict(total)
    for name, delta in deltas.items():
        summed[name] = summed[name] + delta if name in summed else delta
    return summed


def edit_rounds(method: Any, task: Any, model: Any, rounds: list[list[Any]], device: str,
                check: Callable[[Any, int], None], score: Callable[[list[Any]], dict[str, Any]] | None = None,
                undo: Callable[[], Any] | None = None, keep_round_deltas: bool = True) -> RoundsOutcome:
    """Edit `model` in place, round after round, each edit timed and measured on its own.

    check(result, round): the caller's guard on one round's `EditResult` (non-finite shifts...).
    score(requests): scores of the facts edited so far, called after every round but the last
    (the caller scores the last one anyway) when given. undo(): the context the edit runs in
    (`editbench.modules.no_undo` for a benchmark run). keep_round_deltas: False keeps only the sum
    (each round's `result.deltas` is emptied: T weight-sized shifts of a large model add up).
    """
    import contextlib
    import dataclasses

    outcome = RoundsOutcome(deltas={})
    edited: list[Any] = []
    for number, requests in enumerate(rounds, start=1):
        with Phase(device) as phase, (undo() if undo is not None else contextlib.nullcontext()):
            result = method.edit(task, model, requests)
        check(result, number)
        outcome.deltas = add_deltas(outcome.deltas, result.deltas) if len(rounds) > 1 else dict(result.deltas)
        edited += requests
        scores = score(list(edited)) if score is not None and number < len(rounds) else None
        kept = result if keep_round_deltas or len(rounds) == 1 else dataclasses.replace(result, deltas={})
        outcome.rounds.append(RoundResult(list(requests), kept, phase, scores))
    return outcome


def combined_phase(phases: Sequence[PhaseStats]) -> PhaseStats:
    """One edit phase for all rounds: seconds summed, peaks the highest of any round."""

    def highest(name: str) -> Any:
        values = [getattr(p, name) for p in phases if getattr(p, name) is not None]
        return max(values) if values else None

    if len(phases) == 1:
        return phases[0]
    return PhaseStats(seconds=sum(p.seconds for p in phases), peak_memory_bytes=highest("peak_memory_bytes"),
                      peak_rss_bytes=highest("peak_rss_bytes"), peak_gpu_nvml_bytes=highest("peak_gpu_nvml_bytes"),
                      peak_gpu_torch_bytes=highest("peak_gpu_torch_bytes"),
                      start_memory_bytes=phases[0].start_memory_bytes,
                      peak_above_start_bytes=highest("peak_above_start_bytes"))


def round_records(outcome: RoundsOutcome) -> list[dict[str, Any]]:
    """The record's `per_round` list: per round its number, edits, edit seconds, peak memory, the
    method's statistics, and (with per-round evaluation) `scores` on the facts edited so far."""
    rows = []
    for number, done in enumerate(outcome.rounds, start=1):
        row = {"round": number, "edits": len(done.requests), "edit_seconds": done.phase.seconds,
               "peak_memory_bytes": done.phase.peak_memory_bytes, "method_stats": dict(done.result.stats)}
        if done.scores is not None:
            row["scores"] = done.scores
        rows.append(row)
    return rows

