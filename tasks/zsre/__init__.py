"""zsRE question answering (Levy et al. 2017, MEND format) with NQ unrelated prompts."""
from editbench.tasks.zsre.task import ZsreSmolLM2

__all__ = ["ZsreSmolLM2"]
