"""What several test files build: tiny UD data, extraction setups, treebanks, Tatoeba."""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from probe.extract import (
    CachePaths,
    ExtractOptions,
    ExtractReport,
    ExtractRequest,
    ExtractSpec,
    ensure_cached,
)

SENTENCES = [
    ["the", "dog", "ran", "to", "the", "house", "."],
    ["She", "saw", "a", "big", "zebra", "!"],
    ["Das", "Haus", "ist", "alt"],
    ["quixotic"],
    ["le", "chat", "et", "le", "chien", "walked", "xylophonically", "."],
]


TAGS = ["DET", "NOUN", "VERB", "ADP", "DET", "NOUN", "PUNCT"]


def conllu_text(sentences: list[list[str]]) -> str:
    blocks = []
    for n, words in enumerate(sentences):
        lines = [f"# sent_id = s{n}"]
        for i, word in enumerate(words, 1):
            tag = TAGS[(i - 1) % len(TAGS)]
            lines.append(f"{i}\t{word}\t{word.lower()}\t{tag}\t_\t_\t0\troot\t_\t_")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + "\n\n"


def make_ud(root: Path, sentences: list[list[str]] = SENTENCES) -> Path:
    """A UD-shaped data dir: en train+dev+test and de test, enough for `pos` zero-shot."""
    files = {
        "UD_English-EWT/en_ewt-ud-train.conllu": sentences,
        "UD_English-EWT/en_ewt-ud-dev.conllu": sentences,
        "UD_English-EWT/en_ewt-ud-test.conllu": sentences[::-1],
        "UD_German-GSD/de_gsd-ud-test.conllu": sentences[1:],
    }
    for rel, sents in files.items():
        path = root / "ud" / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(conllu_text(sents), encoding="utf-8")
    return root


@dataclass(frozen=True)
class Setup:
    """One extraction as the tests state it: the four parts `ensure_cached` takes."""

    spec: ExtractSpec
    request: ExtractRequest
    options: ExtractOptions
    paths: CachePaths


def _parts(kinds: tuple[type, ...], given: dict[str, object]) -> list[object]:
    """One value of each kind, each from the keywords named like its fields."""
    parts = []
    for kind in kinds:
        names = {f.name for f in fields(kind)}
        parts.append(kind(**{k: v for k, v in given.items() if k in names}))
    return parts


def config(tmp_path: Path, tiny_bert: Path | str, **kw: object) -> Setup:
    """Every keyword goes to the part that owns a field of its name."""
    base: dict[str, object] = dict(
        model=str(tiny_bert), task="pos", langs=("en", "de"), data_dir=tmp_path / "data",
        cache_root=tmp_path / "cache", compute_dtype="float32", dtype="float32",
    )  # fmt: skip
    base.update(kw)
    return Setup(*_parts((ExtractSpec, ExtractRequest, ExtractOptions, CachePaths), base))


def cache_fields(tmp_path: Path, model: Path | str, **kw: Any) -> dict[str, Any]:
    """An experiment config's cache part: `spec`, `options`, `paths` and the selection
    (`task`, `langs`, `max_sentences`), from keywords named like their fields. Defaults:
    pos in en and de, data under tmp_path/data, the cache under tmp_path/cache."""
    base: dict[str, object] = dict(
        model=str(model), task="pos", langs=("en", "de"), data_dir=tmp_path / "data",
        cache_root=tmp_path / "cache",
    )  # fmt: skip
    base.update(kw)
    spec, options, paths = _parts((ExtractSpec, ExtractOptions, CachePaths), base)
    selection = {k: base[k] for k in ("task", "langs", "max_sentences") if k in base}
    return {"spec": spec, "options": options, "paths": paths, **selection}


def extract(setup: Setup, progress: bool = False) -> ExtractReport:
    """`ensure_cached` for one setup; the tests read its report."""
    return ensure_cached(
        setup.spec, setup.request, setup.options, setup.paths, progress=progress
    ).report


def write_conllu(path: Path, sentences: list[tuple[str, list[str]]]) -> None:
    """(sent_id, words) per sentence; tags cycle through TAGS by position."""
    blocks = []
    for sent_id, words in sentences:
        lines = [f"# sent_id = {sent_id}"]
        for i, word in enumerate(words, 1):
            tag = TAGS[(i - 1) % len(TAGS)]
            lines.append(f"{i}\t{word}\t{word.lower()}\t{tag}\t_\t_\t0\tx\t_\t_")
        blocks.append("\n".join(lines))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n\n".join(blocks) + "\n\n", encoding="utf-8")


def make_treebanks(root: Path, files: dict[str, tuple[int, list[str]]]) -> Path:
    """`files`: UD-relative path -> (copies of SENTENCES, id prefixes cycled over sentences)."""
    for rel, (copies, prefixes) in files.items():
        sents = SENTENCES * copies
        ids = [f"{prefixes[i % len(prefixes)]}{i:04d}" for i in range(len(sents))]
        write_conllu(root / "ud" / rel, list(zip(ids, sents, strict=True)))
    return root


TATOEBA = {
    "deu": (["das haus ist alt", "der hund", "die katze ist klein", "ein haus", "der alte hund",
             "die rote katze", "das neue haus", "der kleine hund", "eine katze", "das gute haus"],
            ["the house is old", "the dog", "the cat is small", "a house", "the old dog",
             "the red cat", "the new house", "the small dog", "a cat", "the good house"]),
    "tur": (["ev eski", "köpek", "kedi küçük", "bir ev", "eski köpek", "kırmızı kedi",
             "yeni ev", "küçük köpek", "bir kedi", "iyi ev"],
            ["the house is old", "the dog", "the cat is small", "a house", "the old dog",
             "the red cat", "the new house", "the small dog", "a cat", "the good house"]),
}  # fmt: skip


def make_tatoeba(root: Path) -> None:
    folder = root / "tatoeba"
    folder.mkdir(parents=True, exist_ok=True)
    for code, (xx, eng) in TATOEBA.items():
        (folder / f"tatoeba.{code}-eng.{code}").write_text("\n".join(xx) + "\n", encoding="utf-8")
        (folder / f"tatoeba.{code}-eng.eng").write_text("\n".join(eng) + "\n", encoding="utf-8")


def planted_pairs(n: int, d: int, noise: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Translations = a shared meaning plus noise, each language with its own offset."""
    rng = np.random.default_rng(seed)
    meaning = rng.normal(size=(n, d))
    x = meaning + noise * rng.normal(size=(n, d)) + rng.normal(size=d)
    eng = meaning + noise * rng.normal(size=(n, d)) + rng.normal(size=d)
    return x, eng


def word_bert(directory: Path, n_words: int, hidden: int, n_layers: int, seed: int) -> Any:
    """A tiny random BERT over the vocabulary w0..w{n_words-1}, built under `seed`, with its
    tokenizer saved to `directory`: for a test to shape its weights, then `save_pretrained`.
    hidden/16 attention heads, a 2x feed-forward layer, `hidden` positions."""
    import torch
    from transformers import BertConfig, BertModel, BertTokenizerFast

    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *(f"w{i}" for i in range(n_words))]
    BertTokenizerFast(vocab={t: i for i, t in enumerate(vocab)}).save_pretrained(directory)
    config = BertConfig(vocab_size=len(vocab), hidden_size=hidden, num_hidden_layers=n_layers,
                        num_attention_heads=hidden // 16, intermediate_size=2 * hidden,
                        max_position_embeddings=hidden)  # fmt: skip
    torch.manual_seed(seed)
    return BertModel(config, add_pooling_layer=False)


def plant_word_classes(model: Any, n_words: int, strength: float) -> None:
    """Move word wi's embedding by ±strength along one random direction (+ for even i): the
    class signal pretraining would give, in miniature. Draws the direction from torch's
    global RNG, so call it right after `word_bert` for a reproducible model."""
    import torch

    hidden = model.config.hidden_size
    direction = torch.nn.functional.normalize(torch.randn(hidden), dim=0)
    with torch.no_grad():
        for i in range(n_words):
            sign = 1.0 if i % 2 == 0 else -1.0
            model.embeddings.word_embeddings.weight[5 + i] += strength * sign * direction


def make_pawsx(root: Path, n: int = 24, seed: int = 0) -> Path:
    """An XTREME-layout PAWS-X dir: en dev (trains) and de test (labelled, the HF dump's
    name), pairs of the tiny sentences with labels alternating 0/1."""
    rng = np.random.default_rng(seed)
    text = [" ".join(s) for s in SENTENCES]
    rows = []
    for i in range(n):
        a, b = rng.choice(len(text), size=2)
        rows.append(f"{i}\t{text[a]}\t{text[b]}\t{i % 2}\n")
    en = root / "xtreme" / "pawsx" / "en" / "dev-en.tsv"
    de = root / "xtreme" / "pawsx" / "_hf_labeled" / "test-de.tsv"
    # XTREME's unlabelled test files (how de is found; en's test is scored as unlabelled)
    unlabelled = [root / "xtreme" / "pawsx" / lang / f"test-{lang}.tsv" for lang in ("de", "en")]
    for path in (en, de, *unlabelled):
        path.parent.mkdir(parents=True, exist_ok=True)
    en.write_text("".join(r.split("\t", 1)[1] for r in rows))
    de.write_text("id\tsentence1\tsentence2\tlabel\n" + "".join(rows[: n // 2]))
    for path in unlabelled:
        path.write_text("".join(r.split("\t", 1)[1].rsplit("\t", 1)[0] + "\n"
                                for r in rows[: n // 2]))  # fmt: skip
    return root


def make_xnli(root: Path, n: int = 30, seed: int = 0) -> Path:
    """An XTREME-layout XNLI dir: a labelled en test (trains) and en, de dev (scored)."""
    rng = np.random.default_rng(seed)
    text = [" ".join(s) for s in SENTENCES]
    labels = ("entailment", "neutral", "contradiction")
    for lang, split in (("en", "test"), ("en", "dev"), ("de", "dev")):
        path = root / "xtreme" / "xnli" / lang / f"{split}-{lang}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        lines = []
        for i in range(n):
            a, b = rng.choice(len(text), size=2)
            lines.append(f"{text[a]}\t{text[b]}\t{labels[i % 3]}\n")
        path.write_text("".join(lines))
    return root


def make_xtreme_tagging(root: Path, task: str, splits: dict[str, tuple[str, ...]],
                        tags: tuple[str, ...], repeat: int = 4) -> Path:  # fmt: skip
    """XTREME's `word<TAB>tag` files for `task` (udpos, panx): {lang: splits}; tags cycle."""
    for lang, names in splits.items():
        for split in names:
            path = root / "xtreme" / task / lang / f"{split}-{lang}.tsv"
            path.parent.mkdir(parents=True, exist_ok=True)
            blocks = ["\n".join(f"{w}\t{tags[i % len(tags)]}" for i, w in enumerate(s))
                      for s in SENTENCES * repeat]  # fmt: skip
            path.write_text("\n\n".join(blocks) + "\n")
    return root
