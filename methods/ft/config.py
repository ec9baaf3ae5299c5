"""FT hyper-parameters: the paper's Appendix A.5 (identical to Meng et al. 2022; 2023)."""
from dataclasses import dataclass, field

from editbench.api import MethodConfig
from editbench.config import count, finite, non_negative, positive


@dataclass
class FineTuneConfig(MethodConfig):
    lr: float = field(default=5e-4, metadata={"help": "AdamW learning rate (A.5)", "check": positive})
    weight_decay: float = field(default=5e-4, metadata={"help": "AdamW weight decay (A.5)", "check": non_negative})
    epochs: int = field(default=5, metadata={"help": "passes over the edit tuples (A.5 reports 5)", "check": count})
    batch_size: int = field(default=32, metadata={"help": "edit tuples per optimiser step", "check": count})
    seed: int = field(default=0, metadata={"help": "shuffling seed of the edit tuples", "check": finite})
