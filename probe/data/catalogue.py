"""The built-in tasks: UD, XTREME, MasakhaNER and Tatoeba, their local layouts and readers.

Imported by the task registry's `load` (probe.data.tasks.TASKS) on the first lookup; a task
defined elsewhere registers itself with `TASKS.register(task.name, task)` the same way.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Literal

from probe.data.sources.columns import read_token_tag
from probe.data.sources.conllu import feature_value, read_conllu
from probe.data.sources.hub import (
    MASAKHANER_LANGS,
    PANX_LANGS,
    PAWSX_LANGS,
    UDPOS_LANGS,
    XNLI_LANGS,
)
from probe.data.sources.pairs import attach_genres, attach_labels, read_pair_tsv
from probe.data.sources.parallel import TATOEBA_LANGUAGES, read_parallel
from probe.data.sources.records import TaggedSentence
from probe.data.tasks import TASKS, Records, Task
from probe.data.ud import TreebankRule
from probe.errors import DataError

UPOS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip


# UD's universal dependency relations (universaldependencies.org/u/dep): `deprel` labels
# each word with its relation to its head, subtypes cut (`nsubj:pass` -> nsubj).
UD_RELATIONS = (
    "acl", "advcl", "advmod", "amod", "appos", "aux", "case", "cc", "ccomp", "clf",
    "compound", "conj", "cop", "csubj", "dep", "det", "discourse", "dislocated", "expl",
    "fixed", "flat", "goeswith", "iobj", "list", "mark", "nmod", "nsubj", "nummod", "obj",
    "obl", "orphan", "parataxis", "punct", "reparandum", "root", "vocative", "xcomp",
)  # fmt: skip

# UD's universal features and their universal values (universaldependencies.org/u/feat),
# one `morph-<Feature>` task each. The inventory fixes each task's label index, so a label
# means the same in every language and cache, whichever treebanks a data directory holds;
# which languages a task runs on is the data's: every language whose treebank annotates the
# feature (one that does not is skipped with a note). Each label set is the feature's
# universal values plus NO_FEATURE (the word does not carry it) and OTHER_VALUE (a value
# outside the universal inventory: a language-specific one such as Turkish Mood=GenNecPot,
# or several values at once such as PronType=Int,Rel).
UD_FEATURES: dict[str, tuple[str, ...]] = {
    "PronType": ("Art", "Dem", "Emp", "Exc", "Ind", "Int", "Neg", "Prs", "Rcp", "Rel", "Tot"),
    "NumType": ("Card", "Dist", "Frac", "Mult", "Ord", "Range", "Sets"),
    "Poss": ("Yes",),
    "Reflex": ("Yes",),
    "Foreign": ("Yes",),
    "Abbr": ("Yes",),
    "Typo": ("Yes",),
    "Gender": ("Com", "Fem", "Masc", "Neut"),
    "Animacy": ("Anim", "Hum", "Inan", "Nhum"),
    "Number": ("Coll", "Count", "Dual", "Grpa", "Grpl", "Inv", "Pauc", "Plur", "Ptan", "Sing",
               "Tri"),
    "Case": ("Abs", "Acc", "Erg", "Nom", "Abe", "Ben", "Cau", "Cmp", "Cns", "Com", "Dat", "Dis",
             "Equ", "Gen", "Ins", "Par", "Tem", "Tra", "Voc", "Abl", "Add", "Ade", "All", "Del",
             "Ela", "Ess", "Ill", "Ine", "Lat", "Loc", "Per", "Sbe", "Sbl", "Spl", "Sub", "Sup",
             "Ter"),
    "Definite": ("Com", "Cons", "Def", "Ind", "Spec"),
    "Deixis": ("Abv", "Bel", "Even", "Med", "Nvis", "Prox", "Remt"),
    "DeixisRef": ("1", "2"),
    "Degree": ("Abs", "Aug", "Cmp", "Dim", "Equ", "Pos", "Sup"),
    "VerbForm": ("Conv", "Fin", "Gdv", "Ger", "Inf", "Part", "Sup", "Vnoun"),
    "Mood": ("Adm", "Cnd", "Des", "Imp", "Ind", "Int", "Irr", "Jus", "Nec", "Opt", "Pot", "Prp",
             "Qot", "Sub"),
    "Tense": ("Fut", "Imp", "Past", "Pqp", "Pres"),
    "Aspect": ("Hab", "Imp", "Iter", "Perf", "Prog", "Prosp"),
    "Voice": ("Act", "Antip", "Bfoc", "Cau", "Dir", "Inv", "Lfoc", "Mid", "Pass", "Rcp"),
    "Evident": ("Fh", "Nfh"),
    "Polarity": ("Neg", "Pos"),
    "Person": ("0", "1", "2", "3", "4"),
    "Polite": ("Elev", "Form", "Humb", "Infm"),
    "Clusivity": ("Ex", "In"),
}  # fmt: skip
NO_FEATURE = "none"
OTHER_VALUE = "other"
MORPH_PREFIX = "morph-"


def iob2(*types: str) -> tuple[str, ...]:
    """IOB2 label names for entity types, 'O' first."""
    return ("O", *(f"{p}-{t}" for t in types for p in ("B", "I")))


# --- local layouts -----------------------------------------------------------------------

# UD tasks read whatever treebanks lie under <data>/ud (probe.data.ud): `pos` every non-PUD
# treebank (by default a language's largest with a train split, else its largest), and each
# `pos-*` domain task the treebanks of one corpus name, for any language present. A new
# treebank or domain needs no table here: copy the folder in, or add one `ud_pos_task`.
UD_LAYOUT = "ud/UD_*/{lang}_<treebank>-ud-{split}.conllu"


def ud_pos_task(
    name: str,
    rule: TreebankRule,
    description: str,
    *,
    languages: tuple[str, ...],
    train_split: str | None = "train",
    dev_split: str | None = "dev",
    eval_split: str = "test",
    default_source: str = "en",
    trainable_splits: tuple[str, ...] | None = None,
) -> Task:
    """A UPOS task over UD treebanks chosen by `rule`: `pos`'s labels, reader and splits."""
    return Task(
        name=name, level="word", metric="accuracy", labels=UPOS,
        languages=languages, default_source=default_source,
        train_split=train_split, dev_split=dev_split, eval_split=eval_split,
        layout=UD_LAYOUT, treebanks=rule, read=_read_conllu, description=description,
        trainable_splits=trainable_splits, extra_metrics=("pos_f1",),
    )  # fmt: skip


def _tatoeba_locate(data_dir: Path, lang: str, split: str) -> tuple[Path, ...]:
    base = data_dir / "tatoeba" / f"tatoeba.{lang}-eng"
    return (base.with_name(base.name + f".{lang}"), base.with_name(base.name + ".eng"))


# --- readers: Task.read takes the located paths ---------------------------------------------


def _read_conllu(paths: tuple[Path, ...]) -> Records:
    """One split of one or more treebanks (`--treebank en_ewt+en_gum`), in that order."""
    return [sent for path in paths for sent in read_conllu(path)]


def _read_deprels(paths: tuple[Path, ...]) -> Records:
    """Each word tagged with its universal relation to its head (`deprel`, `deprel-arc`);
    a treebank without trees cannot serve these tasks."""
    out = []
    for path in paths:
        for sent in read_conllu(path):
            if not sent.has_tree:
                raise DataError(path, None, f"sentence {sent.sent_id!r} has no dependency "
                                "tree (HEAD `_`): deprel tasks need one")  # fmt: skip
            rels = tuple(rel.partition(":")[0] for rel in sent.deprels)
            out.append(replace(sent, tags=rels))
    return out


def _read_feature(feature: str) -> Callable[[tuple[Path, ...]], Records]:
    """Each word tagged with its value of `feature` (NO_FEATURE, OTHER_VALUE: UD_FEATURES)."""
    universal = frozenset(UD_FEATURES[feature])

    def label(feats: str) -> str:
        value = feature_value(feats, feature)
        if value is None:
            return NO_FEATURE
        return value if value in universal else OTHER_VALUE

    def read(paths: tuple[Path, ...]) -> Records:
        return [replace(sent, tags=tuple(label(f) for f in sent.feats))
                for path in paths for sent in read_conllu(path)]  # fmt: skip

    return read


def _unannotated(feature: str) -> Callable[[Records], str | None]:
    """The note a language without `feature` is skipped with: no word of it carries one."""

    def reason(records: Records) -> str | None:
        for sent in records:
            assert isinstance(sent, TaggedSentence)
            if any(tag != NO_FEATURE for tag in sent.tags):
                return None
        return f"its treebank does not annotate {feature} (no word carries it)"

    return reason


def ud_word_task(
    name: str, labels: tuple[str, ...], read: Callable[[tuple[Path, ...]], Records],
    description: str, **extra: object,
) -> Task:  # fmt: skip
    """A word task over every language's default UD treebank, `pos`'s rule and splits."""
    return Task(
        name=name, level="word", metric="accuracy", labels=labels,
        languages=tuple(UD_LANGS), default_source="en",
        train_split="train", dev_split="dev", eval_split="test",
        layout=UD_LAYOUT, treebanks=TreebankRule(), read=read, description=description,
        **extra,  # type: ignore[arg-type]
    )  # fmt: skip


def _read_columns(sep: str | None) -> Callable[[tuple[Path, ...]], Records]:
    def read(paths: tuple[Path, ...]) -> Records:
        return read_token_tag(paths[0], sep=sep)

    return read


def _read_pairs(layout: Literal["xnli", "pawsx"]) -> Callable[[tuple[Path, ...]], Records]:
    def read(paths: tuple[Path, ...]) -> Records:
        return read_pair_tsv(paths[0], layout)

    return read


def _read_xnli(paths: tuple[Path, ...]) -> Records:
    """XTREME's English XNLI test file is unlabelled; its labels sit row-aligned in _myxnli,
    whose `genre` column also prefixes every pair id of the split (`fiction/dev-de.tsv:7`)."""
    pairs = read_pair_tsv(paths[0], "xnli")
    labels = paths[0].parent.parent / "_myxnli" / "my.genre.test.tsv"
    if paths[0].name == "test-en.tsv" and pairs[0].label is None and labels.is_file():
        pairs = attach_labels(pairs, labels)
    split = paths[0].name.partition("-")[0]  # `dev-de.tsv` -> dev
    genres = paths[0].parent.parent / "_myxnli" / f"my.genre.{split}.tsv"
    return attach_genres(pairs, genres) if genres.is_file() else pairs


def _pawsx_locate(data_dir: Path, lang: str, split: str) -> tuple[Path, ...]:
    """PAWS-X's XTREME test files are unlabelled; the labelled de/zh tests are HF dumps."""
    labelled = {"de": "test-de.tsv", "zh": "test-00000-of-00001.tsv"}
    if split == "test" and lang in labelled:
        return (data_dir / "xtreme" / "pawsx" / "_hf_labeled" / labelled[lang],)
    return (data_dir / "xtreme" / "pawsx" / lang / f"{split}-{lang}.tsv",)


def _read_parallel(paths: tuple[Path, ...]) -> Records:
    return read_parallel(paths[0], paths[1])


# The catalogues (`Task.languages`: documentation, and `--langs all` on the hub) are the hub
# sources' lists, defined once in probe.data.sources.hub; a local run discovers its languages.
# UD languages with a treebank in the shared data, for the hub's list and documentation; a
# local run reads every treebank under ud/ whatever its language.
UD_LANGS = "ar de en es eu fi fr hi id ja ko ru th tr vi zh".split()


def _register(task: Task) -> Task:
    """Add a built-in task under its own name (a taken name is refused, naming the first)."""
    return TASKS.register(task.name, task)


_register(ud_pos_task(
    "pos", TreebankRule(), "UPOS tagging on UD CoNLL-U treebanks: train on the source's "
    "train split, early-stop on dev, evaluate on test (XTREME). Treebank per language: "
    "--treebank, else the non-PUD treebank with a train split (largest train file if "
    "several), else the largest non-PUD treebank (English: EWT)",
    languages=tuple(UD_LANGS),
))  # fmt: skip
_register(ud_pos_task(
    "pos-gum", TreebankRule("gum"), "UPOS on the *_gum treebanks (English GUM: another "
    "domain than pos's EWT); train, dev, test",
    languages=("en",),
))  # fmt: skip
_register(ud_pos_task(
    "pos-gsd", TreebankRule("gsd"), "UPOS on the *_gsd treebanks (de fr es zh ru id ja here); "
    "train, dev, test", languages=("de", "fr", "es", "zh", "ru", "id", "ja"),
    default_source="de",
))  # fmt: skip
_register(ud_pos_task(
    "pos-pud", TreebankRule("pud", exclude=()), "UPOS on the parallel PUD test sets "
    "(news/wiki, 1,000 sentences each): evaluation-only (XTREME's UD-POS test sets contain "
    "them; trained on, every score would be in-sample)",
    languages=("ar", "de", "en", "fi", "fr", "hi", "id", "ko", "ru", "th", "tr", "zh"),
    train_split=None, dev_split=None, trainable_splits=(),
))  # fmt: skip
_register(ud_pos_task(
    "pos-pud-transfer", TreebankRule(split_corpus=(("test", "pud"),)), "UPOS zero-shot onto "
    "the parallel PUD test sets: the source trains on its default non-PUD treebank (English: "
    "EWT train, early-stop on EWT dev), every language (the source too) is evaluated on its "
    "PUD test; the same 1,000 sentences in every language, so no treebank confound",
    languages=("ar", "de", "en", "fi", "fr", "hi", "id", "ko", "ru", "th", "tr", "zh"),
))  # fmt: skip
_register(Task(
    name="udpos", level="word", metric="accuracy", labels=UPOS,
    languages=UDPOS_LANGS, default_source="en",
    train_split="train", dev_split="dev", eval_split="test",
    layout="xtreme/udpos/{lang}/{split}-{lang}.tsv", read=_read_columns("\t"),
    extra_metrics=("pos_f1",),
    description="XTREME's UD-POS (word<TAB>UPOS): train on English train, early-stop on dev, "
    "test everywhere",
))  # fmt: skip
_register(Task(
    name="ner", level="word", metric="entity_f1", labels=iob2("PER", "ORG", "LOC", "DATE"),
    languages=MASAKHANER_LANGS, default_source="pcm",
    train_split="train", dev_split="dev", eval_split="test",
    layout="masakhaner2/{lang}/{split}.txt", read=_read_columns(" "),
    description="MasakhaNER 2.0 (IOB2 PER/ORG/LOC/DATE); source Nigerian Pidgin (pcm)",
))  # fmt: skip
_register(Task(
    name="panx", level="word", metric="entity_f1", labels=iob2("PER", "ORG", "LOC"),
    languages=PANX_LANGS, default_source="en",
    train_split="train", dev_split=None, eval_split="dev",
    layout="xtreme/panx/{lang}/{split}-{lang}.tsv", read=_read_columns("\t"),
    description="PAN-X / WikiANN NER (IOB2 PER/ORG/LOC); test labels hidden: evaluate on dev",
))  # fmt: skip
_register(Task(
    name="xnli", level="pair", metric="accuracy",
    labels=("entailment", "neutral", "contradiction"),
    languages=XNLI_LANGS, default_source="en",
    train_split="test", dev_split=None, eval_split="dev",
    layout="xtreme/xnli/{lang}/{split}-{lang}.tsv", read=_read_xnli,
    description="XNLI; no English train set here: train on English test, evaluate on dev",
    trainable_splits=("test",),
    split_note="declared: XTREME's local XNLI has no English train set, so heads train on the "
    "English test set and every language (English too) is evaluated on its dev set, whose "
    "sentences are disjoint from the test set's (the leakage guard checks by hashing them)",
))  # fmt: skip
_register(Task(
    name="pawsx", level="pair", metric="accuracy", labels=("0", "1"),
    languages=PAWSX_LANGS, default_source="en",
    train_split="dev", dev_split=None, eval_split="test",
    layout="xtreme/pawsx/{lang}/{split}-{lang}.tsv", locate=_pawsx_locate,
    read=_read_pairs("pawsx"),
    description="PAWS-X paraphrase; train on English dev, evaluate on labelled test (de, zh); "
    "the English test here has no labels, so the source is not scored",
))  # fmt: skip
TATOEBA = _register(Task(
    name="tatoeba", level="parallel", metric="accuracy", labels=(),
    languages=TATOEBA_LANGUAGES, default_source="eng",
    train_split=None, dev_split=None, eval_split="test",
    layout="tatoeba/tatoeba.{lang}-eng.{lang}", locate=_tatoeba_locate, read=_read_parallel,
    description="Tatoeba parallel sentences with English (XTREME retrieval), 3-letter codes; "
    "nothing trains on it",
))  # fmt: skip
_register(replace(
    TATOEBA, name="tatoeba-xtreme", sentence_pooling="mean-with-specials",
    description="Tatoeba's files pooled as XTREME's retrieval pools them: the mean over every "
    "attended token, [CLS]/[SEP] included; nothing trains on it",
))  # fmt: skip

_register(ud_word_task(
    "deprel", UD_RELATIONS, _read_deprels, "Each word's universal dependency relation to its "
    "head (UD DEPREL, subtypes cut: nsubj:pass -> nsubj) from its own vector; pos's "
    "treebanks and splits",
))  # fmt: skip
_register(ud_word_task(
    "deprel-arc", UD_RELATIONS, _read_deprels, "Edge probing: the universal relation of a "
    "(head, dependent) pair of the UD tree from the two words' vectors (every non-root word "
    "and its head); pos's treebanks and splits", edges=True,
))  # fmt: skip
for _feature, _values in UD_FEATURES.items():
    _register(ud_word_task(
        f"{MORPH_PREFIX}{_feature}", (NO_FEATURE, *_values, OTHER_VALUE),
        _read_feature(_feature), f"Morphology: each word's UD {_feature} value ({NO_FEATURE} "
        f"where it has none, {OTHER_VALUE} for a value outside UD's universal ones), in "
        f"every language whose treebank annotates {_feature} (others are skipped with a "
        "note); pos's treebanks and splits", skip_language=_unannotated(_feature),
    ))  # fmt: skip
