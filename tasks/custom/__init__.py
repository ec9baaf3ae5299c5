"""Your own model and facts: any Hugging Face causal LM edited on any zsRE- or CounterFact-layout file."""
from editbench.tasks.custom.task import FactsConfig, FactsTask

__all__ = ["FactsConfig", "FactsTask"]
