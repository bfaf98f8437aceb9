"""Property tests: each task-data reader, fed corrupt bytes, returns records or one located error.

Hypothesis builds files from pieces of each format (CoNLL-U, token-tag, pair TSV, parallel
text) and the damage real files show: random bytes, NUL and other control characters, BOMs,
CRLF and lone CR line ends, very long lines, missing and extra columns, empty and
comment-only files, Latin-1 bytes inside UTF-8, truncated last lines. Whatever the input, a
reader returns records HDF5 can store, or raises a DataError `path:line: …` (`path: …` only
for whole-file problems); no other exception may escape.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import event, given, settings
from hypothesis import strategies as st

from probe.data.sources.columns import read_token_tag
from probe.data.sources.conllu import read_conllu_with_meta
from probe.data.sources.pairs import Layout, attach_labels, read_pair_tsv
from probe.data.sources.parallel import read_parallel
from probe.data.sources.records import TaggedSentence, TextPair
from probe.data.sources.text import fix_mojibake
from probe.errors import DataError

T = TypeVar("T")
SETTINGS = settings(max_examples=150, deadline=None, database=None)
UTF8_BOM = b"\xef\xbb\xbf"
# Errors about a file as a whole, the only ones allowed to carry no line number.
WHOLE_FILE = re.compile(
    r"no sentences found|no sentence pairs found|no lines found|is empty|label rows but"
)

# Characters that break naive readers: NUL and other C0/C1 controls, the ones `str.splitlines`
# takes for line breaks (VT, FF, U+001C-U+001F, U+0085, U+2028, U+2029), BOMs and
# non-characters, column separators, quotes, non-ASCII digits `str.isdigit` accepts, and
# mojibake (`À\x80` is what ftfy "repairs" into a NUL).
SPECIAL = [
    "\x00", "\x01", "\x08", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x1f", "\x7f", "\x85",
    "\x9d", "\xa0", "\u2028", "\u2029", "\ufeff", "\ufffe", "\U0010ffff", "\t", " ", "\r",
    "\r\n", "\n", "#", "=", "-", '"', '""', "²", "١", "À\x80", "Ã©", "wÃªreld", "en:",
]  # fmt: skip
# Byte sequences no UTF-8 text holds: Latin-1 é, a cut-off lead byte, a UTF-8-encoded
# surrogate (CESU-8), a UTF-16 BOM, a stray continuation byte.
BAD_BYTES = [b"\xe9", b"\xc3", b"\xed\xa0\x80", b"\xff\xfe", b"\x80"]


@st.composite
def damaged_file(draw: st.DrawFn, lines: st.SearchStrategy[list[str]], odd: Sequence[str]) -> bytes:
    """A valid file of the format (`lines`), damaged up to three times, then encoded badly.

    Mostly-valid files let the damage reach the parser; `odd` holds values of the format that
    sit at its edges (IDs `1-2` or `²`, header rows, `-DOCSTART-`) to drop into fields.
    Rare branches are on the largest value drawn, which shrinking moves away from.
    """
    if draw(st.integers(0, 9)) == 9:
        return draw(st.binary(max_size=300))
    rows = list(draw(lines))
    fields = st.one_of(st.sampled_from(SPECIAL), st.sampled_from(odd), st.text(max_size=5))
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["insert", "field", "columns", "line", "long"]))
        if kind == "line" or not rows:  # a blank, comment-like or arbitrary line anywhere
            at = draw(st.integers(0, len(rows)))
            rows.insert(at, draw(st.one_of(st.just(""), fields, st.sampled_from(odd))))
            continue
        i = draw(st.integers(0, len(rows) - 1))
        row = rows[i]
        if kind == "insert":  # a troublesome character inside a line
            at = draw(st.integers(0, len(row)))
            rows[i] = row[:at] + draw(fields) + row[at:]
        elif kind == "field":  # one column replaced
            cols = row.split("\t")
            cols[draw(st.integers(0, len(cols) - 1))] = draw(fields)
            rows[i] = "\t".join(cols)
        elif kind == "columns":  # a column missing or one too many
            cols = row.split("\t")
            if draw(st.booleans()) and len(cols) > 1:
                del cols[draw(st.integers(0, len(cols) - 1))]
            else:
                cols.insert(draw(st.integers(0, len(cols))), draw(st.sampled_from(["x", "_", ""])))
            rows[i] = "\t".join(cols)
        else:  # a very long line
            rows[i] = row + draw(st.sampled_from(["x", "Ã©", "\t", " ", "1"])) * 20_000
    end = draw(st.sampled_from([b"\n", b"\n", b"\r\n"]))
    ends = [end] * len(rows)
    encodings = ["utf-8"] * len(rows)
    if rows and draw(st.integers(0, 5)) == 5:  # one line with another end, or none at all
        ends[draw(st.integers(0, len(rows) - 1))] = draw(st.sampled_from([b"\r", b"", b"\r\r\n"]))
    if rows and draw(st.integers(0, 5)) == 5:  # one line pasted in from a Latin-1/cp1252 file
        encodings[draw(st.integers(0, len(rows) - 1))] = draw(
            st.sampled_from(["latin-1", "cp1252"])
        )
    out = bytearray(
        draw(st.sampled_from([b""] * 6 + [UTF8_BOM, UTF8_BOM, UTF8_BOM * 2, b"\xff\xfe"]))
    )
    for row, encoding, line_end in zip(rows, encodings, ends, strict=True):
        out += row.encode(encoding, errors="replace") + line_end
    if out and draw(st.integers(0, 5)) == 5:  # a stray byte anywhere
        at = draw(st.integers(0, len(out)))
        out[at:at] = draw(st.sampled_from([*BAD_BYTES, b"\x00", b"\r"]))
    if out and draw(st.integers(0, 5)) == 5:  # the last line cut short
        del out[len(out) - draw(st.integers(1, min(3, len(out)))) :]
    return bytes(out)


def words(*extra: str) -> st.SearchStrategy[str]:
    return st.sampled_from(["a", "Paris", "Wie geht's?", "你好", "naïve", "wÃªreld", *extra])


@st.composite
def conllu_lines(draw: st.DrawFn) -> list[str]:
    """CoNLL-U sentences: comments, word lines 1..n (a multiword or empty node now and then)."""
    if draw(st.integers(0, 9)) == 9:
        return ["# newdoc id = d", "# sent_id = s1", "# text = a"]  # comments only
    out: list[str] = []
    for s in range(draw(st.integers(0, 3))):
        out += draw(st.sampled_from([[], [f"# sent_id = s{s}"], ["# newdoc id = d", "# text = a"]]))
        for n in range(1, draw(st.integers(1, 4)) + 1):
            extra = draw(st.sampled_from(["", "", "", "", "multiword", "empty node"]))
            if extra == "multiword":
                out.append(f"{n}-{n + 1}\tab\t_\t_\t_\t_\t_\t_\t_\t_")
            form, upos = draw(words("A b", "_")), draw(st.sampled_from(["NOUN", "VERB"]))
            out.append(f"{n}\t{form}\t_\t{upos}\t_\t_\t0\troot\t_\tSpaceAfter=No")
            if extra == "empty node":
                out.append(f"{n}.1\tb\t_\tNOUN\t_\t_\t_\t_\t0:root\t_")
        out.append("")
    last_blank: bool = draw(st.booleans())
    if out and not last_blank:
        out.pop()  # no blank line after the last sentence
    return out


CONLLU_ODD = ["1-2", "1.1", "0", "01", "²", "١", "9" * 5000, "_", "# sent_id", "#", "# = x"]


def token_lines(sep: str) -> st.SearchStrategy[list[str]]:
    """Token-tag sentences separated by blank lines, now and then a `-DOCSTART-` line."""
    line = st.builds(
        lambda w, t: f"{w}{sep}{t}", words("56 milli", "en:Paris"), st.sampled_from(["O", "B-LOC"])
    )
    gap = st.sampled_from([[""], [""], ["-DOCSTART-\tO", ""]])
    sentence = st.tuples(st.lists(line, min_size=1, max_size=4), gap).map(lambda t: t[0] + t[1])
    return st.lists(sentence, max_size=3).map(lambda ss: [ln for s in ss for ln in s])


TOKEN_ODD = ["-DOCSTART-", "-DOCSTART-\tO", "O O", "B-MISC", "en:", "\t", " "]


@st.composite
def pair_lines(draw: st.DrawFn) -> list[str]:
    """XNLI/PAWS-X rows: 3 columns, 2 (labels hidden), or the HF dump's 4 under its header."""
    text = words('"Die ""IPA"" besteht"', '"open')
    shape = draw(st.sampled_from(["labelled", "unlabelled", "hf"]))
    label = st.sampled_from(["entailment", "neutral", "contradiction", "0", "1"])
    rows = []
    for i in range(draw(st.integers(1, 4))):
        a, b, lab = draw(text), draw(text), draw(label)
        rows.append(
            {"labelled": f"{a}\t{b}\t{lab}", "unlabelled": f"{a}\t{b}"}.get(
                shape, f"{i}\t{a}\t{b}\t{lab}"
            )
        )
    return ["id\tsentence1\tsentence2\tlabel", *rows] if shape == "hf" else rows


PAIR_ODD = ["id\tsentence1\tsentence2\tlabel", "label", "entails", '"', '""', '"a""']


def sentence_lines(n: int) -> st.SearchStrategy[list[str]]:
    return st.lists(words("Hello.", "Wie geht's?"), min_size=n, max_size=n)


def storable(text: object) -> bool:
    """What HDF5 UTF-8 strings can hold: no NUL, nothing UTF-8 cannot encode."""
    if not isinstance(text, str) or "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def assert_storable(record: TaggedSentence | TextPair) -> None:
    """Every string of a record (and of the tuples it holds) can go into the cache; the
    other values are a UD tree's head indices, integers."""
    for value in dataclasses.astuple(record):
        for text in value if isinstance(value, tuple) else (value,):
            assert text is None or type(text) is int or storable(text), (record, text)


def assert_located(err: DataError, files: dict[Path, bytes]) -> None:
    """`err` names one of `files` and, unless the problem is the whole file, a line in it."""
    assert type(err) is DataError and err.__cause__ is None
    path = Path(err.path)
    assert path in files, err
    message = str(err)
    if err.line is None:
        assert message.startswith(f"{path}: "), message
        assert WHOLE_FILE.search(message), f"no line number in {message!r}"
    else:
        assert message.startswith(f"{path}:{err.line}: "), message
        assert 1 <= err.line <= files[path].count(b"\n") + 1, message
    assert len(message) < len(str(path)) + 400, "a long line must not become the message"


def outcome(read: Callable[[], Sequence[T]], files: dict[Path, bytes]) -> list[T] | None:
    """Write `files`, call `read`: its records, or None after a located error."""
    for path, data in files.items():
        path.write_bytes(data)
    try:
        records = list(read())
    except DataError as err:
        assert_located(err, files)
        # which errors the examples reach: pytest --hypothesis-show-statistics
        event("DataError", re.sub(r"^.*?: |[0-9]+|'.*'", "", str(err))[:40])
        return None
    event("records")
    return records


@pytest.fixture(scope="module")
def workdir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder for the module: hypothesis runs many examples per test, each overwrites."""
    return tmp_path_factory.mktemp("reader-properties")


# --- every reader family, damaged input ---------------------------------------------------


@SETTINGS
@given(data=damaged_file(conllu_lines(), CONLLU_ODD), restrict=st.booleans())
def test_conllu_returns_records_or_a_located_error(
    workdir: Path, data: bytes, restrict: bool
) -> None:
    path = workdir / "d.conllu"
    tags = {"NOUN", "VERB"} if restrict else None
    records = outcome(lambda: read_conllu_with_meta(path, tags), {path: data})
    assert records is None or records
    for sent, meta in records or []:
        assert_storable(sent)
        assert len(sent.words) == len(sent.tags) > 0 and all(w.strip() for w in sent.words)
        assert all(storable(k) and storable(v) for k, v in meta.items())


@SETTINGS
@given(st.data(), st.sampled_from(["\t", " ", None]))
def test_token_tag_returns_records_or_a_located_error(
    workdir: Path, data: st.DataObject, sep: str | None
) -> None:
    raw = data.draw(damaged_file(token_lines(sep or data.draw(st.sampled_from(" \t"))), TOKEN_ODD))
    path = workdir / "d.tsv"
    records = outcome(lambda: read_token_tag(path, sep), {path: raw})
    assert records is None or records
    for sent in records or []:
        assert_storable(sent)
        assert len(sent.words) == len(sent.tags) > 0 and all(w.strip() for w in sent.words)


@SETTINGS
@given(data=damaged_file(pair_lines(), PAIR_ODD), layout=st.sampled_from(["xnli", "pawsx"]))
def test_pair_tsv_returns_records_or_a_located_error(
    workdir: Path, data: bytes, layout: Layout
) -> None:
    path = workdir / "d.tsv"
    records = outcome(lambda: read_pair_tsv(path, layout), {path: data})
    assert records is None or records
    for pair in records or []:
        assert_storable(pair)


@SETTINGS
@given(data=damaged_file(pair_lines(), PAIR_ODD))
def test_pair_labels_file_returns_records_or_a_located_error(workdir: Path, data: bytes) -> None:
    path = workdir / "labels.tsv"
    n_rows = max(data.count(b"\n") - 1, 0)  # header + rows, often the right count
    pairs = [TextPair(f"p{i}", "a", "b") for i in range(n_rows)]
    for pair in outcome(lambda: attach_labels(pairs, path, "label"), {path: data}) or []:
        assert_storable(pair)


@SETTINGS
@given(st.data(), st.integers(0, 5))
def test_parallel_returns_records_or_a_located_error(
    workdir: Path, data: st.DataObject, n: int
) -> None:
    x = data.draw(damaged_file(sentence_lines(n), SPECIAL))
    eng = data.draw(damaged_file(sentence_lines(n), SPECIAL))
    path_x, path_eng = workdir / "t.xxx-eng.xxx", workdir / "t.xxx-eng.eng"
    pairs = outcome(lambda: read_parallel(path_x, path_eng), {path_x: x, path_eng: eng})
    assert pairs is None or pairs
    for pair in pairs or []:
        assert_storable(pair)


# --- clean files with one fault: the error names its line -------------------------------


def clean_conllu(n: int) -> list[str]:
    rows = [f"{i}\tw{i}\t_\tNOUN\t_\t_\t0\troot\t_\t_" for i in range(1, 4)]
    return [line for s in range(n) for line in (f"# sent_id = s{s}", *rows, "")]


CLEAN: dict[str, tuple[Callable[[int], list[str]], Callable[[Path], object]]] = {
    "conllu": (clean_conllu, lambda p: read_conllu_with_meta(p)),
    "token-tag": (lambda n: ["Paris\tB-LOC", "is\tO", ""] * n, read_token_tag),
    "masakhaner": (
        lambda n: ["56 milli O", "Abuja B-LOC", ""] * n,
        lambda p: read_token_tag(p, " "),
    ),
    "pair": (
        lambda n: ["The cat sat.\tA cat sat.\tentailment"] * n,
        lambda p: read_pair_tsv(p, "xnli"),
    ),
    "parallel": (lambda n: [f"Sentence {i}." for i in range(n)], lambda p: read_parallel(p, p)),
}
FAULTS = {  # bytes -> what the message must say
    b"\x00": "NUL character (U+0000)",
    b"\r": "carriage return (U+000D) without a line feed",
    b"\xe9": "byte 0xe9",
    b"\xed\xa0\x80": "byte 0xed",
    b"\x80": "byte 0x80",
}


@SETTINGS
@given(
    family=st.sampled_from(sorted(CLEAN)),
    n=st.integers(1, 6),
    where=st.tuples(st.integers(0, 10**6), st.integers(0, 10**6)),
    fault=st.sampled_from(sorted(FAULTS)),
    crlf=st.booleans(),
    bom=st.booleans(),
)
def test_a_bad_character_is_refused_at_its_line_and_column(
    workdir: Path,
    family: str,
    n: int,
    where: tuple[int, int],
    fault: bytes,
    crlf: bool,
    bom: bool,
) -> None:
    make, read = CLEAN[family]
    lines = make(n)
    i = where[0] % len(lines)
    col = where[1] % (len(lines[i]) + 1)
    if fault == b"\r" and col == len(lines[i]):
        crlf = True  # else the CR would join the LF after it into a CRLF line end
    lines[i] = lines[i][:col] + "\x00" + lines[i][col:]  # placeholder, replaced by the bytes
    end = b"\r\n" if crlf else b"\n"
    data = (UTF8_BOM if bom else b"") + end.join(ln.encode() for ln in lines) + end
    data = data.replace(b"\x00", fault)
    path = workdir / f"fault.{family}"
    path.write_bytes(data)
    with pytest.raises(DataError) as info:
        read(path)
    assert_located(info.value, {path: data})
    assert info.value.line == i + 1
    assert FAULTS[fault] in str(info.value)
    assert f"at column {col + 1}" in str(info.value)


@SETTINGS
@given(
    family=st.sampled_from(sorted(CLEAN)),
    n=st.integers(1, 5),
    inner=st.lists(st.sampled_from(["\x0b", "\x0c", "\x1c", "\x1f", "\x85", "\u2028", "\u2029"])),
    boms=st.integers(1, 2),
)
def test_bom_crlf_and_unicode_line_breaks_change_nothing(
    workdir: Path, family: str, n: int, inner: list[str], boms: int
) -> None:
    """BOMs and CRLF read as if absent; characters splitlines breaks on stay in their line."""
    make, read = CLEAN[family]
    lines = make(n)
    for k, char in enumerate(inner):  # after a word's first letter: no reader may strip them
        i = k % len(lines)
        if m := re.search("[A-Za-z]", lines[i]):
            lines[i] = lines[i][: m.end()] + char + lines[i][m.end() :]
    plain, marked = workdir / "plain", workdir / "marked"
    plain.mkdir(exist_ok=True)
    marked.mkdir(exist_ok=True)
    a, b = plain / f"f.{family}", marked / f"f.{family}"
    a.write_bytes("\n".join(lines).encode() + b"\n")
    b.write_bytes(UTF8_BOM * boms + "\r\n".join(lines).encode() + b"\r\n")
    assert read(a) == read(b)
    if family == "parallel":
        assert len(read(a)) == n  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "data", [b"", b"\n", b"\r\n\r\n", UTF8_BOM, UTF8_BOM + b"\n", b"# a\n# b", b"# a\n\n# b\n"]
)
@pytest.mark.parametrize("family", sorted(CLEAN))
def test_empty_blank_and_comment_only_files(workdir: Path, family: str, data: bytes) -> None:
    path = workdir / f"empty.{family}"
    path.write_bytes(data)
    try:
        records = CLEAN[family][1](path)
    except DataError as err:
        assert_located(err, {path: data})
    else:  # only where "# a" is data: a sentence, or MasakhaNER's token "#" tagged "a"
        assert family in ("parallel", "masakhaner"), records


# --- regressions --------------------------------------------------------------------------


def test_nul_in_a_token_is_refused_when_read_naming_file_and_line(tmp_path: Path) -> None:
    # Used to read fine, run the encoder over the whole split, then fail in h5py with
    # `ValueError: VLEN strings do not support embedded NULLs`.
    path = tmp_path / "nul.tsv"
    path.write_bytes(b"Paris\tB-LOC\nis\tO\n\nni\x00ce\tO\n")
    with pytest.raises(DataError, match=r"NUL character \(U\+0000\) at column 3") as info:
        read_token_tag(path)
    assert str(info.value).startswith(f"{path}:4: ")


def test_mojibake_repair_never_makes_an_unstorable_token(tmp_path: Path) -> None:
    # ftfy reads "À\x80" as Java's two-byte NUL; the token is kept as read instead.
    assert fix_mojibake("À\x80") == "À\x80" and fix_mojibake("wÃªreld") == "wêreld"
    path = tmp_path / "m.tsv"
    path.write_bytes("À\x80\tO\nwÃªreld\tO\n".encode())
    assert read_token_tag(path)[0].words == ("À\x80", "wêreld")


def test_conllu_word_ids_are_ascii_integers(tmp_path: Path) -> None:
    # "²".isdigit() is True but int("²") raises ValueError; a 5000-digit ID is over int's limit.
    for word_id, match in [("²", "not an integer"), ("9" * 5000, "out of sequence")]:
        path = tmp_path / "ids.conllu"
        path.write_text(f"{word_id}\ta\t_\tNOUN\t_\t_\t0\troot\t_\t_\n", encoding="utf-8")
        with pytest.raises(DataError, match=match) as info:
            read_conllu_with_meta(path)
        assert info.value.line == 1 and len(str(info.value)) < 300
