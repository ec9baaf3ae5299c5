"""CounterFact tasks: insert a counterfactual (`target_new`); GS on the paraphrases; LS on the
neighbourhood prompts with their true answer. Not in the MALMEN paper: MEMIT's headline data.
Beside ES/GS/LS, `pre`/`post` hold MEMIT's probability comparisons (`cf_efficacy`, `cf_paraphrase`,
`cf_neighbourhood` and their magnitudes; `scores.py`) and WikiText-2 perplexity (`ppl`).

Data: `counterfact-train.json` (10,000) gives the editor's train and valid splits (9,500 / 500,
seed 0); `counterfact-edit.json` (10,000, disjoint case ids) is the eval split. Any other file in
either layout (e.g. ROME's `counterfact.json`) can replace them: `--set train_path=... eval_path=...`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from editbench.api import EditRequest, TaskConfig
from editbench.data import resolve
from editbench.tasks.common.gptj import GPTJTask
from editbench.tasks.common.perplexity import ppl_tokens_field
from editbench.tasks.common.records import read_records
from editbench.tasks.common.sampling import split_records
from editbench.tasks.common.smollm2 import SmolLM2Task, prompt_format_field
from editbench.tasks.common.splits import SplitRequests
from editbench.tasks.counterfact.data import COUNTERFACT_EDIT, COUNTERFACT_TRAIN, parse_request
from editbench.tasks.counterfact.scores import counterfact_scores

VALID_SIZE = 500


@dataclass
class CounterfactConfig(TaskConfig):
    train_path: str = field(default="", metadata={"help": "CounterFact file for train/valid ('' = counterfact-train.json)"})
    eval_path: str = field(default="", metadata={"help": "CounterFact file for eval ('' = counterfact-edit.json)"})
    ppl_tokens: int = ppl_tokens_field()


class CounterfactTask(SplitRequests):
    """CounterFact data for any causal LM (a mix-in placed before the model-family task class)."""

    Config = CounterfactConfig

    def __init__(self, config=None, data_dir=None):
        super().__init__(config, data_dir)
        self._splits: dict[str, list[EditRequest]] | None = None
        self._files: dict[str, Path] = {}

    def _read(self, configured: str, default, split: str) -> list[EditRequest]:
        if configured:
            source = configured
            if Path(configured).expanduser().is_file():
                self._files[configured] = Path(configured).expanduser()
        else:
            path = resolve(default, self.data_dir)
            self._files[default.path] = path
            source = str(path)
        return [parse_request(r) for r in read_records(source, split)]

    def extra_metrics(self, model, requests: Sequence[EditRequest]) -> dict[str, float | None]:
        """MEMIT's probability comparisons (`scores.counterfact_scores`) and the causal LM's own (`ppl`)."""
        return {**counterfact_scores(self, model, requests, self.config.batch_size),
                **super().extra_metrics(model, requests)}

    def _load(self) -> dict[str, list[EditRequest]]:
        if self._splits is None:
            train = self._read(self.config.train_path, COUNTERFACT_TRAIN, "train")
            held = split_records(train, {"valid": VALID_SIZE, "train": len(train)}, seed=0)
            evaluation = self._read(self.config.eval_path, COUNTERFACT_EDIT, "test")
            self._splits = {"train": held["train"], "valid": held["valid"], "eval": evaluation}
        return self._splits


@dataclass
class CounterfactSmolLM2Config(CounterfactConfig):
    prompt_format: str = prompt_format_field()


class CounterfactSmolLM2(CounterfactTask, SmolLM2Task):
    """CounterFact on the embedded SmolLM2-135M-Instruct (30 blocks).

    Facts are shown in the model's chat template (`prompt_format=chat`, the default): the
    prompt is the user turn and the new target the assistant turn, without the closing `<|im_end|>`.
    """

    name = "counterfact-smollm2"
    Config = CounterfactSmolLM2Config
    description = "CounterFact counterfactual edits on SmolLM2-135M-Instruct (embedded, CPU; 9,500/500/10,000)"


class CounterfactGPTJ(CounterfactTask, GPTJTask):
    """CounterFact on GPT-J 6B, MEMIT's headline setting; layers as `zsre-gptj`."""

    name = "counterfact-gptj"
    description = "CounterFact counterfactual edits on GPT-J 6B (MEMIT's headline data; not in the paper)"
