"""Where MEMIT reads and writes: the subject's last token of each prompt, at a module's input or a block's output.

z lives in the residual stream at the output of the block holding the last edited module (the
reference's `layer_module_tmp`); adding a vector there at one position is the same as adding it to
that block's FFN output, since the block output is the residual sum of its parts.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from editbench.api import Batch, EditRequest, Task
from editbench.errors import EditbenchError
from editbench.modules import get_module


def block_of(module_name: str) -> str:
    """Name of the transformer block holding a module: the deepest ancestor indexed in a ModuleList."""
    parts = module_name.split(".")
    for end in range(len(parts) - 1, 0, -1):
        if parts[end - 1].isdigit():
            return ".".join(parts[:end])
    raise EditbenchError(f"cannot find the transformer block of module {module_name!r}")


def hidden_of(output) -> Tensor:
    """A block's hidden states `[b, t, d]`, whether it returns a tensor or a tuple."""
    return output[0] if isinstance(output, tuple) else output


def with_hidden(output, hidden: Tensor):
    return (hidden, *output[1:]) if isinstance(output, tuple) else hidden


@dataclass
class Prompts:
    """Tokenised prompts with, per row, the request it belongs to and the subject's last token.

    batch: (prompt, answer) tuples, labels on the answer. owner: [rows] request index.
    position: [rows] index of the subject's last token in the row's input.
    """

    batch: Batch
    owner: Tensor
    position: Tensor

    def select(self, rows: Tensor) -> "Prompts":
        inputs = {k: v[rows] for k, v in self.batch.inputs.items()}
        return Prompts(Batch(inputs, self.batch.labels[rows]), self.owner[rows], self.position[rows])

    def to(self, device) -> "Prompts":
        return Prompts(self.batch.to(device), self.owner.to(device), self.position.to(device))


def contexts(request: EditRequest, prefixes: Sequence[str]) -> list[str]:
    """The bare prompt followed by `"{prefix}. {prompt}"` for each prefix (the reference's context templates).

    These are plain prompt strings: the task formats them (chat template, special tokens) like any prompt.
    """
    return [request.prompt] + [f"{prefix}. {request.prompt}" for prefix in prefixes]


def context_weights(prefix_count: int) -> Tensor:
    """Weights `[1 + prefix_count]` of the contexts in a request's key (the reference's `compute_ks`).

    The reference averages the keys within each kind of context and then across kinds: the bare
    prompt is one kind and weighs 1/2, the prefixed prompts are the other and share the other 1/2
    (without prefixes the bare prompt weighs 1).
    """
    if prefix_count == 0:
        return torch.ones(1)
    return torch.tensor([0.5] + [0.5 / prefix_count] * prefix_count)


def tokenise(task: Task, rows: Sequence[tuple[int, str, str, str]]) -> Prompts:
    """Rows of (request index, prompt, answer, subject) -> `Prompts`."""
    batch = task.batch([(prompt, answer) for _, prompt, answer, _ in rows])
    position = torch.tensor([task.subject_token_index(prompt, subject) for _, prompt, _, subject in rows])
    if bool((position >= batch.inputs["input_ids"].shape[1]).any()):
        raise EditbenchError("a subject lies beyond the task's maximum prompt length")
    return Prompts(batch, torch.tensor([owner for owner, *_ in rows]), position)


def require_subjects(requests: Sequence[EditRequest]) -> None:
    missing = [r.id for r in requests if not r.subject]
    if missing:
        more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
        raise EditbenchError(f"MEMIT needs the subject of each request; none given for {', '.join(missing[:3])}{more}")


class StopForward(Exception):
    """Raised by a hook once every activation a forward pass was run for has been read."""


@torch.no_grad()
def read_at_subjects(model: nn.Module, prompts: Prompts, inputs_of: Sequence[str] = (), outputs_of: Sequence[str] = (),
                     batch_size: int = 64) -> dict[str, Tensor]:
    """Activations at each row's subject position: module inputs (`inputs_of`) and block outputs (`outputs_of`).

    Returns name -> `[rows, d]` in float32; the forward stops after the last hooked module.
    """
    device = next(model.parameters()).device
    found: dict[str, list[Tensor]] = {n: [] for n in (*inputs_of, *outputs_of)}
    current: dict[str, Tensor] = {}

    def keep(name: str, hidden: Tensor) -> None:
        rows = torch.arange(hidden.shape[0], device=hidden.device)
        found[name].append(hidden[rows, current["position"]].float())
        if all(len(v) == current["batches"] for v in found.values()):
            raise StopForward

    handles = [get_module(model, n).register_forward_pre_hook(lambda m, a, n=n: keep(n, a[0])) for n in inputs_of]
    handles += [get_module(model, n).register_forward_hook(lambda m, a, o, n=n: keep(n, hidden_of(o))) for n in outputs_of]
    try:
        for start in range(0, len(prompts.owner), batch_size):
            part = prompts.select(torch.arange(start, min(start + batch_size, len(prompts.owner)))).to(device)
            current["position"] = part.position
            current["batches"] = start // batch_size + 1
            try:
                model(**part.batch.inputs)
            except StopForward:
                pass
    finally:
        for h in handles:
            h.remove()
    return {n: torch.cat(v) for n, v in found.items()}


def weighted_sum_by_owner(values: Tensor, owner: Tensor, weight: Tensor, count: int) -> Tensor:
    """`Σ_rows weight · value` over the rows of each owner: values `[rows, d]`, owner, weight `[rows]` -> `[count, d]`."""
    weighted = values * weight.to(values.device, values.dtype)[:, None]
    return torch.zeros(count, values.shape[1], dtype=values.dtype, device=values.device).index_add_(0, owner.to(values.device), weighted)
