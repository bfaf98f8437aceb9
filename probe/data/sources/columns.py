"""Reading token-per-line tagging files (XTREME UD-POS, PAN-X, MasakhaNER) into TaggedSentence.

`read_lines` and `fix_mojibake` live in `probe.data.sources.text`, shared by every local reader;
they are re-exported here because callers (probe.data.tasks, the tests) import them from here.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from probe.data.sources.records import TaggedSentence
from probe.data.sources.text import excerpt, fix_mojibake, looks_like_mojibake, read_lines
from probe.errors import DataError

__all__ = ["fix_mojibake", "read_lines", "read_token_tag", "validate_tags"]

log = logging.getLogger(__name__)

# XTREME's raw PAN-X prefixes every token with its language ("en:Paris"); the files here carry
# no such prefix, but a file where every token has the same one gets it stripped.
_LANG_PREFIX = re.compile(r"[a-z]{2,3}:")


def read_token_tag(
    path: Path,
    sep: str | None = "\t",
    *,
    allowed_tags: Iterable[str] | None = None,
    fix_encoding: bool = True,
) -> list[TaggedSentence]:
    """Read `token<sep>tag` lines, a blank line between sentences, into TaggedSentence.

    The line is split on its LAST `sep` (None: the last run of whitespace), so MasakhaNER's
    space-separated tokens may themselves contain spaces. `-DOCSTART-` lines end a sentence
    and are dropped. `sent_id` is `<file name>:<line the sentence starts on>`. With
    `allowed_tags`, a tag outside the set is a DataError naming its exact line.
    """
    path = Path(path)
    allowed = frozenset(allowed_tags) if allowed_tags is not None else None
    sep_name = {"\t": "<TAB>", " ": "<SPACE>", None: "<whitespace>"}.get(sep, repr(sep))
    lines = read_lines(path)
    # Whole-file check first: almost every file is clean, so tokens are looked at one by one
    # only where the file holds something that may be mojibake.
    repair = fix_encoding and looks_like_mojibake("\n".join(lines))
    sentences: list[TaggedSentence] = []
    words: list[str] = []
    tags: list[str] = []
    start = fixed = 0

    for lineno, line in enumerate(lines, 1):
        if not line or line.isspace() or line.startswith("-DOCSTART-"):
            if words:
                sentences.append(TaggedSentence(f"{path.name}:{start}", tuple(words), tuple(tags)))
                words, tags = [], []
            continue
        if line[-1].isspace():
            line = line.rstrip()
        parts = line.rsplit(sep, 1)
        if len(parts) != 2:
            raise DataError(
                path, lineno, f"expected 'token{sep_name}tag', found {excerpt(line)} (no tag)"
            )
        token, tag = parts
        if repair and (repaired := fix_mojibake(token)) != token:
            fixed += 1
            token = repaired
        if not token.strip():  # a word the tokenizer would drop: nothing to take features of
            raise DataError(
                path, lineno, f"expected 'token{sep_name}tag', found {excerpt(line)} (no token)"
            )
        if " " in tag or (sep == "\t" and "\t" in token):
            raise DataError(
                path,
                lineno,
                f"expected exactly 2 columns 'token{sep_name}tag', found {excerpt(line)}",
            )
        if not tag.isprintable():
            raise DataError(
                path, lineno, f"tag {excerpt(tag)} holds a character that is not printable"
            )
        if allowed is not None and tag not in allowed:
            labels = ", ".join(sorted(allowed))
            raise DataError(path, lineno, f"tag {excerpt(tag)} is not in the label set ({labels})")
        if not words:
            start = lineno
        words.append(token)
        tags.append(tag)
    if words:  # the last sentence may lack its trailing blank line
        sentences.append(TaggedSentence(f"{path.name}:{start}", tuple(words), tuple(tags)))
    if not sentences:
        raise DataError(path, None, f"no sentences found; expected 'token{sep_name}tag' lines")
    if fixed:
        log.info("%s: repaired double-encoded UTF-8 in %d tokens", path, fixed)
    return _strip_language_prefix(sentences, path)


def validate_tags(sentences: Sequence[TaggedSentence], allowed: Iterable[str], path: Path) -> None:
    """Raise DataError for the first tag outside `allowed`, naming the tag, word and location.

    For sentences read from `path` by these readers the id is `<file name>:<line>`, so the
    error carries the line the sentence starts on; the message names the word within it.
    (Pass `allowed_tags` to the reader instead to get the tag's own line.)
    """
    allowed = frozenset(allowed)
    prefix = f"{Path(path).name}:"
    for sent in sentences:
        for i, tag in enumerate(sent.tags):
            if tag in allowed:
                continue
            rest = sent.sent_id.removeprefix(prefix)
            line = int(rest) if sent.sent_id.startswith(prefix) and rest.isdigit() else None
            raise DataError(
                path,
                line,
                f"sentence {sent.sent_id!r}, word {i + 1} ({sent.words[i]!r}): tag {tag!r} is "
                f"not in the label set ({', '.join(sorted(allowed))})",
            )


def _strip_language_prefix(sentences: list[TaggedSentence], path: Path) -> list[TaggedSentence]:
    """Drop an `xx:` prefix that every token of the file carries (raw XTREME PAN-X style).

    Only a prefix shared by all tokens is stripped: tokens such as `bar:24` occur naturally.
    """
    first = _LANG_PREFIX.match(sentences[0].words[0])
    if first is None:
        return sentences
    prefix = first.group()
    cut = len(prefix)
    if not all(w.startswith(prefix) and w[cut:].strip() for s in sentences for w in s.words):
        return sentences
    log.info("%s: stripping the language prefix %r from every token", path, prefix)
    return [TaggedSentence(s.sent_id, tuple(w[cut:] for w in s.words), s.tags) for s in sentences]
