"""One generic registry for every named family (tasks, models, heads, bodies, experiments).

Modelled on allennlp's `Registrable` and mteb's task registry: names are unique (a second
registration of a name is a programming error and is refused, naming the first), an unknown
name fails with the close matches and the full list, and the CLI's click choices are read
from `names()`, so a new entry is usable everywhere without editing a list.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar, overload

from probe.errors import unknown_name

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind, in registration order.

    `load` imports the modules whose import registers entries (lazily, so a registry can be
    imported without pulling in every entry's dependencies); it runs once, on first lookup.
    """

    def __init__(self, kind: str, *, load: Callable[[], object] | None = None) -> None:
        self.kind = kind
        self._entries: dict[str, T] = {}
        self._where: dict[str, str] = {}
        self._load = load

    def _loaded(self) -> dict[str, T]:
        if self._load is not None:
            load, self._load = self._load, None
            load()
        return self._entries

    @overload
    def register(self, name: str, item: T) -> T: ...

    @overload
    def register(self, name: str, item: None = None) -> Callable[[T], T]: ...

    def register(self, name: str, item: T | None = None) -> T | Callable[[T], T]:
        """Add `item` under `name` (or use as a decorator); a taken name is a ValueError."""

        def add(entry: T) -> T:
            if name in self._entries:
                raise ValueError(
                    f"{self.kind} {name!r} is already registered (at {self._where[name]})"
                )
            caller = sys._getframe(1 if item is None else 2)  # the line that registered it
            self._where[name] = f"{caller.f_code.co_filename}:{caller.f_lineno}"
            self._entries[name] = entry
            return entry

        return add if item is None else add(item)

    def get(self, name: str) -> T:
        """The entry; an unknown name is a ProbeError with 'did you mean' and the list."""
        entries = self._loaded()
        if name not in entries:
            raise unknown_name(self.kind, name, list(entries))
        return entries[name]

    def names(self) -> tuple[str, ...]:
        return tuple(self._loaded())

    def items(self) -> list[tuple[str, T]]:
        return list(self._loaded().items())

    def __contains__(self, name: object) -> bool:
        return name in self._loaded()

    def __iter__(self) -> Iterator[str]:
        return iter(self.names())

    def __len__(self) -> int:
        return len(self._loaded())

    @contextlib.contextmanager
    def override(self, name: str, item: T) -> Iterator[None]:
        """Register `item` under `name` for the block only (tests, experiments with a variant)."""
        entries = self._loaded()
        old = entries.get(name)
        entries[name] = item
        try:
            yield
        finally:
            if old is None:
                del entries[name]
            else:
                entries[name] = old
