"""The library's exceptions in one place, below every other module so that any of them can raise these.

    ValueError
    ├── InputError        text or settings that cannot be used (empty text, beam 0, NaN penalty ...)
    │   └── LimitError    a resource cap was exceeded (beam > 16, more tokens than the model's positions ...)
    └── ConfigError       a ModelConfig value of the wrong type or out of range
    RuntimeError
    └── CheckpointError   a checkpoint is missing, unreadable, corrupted or does not match its config

Every message is one line that says what is wrong in words a user understands.
"""
from __future__ import annotations


def one_line(text: object) -> str:
    """``text`` (a message, an exception) on one line: its runs of whitespace, newlines included, as one space."""
    return " ".join(str(text).split())


class InputError(ValueError):
    """The text or settings given cannot be used; the message says why."""


class LimitError(InputError):
    """A request goes past one of the library's resource caps (``model.limits``)."""


class ConfigError(ValueError):
    """A ``ModelConfig`` field has the wrong type or is out of range."""


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, corrupted, or does not match the model it claims to hold."""
