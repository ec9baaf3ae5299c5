"""User-facing errors: one line, no traceback, exit code 2 from the CLI."""


class EditbenchError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""

    exit_code = 2


class NonFiniteError(EditbenchError):
    """NaN or Inf in a loss, a shift, a solve, statistics or the weights: the run stops, nothing is recorded."""


class CorruptArtifact(EditbenchError):
    """A cached artifact whose content does not match its checksum (or has none); names its path."""

    def __init__(self, path, reason: str, hint: str = "delete it to rebuild it"):
        self.path, self.reason = path, reason
        super().__init__(f"cached artifact {path} is corrupt ({reason}); {hint}")
