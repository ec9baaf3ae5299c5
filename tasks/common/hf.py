"""Loading transformers models from a hub name or a local path, with one-line errors offline."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from editbench.errors import EditbenchError


def load_pretrained(auto_class: Any, name_or_path: str, env_var: str, dtype: torch.dtype, device: str, **kwargs) -> Any:
    """`auto_class.from_pretrained(name_or_path)` in eval mode on `device`.

    A name that looks like a path must exist; a hub name that cannot be fetched (offline, no local
    copy) gives one line saying how to provide the model: `--set model=PATH` or `env_var`.
    """
    looks_local = name_or_path.startswith((".", "/", "~")) or os.path.sep in name_or_path and Path(name_or_path).exists()
    if looks_local and not Path(name_or_path).expanduser().exists():
        raise EditbenchError(f"model path {name_or_path!r} does not exist")
    try:
        model = auto_class.from_pretrained(str(Path(name_or_path).expanduser()) if looks_local else name_or_path,
                                           dtype=dtype, **kwargs)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EditbenchError(
            f"cannot load model {name_or_path!r} ({first[:160]}); download it or give a local copy with "
            f"--set model=PATH or {env_var}=PATH"
        ) from None
    return model.to(device).eval()
