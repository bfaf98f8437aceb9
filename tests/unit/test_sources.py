"""Tests of the readers in probe.data.sources on the real data in ../shared/data and on
small bad files.

Expected counts are computed here independently of the readers (plain line counting), and a
few absolute numbers are pinned to xtreme/STATS.tsv so that a reader and a counter that are
wrong in the same way still fail.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from probe.data.sources.columns import fix_mojibake, read_lines, read_token_tag, validate_tags
from probe.data.sources.conllu import genre_of, read_conllu, read_conllu_with_meta
from probe.data.sources.pairs import attach_labels, read_pair_tsv, require_labels
from probe.data.sources.parallel import (
    ISO639_1_TO_TATOEBA,
    TATOEBA_LANGUAGES,
    read_parallel,
    tatoeba_code,
    tatoeba_languages,
    tatoeba_paths,
)
from probe.data.sources.records import TaggedSentence
from probe.errors import DataError, ProbeError

UPOS = set("ADJ ADP ADV AUX CCONJ DET INTJ NOUN NUM PART PRON PROPN PUNCT SCONJ SYM VERB X".split())
PANX = {"O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"}
MASAKHANER = PANX | {"B-DATE", "I-DATE"}
WORD_LINE = re.compile(r"^[1-9][0-9]*\t")


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8"))
    return path


def blocks(path: Path) -> list[list[str]]:
    """Blank-line-separated blocks of non-blank lines: the independent count of sentences."""
    text = path.read_text(encoding="utf-8").replace("\r\n", "\n")
    return [[ln for ln in b.split("\n") if ln.strip()] for b in re.split(r"\n\s*\n", text)]


def expect_error(
    fn: Callable[..., object], *args: object, line: int | None, match: str, **kwargs: object
) -> DataError:
    """Call `fn`, expect a DataError matching `match` at `line` that names the first argument."""
    with pytest.raises(DataError, match=match) as info:
        fn(*args, **kwargs)
    assert info.value.line == line
    assert str(args[0]) in str(info.value)  # the message names the file
    return info.value


# --- CoNLL-U ------------------------------------------------------------------------------

CONLLU_FILES = [
    "UD_English-EWT/en_ewt-ud-dev.conllu",
    "UD_English-EWT/en_ewt-ud-train.conllu",
    "UD_English-GUM/en_gum-ud-dev.conllu",
    "UD_English-PUD/en_pud-ud-test.conllu",
    "UD_French-PUD/fr_pud-ud-test.conllu",
    "UD_Vietnamese-VTB/vi_vtb-ud-test.conllu",
    "UD_Japanese-GSD/ja_gsd-ud-test.conllu",
]


@pytest.mark.real
@pytest.mark.parametrize("name", CONLLU_FILES)
def test_conllu_counts_match_the_integer_id_lines(shared_data: Path, name: str) -> None:
    path = shared_data / "ud" / name
    sentences = read_conllu(path, allowed_tags=UPOS)
    sent_blocks = [b for b in blocks(path) if any(WORD_LINE.match(ln) for ln in b)]
    assert len(sentences) == len(sent_blocks)
    assert [len(s.words) for s in sentences] == [
        sum(bool(WORD_LINE.match(ln)) for ln in b) for b in sent_blocks
    ]
    assert all(len(s.words) == len(s.tags) for s in sentences)
    assert len({s.sent_id for s in sentences}) == len(sentences)


@pytest.mark.real
def test_conllu_numbers_from_stats(shared_data: Path) -> None:
    ewt = shared_data / "ud" / "UD_English-EWT"
    for split, n_sents, n_words in (("dev", 2001, 25147), ("test", 2077, 25094)):
        sentences = read_conllu(ewt / f"en_ewt-ud-{split}.conllu")
        assert (len(sentences), sum(len(s.words) for s in sentences)) == (n_sents, n_words)


@pytest.mark.real
def test_conllu_skips_multiword_tokens_and_empty_nodes(shared_data: Path) -> None:
    path = shared_data / "ud" / "UD_English-EWT" / "en_ewt-ud-dev.conllu"
    by_id = {s.sent_id: s for s in read_conllu(path)}
    lines = read_lines(path)
    # line 158: `29-30 didn't` spans `29 did` + `30 n't`
    assert lines[157].startswith("29-30\tdidn't")
    sent_id = next(
        ln.split("= ", 1)[1] for ln in reversed(lines[:157]) if ln.startswith("# sent_id")
    )
    sent = by_id[sent_id]
    assert sent.words[28:30] == ("did", "n't") and "didn't" not in sent.words
    # line 1602: empty node `8.1 write` is not a word of its sentence
    assert lines[1601].startswith("8.1\twrite")
    sent_id = next(
        ln.split("= ", 1)[1] for ln in reversed(lines[:1601]) if ln.startswith("# sent_id")
    )
    n_word_lines = 0
    i = lines.index(f"# sent_id = {sent_id}")
    while lines[i].strip():
        n_word_lines += bool(WORD_LINE.match(lines[i]))
        i += 1
    assert len(by_id[sent_id].words) == n_word_lines


@pytest.mark.real
def test_conllu_keeps_word_forms_with_spaces(shared_data: Path) -> None:
    sentences = read_conllu(shared_data / "ud" / "UD_Vietnamese-VTB" / "vi_vtb-ud-test.conllu")
    spaced = [w for s in sentences for w in s.words if " " in w]
    assert len(spaced) == 2079  # STATS.tsv tokens_with_space
    assert "bắt chuyện" in spaced


@pytest.mark.real
def test_conllu_metadata_and_genre(shared_data: Path) -> None:
    path = shared_data / "ud" / "UD_English-EWT" / "en_ewt-ud-dev.conllu"
    ewt = read_conllu_with_meta(path)
    sent, meta = ewt[1]
    assert sent.sent_id == meta["sent_id"] and meta["text"].startswith("President Bush")
    # `# newdoc id` stands on 318 sentences; every sentence inherits its document's id
    assert sum(ln.startswith("# newdoc id") for ln in read_lines(path)) == 318
    assert meta["newdoc id"] == ewt[0][1]["newdoc id"]
    assert all(m["newdoc id"] for _, m in ewt)
    assert {genre_of(m) for _, m in ewt} == {"answers", "email", "newsgroup", "reviews", "weblog"}
    gum = read_conllu_with_meta(shared_data / "ud" / "UD_English-GUM" / "en_gum-ud-dev.conllu")
    assert {genre_of(m) for _, m in gum} == {
        "academic", "bio", "fiction", "interview", "news", "voyage", "whow",
    }  # fmt: skip
    assert genre_of({"genre": "blog", "sent_id": "email-1"}) == "blog"
    assert genre_of({"sent_id": "n01001011"}) == "news"
    assert genre_of({"sent_id": "x"}) is None


def test_conllu_last_sentence_without_blank_line_and_fallback_ids(tmp_path: Path) -> None:
    rows = "1\tHello\thello\tINTJ\t_\t_\t0\troot\t_\t_\n"
    path = write(tmp_path, "a.conllu", "# text = Hello\n" + rows + "\n\n" + rows.rstrip("\n"))
    sentences = read_conllu(path)
    assert [s.sent_id for s in sentences] == ["a.conllu:1", "a.conllu:5"]
    assert sentences[1] == TaggedSentence("a.conllu:5", ("Hello",), ("INTJ",), heads=(0,),
                                          deprels=("root",), feats=("",))  # fmt: skip


def test_conllu_crlf_and_bom(tmp_path: Path) -> None:
    text = "\ufeff# sent_id = s1\r\n1\tA b\ta\tNOUN\t_\t_\t0\troot\t_\t_\r\n\r\n"
    assert read_conllu(write(tmp_path, "c.conllu", text)) == [
        TaggedSentence("s1", ("A b",), ("NOUN",), heads=(0,), deprels=("root",), feats=("",))
    ]


def row(word_id: str, form: str = "a", upos: str = "NOUN") -> str:
    """One CoNLL-U word line."""
    return "\t".join([word_id, form, "_", upos, "_", "_", "0", "root", "_", "_"])


@pytest.mark.parametrize(
    ("rows", "line", "match"),
    [
        (["1\tone\tNOUN"], 2, "expected 10 TAB-separated columns"),
        ([row("1"), "2 b _ NOUN _ _ 0 root _ _"], 3, "found 1"),
        ([row("x")], 2, "word ID 'x' is not an integer"),
        ([row("1"), row("2-x")], 3, "word ID '2-x' is not an integer"),
        ([row("1"), row("3")], 3, "out of sequence: expected 2"),
        ([row("1", upos="_")], 2, "no UPOS tag"),
        ([row("1"), row("2", upos="VERBB")], 3, "UPOS 'VERBB' is not in the label set"),
    ],
)
def test_conllu_malformed_lines_name_file_and_line(
    tmp_path: Path, rows: list[str], line: int, match: str
) -> None:
    path = write(tmp_path, "bad.conllu", "\n".join(["# sent_id = s1", *rows, ""]))
    expect_error(read_conllu, path, allowed_tags=UPOS, line=line, match=match)


def test_conllu_multiword_and_empty_node_lines_are_not_words(tmp_path: Path) -> None:
    rows = [row("1-2", "don't", "_"), row("1", "do", "AUX"), row("2", "n't", "PART"),
            row("2.1", "do", "AUX"), row("3", "go", "VERB")]  # fmt: skip
    path = write(tmp_path, "m.conllu", "\n".join(rows) + "\n")
    assert read_conllu(path)[0].words == ("do", "n't", "go")


def test_conllu_empty_and_comment_only_files(tmp_path: Path) -> None:
    expect_error(read_conllu, write(tmp_path, "e.conllu", ""), line=None, match="no sentences")
    path = write(tmp_path, "c.conllu", "# sent_id = 1\n\n")
    expect_error(read_conllu, path, line=2, match="expected word lines")


def test_bad_utf8_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "latin1.tsv"
    path.write_bytes("a\tO\n\ncaf\xe9\tO\n".encode("latin-1"))
    expect_error(read_token_tag, path, line=3, match="not valid UTF-8")
    expect_error(read_token_tag, tmp_path / "missing.tsv", line=None, match="cannot read")


# --- token-per-line files -----------------------------------------------------------------

TOKEN_FILES = [
    ("xtreme/udpos/en/dev-en.tsv", "\t", UPOS),
    ("xtreme/udpos/eu/test-eu.tsv", "\t", UPOS),
    ("xtreme/udpos/af/test-af.tsv", "\t", UPOS),
    ("xtreme/udpos/zh/test-zh.tsv", "\t", UPOS),
    ("xtreme/panx/en/dev-en.tsv", "\t", PANX),
    ("xtreme/panx/fa/dev-fa.tsv", "\t", PANX),
    ("masakhaner2/pcm/dev.txt", " ", MASAKHANER),
    ("masakhaner2/yor/test.txt", " ", MASAKHANER),
]


@pytest.mark.real
@pytest.mark.parametrize(("name", "sep", "labels"), TOKEN_FILES)
def test_token_counts_match_the_non_blank_lines(
    shared_data: Path, name: str, sep: str, labels: set[str]
) -> None:
    path = shared_data / name
    sentences = read_token_tag(path, sep, allowed_tags=labels)
    expected = [b for b in blocks(path) if b]
    assert [len(s.words) for s in sentences] == [len(b) for b in expected]
    assert [s.tags for s in sentences] == [
        tuple(ln.rsplit(sep, 1)[1] for ln in b) for b in expected
    ]


@pytest.mark.real
@pytest.mark.parametrize(
    ("name", "n_sents", "n_tokens"),
    [
        ("xtreme/udpos/en/dev-en.tsv", 3974, 62632),
        ("xtreme/udpos/en/test-en.tsv", 5440, 84970),
        ("xtreme/udpos/af/test-af.tsv", 425, 10065),
        ("xtreme/panx/en/dev-en.tsv", 10000, 80536),
        ("xtreme/panx/en/train-en.tsv", 20000, 160394),
        ("masakhaner2/pcm/test.txt", 1613, 41760),
        ("masakhaner2/swa/test.txt", 1883, 51179),
    ],
)
def test_token_numbers_from_stats(
    shared_data: Path, name: str, n_sents: int, n_tokens: int
) -> None:
    sentences = read_token_tag(shared_data / name, "\t" if "xtreme" in name else " ")
    assert (len(sentences), sum(len(s.words) for s in sentences)) == (n_sents, n_tokens)


@pytest.mark.real
def test_mojibake_is_fixed_in_afrikaans_udpos(shared_data: Path) -> None:
    path = shared_data / "xtreme" / "udpos" / "af" / "test-af.tsv"
    raw = [w for s in read_token_tag(path, fix_encoding=False) for w in s.words]
    fixed = [w for s in read_token_tag(path) for w in s.words]
    changed = [(a, b) for a, b in zip(raw, fixed, strict=True) if a != b]
    assert len(changed) == 85  # STATS.tsv mojibake_lines
    assert ("wÃªreldwye", "wêreldwye") in changed
    assert not any("Ã" in w for w in fixed)
    # clean text, curly quotes and full-width forms are left alone
    for text in ("’s", "“Island", "（", "wêreld", "Ã", "naïve"):
        assert fix_mojibake(text) == text


def test_token_file_quirks(tmp_path: Path) -> None:
    text = "-DOCSTART-\tO\r\n\r\nParis\tB-LOC\r\nis\tO\r\n\r\n\r\n-DOCSTART-\tO\r\nLast\tO"
    sentences = read_token_tag(write(tmp_path, "q.tsv", text), allowed_tags=PANX)
    assert sentences == [
        TaggedSentence("q.tsv:3", ("Paris", "is"), ("B-LOC", "O")),
        TaggedSentence("q.tsv:8", ("Last",), ("O",)),
    ]


def test_masakhaner_splits_on_the_last_space(tmp_path: Path) -> None:
    path = write(tmp_path, "m.txt", "56 milli O\nAbuja B-LOC\n\n")
    assert read_token_tag(path, " ")[0].words == ("56 milli", "Abuja")
    assert read_token_tag(path, None)[0].tags == ("O", "B-LOC")


@pytest.mark.real
def test_language_prefix_is_stripped_only_when_every_token_has_it(
    shared_data: Path, tmp_path: Path
) -> None:
    path = write(tmp_path, "p.tsv", "en:Paris\tB-LOC\nen:is\tO\n\nen:nice\tO\n")
    assert [s.words for s in read_token_tag(path)] == [("Paris", "is"), ("nice",)]
    path = write(tmp_path, "n.tsv", "bar:24\tO\nis\tO\n")
    assert read_token_tag(path)[0].words == ("bar:24", "is")
    # no PAN-X file here carries a language prefix; `bar:24`-like tokens stay whole
    panx = read_token_tag(shared_data / "xtreme" / "panx" / "en" / "dev-en.tsv")
    assert "bar:24" in {w for s in panx for w in s.words}


@pytest.mark.parametrize(
    ("text", "line", "match"),
    [
        ("a\tO\nb\n", 2, "no tag"),
        ("a\tO\n\nb\tc\tO\n", 3, "exactly 2 columns"),
        ("a\tO\nb\t\n", 2, "no tag"),
        ("a\tO\nb\tB-MISC\n", 2, "tag 'B-MISC' is not in the label set"),
    ],
)
def test_token_malformed_lines_name_file_and_line(
    tmp_path: Path, text: str, line: int, match: str
) -> None:
    path = write(tmp_path, "bad.tsv", text)
    expect_error(read_token_tag, path, allowed_tags=PANX, line=line, match=match)


def test_token_empty_file(tmp_path: Path) -> None:
    expect_error(read_token_tag, write(tmp_path, "e.tsv", "\n\n"), line=None, match="no sentences")


def test_validate_tags_names_tag_and_sentence_line(tmp_path: Path) -> None:
    path = write(tmp_path, "v.tsv", "a\tO\n\nb\tO\nc\tB-MISC\n")
    sentences = read_token_tag(path)
    validate_tags(sentences[:1], PANX, path)
    with pytest.raises(DataError, match=r"word 2 \('c'\): tag 'B-MISC'") as info:
        validate_tags(sentences, PANX, path)
    assert info.value.line == 3 and str(path) in str(info.value)


# --- sentence pairs -----------------------------------------------------------------------


@pytest.mark.real
def test_xnli_labels_and_row_parallel_languages(shared_data: Path) -> None:
    xnli = shared_data / "xtreme" / "xnli"
    en = read_pair_tsv(xnli / "en" / "dev-en.tsv", "xnli")
    de = read_pair_tsv(xnli / "de" / "dev-de.tsv", "xnli")
    assert len(en) == len(de) == 2490
    assert {lab: sum(p.label == lab for p in en) for lab in ("entailment", "neutral")} == {
        "entailment": 830, "neutral": 830,
    }  # fmt: skip
    assert [p.label for p in en] == [p.label for p in de]
    assert en[0].pair_id == "dev-en.tsv:1"
    test = read_pair_tsv(xnli / "en" / "test-en.tsv", "xnli")
    assert len(test) == 5010 and all(p.label is None for p in test)
    with pytest.raises(DataError, match="5010 of 5010 pairs have no label"):
        require_labels(test, xnli / "en" / "test-en.tsv")
    require_labels(en, xnli / "en" / "dev-en.tsv")


@pytest.mark.real
def test_xnli_english_test_labels_from_the_myxnli_file(shared_data: Path) -> None:
    xnli = shared_data / "xtreme" / "xnli"
    test = read_pair_tsv(xnli / "en" / "test-en.tsv", "xnli")
    labelled = attach_labels(test, xnli / "_myxnli" / "my.genre.test.tsv")
    assert [p.label for p in labelled].count("neutral") == 1670
    rows = [ln.split("\t") for ln in read_lines(xnli / "_myxnli" / "my.genre.test.tsv")[1:]]
    same = sum((p.text_a, p.text_b) == (r[2], r[3]) for p, r in zip(test, rows, strict=True))
    assert same == 5002  # the 8 others differ only in quote characters
    require_labels(labelled, xnli / "en" / "test-en.tsv")
    with pytest.raises(DataError, match="has 2490 label rows but 5010 pairs"):
        attach_labels(test, xnli / "_myxnli" / "my.genre.dev.tsv")


@pytest.mark.real
def test_xnli_mojibake_fixed(shared_data: Path) -> None:
    es = read_pair_tsv(shared_data / "xtreme" / "xnli" / "es" / "dev-es.tsv", "xnli")
    assert any("València" in p.text_a for p in es)
    assert not any("Ã" in p.text_a + p.text_b for p in es)


@pytest.mark.real
def test_pawsx_quoting_and_labels(shared_data: Path) -> None:
    pawsx = shared_data / "xtreme" / "pawsx"
    de = read_pair_tsv(pawsx / "de" / "dev-de.tsv", "pawsx")
    assert len(de) == 2000 and sum(p.label == "1" for p in de) == 831
    assert de[264].text_a.startswith('Die "IPA" besteht aus 500')  # line 265, CSV-quoted
    assert not any(p.text_a.startswith('"') and p.text_a.endswith('"') for p in de)
    for lang in ("de", "en", "es", "fr", "ja", "ko", "zh"):
        assert all(
            p.label is None for p in read_pair_tsv(pawsx / lang / f"test-{lang}.tsv", "pawsx")
        )
    hf = read_pair_tsv(pawsx / "_hf_labeled" / "test-de.tsv", "pawsx")
    assert len(hf) == 2000 and {p.label for p in hf} == {"0", "1"}
    assert hf[0].pair_id == "10" and sum(p.label == "1" for p in hf) == 895
    assert hf[[p.pair_id for p in hf].index("68")].text_a.startswith('"Angel Eyes" ist')
    # the XTREME test file and the HF dump hold the same German test rows
    xtreme_test = read_pair_tsv(pawsx / "de" / "test-de.tsv", "pawsx")
    assert len({p.text_b for p in hf} & {p.text_b for p in xtreme_test}) > 1900


@pytest.mark.parametrize(
    ("layout", "text", "line", "match"),
    [
        ("xnli", "a\tb\tentails\n", 1, "label 'entails' is not a xnli label"),
        ("pawsx", "a\tb\t1\nc\td\n", 2, "expected 3 TAB-separated columns like the first row"),
        ("pawsx", "a\tb\t1\tx\n", 1, "found 4"),
        ("xnli", "a\t\tneutral\n", 1, "empty sentence"),
        ("pawsx", "a\tb\t1\n\nc\td\t0\n\n", 2, "blank line"),
    ],
)
def test_pairs_malformed_rows_name_file_and_line(
    tmp_path: Path, layout: str, text: str, line: int, match: str
) -> None:
    expect_error(read_pair_tsv, write(tmp_path, "p.tsv", text), layout, line=line, match=match)


def test_pairs_empty_file(tmp_path: Path) -> None:
    path = write(tmp_path, "e.tsv", "")
    expect_error(read_pair_tsv, path, "xnli", line=None, match="no sentence pairs")


# --- parallel text ------------------------------------------------------------------------


@pytest.mark.real
def test_tatoeba_alignment(shared_data: Path) -> None:
    x, eng = tatoeba_paths(shared_data, "zh")
    assert x.name == "tatoeba.cmn-eng.cmn" and eng.name == "tatoeba.cmn-eng.eng"
    pairs = read_parallel(x, eng)
    lines_x, lines_eng = read_lines(x), read_lines(eng)
    assert len(pairs) == len(lines_x) == 1000
    assert [(p.text_a, p.text_b) for p in pairs] == list(zip(lines_x, lines_eng, strict=True))
    assert pairs[0].pair_id == "tatoeba.cmn-eng.cmn:1" and pairs[0].label is None
    assert len(read_parallel(*tatoeba_paths(shared_data, "bos"))) == 354  # STATS.tsv


@pytest.mark.real
def test_tatoeba_codes(shared_data: Path) -> None:
    assert tatoeba_languages(shared_data) == sorted(TATOEBA_LANGUAGES)
    assert len(TATOEBA_LANGUAGES) == 112
    assert set(ISO639_1_TO_TATOEBA.values()) - set(TATOEBA_LANGUAGES) == {"eng"}
    assert (tatoeba_code("zh"), tatoeba_code("fa"), tatoeba_code("deu")) == ("cmn", "pes", "deu")
    with pytest.raises(ProbeError, match="Did you mean"):
        tatoeba_code("deuu")


def test_parallel_mismatched_files_name_both(tmp_path: Path) -> None:
    x = write(tmp_path, "t.xxx", "eins\nzwei\ndrei\n")
    eng = write(tmp_path, "t.eng", "one\ntwo\n")
    err = expect_error(read_parallel, x, eng, line=3, match="has 3 lines but")
    assert str(eng) in str(err)
    x = write(tmp_path, "u.xxx", "eins\n\n")
    eng = write(tmp_path, "u.eng", "one\ntwo\n")
    expect_error(read_parallel, x, eng, line=2, match="empty line")


# --- HF datasets (conversion offline; the download itself cannot be tested here) ---------


def test_hub_tagged_conversion_maps_class_labels() -> None:
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    from probe.data.sources.hub import tagged_from_dataset

    xtreme_upos = sorted(UPOS)  # google/xtreme udpos.*: pos_tags names ADJ … X, alphabetical
    features = Features(
        {"tokens": Sequence(Value("string")), "pos_tags": Sequence(ClassLabel(names=xtreme_upos))}
    )
    ds = Dataset.from_dict(
        {"tokens": [["I", "see"], ["Ok"]], "pos_tags": [[10, 15], [6]]}, features=features
    )
    assert tagged_from_dataset(ds, tags="pos_tags", id_prefix="udpos.English/test") == [
        TaggedSentence("udpos.English/test:0", ("I", "see"), ("PRON", "VERB")),
        TaggedSentence("udpos.English/test:1", ("Ok",), ("INTJ",)),
    ]
    panx = Features(
        {
            "tokens": Sequence(Value("string")),
            "ner_tags": Sequence(ClassLabel(names=["O", "B-PER", "I-PER", "B-ORG", "I-ORG",
                                                   "B-LOC", "I-LOC"])),
            "langs": Sequence(Value("string")),
        }
    )  # fmt: skip
    ds = Dataset.from_dict(
        {"tokens": [["Anton", "Bruckner", "sang"]], "ner_tags": [[1, 2, 0]],
         "langs": [["de", "de", "de"]]},
        features=panx,
    )  # fmt: skip
    assert tagged_from_dataset(ds, tags="ner_tags")[0].tags == ("B-PER", "I-PER", "O")


def test_hub_ud_conversion_drops_multiword_tokens_and_empty_nodes() -> None:
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    from probe.data.sources.hub import _ud_word, tagged_from_dataset

    ud_upos = ["NOUN", "PUNCT", "ADP", "NUM", "SYM", "SCONJ", "ADJ", "PART", "DET", "CCONJ",
               "PROPN", "PRON", "X", "_", "ADV", "INTJ", "VERB", "AUX"]  # fmt: skip
    features = Features(
        {
            "idx": Value("string"),
            "tokens": Sequence(Value("string")),
            "upos": Sequence(ClassLabel(names=ud_upos)),
            "head": Sequence(Value("string")),
        }
    )
    row = {
        "idx": ["ewt-1"],
        "tokens": [["I", "don't", "do", "n't", "know", "know"]],
        "upos": [[11, 13, 17, 7, 16, 16]],
        "head": [["5", "None", "5", "5", "0", "None"]],  # MWT, then an empty node at the end
    }
    ds = Dataset.from_dict(row, features=features)
    assert tagged_from_dataset(ds, tags="upos", id_column="idx", keep=_ud_word) == [
        TaggedSentence("ewt-1", ("I", "do", "n't", "know"), ("PRON", "AUX", "PART", "VERB"))
    ]


def test_hub_pair_conversion() -> None:
    from datasets import ClassLabel, Dataset, Features, Value

    from probe.data.sources.hub import pairs_from_dataset

    strings = Dataset.from_dict(  # google/xtreme PAWS-X.*: label is a string column
        {"sentence1": ["a", "b"], "sentence2": ["c", "d"], "label": ["1", ""]},
        features=Features({c: Value("string") for c in ("sentence1", "sentence2", "label")}),
    )
    assert [p.label for p in pairs_from_dataset(strings)] == ["1", None]
    names = ["entailment", "neutral", "contradiction"]
    ints = Dataset.from_dict(
        {"premise": ["a", "b"], "hypothesis": ["c", "d"], "label": [2, -1]},
        features=Features(
            {"premise": Value("string"), "hypothesis": Value("string"),
             "label": ClassLabel(names=names)}
        ),
    )  # fmt: skip
    pairs = pairs_from_dataset(ints, text_a="premise", text_b="hypothesis", id_prefix="x")
    assert [(p.pair_id, p.label) for p in pairs] == [("x:0", "contradiction"), ("x:1", None)]


def test_hub_unreachable_fails_fast_with_data_dir_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    from probe.data.sources import hub
    from probe.runtime import hub as hub_check

    def refuse(*args: object, **kwargs: object) -> socket.socket:
        raise ConnectionRefusedError(111, "Connection refused")

    for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HTTPS_PROXY", "https_proxy",
                "ALL_PROXY", "all_proxy"):  # fmt: skip
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr(hub_check.socket, "create_connection", refuse)
    with pytest.raises(ProbeError, match="not reachable.*--data-dir"):
        hub.load_panx("en", "dev")
    with pytest.raises(ProbeError, match="unknown XTREME UD-POS language 'xx'"):
        hub.load_udpos("xx", "test")
    with pytest.raises(ProbeError, match="unknown split"):
        hub.load_pawsx("en", "valid")
