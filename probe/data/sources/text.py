"""Decoding task data files into lines, and the character checks every local reader shares."""

from __future__ import annotations

import re
from pathlib import Path

import ftfy

from probe.errors import DataError

BOM = "\ufeff"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")  # UTF-32 LE/BE marks start with these too
# Bytes refused anywhere in a file, found on the raw bytes (neither can occur inside a UTF-8
# multi-byte sequence, so each match is a whole character):
# - NUL: HDF5 variable-length strings end at it, so h5py refuses to write a token, text or
#   sent_id holding one (`VLEN strings do not support embedded NULLs`) after the encoder
#   has already run over the whole split;
# - CR not followed by LF: lines are split on LF only (CRLF counts as LF), so a lone CR is
#   either an old Mac line end the line numbers would not count, or a stray byte in a text.
_BAD_BYTE = re.compile(rb"\x00|\r(?!\n)")
# What HDF5's UTF-8 strings cannot hold: NUL, and lone surrogates (not encodable as UTF-8).
# A strict UTF-8 decode never yields a surrogate; the check guards text changed after reading.
_UNSTORABLE = re.compile("[\x00\ud800-\udfff]")

# Characters that bytes 0x80-0xBF (UTF-8 continuation bytes) become when UTF-8 is misread as
# cp1252/latin-1. Mojibake is a lead byte's character (Â..ô) followed by one of these, or a
# stray C1 control; only strings that contain such a pair are handed to ftfy, which keeps the
# common case (clean text) at one regex search per line.
_CONTINUATION = "".join(
    sorted({bytes([b]).decode("cp1252", errors="ignore") or chr(b) for b in range(0x80, 0xC0)})
)
_SUSPECT = re.compile(f"[\u00c2-\u00f4][{re.escape(_CONTINUATION)}]|[\u0080-\u009f]")


def read_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 text file without their line ends (LF or CRLF) or leading BOMs.

    Why not `open().read()`: a bad byte must become a DataError naming its line and column,
    not a UnicodeDecodeError with a byte offset; and `str.splitlines` would also split on
    U+2028, U+0085, VT, FF and U+001C-U+001F, which occur inside real texts (PAWS-X Korean has
    a U+001C) and would shift every later line number. Those characters are kept: HDF5 stores
    them and tokenizers treat them as whitespace. Refused, each with its line and column, are
    what no reader can use: bytes that are not UTF-8 (Latin-1 inside a UTF-8 file, a last
    character cut short), NUL, and a CR without LF; a UTF-16 file is refused as such.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DataError(path, None, f"cannot read the file: {exc.strerror or exc}") from None
    if data.startswith(_UTF16_BOMS):
        raise DataError(
            path, 1, "starts with a UTF-16 byte-order mark; expected UTF-8 (convert the file)"
        )
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        text, bad = "", exc.start
    else:
        bad = len(data)
    # Report whichever problem comes first in the file, so the line is the first bad one.
    if (m := _BAD_BYTE.search(data, 0, bad)) is not None:
        line, column = _position(data, m.start())
        if m.group() == b"\x00":
            what = (
                f"NUL character (U+0000) at column {column}; HDF5 caches cannot store it (is "
                "the file binary, or UTF-16 without a byte-order mark?)"
            )
        else:
            what = (
                f"carriage return (U+000D) without a line feed at column {column}; expected LF "
                "or CRLF line ends (old Mac line ends, or a stray CR inside a text)"
            )
        raise DataError(path, line, what)
    if bad < len(data):
        line, column = _position(data, bad)
        raise DataError(
            path,
            line,
            f"byte {data[bad]:#04x} at column {column} is not valid UTF-8; expected a UTF-8 "
            "file (Latin-1 or cp1252 text inside it, or a file cut off inside a character?)",
        )
    # A BOM is stripped, twice over where a tool added one to a file that had one already.
    lines = text.lstrip(BOM).replace("\r\n", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def storable(text: str) -> bool:
    """Whether an HDF5 UTF-8 string can hold `text` (no NUL, no lone surrogate)."""
    return _UNSTORABLE.search(text) is None


def looks_like_mojibake(text: str) -> bool:
    """Whether `text` holds a character pair that double-encoded UTF-8 leaves (cheap test)."""
    return _SUSPECT.search(text) is not None


def fix_mojibake(text: str) -> str:
    """Repair UTF-8 that was decoded as cp1252/latin-1 and re-encoded (`wÃªreld` -> `wêreld`).

    Only ftfy's encoding fix is applied: its other fixes (curly quotes, full-width forms, HTML
    entities, NFC) would silently change correct tokens in almost every file. A repair that
    yields a character HDF5 cannot store is not a repair (ftfy reads `À\\x80` as Java's
    two-byte NUL), so the text is then kept as read.
    """
    if not _SUSPECT.search(text):
        return text
    fixed = ftfy.fix_encoding(text)
    return fixed if storable(fixed) else text


def excerpt(text: str, limit: int = 60) -> str:
    """`repr(text)`, cut to about `limit` characters: a 1 MB line must not become the message."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}… ({len(text)} characters)"


def _position(data: bytes, pos: int) -> tuple[int, int]:
    """The 1-based line and character column of byte `pos` (leading BOMs are not columns)."""
    start = data.rfind(b"\n", 0, pos) + 1
    before = data[start:pos].decode("utf-8", errors="replace")
    if start == 0:
        before = before.lstrip(BOM)
    return data.count(b"\n", 0, pos) + 1, len(before) + 1
