"""WikiText-2 perplexity of a causal LM: a side-effect measure of an edit (scored before and after).

The sample is fixed and documented: the first `tokens` tokens of WikiText-2's `test.txt` (the file's
text as it is, tokenised without special tokens), cut into consecutive non-overlapping windows of
`min(512, the model's context)` tokens. Each window is scored on its own (its first token is context
only), and the perplexity is `exp(total NLL / predicted tokens)` over all windows. `tokens = 0`
disables it (the task option `ppl_tokens`).
"""
from __future__ import annotations

from dataclasses import Field, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from editbench.config import non_negative
from editbench.data import DataFile, resolve

WIKITEXT2_TEST = DataFile(
    path="wikitext-2/test.txt",
    sha256="d790b833ef8cf03a90db7bf1271b7520b83c45ce07ba3c1a9699df81e239eca0",
    url="https://raw.githubusercontent.com/pytorch/examples/main/word_language_model/data/wikitext-2/test.txt",
    license="CC BY-SA 3.0",
)
MAX_WINDOW = 512
DEFAULT_TOKENS = 512  # one window: 2-6 s per scoring of SmolLM2-135M on CPU (2 idle cores; 1 busy thread)


def ppl_tokens_field() -> Field:
    """The `ppl_tokens` config field of causal-LM tasks (a new `Field` per config class)."""
    return field(default=DEFAULT_TOKENS, metadata={
        "help": "WikiText-2 test tokens scored for perplexity before and after the edit (0 = no perplexity)",
        "check": non_negative})


def first_tokens(tokenizer: Any, text: str, count: int) -> list[int]:
    """The first `count` token ids of `text` (fewer when the text is shorter), tokenising a growing
    prefix rather than the whole text. The prefix ends before a space, so no word is cut (a cut word
    would tokenise differently at the prefix's end)."""
    chars = 8 * count + 64
    while True:
        if chars >= len(text):
            return tokenizer(text, add_special_tokens=False)["input_ids"][:count]
        cut = text.rfind(" ", 0, chars)
        ids = tokenizer(text[:cut if cut > 0 else chars], add_special_tokens=False)["input_ids"]
        if len(ids) > count:
            return ids[:count]
        chars *= 2


def context_length(model: nn.Module) -> int:
    """Positions the model accepts (its config's `max_position_embeddings` / `n_positions`), capped at 512."""
    config = getattr(model, "config", None)
    limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None) or MAX_WINDOW
    return min(MAX_WINDOW, int(limit))


@torch.no_grad()
def perplexity(model: nn.Module, ids: list[int], window: int) -> float:
    """exp(mean NLL) of `ids` scored in consecutive windows of `window` tokens (see the module doc)."""
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    total, predicted = 0.0, 0
    for start in range(0, len(ids), window):
        chunk = torch.tensor(ids[start:start + window], device=device)[None]  # [1, w]
        if chunk.shape[1] < 2:
            continue
        logits = model(input_ids=chunk).logits[0, :-1].float()  # [w-1, V]: position t predicts token t+1
        total += float(nn.functional.cross_entropy(logits, chunk[0, 1:], reduction="sum"))
        predicted += chunk.shape[1] - 1
    model.train(was_training)
    return float(torch.tensor(total / predicted).exp()) if predicted else float("nan")


def wikitext_perplexity(model: nn.Module, tokenizer: Any, tokens: int,
                        data_dir: str | Path | None = None) -> tuple[float, Path]:
    """(perplexity of the first `tokens` tokens of WikiText-2 test, the data file used)."""
    path = resolve(WIKITEXT2_TEST, data_dir)
    ids = first_tokens(tokenizer, path.read_text(encoding="utf-8"), tokens)
    return perplexity(model, ids, context_length(model)), path
