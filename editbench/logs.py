"""Messages of editbench through `logging`: one logger per module (`logging.getLogger(__name__)`).

Every module's logger sits under the `editbench` logger (methods and tasks install as
`editbench.methods.*` / `editbench.tasks.*`), which writes to stderr as `editbench: message`
(`editbench: warning: message` for warnings). By default only warnings and errors are shown;
`editbench -v` shows progress (INFO) and `editbench --debug` everything (DEBUG).
"""
from __future__ import annotations

import logging
import sys

ROOT = "editbench"


class _StderrHandler(logging.StreamHandler):
    """A handler on whatever `sys.stderr` is at the time of each message (pytest's capture, click's runner)."""

    def __init__(self) -> None:
        super().__init__(sys.stderr)

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:  # StreamHandler.__init__ assigns it; the property ignores it
        pass


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        label = "" if record.levelno < logging.WARNING else f"{record.levelname.lower()}: "
        text = f"editbench: {label}{record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def install() -> logging.Logger:
    """The `editbench` logger with its stderr handler (added once; `editbench/__init__` calls this)."""
    logger = logging.getLogger(ROOT)
    if not any(isinstance(h, _StderrHandler) for h in logger.handlers):
        handler = _StderrHandler()
        handler.setFormatter(_Formatter())
        logger.addHandler(handler)
        logger.propagate = False  # one line per message, whatever the application's root logging does
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.WARNING)
    return logger


def set_level(level: int) -> None:
    """Show editbench's messages from `level` up (logging.WARNING, INFO or DEBUG)."""
    install().setLevel(level)
