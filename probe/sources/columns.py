"""Reading token-per-line tagging files (XTREME UD-POS, PAN-X, MasakhaNER) into TaggedSentence.

Also home to the two text helpers every local reader shares: `read_lines` (UTF-8, CRLF, BOM,
a bad byte reported by line) and `fix_mojibake` (double-encoded UTF-8, as in XTREME's
Afrikaans UD-POS test file).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

import ftfy

from probe.errors import DataError
from probe.sources.records import TaggedSentence

log = logging.getLogger(__name__)

# Characters that bytes 0x80-0xBF (UTF-8 continuation bytes) become when UTF-8 is misread as
# cp1252/latin-1. Mojibake is a lead byte's character (Â..ô) followed by one of these, or a
# stray C1 control; only strings that contain such a pair are handed to ftfy, which keeps the
# common case (clean text) at one regex search per line.
_CONTINUATION = "".join(
    sorted({bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in range(0x80, 0xC0)})
)
_SUSPECT = re.compile(f"[\u00c2-\u00f4][{re.escape(_CONTINUATION)}]|[\u0080-\u009f]")
# XTREME's raw PAN-X prefixes every token with its language ("en:Paris"); the files here carry
# no such prefix, but a file where every token has the same one gets it stripped.
_LANG_PREFIX = re.compile(r"[a-z]{2,3}:")


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file without their line ends (LF or CRLF) or a leading BOM.

    Why not `open().read()`: a bad byte must become a DataError naming the line, not a
    UnicodeDecodeError with a byte offset; and `str.splitlines` would also split on U+2028
    and U+0085, which can occur inside tokens.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(path, None, f"cannot read the file: {exc.strerror or exc}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise DataError(
            path, line, f"byte {data[exc.start]:#04x} is not valid UTF-8; expected a UTF-8 file"
        ) from None
    text = text.removeprefix("\ufeff").replace("\r\n", "\n")
    lines = text.split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def fix_mojibake(text: str) -> str:
    """Repair UTF-8 that was decoded as cp1252/latin-1 and re-encoded (`wÃªreld` -> `wêreld`).

    Only ftfy's encoding fix is applied: its other fixes (curly quotes, full-width forms, HTML
    entities, NFC) would silently change correct tokens in almost every file.
    """
    if not _SUSPECT.search(text):
        return text
    return ftfy.fix_encoding(text)


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
    repair = fix_encoding and _SUSPECT.search("\n".join(lines)) is not None
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
            raise DataError(path, lineno, f"expected 'token{sep_name}tag', found {line!r} (no tag)")
        token, tag = parts
        if not token or not tag.isprintable() or " " in tag or (sep == "\t" and "\t" in token):
            raise DataError(
                path, lineno, f"expected exactly 2 columns 'token{sep_name}tag', found {line!r}"
            )
        if allowed is not None and tag not in allowed:
            labels = ", ".join(sorted(allowed))
            raise DataError(path, lineno, f"tag {tag!r} is not in the label set ({labels})")
        if repair and (repaired := fix_mojibake(token)) != token:
            fixed += 1
            token = repaired
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
    if not all(w.startswith(prefix) and len(w) > len(prefix) for s in sentences for w in s.words):
        return sentences
    log.info("%s: stripping the language prefix %r from every token", path, prefix)
    cut = len(prefix)
    return [TaggedSentence(s.sent_id, tuple(w[cut:] for w in s.words), s.tags) for s in sentences]
