"""What the cross-checkout harnesses (`ab_*.py`) share: their command line and the task built with a
prompt format where the checkout has one (commits before the chat format know raw prompts only)."""
from __future__ import annotations

import argparse
import dataclasses
import os


def parser(doc: str, m: int) -> argparse.ArgumentParser:
    """`--m` (edits) and `--format` (prompt_format), with `doc`'s first line as the description."""
    out = argparse.ArgumentParser(description=doc.splitlines()[0])
    out.add_argument("--m", type=int, default=m)
    out.add_argument("--format", default="raw", help="prompt_format where the checkout has one (raw, chat)")
    return out


def smollm2_task(task_cls, prompt_format: str):
    """`task_cls` on `$EDITBENCH_DATA` in `prompt_format`; a checkout whose config has no such field
    runs raw prompts only (any other format is refused)."""
    data = os.environ["EDITBENCH_DATA"]
    config_cls = getattr(task_cls, "Config", None)
    if config_cls is not None and dataclasses.is_dataclass(config_cls) and \
            "prompt_format" in {f.name for f in dataclasses.fields(config_cls)}:
        return task_cls(config_cls(prompt_format=prompt_format), data_dir=data)
    if prompt_format != "raw":
        raise SystemExit(f"this checkout's {task_cls.__name__} has raw prompts only, not {prompt_format!r}")
    return task_cls(data_dir=data)
