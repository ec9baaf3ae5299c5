"""Editor checkpoints: safetensors weights plus a JSON sidecar, written atomically, never pickled."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load_file, save

from editbench.files import write_atomic

from editbench.methods.hypernet.network import Editor


def save_editor(editor: Editor, path: Path, info: dict[str, Any]) -> None:
    """Write `path` (.safetensors) and `path.json` (provenance: config, training history)."""
    state = {k: v.detach().contiguous().cpu() for k, v in editor.state_dict().items()}
    write_atomic(path, save(state, metadata={"format": "editbench-hypernet"}))
    write_atomic(path.with_suffix(".json"), (json.dumps(info, indent=2, default=str) + "\n").encode())


def load_editor(editor: Editor, path: Path) -> dict[str, Any]:
    """Load weights into `editor` (shapes must match); returns the sidecar info."""
    editor.load_state_dict(load_file(str(path)), strict=True)
    sidecar = path.with_suffix(".json")
    return json.loads(sidecar.read_text()) if sidecar.is_file() else {}
