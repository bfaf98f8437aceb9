"""Path patterns with `{lang}` and `{split}`: where a task's files lie, and which are there.

One pattern serves both directions: `path()` names the file of one language and split, and
`found()` scans the directory for every language (and split) the pattern matches, so the
languages of a local run come from the files on disk and not from a list in the code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from probe.errors import ProbeError

_FIELD = re.compile(r"\{(lang|split)\}")
_ANY_FIELD = re.compile(r"\{([^{}]*)\}")


@dataclass(frozen=True)
class PathPattern:
    """A relative path such as `xtreme/panx/{lang}/{split}-{lang}.tsv`.

    `{lang}` is required (it is how languages are discovered); `{split}` is optional (a
    pattern per split, or one file that serves a single split). A field may repeat; every
    occurrence must then hold the same text, so `_hf_labeled/test-de.tsv` does not match
    `{lang}/{split}-{lang}.tsv`.
    """

    text: str

    def __post_init__(self) -> None:
        unknown = [f for f in _ANY_FIELD.findall(self.text) if f not in ("lang", "split")]
        if unknown:
            raise ProbeError(
                f"path pattern {self.text!r}: unknown field {{{unknown[0]}}} "
                "(only {lang} and {split} are filled in)"
            )
        if "{lang}" not in self.text:
            raise ProbeError(f"path pattern {self.text!r} has no {{lang}}")
        if Path(self.text).is_absolute() or ".." in Path(self.text).parts:
            raise ProbeError(f"path pattern {self.text!r} must be relative to the data directory")

    @property
    def has_split(self) -> bool:
        return "{split}" in self.text

    def path(self, data_dir: Path, lang: str, split: str) -> Path:
        return data_dir / self.text.replace("{lang}", lang).replace("{split}", split)

    def found(self, data_dir: Path) -> dict[str, frozenset[str]]:
        """{language: splits} of every existing file matching the pattern (split "" when the
        pattern has no `{split}`)."""
        glob = _FIELD.sub("*", self.text)
        regex = self._regex()
        out: dict[str, set[str]] = {}
        for path in data_dir.glob(glob):
            if not path.is_file():
                continue
            m = regex.fullmatch(path.relative_to(data_dir).as_posix())
            if m is None:
                continue
            out.setdefault(m.group("lang"), set()).add(m.groupdict().get("split") or "")
        return {lang: frozenset(splits) for lang, splits in sorted(out.items())}

    def _regex(self) -> re.Pattern[str]:
        parts: list[str] = []
        seen: set[str] = set()
        pos = 0
        for m in _FIELD.finditer(self.text):
            parts.append(re.escape(self.text[pos : m.start()]))
            name = m.group(1)
            parts.append(f"(?P={name})" if name in seen else f"(?P<{name}>[^/]+?)")
            seen.add(name)
            pos = m.end()
        parts.append(re.escape(self.text[pos:]))
        return re.compile("".join(parts))
