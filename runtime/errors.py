"""The project's error base class: every expected failure (bad file, bad input, missing
backend) is a `DeployError`, which the command-line tools turn into a one-line message
and exit status 1. Anything else is a bug and keeps its traceback."""


class DeployError(Exception):
    """An expected, user-facing failure; its message is one line that says what to do."""


class MetadataError(DeployError, ValueError):
    """Metadata (an artifact's or checkpoint's class names, preprocessing, input shape) is missing,
    unreadable or out of bounds. Defined here, not in runtime.metadata, so runtime.preprocess
    can raise it too; runtime.metadata re-exports it."""
