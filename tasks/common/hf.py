"""Loading transformers models from a hub name or a local path, with one-line errors offline.

A task names its model three ways, first match wins: `--set model=PATH` (the `model` field of
its config), an environment variable (e.g. `EDITBENCH_GPTJ=PATH`), the hub name. A hub name that
is neither in the Hugging Face cache nor reachable fails at once (no retry loop) with one line
saying how to provide a local copy.
"""
from __future__ import annotations

import os
import socket
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator
from urllib.parse import urlparse

import torch

from editbench.errors import EditbenchError


def model_source(configured: str, env_var: str, hub_name: str) -> str:
    """The configured model, else `$env_var`, else the hub name."""
    return configured or os.environ.get(env_var, "") or hub_name


def _looks_local(name_or_path: str) -> bool:
    return name_or_path.startswith((".", "/", "~")) or Path(name_or_path).expanduser().exists()


def _in_hub_cache(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, "config.json")
    return isinstance(found, str)


def _hub_reachable(timeout_s: float = 3.0) -> bool:
    """One TCP connection to the hub endpoint (no HTTP retries); False under HF_HUB_OFFLINE."""
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes", "on"):
        return False
    if any(os.environ.get(v) for v in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy")):
        return True  # behind a proxy a direct probe says nothing: let the hub client try
    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    try:
        with socket.create_connection((endpoint.hostname, endpoint.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def resolve_model(name_or_path: str, env_var: str) -> tuple[str, dict[str, Any]]:
    """(source, extra `from_pretrained` kwargs) that load now without waiting on the network.

    A local folder; a hub id when the hub answers; a cached hub id with `local_files_only` when it
    does not (no retry loop); otherwise one clear error line.
    """
    if _looks_local(name_or_path):
        path = Path(name_or_path).expanduser()
        if not path.exists():
            raise EditbenchError(f"model path {name_or_path!r} does not exist")
        return str(path), {}
    if _hub_reachable():
        return name_or_path, {}
    if _in_hub_cache(name_or_path):
        return name_or_path, {"local_files_only": True}
    raise EditbenchError(
        f"model {name_or_path!r} is not in the Hugging Face cache and the hub cannot be reached; download it "
        f"(`hf download {name_or_path}`) or give a local copy with --set model=PATH or {env_var}=PATH"
    )


def load_pretrained(auto_class: Any, name_or_path: str, env_var: str, dtype: torch.dtype, device: str, **kwargs) -> Any:
    """`auto_class.from_pretrained(name_or_path)` in eval mode on `device`.

    A name that looks like a path must exist; a hub name that cannot be fetched (offline, no local
    copy) gives one line saying how to provide the model: `--set model=PATH` or `env_var`.
    """
    source, offline = resolve_model(name_or_path, env_var)
    try:
        model = auto_class.from_pretrained(source, dtype=dtype, **offline, **kwargs)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EditbenchError(
            f"cannot load model {name_or_path!r} ({first[:160]}); download it or give a local copy with "
            f"--set model=PATH or {env_var}=PATH"
        ) from None
    return model.to(device).eval()


def load_tokenizer(name_or_path: str, env_var: str) -> Any:
    """The tokenizer saved with a model, resolved like `load_pretrained`."""
    from transformers import AutoTokenizer

    source, offline = resolve_model(name_or_path, env_var)
    try:
        return AutoTokenizer.from_pretrained(source, **offline)
    except OSError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise EditbenchError(f"cannot load the tokenizer of {name_or_path!r} ({first[:160]})") from None


@contextmanager
def quiet_transformers() -> Iterator[None]:
    """Silence transformers' load reports (e.g. the pooler weights a first-token head drops)."""
    from transformers.utils import logging as hf_logging

    previous = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        yield
    finally:
        hf_logging.set_verbosity(previous)
