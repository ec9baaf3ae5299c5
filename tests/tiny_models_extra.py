"""Tiny random-config T5 and BERT models (offline), and fake models whose argmax we control.

`tiny_t5(layers)` is a T5 v1.1 (gated FFN) over the char tokenizer of `tests/tiny.py`;
`tiny_bert(layers)` a `BertModel` without pooler. `ShiftCausalLM`, `ShiftSeq2Seq` and
`KeywordClassifier` return logits whose argmax is a known function of the input, so metrics can
be computed by hand.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
from torch import Tensor, nn

VOCAB = 98  # size of tests/tiny.py's char tokenizer; id 0 = <pad>, 1 = <eos>


def tiny_t5(layers: int = 2, seed: int = 0) -> nn.Module:
    import transformers as tf

    torch.manual_seed(seed)
    config = tf.T5Config(vocab_size=VOCAB, d_model=16, d_kv=4, d_ff=32, num_layers=layers, num_decoder_layers=layers,
                         num_heads=2, feed_forward_proj="gated-gelu", dropout_rate=0.0, pad_token_id=0,
                         eos_token_id=1, decoder_start_token_id=0, tie_word_embeddings=False)
    return tf.T5ForConditionalGeneration(config).eval()


def tiny_bert(layers: int = 2, seed: int = 0) -> nn.Module:
    import transformers as tf

    torch.manual_seed(seed)
    config = tf.BertConfig(vocab_size=VOCAB, hidden_size=16, num_hidden_layers=layers, num_attention_heads=2,
                           intermediate_size=32, max_position_embeddings=128, hidden_dropout_prob=0.0,
                           attention_probs_dropout_prob=0.0, pad_token_id=0)
    return tf.BertModel(config, add_pooling_layer=False).eval()


def tiny_gptj_deep(layers: int, seed: int = 0) -> nn.Module:
    """A GPT-J of `layers` blocks (GPT-J 6B's depth is 28) and width 16."""
    import transformers as tf

    torch.manual_seed(seed)
    config = tf.GPTJConfig(vocab_size=VOCAB, n_positions=64, n_embd=16, n_layer=layers, n_head=2, rotary_dim=4)
    return tf.GPTJForCausalLM(config).eval()


def tiny_gpt2_deep(layers: int, seed: int = 0) -> nn.Module:
    import transformers as tf

    torch.manual_seed(seed)
    return tf.GPT2LMHeadModel(tf.GPT2Config(vocab_size=VOCAB, n_positions=64, n_embd=16, n_layer=layers, n_head=2)).eval()


def tiny_llama_deep(layers: int, seed: int = 0) -> nn.Module:
    import transformers as tf

    torch.manual_seed(seed)
    config = tf.LlamaConfig(vocab_size=VOCAB, hidden_size=16, intermediate_size=32, num_hidden_layers=layers,
                            num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=64)
    return tf.LlamaForCausalLM(config).eval()


def one_hot_logits(ids: Tensor) -> Tensor:
    """`[..., V]` logits whose argmax is `ids` (mod V)."""
    return nn.functional.one_hot(ids % VOCAB, VOCAB).float() * 10.0


class ShiftCausalLM(nn.Module):
    """Causal LM predicting `next token = current token id + 1 (mod V)` at every position."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids: Tensor, attention_mask: Tensor | None = None) -> SimpleNamespace:
        return SimpleNamespace(logits=one_hot_logits(input_ids + 1) + self.dummy)


class ShiftSeq2Seq(nn.Module):
    """Encoder-decoder predicting `decoder input id + 1` at each decoder position (start id 0)."""

    def __init__(self):
        super().__init__()
        self.dummy = nn.Parameter(torch.zeros(1))

    def _shift_right(self, labels: Tensor) -> Tensor:
        shifted = torch.zeros_like(labels)
        shifted[:, 1:] = labels[:, :-1]
        return shifted.masked_fill(shifted == -100, 0)

    def forward(self, input_ids, attention_mask, decoder_input_ids, decoder_attention_mask=None) -> SimpleNamespace:
        return SimpleNamespace(logits=one_hot_logits(decoder_input_ids + 1) + self.dummy)


class KeywordClassifier(nn.Module):
    """Binary classifier: label 1 (SUPPORTS) when the claim's ids contain the char 'T', else 0."""

    def __init__(self, keyword_id: int):
        super().__init__()
        self.keyword_id = keyword_id
        self.dummy = nn.Parameter(torch.zeros(1))

    def forward(self, input_ids, attention_mask, token_type_ids=None) -> SimpleNamespace:
        has = ((input_ids == self.keyword_id) & attention_mask.bool()).any(-1).long()  # [b]
        return SimpleNamespace(logits=nn.functional.one_hot(has, 2).float() + self.dummy)


class CharTaskMixin:
    """A test task over the char tokenizer, with no data and no model of its own (mix in first)."""

    name, description = "char-task", "tests only"

    def __init__(self):
        from editbench.api import TaskConfig
        from tiny import char_tokenizer

        super().__init__(TaskConfig(batch_size=4))
        self.tokenizer = char_tokenizer()

    def load_model(self, device="cpu", dtype=torch.float32):
        raise AssertionError("tests pass their models explicitly")

    def edit_modules(self, role):
        return []

    def split_size(self, split):
        return 0

    def requests(self, split, count, seed):
        return []
