"""FT hyper-parameters: the paper's Appendix A.5 (identical to Meng et al. 2022; 2023)."""
from dataclasses import dataclass, field

from editbench.api import MethodConfig


@dataclass
class FineTuneConfig(MethodConfig):
    lr: float = field(default=5e-4, metadata={"help": "AdamW learning rate (A.5)"})
    weight_decay: float = field(default=5e-4, metadata={"help": "AdamW weight decay (A.5)"})
    epochs: int = field(default=5, metadata={"help": "passes over the edit tuples (A.5 reports 5)"})
    batch_size: int = field(default=32, metadata={"help": "edit tuples per optimiser step"})
    seed: int = field(default=0, metadata={"help": "shuffling seed of the edit tuples"})
