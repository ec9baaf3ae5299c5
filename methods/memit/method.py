"""MEMIT: mass-editing memory in a transformer (Meng et al. 2023), as an editbench method.

1. `prepare`: key covariances C of every edited module from a text corpus (one pass, cached).
2. `edit`: target values z_i at the output of the last edited block (`targets.py`), then for each
   edited layer l, earliest first, with the updates of the layers before it already applied:
   keys K (module input at the subject's last token, averaged within each kind of context and then
   across kinds, as the reference's `compute_ks`: bare prompt 1/2, prefixed prompts 1/2), residuals
   R = (z − h_L) / (layers left), and Δ_l = R Kᵀ (λ C + K Kᵀ)⁻¹ (Eq. 14, `update.py`).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from editbench.api import EditRequest, EditResult, Method, Task
from editbench.config import validate
from editbench.data import user_cache
from editbench.errors import EditbenchError
from editbench.guard import check_finite
from editbench.methods.memit.config import MemitConfig
from editbench.methods.memit.corpus import load_texts
from editbench.methods.memit.locate import (block_of, context_weights, contexts, read_at_subjects, require_subjects, tokenise,
                                           weighted_sum_by_owner)
from editbench.methods.memit.stats import CovarianceCache, compute_covariances, weights_read_before
from editbench.methods.memit.targets import optimise_targets, split_kl_prompt
from editbench.methods.memit.update import memit_update
from editbench.modules import add_to_weight, get_module
from editbench.prefix import PrefixCache
from editbench.provenance import model_fingerprint

log = logging.getLogger(__name__)

DTYPES = {"float32": torch.float32, "float64": torch.float64, "bfloat16": torch.bfloat16, "float16": torch.float16}


def dtype_named(name: str, what: str) -> torch.dtype:
    if name not in DTYPES:
        raise EditbenchError(f"{what} {name!r} is not one of {', '.join(DTYPES)}")
    return DTYPES[name]


class Memit(Method):
    name = "memit"
    description = "MEMIT (Meng et al. 2023): z optimisation + least-squares update spread over several FFN layers"
    Config = MemitConfig
    role = "memit"

    def __init__(self, config: Any = None):
        super().__init__(config)
        validate(self.config, f"method {self.name}")  # the fields' range checks, also for a config built in code
        split_kl_prompt(self.config.kl_prompt)
        self._covariances: dict[str, torch.Tensor] = {}

    # -- statistics ----------------------------------------------------------------------------
    def prepare(self, task: Task, model: nn.Module, cache_dir: Path) -> dict[str, Any]:
        """Load or compute (one pass for all missing layers) the key covariances of the edited modules.

        They depend on the model, corpus and sample count only, not on the other MEMIT settings, so
        they are cached under `stats_dir` (default: the user cache) rather than the per-config
        `cache_dir`, and shared by every MEMIT configuration.
        """
        _refuse_encoder_decoder(task, model)
        cfg = self.config
        names = self.modules(task, model)
        root = Path(cfg.stats_dir).expanduser() if cfg.stats_dir else user_cache() / "statistics"
        # Keyed by the weights below the last edited module only: the upper blocks are never read.
        fingerprint = model_fingerprint(model, names=weights_read_before(model, task.tokenizer, names))
        cache = CovarianceCache(root, fingerprint, cfg.stats_corpus, cfg.stats_samples, cfg.stats_max_length,
                                cfg.stats_dtype)
        unreadable = cache.missing(names)
        # A corrupt file is removed (with a warning) by `load` and recomputed with the missing ones.
        loaded = {name: cache.load(name) for name in names if name not in unreadable}
        missing = [name for name in names if loaded.get(name) is None]
        info: dict[str, Any] = {"stats_cache": str(cache.folder), "stats_computed": missing}
        if missing:
            texts, source = load_texts(cfg.stats_corpus, cfg.stats_samples, task.data_dir)
            covariances, measured = compute_covariances(model, task.tokenizer, missing, texts, cfg.stats_max_length,
                                                        cfg.stats_batch_tokens, dtype_named(cfg.stats_dtype, "stats_dtype"))
            for name in missing:
                check_finite(covariances[name], "statistics", "memit statistics", layer=name,
                             hint="use stats_dtype=float32 or float64")
                cache.store(name, covariances[name], {**measured, "source": source})
                loaded[name] = covariances[name].cpu()  # what `load` would read back
            info["stats"] = {**measured, "source": source}
        self._covariances = {name: loaded[name] for name in names}
        # The statistics are the one-off cost; a reuse reports what they cost from their provenance.
        info.update(reused=not missing, one_off_seconds=cache.build_seconds(names))
        return info

    # -- editing -------------------------------------------------------------------------------
    def edit(self, task: Task, model: nn.Module, requests: Sequence[EditRequest]) -> EditResult:
        cfg = self.config
        _refuse_encoder_decoder(task, model)
        require_subjects(requests)
        names = self.modules(task, model)
        if any(n not in self._covariances for n in names):
            self.prepare(task, model, user_cache())
        block = block_of(names[-1])
        device = next(model.parameters()).device
        m = len(requests)

        start = time.perf_counter()
        z, z0, stats = optimise_targets(task, model, requests, block, cfg)  # [m, d] each
        stats["z_seconds"] = time.perf_counter() - start
        if stats["z_unconverged"]:
            log.warning(f"memit: the target optimisation of {stats['z_unconverged']} of {m} requests did not "
                        f"reach stop_loss {cfg.stop_loss} in {cfg.steps} steps (mean final loss {stats['z_loss_after']:.3g}, "
                        f"target NLL {stats['z_nll_before']:.3g} -> {stats['z_nll_after']:.3g}); their edits may not take: "
                        f"consider more steps, a larger lr or clamp_norm_factor")

        start = time.perf_counter()
        rows = [(i, prompt, r.target, r.subject) for i, r in enumerate(requests) for prompt in contexts(r, cfg.prefixes)]
        prompts = tokenise(task, rows)
        bare = torch.arange(0, len(rows), 1 + len(cfg.prefixes))  # first context of each request
        weight = context_weights(len(cfg.prefixes)).repeat(m)  # [rows]: the weight of each context in its key
        deltas = {}
        # The blocks below the first edited one never change: their states are computed once (PrefixCache).
        with torch.no_grad(), PrefixCache(model, names).active():
            for i, name in enumerate(names):
                found = read_at_subjects(model, prompts, inputs_of=[name], outputs_of=[block], batch_size=cfg.batch_size)
                keys = weighted_sum_by_owner(found[name], prompts.owner, weight, m)  # [m, d_in]: two-level average
                current = found[block][bare].to(device)  # [m, d]
                # Spread what is still missing at layer L evenly over the layers left (reference: resid / (L − i)).
                residuals = (z - current) / (len(names) - i)  # [m, d]
                delta = memit_update(keys.to(device).T, residuals.T, self._covariances[name], cfg.update_weight,
                                     dtype_named(cfg.solve_dtype, "solve_dtype"))  # [d_out, d_in]
                check_finite(delta, "solved delta", "memit update", layer=name,
                             hint="raise update_weight or use solve_dtype=float64")
                add_to_weight(get_module(model, name), delta)
                deltas[name] = delta.float()
                if i == 0:
                    stats["residual_norm_before"] = float((z - current).norm(dim=1).mean())
            after = read_at_subjects(model, prompts.select(bare), outputs_of=[block], batch_size=cfg.batch_size)[block]
        stats["residual_norm_after"] = float((z - after.to(device)).norm(dim=1).mean())
        stats["target_shift_norm"] = float((z - z0).norm(dim=1).mean())
        stats["update_seconds"] = time.perf_counter() - start
        return EditResult(deltas=deltas, stats=stats)


def _refuse_encoder_decoder(task: Task, model: nn.Module) -> None:
    config = getattr(model, "config", None)
    if getattr(config, "is_encoder_decoder", False):
        raise EditbenchError(f"MEMIT edits decoder-only language models; task {task.name!r} uses an encoder-decoder model")
