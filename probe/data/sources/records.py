"""The record types every reader yields and every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TaggedSentence:
    """One sentence of a word-level task: words and one tag per word (UPOS or IOB2).

    UD sentences also carry their tree and morphology (empty for every other reader):
    `heads[i]` is word i's head as CoNLL-U numbers it (1-based, 0 for the root), `deprels[i]`
    its relation to that head as written (`nsubj:pass`), `feats[i]` its FEATS column
    (`Number=Sing|PronType=Int,Rel`, "" for `_`; `probe.data.sources.conllu.parse_feats`).
    """

    sent_id: str
    words: tuple[str, ...]
    tags: tuple[str, ...]
    heads: tuple[int, ...] = ()
    deprels: tuple[str, ...] = ()
    feats: tuple[str, ...] = ()

    @property
    def has_tree(self) -> bool:
        """Whether the sentence carries a dependency tree (UD CoNLL-U)."""
        return bool(self.heads)


@dataclass(frozen=True, slots=True)
class TextPair:
    """Two texts: a sentence pair with a label (XNLI, PAWS-X) or a translation pair (label None)."""

    pair_id: str
    text_a: str
    text_b: str
    label: str | None = None
