"""The `facts` task: any Hugging Face causal LM (`--set model=NAME_OR_PATH`) edited on your own fact
file (`--set facts=FILE`), in the zsRE or the CounterFact layout.

    editbench run --task facts --set model=./my-model --set facts=my_facts.json --method memit --edits 16

- Layout (`layout=auto`): a record with `src` or `input` is zsRE (`editbench.tasks.common.zsre_records`:
  question, answers, rephrase, optional loc/loc_ans and subject); one with `prompt`+`target_new` or
  `requested_rewrite` is CounterFact (`editbench.tasks.common.counterfact_records`). The first
  record decides; every record must then parse in that layout.
- Unrelated (locality) tuples (`unrelated=auto`): the file's own where its layout has them (zsRE
  `loc`/`loc_ans`, CounterFact's neighbourhood prompts), else one NQ-open question as the zsRE tasks
  do; `file`, `nq` or `none` force one source (`none`: LS is null).
- Without `facts` the task serves the Python API (`editbench.load("facts", model=...)`, facts
  given to `editbench.edit`); `editbench run` needs the file.
- Splits: the facts are shuffled once (`split_seed`) and cut into train / valid (for trained
  editors: MALMEN, MEND; `train_fraction`, `valid_fraction`) and eval, the rest, which
  `--edits` samples. `train_fraction=0 valid_fraction=0` edits from the whole file (FT, MEMIT).
- Edited modules: found from the model's structure (`editbench.tasks.common.structure`): the
  last blocks' FFN projections per method role, as the built-in tasks choose them
  (`tasks/common/layers.py`), MEMIT an early-middle window (blocks 3-8 of 28, scaled to the depth);
  `--set layers=...` overrides.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from editbench.api import EditRequest, TaskConfig
from editbench.config import between, one_of
from editbench.errors import EditbenchError
from editbench.tasks.common import formats
from editbench.tasks.common.causal import CausalLMTask, prepare_tokenizer
from editbench.tasks.common.counterfact_records import parse_request
from editbench.tasks.common.layers import Architecture
from editbench.tasks.common.nq import NQPairs
from editbench.tasks.common.perplexity import ppl_tokens_field
from editbench.tasks.common.records import Record, read_records
from editbench.tasks.common.sampling import split_records
from editbench.tasks.common.splits import SplitRequests
from editbench.tasks.common.structure import find_architecture, structural_modules
from editbench.tasks.common.zsre_records import parse_fact, to_request

LAYOUTS = ("auto", "zsre", "counterfact")
UNRELATED = ("auto", "file", "nq", "none")
ENV_VAR = "EDITBENCH_FACTS_MODEL"


@dataclass
class FactsConfig(TaskConfig):
    facts: str = field(default="", metadata={
        "help": "your fact file: JSON array or JSON Lines (or a `datasets` hub id) in the zsRE or CounterFact layout"})
    layout: str = field(default="auto", metadata={
        "help": "'zsre', 'counterfact' or 'auto' (from the first record's fields)", "check": one_of(*LAYOUTS)})
    unrelated: str = field(default="auto", metadata={
        "help": "locality tuples: 'auto' (the file's where the layout has them, else NQ-open), 'file', 'nq', 'none'",
        "check": one_of(*UNRELATED)})
    prompt_format: str = field(default="auto", metadata={
        "help": "how facts are shown: 'auto' (the tokenizer's chat template when it has one, else 'raw'), "
                "'raw', 'qa', 'chat', 'chat-end' (see `editbench.tasks.common.formats`)",
        "check": one_of("auto", *formats.PROMPT_FORMATS)})
    train_fraction: float = field(default=0.5, metadata={
        "help": "fraction of the facts held out to train an editor (MALMEN, MEND)", "check": between(0.0, 1.0)})
    valid_fraction: float = field(default=0.1, metadata={
        "help": "fraction of the facts held out to validate an editor's training", "check": between(0.0, 1.0)})
    split_seed: int = field(default=0, metadata={"help": "seed of the one shuffle that cuts train / valid / eval"})
    ppl_tokens: int = ppl_tokens_field()


class FactsTask(NQPairs, SplitRequests, CausalLMTask):
    """Any causal LM from the hub or a local folder, edited on a fact file you give."""

    name = "facts"
    description = "your own causal LM (--set model=NAME_OR_PATH) and fact file (--set facts=FILE, zsRE or CounterFact layout)"
    Config = FactsConfig

    def __init__(self, config=None, data_dir=None):
        super().__init__(config, data_dir)
        cfg = self.config
        if not cfg.model:
            raise EditbenchError(f"task {self.name!r} needs --set model=NAME_OR_PATH (a hub name or a local "
                                 "transformers folder)")
        if cfg.model.startswith((".", "/", "~")) and not Path(cfg.model).expanduser().exists():
            raise EditbenchError(f"model path {cfg.model!r} does not exist")
        if cfg.train_fraction + cfg.valid_fraction >= 1.0:
            raise EditbenchError(f"train_fraction {cfg.train_fraction} + valid_fraction {cfg.valid_fraction} leave no "
                                 "facts to edit (expected a sum below 1)")
        self._splits: dict[str, list[EditRequest]] | None = None
        self._files: dict[str, Path] = {}
        self._architecture: tuple[Architecture, int] | None = None

    # -- model ---------------------------------------------------------------------------------
    @property
    def prompt_format(self) -> str:
        style = self.config.prompt_format
        if style == "auto":
            has_template = getattr(self.tokenizer, "chat_template", None) is not None
            return "chat" if has_template else "raw"
        return formats.check_format(style)

    def load_model(self, device: str = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
        from transformers import AutoModelForCausalLM

        from editbench.tasks.common.hf import load_pretrained, load_tokenizer, model_source

        source = model_source(self.config.model, ENV_VAR, "")
        model = load_pretrained(AutoModelForCausalLM, source, ENV_VAR, dtype, device)
        self.tokenizer = prepare_tokenizer(load_tokenizer(source, ENV_VAR))
        self._architecture = find_architecture(model)
        return model

    def _skeleton_architecture(self) -> tuple[Architecture, int]:
        """The structure from the model's config alone (weights on the meta device: nothing is read)."""
        from transformers import AutoConfig, AutoModelForCausalLM

        from editbench.tasks.common.hf import resolve_model

        source, offline = resolve_model(self.config.model, ENV_VAR)
        config = AutoConfig.from_pretrained(source, **offline)
        with torch.device("meta"):
            return find_architecture(AutoModelForCausalLM.from_config(config))

    def edit_modules(self, role: str) -> list[str]:
        if self._architecture is None:
            self._architecture = self._skeleton_architecture()
        return structural_modules(self._architecture, role)

    # -- data ----------------------------------------------------------------------------------
    def _layout(self, records: list[Record]) -> str:
        if self.config.layout != "auto":
            return self.config.layout
        fields = records[0].fields
        if "src" in fields or "input" in fields:
            return "zsre"
        if "requested_rewrite" in fields or "target_new" in fields:
            return "counterfact"
        raise EditbenchError(f"{records[0].where}: cannot tell the layout from its fields ({', '.join(sorted(fields))}); "
                             "expected zsRE ('src' or 'input') or CounterFact ('requested_rewrite' or 'target_new'), "
                             "or give --set layout=zsre|counterfact")

    def _request(self, index: int, record: Record, layout: str) -> EditRequest:
        """One fact as a request; its unrelated tuples from the file or NQ-open as `unrelated` says."""
        mode = self.config.unrelated
        if layout == "zsre":
            fact = parse_fact(record)
            own = [fact.unrelated] if fact.unrelated else []
            request = to_request(f"facts-{index}", fact, "answers", own)
        else:
            request = parse_request(record)
            own = list(request.unrelated)
        if mode == "none" or (mode == "file" and not own):
            unrelated: list[tuple[str, str]] = []
        elif mode == "nq" or (mode == "auto" and not own):
            nq = self._nq_pairs()
            unrelated = [nq[(index * 7919) % len(nq)]]
        else:
            unrelated = own
        return EditRequest(id=request.id, prompt=request.prompt, target=request.target, equivalents=request.equivalents,
                           unrelated=tuple(unrelated), subject=request.subject, original=request.original)

    def data_files(self) -> dict[str, Path]:
        return super().data_files() if self.config.facts else dict(self._files)

    def _load(self) -> dict[str, list[EditRequest]]:
        if self._splits is not None:
            return self._splits
        cfg = self.config
        if not cfg.facts:  # only its splits need the file: the Python API gives facts to `editbench.edit`
            raise EditbenchError(f"task {self.name!r} needs --set facts=FILE (a JSON or JSON Lines file of facts in "
                                 "the zsRE or CounterFact layout)")
        records = read_records(cfg.facts, "train")
        if not records:
            raise EditbenchError(f"fact file {cfg.facts} holds no records")
        layout = self._layout(records)
        requests = [self._request(i, record, layout) for i, record in enumerate(records)]
        train = round(len(requests) * cfg.train_fraction)
        valid = round(len(requests) * cfg.valid_fraction)
        self._splits = split_records(requests, {"train": train, "valid": valid, "eval": len(requests) - train - valid},
                                     seed=cfg.split_seed)
        if not self._splits["eval"]:
            raise EditbenchError(f"fact file {cfg.facts}: {len(requests)} facts leave none to edit after train_fraction "
                                 f"{cfg.train_fraction} and valid_fraction {cfg.valid_fraction}")
        path = Path(cfg.facts).expanduser()
        if path.is_file():
            self._files[path.name] = path
        return self._splits
