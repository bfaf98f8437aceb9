"""The user-facing error types: each names the bad value, what was expected, and the fix."""

from __future__ import annotations

from difflib import get_close_matches
from pathlib import Path


class ProbeError(Exception):
    """An error caused by user input or environment; the CLI prints it without a traceback."""


class DataError(ProbeError):
    """Malformed or inconsistent task data, located by file and (where known) line."""

    def __init__(self, path: str | Path, line: int | None, message: str) -> None:
        self.path = str(path)
        self.line = line
        where = f"{self.path}:{line}" if line is not None else self.path
        super().__init__(f"{where}: {message}")


class CacheError(ProbeError):
    """A cache shard that is missing, incomplete, corrupt or stale."""


def unknown_name(kind: str, name: str, known: list[str] | tuple[str, ...]) -> ProbeError:
    """Build the 'unknown X: did you mean …? available: …' error the registries raise."""
    close = get_close_matches(name, list(known), n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(repr(c) for c in close)}?" if close else ""
    return ProbeError(f"unknown {kind} {name!r}.{hint} Available: {', '.join(sorted(known))}.")
