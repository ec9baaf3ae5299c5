"""MEMIT hyper-parameters: the published GPT-J setting (Meng et al. 2023; reference `EleutherAI_gpt-j-6B.json`).

The edited layers come from `task.edit_modules("memit")` unless `layers` is set (GPT-J
blocks 3-8 as published; the loss layer is the last of them, as in the paper's Sec. 4.3).
"""
from __future__ import annotations

from dataclasses import dataclass, field

from editbench.api import MethodConfig
from editbench.config import count, non_negative, one_of, positive

STATS_DTYPES = ("float32", "float64", "bfloat16", "float16")
SOLVE_DTYPES = ("float32", "float64")  # torch.linalg.solve has no half-precision kernels

# Context prefixes of the z optimisation and the keys, each used as "{prefix}. {prompt}" (the
# reference's template). How they differ from the reference (`get_context_templates`): the reference
# samples them once per process from the model being edited (`generate_fast`, top-k 5, unseeded), one
# continuation of each of "The", "Therefore", "Because", "I", "You", 10 tokens long with the seed word
# included, with "{" and "}" replaced by spaces; they differ between runs and between models. Ours
# are fixed English sentences that open with the same five words, 8-10 words and 8-10 SmolLM2 tokens
# long (before the "."), the same for every model and run, and need no generation. Edits are deterministic;
# the text is not what the model itself would write. No commas, so that `--set prefixes=a,b` can
# list others.
DEFAULT_PREFIXES = (
    "The following text is taken from a reference book",
    "Therefore it is worth repeating the facts below",
    "Because people often ask about it here is the answer",
    "I read about this in the newspaper yesterday",
    "You may already know some of these facts",
)


@dataclass
class MemitConfig(MethodConfig):
    # -- target values z (Sec. 4.3, Eq. 16) ------------------------------------------------------
    steps: int = field(default=25, metadata={"help": "forward passes of the z optimisation per request (reference GPT-J config: 25; the issue quotes 20); the last one only measures", "check": count})
    lr: float = field(default=0.5, metadata={"help": "Adam learning rate of the residual delta", "check": positive})
    weight_decay: float = field(default=0.5, metadata={"help": "weight of the reference's ||delta|| / ||z0||^2 penalty (the norm is not squared)", "check": non_negative})
    kl_factor: float = field(default=0.0625, metadata={"help": "weight of KL(p_delta || p_0) of the next token after the subject in the kl_prompt (essence drift; ROME Eq. 4)", "check": non_negative})
    clamp_norm_factor: float = field(default=0.75, metadata={"help": "||delta|| is clamped to this fraction of ||z0||", "check": positive})
    stop_loss: float = field(default=0.05, metadata={"help": "a request stops optimising once its loss is below this (reference: 5e-2)", "check": non_negative})
    prefixes: tuple[str, ...] = field(default=DEFAULT_PREFIXES, metadata={"help": "fixed context prefixes, each used as '{prefix}. {prompt}' besides the bare prompt, for z and the keys (reference: 5 sampled 10-token continuations of The/Therefore/Because/I/You; ours are fixed sentences opening with those words, see config.py)"})
    kl_prompt: str = field(default="{} is a", metadata={"help": "essence prompt of the KL term; '{}' is the subject"})
    z_batch_size: int = field(default=16, metadata={"help": "at most this many requests optimised together (see z_memory_mb)", "check": count})
    z_memory_mb: float = field(default=512.0, metadata={"help": "memory budget of one z batch (activations kept for backward, logits and their gradient), measured per padded token by a probe pass; requests are grouped to fit it (0 = z_batch_size alone decides)", "check": non_negative})
    batch_size: int = field(default=64, metadata={"help": "prompts per forward pass when reading keys and outputs", "check": count})
    # -- batch update (Eq. 14) -------------------------------------------------------------------
    update_weight: float = field(default=15000.0, metadata={"help": "lambda, the mom2 update weight multiplying the key covariance", "check": positive})
    solve_dtype: str = field(default="float64", metadata={"help": "dtype of the linear solve (reference: float64)", "check": one_of(*SOLVE_DTYPES)})
    # -- covariance statistics (Sec. 4.2) --------------------------------------------------------
    stats_corpus: str = field(default="wikitext-2", metadata={"help": "'wikitext-2' (validation split, data folder), a local text file, or a `datasets` name such as 'wikitext-103' or 'NAME:CONFIG'"})
    stats_samples: int = field(default=1000, metadata={"help": "texts read from the corpus (paper: 100,000 Wikipedia articles; WikiText-2 valid has 1,841 paragraphs)", "check": count})
    stats_max_length: int = field(default=512, metadata={"help": "tokens kept per text", "check": count})
    stats_batch_tokens: int = field(default=512, metadata={"help": "padded tokens per forward pass of the statistics (512: SmolLM2, 100 texts x 6 layers, the pass peaks 15 MiB lower than with 1024 and pads 2.7% instead of 5.9%, same CPU time)", "check": count})
    stats_dir: str = field(default="", metadata={"help": "folder of the cached covariances ('' = <editbench cache>/statistics, shared by every MEMIT config)"})
    stats_dtype: str = field(default="float32", metadata={"help": "dtype of the keys, their products and the stored covariance (reference: float32); sums are kept in float64 (upper block triangle)", "check": one_of(*STATS_DTYPES)})
