"""CounterFact counterfactual edits (Meng et al. 2022) on causal LMs."""
from editbench.tasks.counterfact.task import CounterfactGPTJ, CounterfactSmolLM2

__all__ = ["CounterfactGPTJ", "CounterfactSmolLM2"]
