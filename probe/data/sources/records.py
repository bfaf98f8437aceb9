"""The record types every reader yields and every later stage consumes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class TaggedSentence:
    """One sentence of a word-level task: words and one tag per word (UPOS or IOB2)."""

    sent_id: str
    words: tuple[str, ...]
    tags: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class TextPair:
    """Two texts: a sentence pair with a label (XNLI, PAWS-X) or a translation pair (label None)."""

    pair_id: str
    text_a: str
    text_b: str
    label: str | None = None
