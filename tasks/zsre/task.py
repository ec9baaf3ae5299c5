"""zsRE tasks: edit a question's answer; GS on its rephrase; LS on an NQ question.

Data: the 800 local MEND-format records split once (seed 0) into 500 / 100 / 200 for editor
training, validation and evaluation, or the paper-scale split by path (`--set train_path=...
eval_path=...`, a file or a `datasets` hub id): 1,000 records of the training file (seeded) are
held out for validation. Records without an NQ question (KILT layout) take one from NQ-open dev,
deterministically by position; `extra_unrelated` adds that many NQ-open tuples to every request.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from editbench.api import EditRequest, TaskConfig
from editbench.data import resolve
from editbench.errors import EditbenchError
from editbench.tasks.common.causal import CausalLMTask, HubCausalLMTask
from editbench.tasks.common.hf import load_pretrained, load_tokenizer, model_source
from editbench.tasks.common.layers import gptj_modules_for, modules_for, t5_modules_for
from editbench.tasks.common.nq import NQ_OPEN_DEV, load_nq
from editbench.tasks.common.records import read_records
from editbench.tasks.common.sampling import sample, split_records
from editbench.tasks.common.seq2seq import Seq2SeqTask
from editbench.tasks.common.smollm2 import SmolLM2Task
from editbench.tasks.zsre.data import TARGETS, ZSRE_800, ZsreFact, parse_fact, to_request

# The 800 local records, split once (seed 0): editor training, validation, evaluation.
EMBEDDED_SPLITS = {"train": 500, "valid": 100, "eval": 200}
PAPER_VALID = 1000


@dataclass
class ZsreConfig(TaskConfig):
    target: str = field(default="answers", metadata={"help": "edit target: 'answers' (gold, paper) or 'alt'"})
    train_path: str = field(default="", metadata={"help": "paper-scale zsRE train file or hub id ('' = local 800 records)"})
    eval_path: str = field(default="", metadata={"help": "paper-scale zsRE eval file or hub id, with train_path"})
    extra_unrelated: int = field(default=0, metadata={"help": "NQ-open tuples added to each request's unrelated tuples"})


class ZsreTask:
    """zsRE data for any model family (a mix-in placed before the model-family task class)."""

    Config = ZsreConfig
    # True for the paper tier: falling back to the 800 local records is said on stderr.
    paper_tier: bool = False

    def __init__(self, config=None, data_dir=None):
        super().__init__(config, data_dir)
        if self.config.target not in TARGETS:
            raise EditbenchError(f"target {self.config.target!r} is not one of {', '.join(TARGETS)}")
        self._splits: dict[str, list[EditRequest]] | None = None
        self._files: dict[str, Path] = {}
        self._nq: list[tuple[str, str]] | None = None

    def _nq_pairs(self) -> list[tuple[str, str]]:
        if self._nq is None:
            path = resolve(NQ_OPEN_DEV, self.data_dir)
            self._files[NQ_OPEN_DEV.path] = path
            self._nq = load_nq(path)
        return self._nq

    def _requests(self, facts: list[ZsreFact], prefix: str) -> list[EditRequest]:
        extra = self.config.extra_unrelated
        out = []
        for i, fact in enumerate(facts):
            unrelated = [fact.unrelated] if fact.unrelated else []
            wanted = extra + (0 if unrelated else 1)
            if wanted:
                nq = self._nq_pairs()
                unrelated += [nq[(i * 7919 + j * 104729) % len(nq)] for j in range(wanted)]
            out.append(to_request(f"{prefix}-{i}", fact, self.config.target, unrelated))
        return out

    def _facts(self, source: str, split: str) -> list[ZsreFact]:
        return [parse_fact(r, self.config.target) for r in read_records(source, split)]

    def _load(self) -> dict[str, list[EditRequest]]:
        if self._splits is not None:
            return self._splits
        cfg = self.config
        if cfg.train_path or cfg.eval_path:
            if not (cfg.train_path and cfg.eval_path):
                raise EditbenchError(f"{self.name}: give both train_path and eval_path (the paper-scale zsRE split)")
            train = self._requests(self._facts(cfg.train_path, "train"), "zsre-train")
            held = split_records(train, {"valid": PAPER_VALID, "train": len(train)}, seed=0)
            self._splits = {"train": held["train"], "valid": held["valid"],
                            "eval": self._requests(self._facts(cfg.eval_path, "validation"), "zsre-eval")}
            self._files.update({p: Path(p) for p in (cfg.train_path, cfg.eval_path) if Path(p).is_file()})
        else:
            if self.paper_tier:
                print(f"editbench: {self.name}: no paper-scale zsRE split given (--set train_path=FILE "
                      f"eval_path=FILE); using the embedded 800-record split (500/100/200)", file=sys.stderr)
            path = resolve(ZSRE_800, self.data_dir)
            self._files[ZSRE_800.path] = path
            requests = self._requests(self._facts(str(path), "train"), "zsre")
            self._splits = split_records(requests, EMBEDDED_SPLITS, seed=0)
        return self._splits

    def _split(self, split: str) -> list[EditRequest]:
        splits = self._load()
        if split not in splits:
            raise EditbenchError(f"unknown split {split!r}; expected one of {', '.join(splits)}")
        return splits[split]

    def split_size(self, split: str) -> int:
        return len(self._split(split))

    def requests(self, split: str, count: int, seed: int) -> list[EditRequest]:
        return sample(self._split(split), count, seed, what=f"{self.name} {split} split")

    def data_files(self) -> dict[str, Path]:
        self._load()
        return dict(self._files)


class ZsreEmbeddedTask(ZsreTask, CausalLMTask):
    """zsRE on a causal LM (kept under this name for the embedded default)."""


class ZsreSmolLM2(ZsreTask, SmolLM2Task):
    """SmolLM2-135M-Instruct (Llama architecture, 30 blocks), the embedded default task."""

    name = "zsre-smollm2"
    description = "zsRE QA + NQ locality on SmolLM2-135M-Instruct (embedded, CPU; 500/100/200 split)"


class ZsreGPT2(ZsreTask, HubCausalLMTask):
    """GPT-2 124M (12 blocks; `Conv1D` modules store `[d_in, d_out]`, see `editbench.modules`)."""

    name = "zsre-gpt2"
    description = "zsRE QA + NQ locality on GPT-2 124M (paper, Fig. 5 / Table 1)"
    paper_tier = True
    hub_name = "gpt2"
    env_var = "EDITBENCH_GPT2"

    def edit_modules(self, role: str) -> list[str]:
        # MEMIT: blocks 2-5, our choice: the early-middle window of MEMIT's GPT-J (3-8 of 28) and
        # GPT-2 XL (13-17 of 48) scaled to 12 blocks (17-42 % depth).
        return modules_for("gpt2", 12, role, memit_layers=(2, 3, 4, 5))


class ZsreGPTJ(ZsreTask, HubCausalLMTask):
    """GPT-J 6B (28 blocks); load it in bf16 on a GPU (`dtype`), as the official MALMEN code does."""

    name = "zsre-gptj"
    description = "zsRE QA + NQ locality on GPT-J 6B (paper, Fig. 7 / Table 2)"
    paper_tier = True
    hub_name = "EleutherAI/gpt-j-6b"
    env_var = "EDITBENCH_GPTJ"

    def edit_modules(self, role: str) -> list[str]:
        return gptj_modules_for(role)


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
