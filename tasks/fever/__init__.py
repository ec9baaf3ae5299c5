"""FEVER fact verification (Thorne et al. 2018) on BERT-style classifiers, edits flip the label."""
from editbench.tasks.fever.task import FeverBert, FeverMiniLM

__all__ = ["FeverBert", "FeverMiniLM"]
