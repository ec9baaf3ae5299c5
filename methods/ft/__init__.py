"""FT: fine-tuning the task's FFN weights on the edit tuples (MALMEN paper, Appendix A.5)."""
from editbench.methods.ft.config import FineTuneConfig
from editbench.methods.ft.method import FineTune

__all__ = ["FineTune", "FineTuneConfig"]
