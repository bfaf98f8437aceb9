"""The task registry: name -> level, labels, metric, languages, splits and where the data lives."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from probe.data.sources.records import TaggedSentence, TextPair
from probe.errors import DataError, ProbeError, unknown_name

Level = Literal["word", "pair", "parallel"]
Records = list[TaggedSentence] | list[TextPair]

UPOS = (
    "ADJ", "ADP", "ADV", "AUX", "CCONJ", "DET", "INTJ", "NOUN", "NUM",
    "PART", "PRON", "PROPN", "PUNCT", "SCONJ", "SYM", "VERB", "X",
)  # fmt: skip


def iob2(*types: str) -> tuple[str, ...]:
    """IOB2 label names for entity types, 'O' first."""
    return ("O", *(f"{p}-{t}" for t in types for p in ("B", "I")))


@dataclass(frozen=True)
class Task:
    """One probing task: what is read, how it is scored, and how it is laid out on disk.

    `locate(data_dir, lang, split)` gives the local file(s) of one split; `read(paths)` turns
    them into records. `train_split` / `dev_split` are read in the source language (a None
    dev split means: hold out part of the training split); `eval_split` in every language.
    """

    name: str
    level: Level
    metric: Literal["accuracy", "entity_f1"]
    labels: tuple[str, ...]
    languages: tuple[str, ...]
    default_source: str
    train_split: str
    dev_split: str | None
    eval_split: str
    locate: Callable[[Path, str, str], tuple[Path, ...]]
    read: Callable[[tuple[Path, ...]], Records]
    description: str
    label_map: dict[str, str] = field(default_factory=dict)  # e.g. MasakhaNER DATE -> O

    def splits_for(self, lang: str, source: str | None = None) -> tuple[str, ...]:
        """The splits a zero-shot run needs in one language: all three for the source."""
        if lang == (source or self.default_source):
            return tuple(
                dict.fromkeys(s for s in (self.train_split, self.dev_split, self.eval_split) if s)
            )
        return (self.eval_split,)

    def check_language(self, lang: str) -> None:
        if lang not in self.languages:
            raise unknown_name(f"language for task {self.name!r}", lang, self.languages)


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


# --- readers (imported lazily so the registry is cheap to import) --------------------------


def _read_conllu(paths: tuple[Path, ...]) -> Records:
    from probe.data.sources.conllu import read_conllu

    return read_conllu(paths[0])


def _read_columns(sep: str | None) -> Callable[[tuple[Path, ...]], Records]:
    def read(paths: tuple[Path, ...]) -> Records:
        from probe.data.sources.columns import read_token_tag

        return read_token_tag(paths[0], sep=sep)

    return read


def _read_pairs(layout: Literal["xnli", "pawsx"]) -> Callable[[tuple[Path, ...]], Records]:
    def read(paths: tuple[Path, ...]) -> Records:
        from probe.data.sources.pairs import read_pair_tsv

        return read_pair_tsv(paths[0], layout)

    return read


def _read_xnli(paths: tuple[Path, ...]) -> Records:
    """XTREME's English XNLI test file is unlabelled; its labels sit row-aligned in _myxnli."""
    from probe.data.sources.pairs import attach_labels, read_pair_tsv

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
    from probe.data.sources.parallel import read_parallel

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


def _tatoeba_langs() -> tuple[str, ...]:
    from probe.data.sources.parallel import TATOEBA_LANGUAGES

    return tuple(TATOEBA_LANGUAGES)


_REGISTRY: dict[str, Task] = {}


def register(task: Task) -> Task:
    """Add a task; names are unique so a typo can never shadow a real task."""
    if task.name in _REGISTRY:
        raise ValueError(f"task {task.name!r} is already registered")
    _REGISTRY[task.name] = task
    return task


register(Task(
    name="pos", level="word", metric="accuracy", labels=UPOS,
    languages=tuple(UD_TREEBANKS), default_source="en",
    train_split="dev", dev_split=None, eval_split="test",
    locate=_ud_locate, read=_read_conllu,
    description="UPOS tagging on UD CoNLL-U treebanks (EWT, GSD, IMST); train on source dev",
))  # fmt: skip
register(ud_pos_task(
    "pos-gum", UD_GUM, "UPOS on English GUM (another domain than pos's EWT); train on dev",
))  # fmt: skip
register(ud_pos_task(
    "pos-gsd", UD_GSD, "UPOS on the GSD treebanks (de fr es zh ru id ja); train on dev",
    default_source="de",
))  # fmt: skip
register(ud_pos_task(
    "pos-pud", UD_PUD, "UPOS on the parallel PUD test sets (news/wiki, 1,000 sentences each); "
    "test only: an evaluation domain (trained on, its source score would be in-sample)",
    train_split="test",
))  # fmt: skip
register(Task(
    name="udpos", level="word", metric="accuracy", labels=UPOS,
    languages=tuple(XTREME_UDPOS_LANGS), default_source="en",
    train_split="dev", dev_split=None, eval_split="test",
    locate=_xtreme_locate("udpos"), read=_read_columns("\t"),
    description="XTREME's UD-POS (word<TAB>UPOS); train on English dev, test elsewhere",
))  # fmt: skip
register(Task(
    name="ner", level="word", metric="entity_f1", labels=iob2("PER", "ORG", "LOC", "DATE"),
    languages=tuple(MASAKHANER_LANGS), default_source="pcm",
    train_split="train", dev_split="dev", eval_split="test",
    locate=_masakhaner_locate, read=_read_columns(" "),
    description="MasakhaNER 2.0 (IOB2 PER/ORG/LOC/DATE); source Nigerian Pidgin (pcm)",
))  # fmt: skip
register(Task(
    name="panx", level="word", metric="entity_f1", labels=iob2("PER", "ORG", "LOC"),
    languages=tuple(PANX_LANGS), default_source="en",
    train_split="train", dev_split=None, eval_split="dev",
    locate=_xtreme_locate("panx"), read=_read_columns("\t"),
    description="PAN-X / WikiANN NER (IOB2 PER/ORG/LOC); test labels hidden: evaluate on dev",
))  # fmt: skip
register(Task(
    name="xnli", level="pair", metric="accuracy",
    labels=("entailment", "neutral", "contradiction"),
    languages=tuple(XNLI_LANGS), default_source="en",
    train_split="test", dev_split=None, eval_split="dev",
    locate=_xtreme_locate("xnli"), read=_read_xnli,
    description="XNLI; no English train set here: train on English test, evaluate on dev",
))  # fmt: skip
register(Task(
    name="pawsx", level="pair", metric="accuracy", labels=("0", "1"),
    languages=tuple(PAWSX_LANGS), default_source="en",
    train_split="dev", dev_split=None, eval_split="test",
    locate=_pawsx_locate, read=_read_pairs("pawsx"),
    description="PAWS-X paraphrase; train on English dev, evaluate on labelled test (de, zh); "
    "the English test here has no labels, so the source is not scored",
))  # fmt: skip


def _tatoeba_task() -> Task:
    return Task(
        name="tatoeba",
        level="parallel",
        metric="accuracy",
        labels=(),
        languages=_tatoeba_langs(),
        default_source="eng",
        train_split="test",
        dev_split=None,
        eval_split="test",
        locate=_tatoeba_locate,
        read=_read_parallel,
        description="Tatoeba parallel sentences with English (XTREME retrieval), 3-letter codes",
    )


def task_names() -> tuple[str, ...]:
    return (*_REGISTRY, "tatoeba")


def get_task(name: str) -> Task:
    """Look a task up by name; unknown names fail with the close matches and the full list."""
    if name == "tatoeba" and name not in _REGISTRY:
        register(_tatoeba_task())
    if name not in _REGISTRY:
        raise unknown_name("task", name, task_names())
    return _REGISTRY[name]


def default_data_dir(explicit: Path | None = None) -> Path | None:
    """`--data-dir` beats the PROBE_DATA environment variable; None means: use the hub."""
    if explicit is not None:
        return explicit
    env = os.environ.get("PROBE_DATA")
    return Path(env) if env else None


def available_languages(task: Task, data_dir: Path) -> tuple[str, ...]:
    """The task's languages whose evaluation split exists under data_dir (`--langs all`)."""
    return tuple(
        lang for lang in task.languages
        if all(p.is_file() for p in task.locate(data_dir, lang, task.eval_split))
    )  # fmt: skip


def expand_languages(task: Task, langs: Sequence[str], data_dir: Path | None) -> tuple[str, ...]:
    """Resolve `all` and comma lists against the task's languages (and the local data)."""
    wanted: list[str] = []
    for item in langs:
        wanted.extend(x.strip() for x in item.split(",") if x.strip())
    if wanted == ["all"]:
        if data_dir is None:
            return task.languages
        found = available_languages(task, data_dir)
        if not found:
            raise ProbeError(f"no data for task {task.name!r} under {data_dir}")
        return found
    for lang in wanted:
        task.check_language(lang)
    return tuple(dict.fromkeys(wanted))


def local_files(task: Task, data_dir: Path, lang: str, split: str) -> tuple[Path, ...]:
    """The files of one split, with a clear error when a split is missing."""
    task.check_language(lang)
    paths = task.locate(data_dir, lang, split)
    for path in paths:
        if not path.is_file():
            raise DataError(
                path, None,
                f"missing split {split!r} for task {task.name!r}, language {lang!r} "
                f"(is --data-dir / PROBE_DATA pointing at the data root?)",
            )  # fmt: skip
    return paths


def read_split(task: Task, data_dir: Path, lang: str, split: str) -> Records:
    """Read one split from local files and check every tag against the task's label set."""
    paths = local_files(task, data_dir, lang, split)
    records = task.read(paths)
    if not records:
        raise DataError(paths[0], None, f"no {task.level} records in split {split!r}")
    allowed = set(task.labels)
    if task.level == "word":
        fixed: list[TaggedSentence] = []
        for sent in records:
            assert isinstance(sent, TaggedSentence)
            if not sent.words:
                raise DataError(paths[0], None, f"sentence {sent.sent_id!r} has no words")
            tags = tuple(task.label_map.get(t, t) for t in sent.tags)
            for i, tag in enumerate(tags):
                if tag not in allowed:
                    raise DataError(
                        paths[0], _word_line(paths[0], sent, i),
                        f"sentence {sent.sent_id!r}, word {sent.words[i]!r}: tag {tag!r} is not "
                        f"in the {task.name} label set ({', '.join(task.labels)})",
                    )  # fmt: skip
            fixed.append(
                TaggedSentence(sent.sent_id, sent.words, tags) if tags != sent.tags else sent
            )
        return fixed
    if task.level == "pair":
        for pair in records:
            assert isinstance(pair, TextPair)
            if pair.label is not None and pair.label not in allowed:
                raise DataError(
                    paths[0],
                    None,
                    f"pair {pair.pair_id!r}: label {pair.label!r} not in {task.labels}",
                )
    return records


def _word_line(path: Path, sent: TaggedSentence, word: int) -> int | None:
    """The line of word `word` of `sent` in its CoNLL-U or token-per-line file, or None.

    Only for error messages, so the file is read again only when one is raised. The sentence
    is found by its `file:line` id or its `# sent_id` comment; CoNLL-U multiword-token and
    empty-node lines (`1-2`, `1.1`) are skipped as the reader skips them.
    """
    from probe.data.sources.columns import read_lines

    lines = read_lines(path)
    head, _, number = sent.sent_id.rpartition(":")
    if head == path.name and number.isdigit():
        start = int(number) - 1
    else:
        marks = [
            i for i, line in enumerate(lines)
            if line.startswith("#") and [p.strip() for p in line[1:].partition("=")[::2]]
            == ["sent_id", sent.sent_id]
        ]  # fmt: skip
        if len(marks) != 1:
            return None
        start = marks[0]
    seen = -1
    for i in range(start, len(lines)):
        line = lines[i]
        if not line.strip():
            if seen >= 0:
                return None
            continue
        cols = line.split("\t")
        if line.startswith("#") or (len(cols) == 10 and re.fullmatch(r"\d+[-.]\d+", cols[0])):
            continue
        seen += 1
        if seen == word:
            return i + 1 if sent.words[word] in line else None
    return None
