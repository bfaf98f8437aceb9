"""`first-content` pooling on tokenizers built here: a SentencePiece-style Unigram model with
the Metaspace pre-tokenizer (the "▁" marker of me5/XLM-R), a byte-level BPE ("Ġ") and a
WordPiece vocabulary (no marker, even one that lists "▁" as a character)."""

from __future__ import annotations

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors
from transformers import BertTokenizerFast, PreTrainedTokenizerFast

from probe.data.alignment import align_words, bare_marker_ids
from probe.data.sources.records import TaggedSentence
from probe.extract.batching import prepare
from probe.extract.windows import Unit, UnitBuilder

MARK = "\u2581"


def sentencepiece_tokenizer() -> PreTrainedTokenizerFast:
    """A Unigram vocabulary where most CJK words start with a bare "▁" (as with me5)."""
    pieces = ["<pad>", "<unk>", "<s>", "</s>", MARK, f"{MARK}the", f"{MARK}dog", "你好", "世界",
              f"{MARK}x", "x"]  # fmt: skip
    vocab = [(p, 0.0 if i < 4 else -1.0 - i / 10) for i, p in enumerate(pieces)]
    tok = Tokenizer(models.Unigram(vocab, unk_id=1, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement=MARK, prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement=MARK, prepend_scheme="always")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", special_tokens=[("<s>", 2), ("</s>", 3)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", pad_token="<pad>",
                                   bos_token="<s>", eos_token="</s>")  # fmt: skip


def picked_pieces(tokenizer: PreTrainedTokenizerFast, words: list[str], pooling: str) -> list[str]:
    """The token each word's vector is read from, through the extraction's own path."""
    builder = UnitBuilder(tokenizer, 64, None)
    (unit,) = builder.words([TaggedSentence("s", tuple(words), ("X",) * len(words))])
    batch = prepare([unit], [0], pooling, builder.pad_id, builder.markers)
    assert batch.rows.tolist() == list(range(len(words)))
    return tokenizer.convert_ids_to_tokens(batch.input_ids.reshape(-1)[batch.positions].tolist())


def test_first_content_skips_the_bare_marker() -> None:
    tok = sentencepiece_tokenizer()
    words = ["the", "你好", "x", "你好世界", "☃", MARK, "dog"]
    # the pieces: ▁the | ▁ 你好 | ▁x | ▁ 你好 世界 | ▁ <unk> | ▁ | ▁dog
    first = picked_pieces(tok, words, "first")
    assert first == [f"{MARK}the", MARK, f"{MARK}x", MARK, MARK, MARK, f"{MARK}dog"]
    content = picked_pieces(tok, words, "first-content")
    # "▁x" starts with the marker but is not bare; "▁" alone has nothing else: the marker
    assert content == [f"{MARK}the", "你好", f"{MARK}x", "你好", "<unk>", MARK, f"{MARK}dog"]
    assert picked_pieces(tok, words, "last") == [f"{MARK}the", "你好", f"{MARK}x", "世界",
                                                 "<unk>", MARK, f"{MARK}dog"]  # fmt: skip


def test_bare_marker_share_counts_words_whose_first_piece_is_the_marker() -> None:
    tok = sentencepiece_tokenizer()
    builder = UnitBuilder(tok, 64, None)
    assert tok.convert_ids_to_tokens(builder.markers.tolist()) == [MARK]
    words = ("the", "你好", "x", "世界", "dog")
    builder.words([TaggedSentence("s", words, ("X",) * 5)])
    assert builder.bare_first == 2


def test_first_content_falls_back_to_the_marker_across_a_batch() -> None:
    """Rows of several units in one batch: each picks its own first non-marker piece, or
    its first piece where every piece is a marker (ids: 7 is the marker)."""
    units = [
        Unit([np.array([1, 7, 5, 6, 2])], [np.array([-1, 0, 0, 1, -1])], None, 2, 2),
        Unit([np.array([1, 7, 7, 9, 2])], [np.array([-1, 0, 1, 1, -1])], None, 2, 2),
    ]
    batch = prepare(units, [0, 2], "first-content", 0, np.array([7]))
    assert batch.rows.tolist() == [0, 1, 2, 3]
    assert batch.input_ids.reshape(-1)[batch.positions].tolist() == [5, 6, 7, 9]
    plain = prepare(units, [0, 2], "first", 0, np.array([7]))
    assert plain.input_ids.reshape(-1)[plain.positions].tolist() == [7, 6, 7, 7]


def test_wordpiece_has_no_marker_even_with_the_character_in_its_vocabulary() -> None:
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", MARK, "a", "b", "##b", "ab"]
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=True)
    assert bare_marker_ids(tok).size == 0
    words = ["ab", MARK, "abb"]
    assert picked_pieces(tok, words, "first-content") == picked_pieces(tok, words, "first")


def test_byte_level_bpe_marker_is_the_bare_g() -> None:
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    vocab = {c: i for i, c in enumerate(["<pad>", "<s>", "</s>", *sorted(alphabet)])}
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=True)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, pad_token="<pad>")
    markers = bare_marker_ids(fast)
    assert fast.convert_ids_to_tokens(markers.tolist()) == ["\u0120"]
    assert picked_pieces(fast, ["ab", "c"], "first-content") == ["a", "c"]


@pytest.mark.parametrize("lowercase", [True, False])
def test_type_keys_follow_the_input_ids(lowercase: bool) -> None:
    """Equal keys iff equal id tuples: case variants share one under an uncased vocabulary."""
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "dog", "d", "##o", "##g", "##s", "t"]
    tok = BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}, do_lower_case=lowercase)
    words = ["the", "The", "dog", "dogs", "THE", "the"]
    (pieces,) = align_words(tok, [words])
    keys = pieces.type_keys().tolist()
    ids = [tuple(pieces.ids[pieces.word_of == w].tolist()) for w in range(len(words))]
    for i in range(len(words)):
        for j in range(len(words)):
            assert (keys[i] == keys[j]) == (ids[i] == ids[j])
    assert (keys[0] == keys[1]) is lowercase
    assert keys[0] == keys[5] and keys[2] != keys[3]
