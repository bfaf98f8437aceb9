"""The built-in tasks: UD, XTREME, MasakhaNER and Tatoeba, their local layouts and readers.

Imported by the task registry's `load` (probe.data.tasks.TASKS) on the first lookup; a task
defined elsewhere registers itself with `TASKS.register(task.name, task)` the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Literal

from probe.data.sources.columns import read_token_tag
from probe.data.sources.conllu import read_conllu
from probe.data.sources.pairs import attach_labels, read_pair_tsv
from probe.data.sources.parallel import TATOEBA_LANGUAGES, read_parallel
from probe.data.tasks import TASKS, Records, Task

UPOS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip


def iob2(*types: str) -> tuple[str, ...]:
    """IOB2 label names for entity types, 'O' first."""
    return ("O", *(f"{p}-{t}" for t in types for p in ("B", "I")))


# --- local layouts -----------------------------------------------------------------------

UD_TREEBANKS: dict[str, str] = {
    "en": "UD_English-EWT/en_ewt",
    "de": "UD_German-GSD/de_gsd",
    "fr": "UD_French-GSD/fr_gsd",
    "es": "UD_Spanish-GSD/es_gsd",
    "tr": "UD_Turkish-IMST/tr_imst",
}


def _ud_locate(data_dir: Path, lang: str, split: str) -> tuple[Path, ...]:
    return (data_dir / "ud" / f"{UD_TREEBANKS[lang]}-ud-{split}.conllu",)


# Other corpora of the same UPOS tag set ("domains"), for domain-shift experiments: each is
# one more `pos-*` task, so it is extracted and cached like any split (the shard's source hash
# is that treebank's file). A new corpus is one dict entry or one `ud_pos_task` call.
UD_GUM = {"en": "UD_English-GUM/en_gum"}
UD_GSD = {
    lang: f"UD_{name}-GSD/{lang}_gsd"
    for lang, name in {"de": "German", "fr": "French", "es": "Spanish", "zh": "Chinese",
                       "ru": "Russian", "id": "Indonesian", "ja": "Japanese"}.items()
}  # fmt: skip
UD_PUD = {
    lang: f"UD_{name}-PUD/{lang}_pud"
    for lang, name in {"en": "English", "de": "German", "fr": "French", "tr": "Turkish",
                       "zh": "Chinese", "ru": "Russian", "id": "Indonesian", "fi": "Finnish",
                       "ko": "Korean", "ar": "Arabic", "hi": "Hindi", "th": "Thai"}.items()
}  # fmt: skip


def ud_pos_task(
    name: str,
    treebanks: dict[str, str],
    description: str,
    *,
    train_split: str = "dev",
    eval_split: str = "test",
    default_source: str = "en",
) -> Task:
    """A UPOS task over other UD treebanks: `pos`'s labels, reader and split conventions.

    `treebanks` maps a language to `UD_<Name>/<prefix>` under `<data>/ud`, as UD names files.
    """

    def locate(data_dir: Path, lang: str, split: str) -> tuple[Path, ...]:
        return (data_dir / "ud" / f"{treebanks[lang]}-ud-{split}.conllu",)

    return Task(
        name=name, level="word", metric="accuracy", labels=UPOS,
        languages=tuple(treebanks), default_source=default_source,
        train_split=train_split, dev_split=None, eval_split=eval_split,
        locate=locate, read=_read_conllu, description=description,
    )  # fmt: skip


def _xtreme_locate(folder: str) -> Callable[[Path, str, str], tuple[Path, ...]]:
    def locate(data_dir: Path, lang: str, split: str) -> tuple[Path, ...]:
        return (data_dir / "xtreme" / folder / lang / f"{split}-{lang}.tsv",)

    return locate


def _masakhaner_locate(data_dir: Path, lang: str, split: str) -> tuple[Path, ...]:
    return (data_dir / "masakhaner2" / lang / f"{split}.txt",)


def _tatoeba_locate(data_dir: Path, lang: str, split: str) -> tuple[Path, ...]:
    base = data_dir / "tatoeba" / f"tatoeba.{lang}-eng"
    return (base.with_name(base.name + f".{lang}"), base.with_name(base.name + ".eng"))


# --- readers: Task.read takes the located paths ---------------------------------------------


def _read_conllu(paths: tuple[Path, ...]) -> Records:
    return read_conllu(paths[0])


def _read_columns(sep: str | None) -> Callable[[tuple[Path, ...]], Records]:
    def read(paths: tuple[Path, ...]) -> Records:
        return read_token_tag(paths[0], sep=sep)

    return read


def _read_pairs(layout: Literal["xnli", "pawsx"]) -> Callable[[tuple[Path, ...]], Records]:
    def read(paths: tuple[Path, ...]) -> Records:
        return read_pair_tsv(paths[0], layout)

    return read


def _read_xnli(paths: tuple[Path, ...]) -> Records:
    """XTREME's English XNLI test file is unlabelled; its labels sit row-aligned in _myxnli."""
    pairs = read_pair_tsv(paths[0], "xnli")
    labels = paths[0].parent.parent / "_myxnli" / "my.genre.test.tsv"
    if paths[0].name == "test-en.tsv" and pairs[0].label is None and labels.is_file():
        pairs = attach_labels(pairs, labels)
    return pairs


def _pawsx_locate(data_dir: Path, lang: str, split: str) -> tuple[Path, ...]:
    """PAWS-X's XTREME test files are unlabelled; the labelled de/zh tests are HF dumps."""
    labelled = {"de": "test-de.tsv", "zh": "test-00000-of-00001.tsv"}
    if split == "test" and lang in labelled:
        return (data_dir / "xtreme" / "pawsx" / "_hf_labeled" / labelled[lang],)
    return (data_dir / "xtreme" / "pawsx" / lang / f"{split}-{lang}.tsv",)


def _read_parallel(paths: tuple[Path, ...]) -> Records:
    return read_parallel(paths[0], paths[1])


XTREME_UDPOS_LANGS = (
    "af ar bg de el en es et eu fa fi fr he hi hu id it ja kk ko lt mr nl pl pt ro ru ta te th "
    "tl tr uk ur vi wo yo zh"
).split()
PANX_LANGS = (
    "af ar az bg bn de el en es et eu fa fi fr gu he hi hu id it ja jv ko lt ml mr ms nl pa pl "
    "pt qu ro ru ta te tl tr uk ur vi zh"
).split()
XNLI_LANGS = "ar bg de el en es fr hi ru sw th tr ur vi zh".split()
PAWSX_LANGS = "de en es fr ja ko zh".split()
MASAKHANER_LANGS = "pcm swa hau ibo kin yor".split()


def _register(task: Task) -> Task:
    """Add a built-in task under its own name (a taken name is refused, naming the first)."""
    return TASKS.register(task.name, task)


_register(Task(
    name="pos", level="word", metric="accuracy", labels=UPOS,
    languages=tuple(UD_TREEBANKS), default_source="en",
    train_split="dev", dev_split=None, eval_split="test",
    locate=_ud_locate, read=_read_conllu,
    description="UPOS tagging on UD CoNLL-U treebanks (EWT, GSD, IMST); train on source dev",
))  # fmt: skip
_register(ud_pos_task(
    "pos-gum", UD_GUM, "UPOS on English GUM (another domain than pos's EWT); train on dev",
))  # fmt: skip
_register(ud_pos_task(
    "pos-gsd", UD_GSD, "UPOS on the GSD treebanks (de fr es zh ru id ja); train on dev",
    default_source="de",
))  # fmt: skip
_register(ud_pos_task(
    "pos-pud", UD_PUD, "UPOS on the parallel PUD test sets (news/wiki, 1,000 sentences each); "
    "test only: an evaluation domain (trained on, its source score would be in-sample)",
    train_split="test",
))  # fmt: skip
_register(Task(
    name="udpos", level="word", metric="accuracy", labels=UPOS,
    languages=tuple(XTREME_UDPOS_LANGS), default_source="en",
    train_split="dev", dev_split=None, eval_split="test",
    locate=_xtreme_locate("udpos"), read=_read_columns("\t"),
    description="XTREME's UD-POS (word<TAB>UPOS); train on English dev, test elsewhere",
))  # fmt: skip
_register(Task(
    name="ner", level="word", metric="entity_f1", labels=iob2("PER", "ORG", "LOC", "DATE"),
    languages=tuple(MASAKHANER_LANGS), default_source="pcm",
    train_split="train", dev_split="dev", eval_split="test",
    locate=_masakhaner_locate, read=_read_columns(" "),
    description="MasakhaNER 2.0 (IOB2 PER/ORG/LOC/DATE); source Nigerian Pidgin (pcm)",
))  # fmt: skip
_register(Task(
    name="panx", level="word", metric="entity_f1", labels=iob2("PER", "ORG", "LOC"),
    languages=tuple(PANX_LANGS), default_source="en",
    train_split="train", dev_split=None, eval_split="dev",
    locate=_xtreme_locate("panx"), read=_read_columns("\t"),
    description="PAN-X / WikiANN NER (IOB2 PER/ORG/LOC); test labels hidden: evaluate on dev",
))  # fmt: skip
_register(Task(
    name="xnli", level="pair", metric="accuracy",
    labels=("entailment", "neutral", "contradiction"),
    languages=tuple(XNLI_LANGS), default_source="en",
    train_split="test", dev_split=None, eval_split="dev",
    locate=_xtreme_locate("xnli"), read=_read_xnli,
    description="XNLI; no English train set here: train on English test, evaluate on dev",
))  # fmt: skip
_register(Task(
    name="pawsx", level="pair", metric="accuracy", labels=("0", "1"),
    languages=tuple(PAWSX_LANGS), default_source="en",
    train_split="dev", dev_split=None, eval_split="test",
    locate=_pawsx_locate, read=_read_pairs("pawsx"),
    description="PAWS-X paraphrase; train on English dev, evaluate on labelled test (de, zh); "
    "the English test here has no labels, so the source is not scored",
))  # fmt: skip
_register(Task(
    name="tatoeba", level="parallel", metric="accuracy", labels=(),
    languages=TATOEBA_LANGUAGES, default_source="eng",
    train_split="test", dev_split=None, eval_split="test",
    locate=_tatoeba_locate, read=_read_parallel,
    description="Tatoeba parallel sentences with English (XTREME retrieval), 3-letter codes",
))  # fmt: skip
