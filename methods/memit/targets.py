"""MEMIT's target values `z_i` (Meng et al. 2023, Sec. 4.3, Eq. 16), optimised for many requests at once.

For request i a residual `δ_i: [d]` is added to the hidden state at the subject's last token of the
output of block L (the block of the last edited module) in every context of the prompt, and Adam
minimises, per request,

    NLL of the target (mean over contexts of the per-token mean)      -- Eq. 16's first term
  + kl_factor · KL(p₀ ‖ p_δ) of the next token after the subject in "{subject} is a"  (essence drift)
  + weight_decay · ‖δ_i‖ / ‖z0_i‖²                                    -- the reference's penalty,

with ‖δ_i‖ clamped to `clamp_norm_factor · ‖z0_i‖` after each step; `z_i = z0_i + δ_i`. The losses of
different requests are independent sums, so one batched Adam equals one Adam per request; a request
stops (its δ frozen) as soon as its loss falls below `stop_loss`, and leaves the batch.
"""
from __future__ import annotations

import contextlib
from typing import Sequence

import torch
from torch import Tensor, nn

from editbench.api import EditRequest, Task
from editbench.errors import EditbenchError
from editbench.methods.memit.config import MemitConfig
from editbench.methods.memit.locate import Prompts, contexts, hidden_of, read_at_subjects, tokenise, with_hidden
from editbench.modules import get_module


def split_kl_prompt(template: str) -> tuple[str, str]:
    """'{} is a' -> ('', 'is a'): the text before the subject and the continuation after it."""
    if template.count("{}") != 1:
        raise EditbenchError(f"kl_prompt {template!r} must contain '{{}}' (the subject) exactly once")
    head, tail = template.split("{}")
    if not tail.startswith(" ") or not tail.strip():
        raise EditbenchError(f"kl_prompt {template!r} must continue after the subject with a space and words")
    return head, tail.strip()


@contextlib.contextmanager
def frozen_parameters(model: nn.Module):
    """No parameter gradients (only δ is optimised); restores `requires_grad` and the train flag."""
    trainable = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    for p in trainable:
        p.requires_grad_(False)
    model.eval()
    try:
        yield
    finally:
        for p in trainable:
            p.requires_grad_(True)
        model.train(was_training)


@contextlib.contextmanager
def residual_added(model: nn.Module, block: str, delta: Tensor, state: dict):
    """Adds `delta[owner]` to block `block`'s output at each row's subject position (`state['rows']`)."""

    def add(module: nn.Module, args: tuple, output):
        hidden = hidden_of(output)  # [b, t, d]
        rows: Prompts = state["rows"]
        index = (torch.arange(hidden.shape[0], device=hidden.device), rows.position)
        shift = torch.zeros_like(hidden).index_put(index, delta[rows.owner].to(hidden.dtype))
        return with_hidden(output, hidden + shift)

    handle = get_module(model, block).register_forward_hook(add)
    try:
        yield
    finally:
        handle.remove()


def optimise_targets(task: Task, model: nn.Module, requests: Sequence[EditRequest], block: str,
                     config: MemitConfig) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Target values `z: [m, d]` and initial values `z0: [m, d]` at block `block`'s output, and statistics."""
    parts = [_optimise_chunk(task, model, requests[start:start + config.z_batch_size], block, config)
             for start in range(0, len(requests), config.z_batch_size)]
    z, z0, loss, nll_before, nll_after, passes = (torch.cat(column) for column in zip(*parts))
    stats = {
        "z_nll_before": float(nll_before.mean()),
        "z_nll_after": float(nll_after.mean()),
        "z_loss_after": float(loss.mean()),
        "z_converged": float((loss < config.stop_loss).float().mean()),
        "z_passes_mean": float(passes.float().mean()),
    }
    return z, z0, stats


def _optimise_chunk(task: Task, model: nn.Module, requests: Sequence[EditRequest], block: str, config: MemitConfig):
    """One batch of requests: z [m, d], z0 [m, d], final loss [m], first and last NLL [m], forward passes [m]."""
    device = next(model.parameters()).device
    m = len(requests)
    head, tail = split_kl_prompt(config.kl_prompt)
    rewrite = [(i, prompt, r.target, r.subject) for i, r in enumerate(requests) for prompt in contexts(r, config.prefixes)]
    essence = [(i, head + r.subject, tail, r.subject) for i, r in enumerate(requests)]
    prompts = tokenise(task, rewrite + essence).to(device)
    prompts.batch.labels[len(rewrite):] = -100  # the essence rows only feed the KL term
    is_essence = torch.arange(len(prompts.owner), device=device) >= len(rewrite)
    bare = torch.arange(0, len(rewrite), 1 + len(config.prefixes), device=device)  # first context = bare prompt

    with frozen_parameters(model):
        z0 = read_at_subjects(model, prompts.select(bare), outputs_of=[block], batch_size=config.batch_size)[block]  # [m, d]
        z0 = z0.to(device)
        delta = torch.zeros_like(z0, requires_grad=True)  # [m, d]
        optimizer = torch.optim.Adam([delta], lr=config.lr)
        max_norm = config.clamp_norm_factor * z0.norm(dim=1)  # [m]
        done = torch.zeros(m, dtype=torch.bool, device=device)
        frozen = torch.zeros_like(z0)
        final_loss = torch.full((m,), float("nan"), device=device)
        first_nll = torch.zeros(m, device=device)
        final_nll = torch.zeros(m, device=device)
        passes = torch.zeros(m, dtype=torch.long, device=device)
        initial_log_probs: Tensor | None = None  # [m, V]: next token after the subject, unedited model
        state: dict = {}
        with residual_added(model, block, delta, state):
            for step in range(config.steps):
                kept = torch.nonzero(~done[prompts.owner]).squeeze(1)
                rows = state["rows"] = prompts.select(kept)
                nll, log_probs, owners = _losses(task, model, rows, is_essence[kept], m)
                if initial_log_probs is None:
                    initial_log_probs = log_probs.detach()  # [m, V]: δ = 0 at the first pass
                    first_nll = nll.detach()
                reference = initial_log_probs[owners]  # [a, V]
                kl = torch.zeros(m, device=device).index_add(0, owners, (reference.exp() * (reference - log_probs)).sum(-1))
                active = ~done
                loss = (nll[active] + config.kl_factor * kl[active]
                        + config.weight_decay * delta[active].norm(dim=1) / z0[active].norm(dim=1) ** 2)  # [a]
                passes[active] += 1
                final_loss[active] = loss.detach()
                final_nll[active] = nll.detach()[active]
                finished = torch.zeros_like(done)
                finished[active] = loss.detach() < config.stop_loss
                frozen[finished] = delta.detach()[finished]
                done |= finished
                if bool(done.all()) or step == config.steps - 1:
                    break
                optimizer.zero_grad(set_to_none=True)
                loss[~finished[active]].sum().backward()
                optimizer.step()
                with torch.no_grad():
                    # Project each δ_i into the ball of radius clamp_norm_factor · ‖z0_i‖.
                    scale = (max_norm / delta.norm(dim=1).clamp(min=1e-12)).clamp(max=1.0)
                    delta.mul_(scale[:, None])
                    delta[done] = frozen[done]
    z = (z0 + delta).detach()
    return z, z0, final_loss, first_nll, final_nll, passes


def _losses(task: Task, model: nn.Module, rows: Prompts, is_essence: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-request target NLL `[m]` (0 for absent requests), and the essence rows' log-probs `[a, V]` with their owners."""
    logits = task.logits(model, rows.batch)  # [b, T-1, V]; position t predicts token t+1
    labels = rows.batch.labels
    answer = labels != -100
    row_of = torch.nonzero(answer)[:, 0]  # [n]
    token_nll = nn.functional.cross_entropy(logits[answer].float(), labels[answer], reduction="none")  # [n]
    rewrite = ~is_essence
    per_row = torch.zeros(len(labels), device=logits.device).index_add(0, row_of, token_nll)
    per_row = per_row / answer.sum(1).clamp(min=1)  # [b]: mean NLL per answer token
    nll = torch.zeros(m, device=logits.device).index_add(0, rows.owner[rewrite], per_row[rewrite])
    contexts_per = torch.bincount(rows.owner[rewrite], minlength=m).clamp(min=1)
    essence_rows = torch.nonzero(is_essence).squeeze(1)
    at_subject = logits[essence_rows, rows.position[essence_rows]].float()  # [a, V]
    return nll / contexts_per, at_subject.log_softmax(-1), rows.owner[essence_rows]
