"""Tiny UD treebanks with real trees and FEATS, for the structural, deprel and morph tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

WORDS = "the dog cat house tree car ran walked saw big small red old new good".split()
RELATIONS = ("nsubj", "obj", "amod", "det", "obl:tmod", "advmod")


def random_heads(n: int, rng: np.random.Generator) -> list[int]:
    """1-based CoNLL-U heads of a random tree over n words (0 for its one root)."""
    order = rng.permutation(n) + 1
    heads = [0] * n
    for k, word in enumerate(order):
        if k:
            heads[word - 1] = int(order[rng.integers(0, k)])
    return heads


def tree_conllu(n_sentences: int, seed: int, *, number: bool = True) -> str:
    """CoNLL-U text: random words and trees; a final "." attached by punct to the root;
    nouns carry Number (unless `number` is False) and every word a Definite-free FEATS."""
    rng = np.random.default_rng(seed)
    blocks = []
    for s in range(n_sentences):
        n = int(rng.integers(3, 9))
        words = [WORDS[i] for i in rng.integers(0, len(WORDS), size=n)]
        heads = random_heads(n, rng)
        root = heads.index(0) + 1
        lines = [f"# sent_id = t{seed}-{s}"]
        for i, (word, head) in enumerate(zip(words, heads, strict=True), 1):
            rel = "root" if head == 0 else RELATIONS[(i + s) % len(RELATIONS)]
            feats = "_"
            if number and word in ("dog", "cat", "house", "tree", "car"):
                feats = f"Number={'Sing' if (i + s) % 2 else 'Plur'}"
            elif word == "the":
                feats = "Definite=Def|PronType=Art"
            lines.append(f"{i}\t{word}\t{word}\tNOUN\t_\t{feats}\t{head}\t{rel}\t_\t_")
        lines.append(f"{n + 1}\t.\t.\tPUNCT\t_\t_\t{root}\tpunct\t_\t_")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n\n"


def make_tree_ud(
    root: Path, n_sentences: int = 40, *, german_number: bool = True, english_number: bool = True
) -> Path:
    """en train/dev/test and de test with trees (`german_number` False: de has no Number;
    `english_number` False: nor has en)."""
    en = english_number
    files = {
        "UD_English-EWT/en_ewt-ud-train.conllu": tree_conllu(n_sentences, 0, number=en),
        "UD_English-EWT/en_ewt-ud-dev.conllu": tree_conllu(n_sentences // 2, 1, number=en),
        "UD_English-EWT/en_ewt-ud-test.conllu": tree_conllu(n_sentences // 2, 2, number=en),
        "UD_German-GSD/de_gsd-ud-test.conllu": tree_conllu(n_sentences // 2, 3,
                                                           number=german_number),
    }  # fmt: skip
    for rel, text in files.items():
        path = root / "ud" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    return root
