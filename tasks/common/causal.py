"""Causal language models (GPT-2, GPT-J, Llama/SmolLM2): teacher forcing of a formatted (prompt, answer).

The format (`editbench.tasks.common.formats`) is the task config's `prompt_format` when it has one,
else `raw` (`prompt + " " + answer`, MALMEN's format, kept by the GPT-2 / GPT-J paper tasks).
A task whose config has `ppl_tokens` (`tasks.common.perplexity.ppl_tokens_field`) also reports the
WikiText-2 perplexity `ppl` before and after the edit (`extra_metrics`).
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from editbench.api import Batch, EditRequest, RequestOutcome, Task
from editbench.tasks.common import formats
from editbench.tasks.common.scoring import evaluate_requests


class CausalLMTask(Task):
    """Task mix-in for decoder-only LMs.

    The answer follows the formatted prompt (`prompt_format`). Logits are shifted so that position
    t holds the prediction of token t+1: `labels: [b, T-1]` are the answer ids at the positions that
    output them, which are exactly the key positions cached by MALMEN ("tokens that output the answer").
    """

    max_length: int = 128

    def __init__(self, config: Any = None, data_dir: Any = None):
        super().__init__(config, data_dir)
        formats.check_format(self.prompt_format)  # a bad `--set prompt_format=` fails at once

    @property
    def prompt_format(self) -> str:
        return formats.check_format(getattr(self.config, "prompt_format", "raw"))

    def _context_ids(self, context: str) -> list[int]:
        special = formats.special_tokens_in_context(self.prompt_format)
        return self.tokenizer(context, add_special_tokens=special)["input_ids"]

    def batch(self, pairs: Sequence[tuple[str, str]]) -> Batch:
        tok, style = self.tokenizer, self.prompt_format
        rows, answer_starts = [], []
        for prompt, answer in pairs:
            prompt_ids = self._context_ids(formats.context_text(tok, style, prompt))
            answer_ids = tok(formats.answer_text(tok, style, answer), add_special_tokens=False)["input_ids"]
            ids = (prompt_ids + answer_ids)[-self.max_length:]
            rows.append(ids)
            answer_starts.append(len(ids) - len(answer_ids))
        width = max(map(len, rows))
        pad = tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id
        input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
        attention = torch.zeros((len(rows), width), dtype=torch.long)
        labels = torch.full((len(rows), width), -100, dtype=torch.long)
        for i, (ids, start) in enumerate(zip(rows, answer_starts)):
            input_ids[i, : len(ids)] = torch.tensor(ids)
            attention[i, : len(ids)] = 1
            labels[i, start: len(ids)] = input_ids[i, start: len(ids)]
        # labels[:, t] is predicted at position t-1: drop the first column to align with logits.
        return Batch({"input_ids": input_ids, "attention_mask": attention}, labels[:, 1:])

    def logits(self, model: nn.Module, batch: Batch) -> Tensor:
        return model(**batch.inputs).logits[:, :-1]  # [b, T-1, V]

    def key_mask(self, batch: Batch, module: str, answer_only: bool = True) -> Tensor:
        if not answer_only:
            return batch.inputs["attention_mask"].bool()
        out_answer = batch.labels != -100  # [b, T-1]
        return torch.nn.functional.pad(out_answer, (0, 1), value=False)  # [b, T]

    def subject_token_index(self, prompt: str, subject: str) -> int:
        """Index of the token holding the subject's last character in the formatted context."""
        from editbench.errors import EditbenchError

        at = prompt.rfind(subject)
        if at < 0:
            raise EditbenchError(f"subject {subject!r} does not occur in prompt {prompt!r}")
        style = self.prompt_format
        context = formats.context_text(self.tokenizer, style, prompt)
        end = formats.prompt_offset(context, style, prompt) + at + len(subject)  # in characters
        if getattr(self.tokenizer, "is_fast", False):
            special = formats.special_tokens_in_context(style)
            spans = self.tokenizer(context, add_special_tokens=special, return_offsets_mapping=True)["offset_mapping"]
            return max(i for i, (first, last) in enumerate(spans) if first < end and last > first)
        return len(self._context_ids(context[:end])) - 1

    def evaluate(self, model: nn.Module, requests: Sequence[EditRequest]) -> list[RequestOutcome]:
        return evaluate_requests(self, model, requests, self.config.batch_size)

    def extra_metrics(self, model: nn.Module, requests: Sequence[EditRequest]) -> dict[str, float | None]:
        """`ppl`: WikiText-2 perplexity (`tasks.common.perplexity`) when the config's `ppl_tokens` > 0."""
        tokens = getattr(self.config, "ppl_tokens", 0)
        if not tokens:
            return {}
        from editbench.tasks.common.perplexity import WIKITEXT2_TEST, wikitext_perplexity

        value, path = wikitext_perplexity(model, self.tokenizer, tokens, self.data_dir)
        self._perplexity_files = {WIKITEXT2_TEST.path: path}  # hashed into the run's data_sha256
        return {"ppl": value}

    def data_files(self) -> dict[str, Path]:
        return {**super().data_files(), **getattr(self, "_perplexity_files", {})}

    def answer_logits(self, model: nn.Module, batch: Batch) -> Tensor:
        """`[k, V]`: the vocabulary head applied only at the k positions that output an answer token."""
        head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
        if head is None:
            return super().answer_logits(model, batch)
        outputs = torch.nn.functional.pad(batch.labels != -100, (0, 1), value=False)  # [b, T]: logits[:, :-1]

        def answer_rows(module, args):
            return (args[0][outputs],) + args[1:]  # [b, T, d] -> [k, d]

        handle = head.register_forward_pre_hook(answer_rows)
        try:
            return model(**batch.inputs).logits  # [k, V]
        finally:
            handle.remove()


def prepare_tokenizer(tokenizer: Any) -> Any:
    """Right padding with a pad token (GPT-2 and GPT-J ship none: reuse EOS)."""
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "right"
    return tokenizer


class HubCausalLMTask(CausalLMTask):
    """A causal LM loaded from `--set model=PATH`, else `$env_var`, else the hub id `hub_name`."""

    hub_name: str = ""
    env_var: str = ""

    def load_model(self, device: str = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
        from transformers import AutoModelForCausalLM

        from editbench.tasks.common.hf import load_pretrained, load_tokenizer, model_source

        source = model_source(self.config.model, self.env_var, self.hub_name)
        model = load_pretrained(AutoModelForCausalLM, source, self.env_var, dtype, device)
        self.tokenizer = prepare_tokenizer(load_tokenizer(source, self.env_var))
        return model
