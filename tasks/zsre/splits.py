"""zsRE splits as edit requests, for any model family (`ZsreTask`, a mix-in).

Data: the 800 local MEND-format records split once (seed 0) into 500 / 100 / 200 for editor
training, validation and evaluation, or the paper-scale split by path (`--set train_path=...
eval_path=...`, a file or a `datasets` hub id): 1,000 records of the training file (seeded) are
held out for validation (a tenth of smaller files). Records without an NQ question (KILT layout) take one from NQ-open dev,
deterministically by position; `extra_unrelated` adds that many NQ-open tuples to every request.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from editbench.api import EditRequest, TaskConfig
from editbench.config import non_negative, one_of
from editbench.data import resolve
from editbench.errors import EditbenchError
from editbench.tasks.common.nq import NQPairs
from editbench.tasks.common.records import read_records
from editbench.tasks.common.sampling import split_records
from editbench.tasks.common.splits import SplitRequests
from editbench.tasks.zsre.data import TARGETS, ZSRE_800, ZsreFact, parse_fact, to_request

log = logging.getLogger(__name__)

# The 800 local records, split once (seed 0): editor training, validation, evaluation.
EMBEDDED_SPLITS = {"train": 500, "valid": 100, "eval": 200}
PAPER_VALID = 1000
UNRELATED = ("nq", "zsre")


@dataclass
class ZsreConfig(TaskConfig):
    target: str = field(default="answers", metadata={"help": "edit target: 'answers' (gold, paper) or 'alt'",
                                                     "check": one_of(*TARGETS)})
    train_path: str = field(default="", metadata={"help": "paper-scale zsRE train file or hub id ('' = local 800 records)"})
    eval_path: str = field(default="", metadata={"help": "paper-scale zsRE eval file or hub id, with train_path"})
    extra_unrelated: int = field(default=0, metadata={"help": "NQ-open tuples added to each request's unrelated tuples",
                                                      "check": non_negative})
    unrelated: str = field(default="nq", metadata={
        "help": "unrelated tuples: 'nq' (paper Sec. 5) or 'zsre' (other zsRE facts, MEND's single-edit setting, Table 3)",
        "check": one_of(*UNRELATED)})


class ZsreTask(NQPairs, SplitRequests):
    """zsRE data for any model family (a mix-in placed before the model-family task class)."""

    Config = ZsreConfig
    # True for the paper tier: falling back to the 800 local records is said on stderr.
    paper_tier: bool = False

    def __init__(self, config=None, data_dir=None):
        super().__init__(config, data_dir)
        if self.config.unrelated not in UNRELATED:
            raise EditbenchError(f"unrelated {self.config.unrelated!r} is not one of {', '.join(UNRELATED)}")
        if self.config.target not in TARGETS:
            raise EditbenchError(f"target {self.config.target!r} is not one of {', '.join(TARGETS)}")
        self._splits: dict[str, list[EditRequest]] | None = None
        self._files: dict[str, Path] = {}

    def _requests(self, facts: list[ZsreFact], prefix: str) -> list[EditRequest | None]:
        """One request per fact (None for a fact without `alt` when the target is 'alt')."""
        extra = self.config.extra_unrelated
        out: list[EditRequest | None] = []
        for i, fact in enumerate(facts):
            if self.config.target == "alt" and fact.alt is None:
                out.append(None)
                continue
            if self.config.unrelated == "zsre":
                # MEND's Table 3 setting: another fact of the same file, asked with its gold answer.
                other = facts[(i + 1 + (i * 7919) % max(1, len(facts) - 1)) % len(facts)]
                out.append(to_request(f"{prefix}-{i}", fact, self.config.target, [(other.question, other.answer)]))
                continue
            unrelated = [fact.unrelated] if fact.unrelated else []
            wanted = extra + (0 if unrelated else 1)
            if wanted:
                nq = self._nq_pairs()
                unrelated += [nq[(i * 7919 + j * 104729) % len(nq)] for j in range(wanted)]
            out.append(to_request(f"{prefix}-{i}", fact, self.config.target, unrelated))
        return out

    def _facts(self, source: str, split: str) -> list[ZsreFact]:
        return [parse_fact(r) for r in read_records(source, split)]

    def _load(self) -> dict[str, list[EditRequest]]:
        if self._splits is not None:
            return self._splits
        cfg = self.config
        if cfg.train_path or cfg.eval_path:
            if not (cfg.train_path and cfg.eval_path):
                raise EditbenchError(f"{self.name}: give both train_path and eval_path (the paper-scale zsRE split)")
            train = self._requests(self._facts(cfg.train_path, "train"), "zsre-train")
            held_out = min(PAPER_VALID, len(train) // 10)  # 1,000 of the paper's 244,173
            splits = split_records(train, {"valid": held_out, "train": len(train)}, seed=0)
            splits["eval"] = self._requests(self._facts(cfg.eval_path, "validation"), "zsre-eval")
            self._files.update({p: Path(p) for p in (cfg.train_path, cfg.eval_path) if Path(p).is_file()})
        else:
            if self.paper_tier:
                log.warning(f"{self.name}: no paper-scale zsRE split given (--set train_path=FILE "
                            f"eval_path=FILE); using the embedded 800-record split (500/100/200)")
            path = resolve(ZSRE_800, self.data_dir)
            self._files[ZSRE_800.path] = path
            # Split before dropping records without `alt`, so that both targets share the same splits.
            splits = split_records(self._requests(self._facts(str(path), "train"), "zsre"), EMBEDDED_SPLITS, seed=0)
        skipped = sum(r is None for part in splits.values() for r in part)
        if skipped:
            log.warning(f"{self.name}: {skipped} record(s) without 'alt' skipped (target=alt)")
        self._splits = {name: [r for r in part if r is not None] for name, part in splits.items()}
        return self._splits
