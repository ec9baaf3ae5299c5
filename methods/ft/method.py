"""Fine-tune the weights of the task's `ft` modules on the m edit tuples at once, nothing else."""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn
from tqdm.auto import tqdm

from editbench.api import EditRequest, EditResult, Method, Task
from editbench.guard import check_finite
from editbench.methods.ft.config import FineTuneConfig
from editbench.modules import get_module, snapshot, weight_of


class FineTune(Method):
    name = "ft"
    description = "fine-tuning baseline: AdamW on the FFN weights of the edit tuples (paper A.5)"
    Config = FineTuneConfig
    role = "ft"
    follows_run = {"seed": "seed"}

    def edit(self, task: Task, model: nn.Module, requests: Sequence[EditRequest]) -> EditResult:
        cfg = self.config
        names = self.modules(task, model)
        before = snapshot(model, names)
        params = [get_module(model, n).weight for n in names]
        frozen = [p for p in model.parameters() if p.requires_grad]
        for p in frozen:
            p.requires_grad_(False)
        for p in params:
            p.requires_grad_(True)
        optimizer = torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
        pairs = [(r.prompt, r.target) for r in requests]
        device = next(model.parameters()).device
        generator = torch.Generator().manual_seed(cfg.seed)
        was_training = model.training
        model.eval()  # no dropout: the edit is deterministic
        hint = "lower lr (or use float32)"
        step = 0
        try:
            for epoch in tqdm(range(1, cfg.epochs + 1), desc="ft epochs", leave=False, disable=None):
                order = torch.randperm(len(pairs), generator=generator).tolist()
                for start in range(0, len(order), cfg.batch_size):
                    step += 1
                    batch = task.batch([pairs[i] for i in order[start:start + cfg.batch_size]]).to(device)
                    optimizer.zero_grad(set_to_none=True)
                    loss = task.nll(model, batch)
                    check_finite(loss.detach(), "loss", "ft", step=f"{step} (epoch {epoch})", hint=hint)
                    loss.backward()
                    optimizer.step()
                    for name, param in zip(names, params):
                        check_finite(param.detach(), "weights", "ft", layer=name, step=f"{step} (epoch {epoch})",
                                     hint=hint)
        finally:
            for p in params:
                p.requires_grad_(False)
                p.grad = None
            for p in frozen:
                p.requires_grad_(True)
            model.train(was_training)
        deltas = {n: weight_of(get_module(model, n)).detach() - before[n] for n in names}
        return EditResult(deltas=deltas)
