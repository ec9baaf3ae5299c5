"""Tiny random-config models and in-memory tasks for fast, offline tests.

`char_tokenizer()` is a character-level tokenizer built in memory (no hub). `tiny_causal(arch)`
returns a seeded random GPT-2 (`Conv1D`), GPT-J or Llama model. `TinyCausalTask` wraps such a
model in the real `CausalLMTask` machinery with synthetic requests.
"""
from __future__ import annotations

import string

import torch
from torch import nn

from editbench.api import EditRequest, TaskConfig
from editbench.tasks.common.causal import CausalLMTask
from editbench.tasks.common.layers import modules_for
from editbench.tasks.common.sampling import sample

LAYERS = 4


def char_tokenizer():
    from tokenizers import Regex, Tokenizer, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {"<pad>": 0, "<eos>": 1, "<unk>": 2}
    for c in string.printable[:95]:
        vocab.setdefault(c, len(vocab))
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Split(pattern=Regex("."), behavior="isolated")
    return PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<pad>", eos_token="<eos>", unk_token="<unk>")


def tiny_causal(arch: str, seed: int = 0, dtype: torch.dtype = torch.float32) -> nn.Module:
    """A 4-block random causal LM of family `arch` ('gpt2', 'gptj' or 'llama'), vocab 98, width 32."""
    import transformers as tf

    torch.manual_seed(seed)
    if arch == "gpt2":
        config = tf.GPT2Config(vocab_size=98, n_positions=128, n_embd=32, n_layer=LAYERS, n_head=4,
                               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=1)
        model = tf.GPT2LMHeadModel(config)
    elif arch == "gptj":
        config = tf.GPTJConfig(vocab_size=98, n_positions=128, n_embd=32, n_layer=LAYERS, n_head=4, rotary_dim=4,
                               resid_pdrop=0.0, embd_pdrop=0.0, attn_pdrop=0.0, bos_token_id=1, eos_token_id=1)
        model = tf.GPTJForCausalLM(config)
    elif arch == "llama":
        config = tf.LlamaConfig(vocab_size=98, hidden_size=32, intermediate_size=64, num_hidden_layers=LAYERS,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=128,
                                bos_token_id=1, eos_token_id=1, pad_token_id=0)
        model = tf.LlamaForCausalLM(config)
    else:
        raise ValueError(arch)
    return model.to(dtype).eval()


def synthetic_requests(count: int, seed: int = 0) -> list[EditRequest]:
    """Made-up facts: 'Where does <name> live?' -> '<city>', with a rephrase and an unrelated tuple."""
    g = torch.Generator().manual_seed(seed)
    letters = string.ascii_lowercase

    def word(n: int) -> str:
        return "".join(letters[i] for i in torch.randint(0, 26, (n,), generator=g).tolist())

    out = []
    for i in range(count):
        name, city, other, ans = word(5).title(), word(4), word(6), word(3)
        out.append(EditRequest(
            id=f"syn-{i}", prompt=f"Where does {name} live?", target=city,
            equivalents=(f"{name} lives in which town?",), unrelated=((f"What is {other}?", ans),), subject=name,
        ))
    return out


class TinyCausalTask(CausalLMTask):
    """A real `CausalLMTask` around a tiny random model and synthetic requests."""

    name = "tiny-causal"
    description = "tiny random causal LM with synthetic facts (tests only)"

    def __init__(self, arch: str = "gpt2", model: nn.Module | None = None, splits: dict[str, int] | None = None,
                 config: TaskConfig | None = None):
        super().__init__(config or TaskConfig(batch_size=8))
        self.arch = arch
        self.model = model
        self.tokenizer = char_tokenizer()
        sizes = splits or {"train": 64, "valid": 16, "eval": 32}
        pool = synthetic_requests(sum(sizes.values()))
        self._splits, start = {}, 0
        for split, size in sizes.items():
            self._splits[split] = pool[start:start + size]
            start += size

    def load_model(self, device: str = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
        if self.model is None:
            self.model = tiny_causal(self.arch, dtype=dtype)
        return self.model.to(device)

    def edit_modules(self, role: str) -> list[str]:
        return modules_for(self.arch, LAYERS, role, memit_layers=(1, 2))

    def split_size(self, split: str) -> int:
        return len(self._splits[split])

    def requests(self, split: str, count: int, seed: int) -> list[EditRequest]:
        return sample(self._splits[split], count, seed)
