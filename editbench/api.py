"""The two plug-in contracts of editbench: `Task` (model + data + metrics) and `Method` (editor).

Shapes follow the paper's notation: a linear layer maps a key `u: [d]` to a value `v = W u: [d']`,
so a weight (or a weight shift) is `[d', d]` = `[d_out, d_in]`, whatever the module stores
(GPT-2's `Conv1D` stores `[d_in, d_out]`; see `editbench.modules`).

Tasks and methods meet only through this module: a method never imports a task and vice versa.
"""
from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

import torch
from torch import Tensor, nn

from editbench.config import count

# Roles a task maps to module names (`Task.edit_modules`). A method asks for its own role.
# 'mend' is Mitchell et al.'s choice (both FFN linears of the last 3 blocks), used by `mend-mitchell`;
# the paper's `mend` edits the 'malmen' modules.
ROLES = ("ft", "malmen", "malmen-first-fc", "mend", "memit")


@dataclass(frozen=True)
class EditRequest:
    """One fact to insert, with the tuples that test it.

    prompt/target: the edit tuple (x, y). equivalents: prompts x^e whose answer is also `target`.
    unrelated: (prompt, answer) tuples (x^u, y^u) whose prediction must not change.
    subject: the entity the fact is about (needed by locate-and-edit methods such as MEMIT).
    """

    id: str
    prompt: str
    target: str
    equivalents: tuple[str, ...] = ()
    unrelated: tuple[tuple[str, str], ...] = ()
    subject: str | None = None
    original: str | None = None  # the model's / data set's answer before the edit, when known

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclass
class Batch:
    """Tokenised prompt/answer tuples.

    inputs: keyword arguments for `model(**inputs)` (tensors of shape [b, t] or [b, t_enc]).
    labels: [b, t] answer token ids aligned with `Task.logits(model, batch)`, -100 elsewhere
        (for a classifier t = 1 and the id is the label).
    """

    inputs: dict[str, Tensor]
    labels: Tensor

    def to(self, device: torch.device | str) -> "Batch":
        return Batch({k: v.to(device) for k, v in self.inputs.items()}, self.labels.to(device))

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass
class TupleOutcome:
    """Teacher-forced argmax at each answer position of one tuple, and the gold ids there."""

    predicted: list[int]
    gold: list[int]


@dataclass
class RequestOutcome:
    """The scored tuples of one request: its edit tuple, equivalents and unrelated tuples."""

    edit: TupleOutcome
    equivalents: list[TupleOutcome] = field(default_factory=list)
    unrelated: list[TupleOutcome] = field(default_factory=list)


@dataclass
class EditResult:
    """What a method returns after editing a model in place.

    deltas: module name -> weight shift `[d_out, d_in]` that was added to the module's weight.
    stats: scalars the method measured (e.g. MALMEN's mean residual), recorded with the run.
    """

    deltas: dict[str, Tensor]
    stats: dict[str, float] = field(default_factory=dict)


@dataclass
class TaskConfig:
    """Options shared by every task; subclasses add their own fields (all with defaults)."""

    model: str = field(default="", metadata={"help": "hub name or local path of the model ('' = task default)"})
    batch_size: int = field(default=32, metadata={"help": "tuples per forward pass when scoring", "check": count})


@dataclass
class MethodConfig:
    """Options shared by every method; subclasses add their own fields (all with defaults)."""

    layers: str = field(default="", metadata={
        "help": "modules to edit instead of the task's choice for this method: comma-separated block indices "
                "(e.g. '20,21,22': the same sub-layers at those blocks) or full module names ('' = the task's)"})


class Task(ABC):
    """A model to edit, its data, and its metrics.

    Subclasses set `name`, `description` and `Config`, and implement the abstract methods.
    Generic causal, seq2seq and classifier implementations live in `editbench.tasks.common`.
    """

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type] = TaskConfig
    # True when edits are scored token-wise on generated text (LMs); False for label accuracy.
    generative: ClassVar[bool] = True
    # Settings each method needs on this task's model (method name -> {config field: value}), like the
    # reference code's one hyper-parameter file per model; applied over the method's defaults and
    # under the user's `--set` (see `preset_for`).
    method_presets: ClassVar[dict[str, dict[str, Any]]] = {}

    def __init__(self, config: Any = None, data_dir: str | Path | None = None):
        self.config = config if config is not None else self.Config()
        self.data_dir = Path(data_dir) if data_dir else None
        self.tokenizer: Any = None

    @classmethod
    def preset_for(cls, method_cls: type) -> tuple[str | None, dict[str, Any]]:
        """(preset name, settings) for `method_cls` on this task: the entry of the method's name, else
        of the nearest registered base class (an ablation inherits its method's preset)."""
        for klass in method_cls.__mro__:
            name = getattr(klass, "name", "")
            if name and name in cls.method_presets:
                return f"{cls.name}/{name}", dict(cls.method_presets[name])
        return None, {}

    # -- model ---------------------------------------------------------------------------------
    def prepare(self, device: str = "cpu") -> dict[str, Any]:
        """Build and cache a prepared model when the task needs one (e.g. FEVER fine-tuning,
        Appendix A.4); `load_model` calls it when the cache is empty. Returns provenance info."""
        return {}

    @abstractmethod
    def load_model(self, device: str = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
        """Load the (prepared) model to edit, in eval mode, and set `self.tokenizer`."""

    @abstractmethod
    def edit_modules(self, role: str) -> list[str]:
        """Names of the linear modules that the method playing `role` (see `ROLES`) may edit."""

    # -- data ----------------------------------------------------------------------------------
    @abstractmethod
    def split_size(self, split: str) -> int:
        """Number of requests in `split` ('train', 'valid' or 'eval')."""

    @abstractmethod
    def requests(self, split: str, count: int, seed: int) -> list[EditRequest]:
        """`count` requests drawn from `split`, deterministic for `seed`."""

    def data_files(self) -> dict[str, Path]:
        """Data files this task read, by their name in the data folder (hashed into results)."""
        return {}

    # -- model I/O -----------------------------------------------------------------------------
    @abstractmethod
    def batch(self, pairs: Sequence[tuple[str, str]]) -> Batch:
        """Tokenise (prompt, answer) tuples for teacher forcing."""

    @abstractmethod
    def logits(self, model: nn.Module, batch: Batch) -> Tensor:
        """Logits `[b, t, V]` aligned with `batch.labels` (answer positions carry labels != -100)."""

    def answer_logits(self, model: nn.Module, batch: Batch) -> Tensor:
        """Logits at the answer positions only, `[k, V]` in row-major order of `batch.labels != -100`
        (override to skip the vocabulary head elsewhere)."""
        return self.logits(model, batch)[batch.labels != -100]

    @abstractmethod
    def key_mask(self, batch: Batch, module: str, answer_only: bool = True) -> Tensor:
        """Bool `[b, t_module]`: which positions of `module`'s input are cached as keys.

        answer_only=True keeps the tokens that output the answer (MALMEN, Sec. 5.1); False keeps
        every real token (MEND, and the cache-all-tokens ablation).
        """

    def nll(self, model: nn.Module, batch: Batch, reduction: str = "mean") -> Tensor:
        """Negative log-likelihood of the answer tokens: mean per token, or their sum."""
        logits = self.logits(model, batch)
        return nn.functional.cross_entropy(
            logits.flatten(0, -2).float(), batch.labels.flatten(), ignore_index=-100, reduction=reduction
        )

    def subject_token_index(self, prompt: str, subject: str) -> int:
        """Index of the subject's last token in the tokenised prompt (locate-and-edit methods)."""
        from editbench.errors import EditbenchError

        raise EditbenchError(f"task {self.name!r} cannot locate subjects in its prompts")

    @abstractmethod
    def evaluate(self, model: nn.Module, requests: Sequence[EditRequest]) -> list[RequestOutcome]:
        """Teacher-forced argmax of `model` on every tuple of every request."""

    def extra_metrics(self, model: nn.Module, requests: Sequence[EditRequest]) -> dict[str, float | None]:
        """Aggregate scores this task adds beside ES/GS/LS, recorded in `pre` and `post` under their
        own names (e.g. CounterFact's probability comparisons, WikiText-2 perplexity; see
        `editbench.metrics.TASK_METRICS`). An optional capability: none by default."""
        return {}


class Method(ABC):
    """An editor: optionally prepared on a task (trained, statistics), then applies m edits at once."""

    name: ClassVar[str] = ""
    description: ClassVar[str] = ""
    Config: ClassVar[type] = MethodConfig
    role: ClassVar[str] = ""  # which `Task.edit_modules` role the method edits by default (see `ROLES`)
    # Config fields that follow the run's settings unless a preset or `--set` gives them, as
    # {config field: RunSpec attribute}: e.g. a trained editor's `seed` follows `--seed`, so each seed
    # is an independently trained editor, and its training m follows `--edits`.
    follows_run: ClassVar[dict[str, str]] = {}

    def __init__(self, config: Any = None):
        self.config = config if config is not None else self.Config()

    def modules(self, task: "Task", model: nn.Module) -> list[str]:
        """The modules this method edits: the task's choice for `role`, or the `layers` setting."""
        from editbench.layers import select_modules

        return select_modules(task.edit_modules(self.role), getattr(self.config, "layers", ""), model)

    def prepare(self, task: Task, model: nn.Module, cache_dir: Path) -> dict[str, Any]:
        """Train or load what the method needs (cached under `cache_dir`); returns provenance info."""
        return {}

    @abstractmethod
    def edit(self, task: Task, model: nn.Module, requests: Sequence[EditRequest]) -> EditResult:
        """Apply all `requests` at once to `model` in place and return the weight shifts applied."""
