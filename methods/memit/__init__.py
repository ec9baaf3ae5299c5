"""MEMIT (Meng et al. 2023): mass-editing memory in a transformer, faithful to the published GPT-J setting."""
from editbench.methods.memit.config import MemitConfig
from editbench.methods.memit.method import Memit

__all__ = ["Memit", "MemitConfig"]
