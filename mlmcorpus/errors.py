"""Exceptions raised by the library.

The CLI turns every :class:`MlmCorpusError` into a one-line ``Error: ...`` and a
non-zero exit, so messages must name the offending file or option and read well
on their own.
"""

from __future__ import annotations

__all__ = ["MlmCorpusError", "InputError", "TokenizerError", "OutputError", "ConfigError"]


class MlmCorpusError(Exception):
    """Base class of every error the library raises on purpose."""


class InputError(MlmCorpusError):
    """A source is missing, unreadable, corrupt or in an unknown format."""


class TokenizerError(MlmCorpusError):
    """A tokenizer cannot be trained, loaded or lacks required special tokens."""


class OutputError(MlmCorpusError):
    """An output path cannot be written (exists, not empty, not writable)."""


class ConfigError(MlmCorpusError):
    """An option has a value that cannot work."""
