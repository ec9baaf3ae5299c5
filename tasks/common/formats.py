"""How a causal LM sees a (prompt, answer) tuple: the text before the answer and the answer's text.

- `raw`: `prompt + " " + answer`, MALMEN's format for GPT-2 / GPT-J (the paper tasks keep it);
- `qa`: a fixed template for a base model, `"Question: {prompt}\\nAnswer:" + " " + answer`;
- `chat`: the tokenizer's own chat template, user turn = the prompt, assistant turn = the answer
  (teacher-forced); the context ends with the assistant header (`<|im_start|>assistant\\n` for
  SmolLM2) and the answer follows it without a space. `chat-end` also puts the closing end-of-turn
  token (the tokenizer's EOS, `<|im_end|>`) into the answer, so that it is scored and edited.

The context is tokenised with the tokenizer's special tokens for `raw`/`qa` (as MALMEN does) and
without them for the chat formats (the template writes them itself); the answer never gets any.
"""
from __future__ import annotations

from typing import Any

from editbench.errors import EditbenchError

PROMPT_FORMATS = ("raw", "qa", "chat", "chat-end")
QA_TEMPLATE = "Question: {prompt}\nAnswer:"


def check_format(style: str) -> str:
    if style not in PROMPT_FORMATS:
        raise EditbenchError(f"prompt_format {style!r} is not one of {', '.join(PROMPT_FORMATS)}")
    return style


def context_text(tokenizer: Any, style: str, prompt: str) -> str:
    """The text the model reads before the answer."""
    if style == "raw":
        return prompt
    if style == "qa":
        return QA_TEMPLATE.format(prompt=prompt)
    if getattr(tokenizer, "chat_template", None) is None:
        raise EditbenchError(f"prompt_format {style!r} needs a tokenizer with a chat template; "
                             f"use 'raw' or 'qa' for a base model")
    return tokenizer.apply_chat_template([{"role": "user", "content": prompt}], add_generation_prompt=True,
                                         tokenize=False)


def answer_text(tokenizer: Any, style: str, answer: str) -> str:
    """The answer as it follows the context (its tokens are the labels)."""
    answer = answer.strip()
    if style in ("raw", "qa"):
        return " " + answer
    return answer + (tokenizer.eos_token if style == "chat-end" else "")


def special_tokens_in_context(style: str) -> bool:
    """Whether the context is tokenised with the tokenizer's special tokens (BOS where it adds one)."""
    return style in ("raw", "qa")


def prompt_offset(context: str, style: str, prompt: str) -> int:
    """Character offset of `prompt` inside `context_text(..., style, prompt)`."""
    at = context.find(prompt) if style == "qa" else context.rfind(prompt)
    if at < 0:  # a chat template that rewrites the prompt
        raise EditbenchError(f"the {style!r} context does not contain the prompt {prompt!r} verbatim")
    return at
