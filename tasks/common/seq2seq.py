"""Encoder-decoder LMs (T5): the prompt goes to the encoder, the answer is teacher-forced in the decoder.

Labels are the answer's token ids without the closing `</s>` (only answer tokens are scored), and
the model shifts them right itself to build the decoder input, so `logits[:, t]` predicts
`labels[:, t]`: the logits are aligned with the labels as they come out of the model.

Key masks (which module inputs are cached as keys):
- decoder modules: the positions that carry a label (they output the answer), or with
  `answer_only=False` every real decoder position (the same set: the decoder sees only the answer);
- encoder modules: every real encoder token, in both modes. The encoder never outputs an answer
  token; each of its tokens reaches the answer through cross-attention, so all of them are the
  keys of the fact (the choice of the official MALMEN code, which caches the attended tokens).
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn

from editbench.api import Batch, EditRequest, RequestOutcome, Task
from editbench.tasks.common.scoring import evaluate_requests


class Seq2SeqTask(Task):
    """Task mix-in for encoder-decoder LMs; `self.tokenizer` must be set by `load_model`."""

    max_length: int = 128
    max_answer_length: int = 32

    def batch(self, pairs: Sequence[tuple[str, str]]) -> Batch:
        """inputs: `input_ids`, `attention_mask` `[b, t_enc]`; labels `[b, t_dec]` (-100 = padding)."""
        tok = self.tokenizer
        prompts = tok([p for p, _ in pairs], padding=True, truncation=True, max_length=self.max_length,
                      return_tensors="pt")
        answers = [tok(a.strip(), add_special_tokens=False)["input_ids"][: self.max_answer_length] for _, a in pairs]
        width = max(1, max(map(len, answers)))
        labels = torch.full((len(pairs), width), -100, dtype=torch.long)
        for i, ids in enumerate(answers):
            labels[i, : len(ids)] = torch.tensor(ids, dtype=torch.long)
        return Batch({"input_ids": prompts["input_ids"], "attention_mask": prompts["attention_mask"]}, labels)

    def decoder_input_ids(self, model: nn.Module, labels: Tensor) -> Tensor:
        """`[b, t_dec]`: start token, then the labels shifted right (padding for -100)."""
        return model._shift_right(labels)

    def logits(self, model: nn.Module, batch: Batch) -> Tensor:
        """`[b, t_dec, V]`, position t predicting `batch.labels[:, t]`."""
        decoder_inputs = self.decoder_input_ids(model, batch.labels)
        decoder_mask = (batch.labels != -100).long()
        decoder_mask[:, 0] = 1  # the start token is always attended
        return model(**batch.inputs, decoder_input_ids=decoder_inputs, decoder_attention_mask=decoder_mask).logits

    def key_mask(self, batch: Batch, module: str, answer_only: bool = True) -> Tensor:
        """`[b, t_enc]` for encoder modules, `[b, t_dec]` for decoder modules (see the module docstring)."""
        if module.startswith("encoder."):
            return batch.inputs["attention_mask"].bool()
        return batch.labels != -100

    def evaluate(self, model: nn.Module, requests: Sequence[EditRequest]) -> list[RequestOutcome]:
        return evaluate_requests(self, model, requests, self.config.batch_size)
