"""zsRE tasks: edit a question's answer; GS on its rephrase; LS on an NQ question."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from editbench.api import EditRequest, TaskConfig
from editbench.data import resolve
from editbench.errors import EditbenchError
from editbench.tasks.common.causal import CausalLMTask, prepare_tokenizer
from editbench.tasks.common.layers import modules_for
from editbench.tasks.common.sampling import sample, split_records
from editbench.tasks.common.smollm2 import NUM_LAYERS, load_smollm2
from editbench.tasks.zsre.data import ZSRE_800, load_records, to_request

# The 800 local records, split once (seed 0): editor training, validation, evaluation.
EMBEDDED_SPLITS = {"train": 500, "valid": 100, "eval": 200}


@dataclass
class ZsreConfig(TaskConfig):
    target: str = field(default="answers", metadata={"help": "edit target: 'answers' (gold, paper) or 'alt'"})


class ZsreEmbeddedTask(CausalLMTask):
    """zsRE on the 800 local records, split deterministically into train/valid/eval."""

    Config = ZsreConfig

    def __init__(self, config=None, data_dir=None):
        super().__init__(config, data_dir)
        if self.config.target not in ("answers", "alt"):
            raise EditbenchError(f"target {self.config.target!r} is not one of 'answers', 'alt'")
        self._splits: dict[str, list[EditRequest]] | None = None
        self._path: Path | None = None

    def _load(self) -> dict[str, list[EditRequest]]:
        if self._splits is None:
            self._path = resolve(ZSRE_800, self.data_dir)
            records = load_records(self._path)
            requests = [to_request(i, r, self.config.target) for i, r in enumerate(records)]
            self._splits = split_records(requests, EMBEDDED_SPLITS, seed=0)
        return self._splits

    def split_size(self, split: str) -> int:
        return len(self._split(split))

    def _split(self, split: str) -> list[EditRequest]:
        splits = self._load()
        if split not in splits:
            raise EditbenchError(f"unknown split {split!r}; expected one of {', '.join(splits)}")
        return splits[split]

    def requests(self, split: str, count: int, seed: int) -> list[EditRequest]:
        return sample(self._split(split), count, seed, what=f"{self.name} {split} split")

    def data_files(self) -> dict[str, Path]:
        self._load()
        return {ZSRE_800.path: self._path}


class ZsreSmolLM2(ZsreEmbeddedTask):
    """SmolLM2-135M-Instruct (Llama architecture, 30 blocks), the embedded default task."""

    name = "zsre-smollm2"
    description = "zsRE QA + NQ locality on SmolLM2-135M-Instruct (embedded, CPU; 500/100/200 split)"

    def load_model(self, device: str = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
        if self.config.model:
            from transformers import AutoModelForCausalLM, AutoTokenizer

            from editbench.tasks.common.hf import load_pretrained

            model = load_pretrained(AutoModelForCausalLM, self.config.model, "EDITBENCH_SMOLLM2", dtype, device)
            self.tokenizer = prepare_tokenizer(AutoTokenizer.from_pretrained(self.config.model))
            return model
        model, tokenizer = load_smollm2(device, dtype)
        self.tokenizer = prepare_tokenizer(tokenizer)
        return model

    def edit_modules(self, role: str) -> list[str]:
        # MEMIT: blocks 3-8 as for GPT-J (28 blocks); SmolLM2 has 30, a stated choice.
        return modules_for("llama", NUM_LAYERS, role)
