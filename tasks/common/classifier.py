"""Claim classifiers (FEVER): a BERT encoder with a linear head on the first token (Appendix A.4).

The head maps the final hidden state of the first token ([CLS], the paper's "BOS") to one logit
per label. A batch carries one label per claim: `labels: [b, 1]`, and `logits: [b, 1, n_labels]`,
so the teacher-forced machinery of the LMs (argmax at the labelled positions, cross-entropy)
applies unchanged. The module names under `bert.` match `layers.ARCHITECTURES["bert"]`.

Preparation (A.4): the whole model is fine-tuned with Adam (lr 3e-5, 2 epochs) on a preparation
split, then saved as safetensors in a folder written atomically (staging folder + rename) with a
manifest of checksums, verified on every load.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import Tensor, nn

from editbench.api import Batch, EditRequest, RequestOutcome, Task
from editbench.errors import EditbenchError
from editbench.files import atomic_folder, verify_folder
from editbench.tasks.common.scoring import evaluate_requests

PREPARED_WEIGHTS = "model.safetensors"
PREPARED_INFO = "prepare.json"


@dataclass
class ClassifierOutput:
    logits: Tensor  # [b, n_labels]


class FirstTokenClassifier(nn.Module):
    """`bert` (a transformers `BertModel` without pooler) and `head`: Linear(hidden, n_labels) on token 0."""

    def __init__(self, bert: nn.Module, n_labels: int):
        super().__init__()
        self.bert = bert
        self.head = nn.Linear(bert.config.hidden_size, n_labels)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, token_type_ids: Tensor | None = None) -> ClassifierOutput:
        hidden = self.bert(input_ids=input_ids, attention_mask=attention_mask,
                           token_type_ids=token_type_ids).last_hidden_state  # [b, t, h]
        return ClassifierOutput(self.head(hidden[:, 0]))  # [b, n_labels]


class ClassifierTask(Task):
    """Task mix-in for claim classifiers; subclasses set `label_names` and `self.tokenizer`."""

    generative = False
    label_names: tuple[str, ...] = ()
    max_length: int = 128

    def label_id(self, answer: str) -> int:
        try:
            return self.label_names.index(answer.strip())
        except ValueError:
            raise EditbenchError(f"answer {answer!r} is not a label of {self.name} ({', '.join(self.label_names)})") from None

    def batch(self, pairs: Sequence[tuple[str, str]]) -> Batch:
        """inputs `[b, t]` (ids, attention, token types); labels `[b, 1]`: the label id of each answer."""
        encoded = self.tokenizer([p for p, _ in pairs], padding=True, truncation=True, max_length=self.max_length,
                                 return_tensors="pt")
        inputs = {k: encoded[k] for k in ("input_ids", "attention_mask", "token_type_ids") if k in encoded}
        labels = torch.tensor([[self.label_id(a)] for _, a in pairs], dtype=torch.long)  # [b, 1]
        return Batch(inputs, labels)

    def logits(self, model: nn.Module, batch: Batch) -> Tensor:
        return model(**batch.inputs).logits[:, None, :]  # [b, 1, n_labels]

    def key_mask(self, batch: Batch, module: str, answer_only: bool = True) -> Tensor:
        """`[b, t]`: the first token (it outputs the label) or, with answer_only=False, every real token."""
        real = batch.inputs["attention_mask"].bool()
        if not answer_only:
            return real
        first = torch.zeros_like(real)
        first[:, 0] = True
        return first

    def evaluate(self, model: nn.Module, requests: Sequence[EditRequest]) -> list[RequestOutcome]:
        return evaluate_requests(self, model, requests, self.config.batch_size)


def finetune(task: ClassifierTask, model: nn.Module, pairs: Sequence[tuple[str, str]], lr: float, epochs: int,
             batch_size: int, seed: int, device: str) -> list[float]:
    """Adam on every parameter over `pairs` (claim, label) for `epochs`; returns the mean loss per epoch."""
    from tqdm.auto import tqdm

    model.to(device).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    generator = torch.Generator().manual_seed(seed)
    losses = []
    for epoch in range(epochs):
        order = torch.randperm(len(pairs), generator=generator).tolist()
        total, steps = 0.0, 0
        for start in tqdm(range(0, len(order), batch_size), desc=f"prepare epoch {epoch + 1}/{epochs}",
                          leave=False, disable=None):
            batch = task.batch([pairs[i] for i in order[start:start + batch_size]]).to(device)
            optimizer.zero_grad(set_to_none=True)
            loss = task.nll(model, batch)
            loss.backward()
            optimizer.step()
            total, steps = total + loss.item(), steps + 1
        losses.append(total / max(steps, 1))
    model.eval()
    return losses


def save_prepared(folder: Path, model: FirstTokenClassifier, tokenizer: Any, info: dict[str, Any]) -> None:
    """Write config, tokenizer, weights (safetensors) and `info` into `folder` atomically."""
    from safetensors.torch import save_file

    with atomic_folder(folder) as staging:
        model.bert.config.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        state = {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}
        save_file(state, str(staging / PREPARED_WEIGHTS))
        (staging / PREPARED_INFO).write_text(json.dumps(info, indent=1, sort_keys=True) + "\n")


def is_prepared(folder: Path) -> bool:
    return (folder / PREPARED_INFO).is_file() and (folder / PREPARED_WEIGHTS).is_file()


def load_prepared(folder: Path, n_labels: int, device: str, dtype: torch.dtype) -> tuple[FirstTokenClassifier, Any]:
    """The classifier and tokenizer saved by `save_prepared`, in eval mode; `CorruptArtifact` when a
    file no longer matches the folder's manifest."""
    from safetensors.torch import load_file
    from transformers import AutoTokenizer, BertConfig, BertModel

    verify_folder(folder)
    bert = BertModel(BertConfig.from_pretrained(folder), add_pooling_layer=False)
    model = FirstTokenClassifier(bert, n_labels)
    model.load_state_dict(load_file(str(folder / PREPARED_WEIGHTS)))
    return model.to(device=device, dtype=dtype).eval(), AutoTokenizer.from_pretrained(folder)
