"""zsRE tasks per model: SmolLM2 (embedded), GPT-2, GPT-J and T5-XL (paper tier).

Each edits a question's answer (the gold `answers[0]` as in the paper, or `alt`), with GS on its
rephrase and LS on an NQ question; the data side is `ZsreTask` (`splits.py`).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from editbench.tasks.common.causal import HubCausalLMTask
from editbench.tasks.common.hf import load_pretrained, load_tokenizer, model_source
from editbench.tasks.common.gptj import GPTJTask
from editbench.tasks.common.layers import modules_for, t5_modules_for
from editbench.tasks.common.perplexity import ppl_tokens_field
from editbench.tasks.common.seq2seq import Seq2SeqTask
from editbench.tasks.common.smollm2 import SmolLM2Task, prompt_format_field
from editbench.tasks.zsre.splits import ZsreConfig, ZsreTask

__all__ = ["ZsreCausalConfig", "ZsreConfig", "ZsreGPT2", "ZsreGPTJ", "ZsreSmolLM2", "ZsreSmolLM2Config", "ZsreT5XL", "ZsreTask"]


@dataclass
class ZsreCausalConfig(ZsreConfig):
    """zsRE on a causal LM: also the WikiText-2 perplexity sample (`tasks.common.perplexity`)."""

    ppl_tokens: int = ppl_tokens_field()


@dataclass
class ZsreSmolLM2Config(ZsreCausalConfig):
    prompt_format: str = prompt_format_field()


class ZsreSmolLM2(ZsreTask, SmolLM2Task):
    """SmolLM2-135M-Instruct (Llama architecture, 30 blocks), the embedded default task.

    Facts are shown in the model's chat template (`prompt_format=chat`, the default): the question
    is the user turn and the answer the assistant turn, without the closing `<|im_end|>`.
    """

    name = "zsre-smollm2"
    Config = ZsreSmolLM2Config
    description = "zsRE QA + NQ locality on SmolLM2-135M-Instruct (embedded, CPU; 500/100/200 split)"


class ZsreGPT2(ZsreTask, HubCausalLMTask):
    """GPT-2 124M (12 blocks; `Conv1D` modules store `[d_in, d_out]`, see `editbench.modules`)."""

    Config = ZsreCausalConfig
    name = "zsre-gpt2"
    description = "zsRE QA + NQ locality on GPT-2 124M (paper, Fig. 5 / Table 1)"
    paper_tier = True
    hub_name = "gpt2"
    env_var = "EDITBENCH_GPT2"

    def edit_modules(self, role: str) -> list[str]:
        # MEMIT: blocks 2-5, our choice: the early-middle window of MEMIT's GPT-J (3-8 of 28) and
        # GPT-2 XL (13-17 of 48) scaled to 12 blocks (17-42 % depth).
        return modules_for("gpt2", 12, role, memit_layers=(2, 3, 4, 5))


class ZsreGPTJ(ZsreTask, GPTJTask):
    """GPT-J 6B: MALMEN `h.22..27.mlp.fc_out`, FT `h.21.mlp.fc_out` (A.5), MEMIT blocks 3-8."""

    Config = ZsreCausalConfig
    name = "zsre-gptj"
    description = "zsRE QA + NQ locality on GPT-J 6B (paper, Fig. 7 / Table 2)"
    paper_tier = True


class ZsreT5XL(ZsreTask, Seq2SeqTask):
    """T5-XL (2.8B, T5 v1.1 gated FFN, 24 blocks per stack) fine-tuned on NQ: question in, answer out."""

    name = "zsre-t5xl"
    description = "zsRE QA + NQ locality on T5-XL fine-tuned on NQ (google/t5-xl-ssm-nq; paper, Fig. 6)"
    paper_tier = True
    hub_name = "google/t5-xl-ssm-nq"
    env_var = "EDITBENCH_T5XL"
    num_layers = 24

    def load_model(self, device: str = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
        from transformers import AutoModelForSeq2SeqLM

        source = model_source(self.config.model, self.env_var, self.hub_name)
        model = load_pretrained(AutoModelForSeq2SeqLM, source, self.env_var, dtype, device)
        self.tokenizer = load_tokenizer(source, self.env_var)
        return model

    def edit_modules(self, role: str) -> list[str]:
        return t5_modules_for(self.num_layers, role, gated=True)
