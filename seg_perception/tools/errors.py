"""Errors the command-line tools turn into exit codes (one clear line, no traceback)."""

from __future__ import annotations


class UsageError(ValueError):
    """A command-line argument cannot be used; the text says what to change (exit code 2)."""
