"""zsRE question answering (Levy et al. 2017, MEND format) with NQ unrelated prompts."""
from editbench.tasks.zsre.task import ZsreGPT2, ZsreGPTJ, ZsreSmolLM2, ZsreT5XL

__all__ = ["ZsreGPT2", "ZsreGPTJ", "ZsreSmolLM2", "ZsreT5XL"]
