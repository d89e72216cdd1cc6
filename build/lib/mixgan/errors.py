"""Errors a user can fix: they name the config key or file at fault."""

from __future__ import annotations

from collections.abc import Iterable


class ConfigError(ValueError):
    """A config problem; the message names every offending key or path."""

    def __init__(self, problems: Iterable[str], source: str = "config"):
        self.problems = list(problems)
        lines = "\n".join(f"  - {p}" for p in self.problems)
        super().__init__(f"invalid {source} ({len(self.problems)} problem(s)):\n{lines}")


class DataError(RuntimeError):
    """A dataset problem; the message names the file."""
