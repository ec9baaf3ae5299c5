"""GPT-J 6B (Wang & Komatsuzaki 2021), the paper's largest model: hub id, local copy, edit layers."""
from __future__ import annotations

from editbench.tasks.common.causal import HubCausalLMTask
from editbench.tasks.common.layers import gptj_modules_for


class GPTJTask(HubCausalLMTask):
    """A task on GPT-J 6B (28 blocks); load it in bf16 on a GPU (`--dtype bfloat16`), as the
    official MALMEN code does. A local copy: `--set model=PATH` or `EDITBENCH_GPTJ=PATH`."""

    hub_name = "EleutherAI/gpt-j-6b"
    env_var = "EDITBENCH_GPTJ"

    def edit_modules(self, role: str) -> list[str]:
        return gptj_modules_for(role)
