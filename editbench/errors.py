"""User-facing errors: one line, no traceback, exit code 2 from the CLI."""


class EditbenchError(Exception):
    """A problem with the user's input or environment, reported as one clear line."""

    exit_code = 2
