"""MEMIT's target values `z_i` (Meng et al. 2023, Sec. 4.3, Eq. 16), optimised for many requests at once.

For request i a residual `δ_i: [d]` is added to the hidden state at the subject's last token of the
output of block L (the block of the last edited module) in every context of the prompt, and Adam
minimises, per request,

    NLL of the target (mean over contexts of the per-token mean)      -- Eq. 16's first term
  + kl_factor · KL(p_δ ‖ p₀) of the next token after the subject in "{subject} is a"  (essence drift,
                                       ROME's Eq. 4; the reference's `kl_div(log p₀, log p_δ, log_target=True)`)
  + weight_decay · ‖δ_i‖ / ‖z0_i‖²                                    -- the reference's penalty (not squared),

with ‖δ_i‖ clamped to `clamp_norm_factor · ‖z0_i‖` after each step; `z_i = z0_i + δ_i`. The losses of
different requests are independent sums, so one batched Adam equals one Adam per request; a request
stops (its δ frozen) as soon as its loss falls below `stop_loss`, and leaves the batch. A request
whose loss is still above `stop_loss` after `steps` passes is "unconverged": counted in the
statistics (`z_unconverged`) so that a setting too weak for the model does not pass in silence.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Sequence

import torch
from torch import Tensor, nn

from editbench.api import Batch, EditRequest, Task
from editbench.errors import EditbenchError
from editbench.guard import check_finite
from editbench.methods.memit.budget import autograd_bytes, group_by_budget
from editbench.methods.memit.config import MemitConfig
from editbench.methods.memit.locate import Prompts, contexts, hidden_of, read_at_subjects, tokenise, with_hidden
from editbench.modules import get_module
from editbench.prefix import PrefixCache


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


def next_block(model: nn.Module, block: str) -> str | None:
    """The block after `block` in its block list ('model.layers.8' -> 'model.layers.9'); None for the last."""
    parent, _, index = block.rpartition(".")
    blocks = model.get_submodule(parent) if parent and index.isdigit() else None
    if not isinstance(blocks, nn.ModuleList) or int(index) + 1 >= len(blocks):
        return None
    return f"{parent}.{int(index) + 1}"


def _shifted(hidden: Tensor, rows: Prompts, delta: Tensor, skipped: int) -> Tensor:
    """`hidden: [b, t, d]` (positions skipped.. of each row) plus `delta[owner]` at each row's subject."""
    index = (torch.arange(hidden.shape[0], device=hidden.device), rows.position - skipped)
    return hidden + torch.zeros_like(hidden).index_put(index, delta[rows.owner].to(hidden.dtype))


@contextlib.contextmanager
def residual_added(model: nn.Module, block: str, following: str | None, delta: Tensor, rows: Prompts, skipped: int = 0):
    """Adds `delta[owner]` to block `block`'s output at each row's subject position: as the input of
    block `following` where there is one (then the blocks up to `block` may be skipped, `PrefixCache`),
    else as a forward hook on `block`. `skipped`: the shared opening's length (hooks see positions P..)."""

    def add_output(module: nn.Module, args: tuple, output):
        return with_hidden(output, _shifted(hidden_of(output), rows, delta, skipped))

    def add_input(module: nn.Module, args: tuple, kwargs: dict):
        if args:
            return (_shifted(args[0], rows, delta, skipped),) + args[1:], kwargs
        return args, {**kwargs, "hidden_states": _shifted(kwargs["hidden_states"], rows, delta, skipped)}

    if following is None:
        handle = get_module(model, block).register_forward_hook(add_output)
    else:
        handle = get_module(model, following).register_forward_pre_hook(add_input, with_kwargs=True)
    try:
        yield
    finally:
        handle.remove()


def optimise_targets(task: Task, model: nn.Module, requests: Sequence[EditRequest], block: str,
                     config: MemitConfig) -> tuple[Tensor, Tensor, dict[str, float]]:
    """Target values `z: [m, d]` and initial values `z0: [m, d]` at block `block`'s output, and statistics."""
    groups, bytes_per_token = z_batches(task, model, requests, block, config)
    parts = [_optimise_chunk(task, model, [requests[i] for i in group], block, config) for group in groups]
    z, z0, loss, nll_before, nll_after, passes = (torch.cat(column) for column in zip(*parts))
    unconverged = int((loss >= config.stop_loss).sum())
    stats = {
        "z_nll_before": float(nll_before.mean()),
        "z_nll_after": float(nll_after.mean()),
        "z_loss_after": float(loss.mean()),
        "z_converged": float((loss < config.stop_loss).float().mean()),
        "z_unconverged": unconverged,
        "z_passes_mean": float(passes.float().mean()),
        "z_shift_ratio": float(((z - z0).norm(dim=1) / z0.norm(dim=1)).mean()),
        "z_batches": len(groups),
        "z_batch_max": max(len(g) for g in groups),
        "z_bytes_per_token": bytes_per_token,
    }
    return z, z0, stats


def request_rows(request: EditRequest, config: MemitConfig) -> tuple[list[tuple[str, str, str]], tuple[str, str, str]]:
    """(prompt, answer, subject) of a request's contexts, and of its essence prompt.

    The essence prompt is the whole `kl_prompt` ("{subject} is a") as one prompt string, so that
    whatever format the task applies (a chat template puts a prompt in a user turn), the token after
    the subject is the prompt's own continuation ("is"), as in the reference. Its answer (the
    request's target) comes after the subject and is never scored: it cannot change the KL term.
    """
    split_kl_prompt(config.kl_prompt)
    rewrite = [(prompt, request.target, request.subject) for prompt in contexts(request, config.prefixes)]
    return rewrite, (config.kl_prompt.replace("{}", request.subject), request.target, request.subject)


def z_batches(task: Task, model: nn.Module, requests: Sequence[EditRequest], block: str,
              config: MemitConfig) -> tuple[list[range], float]:
    """Groups of requests optimised together, and the measured bytes per padded token of a z step (0: not measured).

    With `z_memory_mb > 0`, one probe forward (the first request's rows) measures what autograd keeps
    per padded token, plus the logits and their gradient (2 · V floats per position the head runs
    at), averaged over the probe's padded tokens; groups then hold at most
    `z_batch_size` requests and at most `z_memory_mb` of that estimate (`budget.py`).
    """
    if config.z_memory_mb <= 0:
        return [range(s, min(s + config.z_batch_size, len(requests))) for s in range(0, len(requests), config.z_batch_size)], 0.0
    with frozen_parameters(model):
        probe = ZProblem(task, model, requests[:1], block, config)
        delta = torch.zeros_like(probe.z0, requires_grad=True)
        _, saved = autograd_bytes(model, lambda: probe.losses(delta).loss.sum())
    tokens = probe.prompts.batch.inputs["attention_mask"].numel()  # padded tokens of the probe
    outputs = int((probe.prompts.batch.labels != -100).sum()) + 1  # positions the head runs at (+1: the essence row)
    vocab = getattr(getattr(model, "config", None), "vocab_size", 0) or 0
    bytes_per_token = (saved + 2 * 4 * vocab * outputs) / tokens
    rows, widths = [], []
    for request in requests:
        rewrite, essence = request_rows(request, config)
        lengths = task.batch([(p, a) for p, a, _ in rewrite + [essence]]).inputs["attention_mask"].sum(1)
        rows.append(len(lengths))
        widths.append(int(lengths.max()))
    return group_by_budget(rows, widths, bytes_per_token, config.z_memory_mb * 2**20, config.z_batch_size), bytes_per_token


@dataclass
class ZLosses:
    """The terms of Eq. 16 per request, each `[m]` (0 where a request had no row in the pass)."""

    loss: Tensor
    nll: Tensor
    kl: Tensor
    decay: Tensor


class ZProblem:
    """The z objective of one batch of requests: tokenised contexts and essence prompts, z0 and p₀.

    Rows: for each request its contexts (bare prompt first, then `"{prefix}. {prompt}"`), then one
    essence row per request ("{subject} is a", no labels). `losses(delta, rows)` runs one forward
    pass with `delta[owner]` added at block `block`'s output at each row's subject position.

    δ changes nothing below block L+1, so a pass runs only the blocks above L on hidden states kept
    from one pass of the blocks up to L (`PrefixCache`; `skip_lower=False` runs the whole model),
    runs the tokens that open every row once (a chat template's system turn, `shared_start`), and
    applies the vocabulary head only where a loss reads it: the answer tokens and the essence
    rows' subject position.
    """

    def __init__(self, task: Task, model: nn.Module, requests: Sequence[EditRequest], block: str, config: MemitConfig,
                 skip_lower: bool = True):
        device = next(model.parameters()).device
        self.task, self.model, self.block, self.config, self.m = task, model, block, config, len(requests)
        self.following = next_block(model, block)
        # Without a block L+1 there is nothing to skip (no names: `PrefixCache.applies` is False).
        self.cache = PrefixCache(model, [self.following] if self.following else [], skip_lower=skip_lower)
        rows = [request_rows(r, config) for r in requests]
        rewrite = [(i, *row) for i, (context_rows, _) in enumerate(rows) for row in context_rows]
        essence = [(i, *essence_row) for i, (_, essence_row) in enumerate(rows)]
        self.prompts = tokenise(task, rewrite + essence).to(device)
        self.prompts.batch.labels[len(rewrite):] = -100  # the essence rows only feed the KL term
        self.is_essence = torch.arange(len(self.prompts.owner), device=device) >= len(rewrite)
        bare = torch.arange(0, len(rewrite), 1 + len(config.prefixes), device=device)  # first context = bare prompt
        with torch.no_grad():
            self.z0 = read_at_subjects(model, self.prompts.select(bare), outputs_of=[block],
                                       batch_size=config.batch_size)[block].to(device)  # [m, d]
            essence_rows = torch.nonzero(self.is_essence).squeeze(1)
            _, log_probs, owners = self._forward(self.prompts.select(essence_rows), self.is_essence[essence_rows],
                                                 torch.zeros_like(self.z0))
        self.initial_log_probs = torch.empty_like(log_probs).index_copy_(0, owners, log_probs)  # [m, V]: p₀, δ = 0

    def _forward(self, rows: Prompts, is_essence: Tensor, delta: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        # Read positions: the answer tokens' labels, and a mark (0) at each essence row's subject.
        marks = rows.batch.labels.clone()  # [b, T-1]; logits[:, t] predicts token t+1
        essence_rows = torch.nonzero(is_essence).squeeze(1)
        marks[essence_rows, rows.position[essence_rows]] = 0
        batch = Batch(rows.batch.inputs, marks)
        # The opening run once must end before every subject (δ enters there).
        with self.cache.feed(batch, limit=int(rows.position.min()), graph=False) as skipped:
            with residual_added(self.model, self.block, self.following, delta, rows, skipped):
                logits = self.task.answer_logits(self.model, batch)  # [k, V], row-major over marks != -100
        return _losses(logits, marks, rows, is_essence, self.m)

    def losses(self, delta: Tensor, rows: Tensor | None = None) -> ZLosses:
        """Eq. 16's terms at `delta: [m, d]`, over the given row indices (default: all rows)."""
        rows = torch.arange(len(self.prompts.owner), device=delta.device) if rows is None else rows
        nll, log_probs, owners = self._forward(self.prompts.select(rows), self.is_essence[rows], delta)
        initial = self.initial_log_probs[owners]  # [a, V]
        # KL(p_δ ‖ p₀) = Σ_v p_δ (log p_δ − log p₀), ROME Eq. 4 (reference: kl_div(init, new, log_target=True)).
        kl = torch.zeros(self.m, device=delta.device).index_add(0, owners, (log_probs.exp() * (log_probs - initial)).sum(-1))
        decay = self.config.weight_decay * delta.norm(dim=1) / self.z0.norm(dim=1) ** 2  # [m]
        present = torch.zeros(self.m, dtype=torch.bool, device=delta.device)
        present[self.prompts.owner[rows]] = True
        decay = torch.where(present, decay, torch.zeros_like(decay))
        return ZLosses(nll + self.config.kl_factor * kl + decay, nll, kl, decay)


def _optimise_chunk(task: Task, model: nn.Module, requests: Sequence[EditRequest], block: str, config: MemitConfig):
    """One batch of requests: z [m, d], z0 [m, d], final loss [m], first and last NLL [m], forward passes [m]."""
    m = len(requests)
    with frozen_parameters(model):
        problem = ZProblem(task, model, requests, block, config)
        z0, owner = problem.z0, problem.prompts.owner
        device = z0.device
        delta = torch.zeros_like(z0, requires_grad=True)  # [m, d]
        optimizer = torch.optim.Adam([delta], lr=config.lr)
        max_norm = config.clamp_norm_factor * z0.norm(dim=1)  # [m]
        done = torch.zeros(m, dtype=torch.bool, device=device)
        frozen = torch.zeros_like(z0)
        final_loss = torch.full((m,), float("nan"), device=device)
        first_nll = torch.zeros(m, device=device)
        final_nll = torch.zeros(m, device=device)
        passes = torch.zeros(m, dtype=torch.long, device=device)
        for step in range(config.steps):
            active = ~done
            terms = problem.losses(delta, torch.nonzero(active[owner]).squeeze(1))
            loss = terms.loss[active]  # [a]
            check_finite(loss.detach(), "z loss", "memit targets", layer=block, step=step,
                         hint="lower lr or raise weight_decay / lower clamp_norm_factor")
            if step == 0:
                first_nll = terms.nll.detach()
            passes[active] += 1
            final_loss[active] = loss.detach()
            final_nll[active] = terms.nll.detach()[active]
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


def _losses(logits: Tensor, marks: Tensor, rows: Prompts, is_essence: Tensor, m: int) -> tuple[Tensor, Tensor, Tensor]:
    """Per-request target NLL `[m]` (0 for absent requests), and the essence rows' log-probs `[a, V]` with
    their owners, from `logits: [k, V]` read at `marks != -100` (row-major; one mark per essence row)."""
    read = marks != -100
    row_of = torch.nonzero(read)[:, 0]  # [k]
    scored = ~is_essence[row_of]  # [k]: answer tokens of the rewrite rows
    token_nll = nn.functional.cross_entropy(logits[scored].float(), marks[read][scored], reduction="none")
    answer_tokens = (rows.batch.labels != -100).sum(1).clamp(min=1)  # [b]
    per_row = torch.zeros(len(marks), device=logits.device).index_add(0, row_of[scored], token_nll) / answer_tokens
    rewrite = ~is_essence
    nll = torch.zeros(m, device=logits.device).index_add(0, rows.owner[rewrite], per_row[rewrite])
    contexts_per = torch.bincount(rows.owner[rewrite], minlength=m).clamp(min=1)
    at_subject = logits[~scored].float()  # [a, V]: one per essence row, in row order
    return nll / contexts_per, at_subject.log_softmax(-1), rows.owner[row_of[~scored]]
