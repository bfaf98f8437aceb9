"""Loading the same record types from the public HF datasets (XTREME, Universal Dependencies).

Used when no `--data-dir` is given. `datasets` is imported inside the functions so that
importing the toolkit never pays for it. The conversion from a loaded `datasets.Dataset` to
records is kept apart from the download (`tagged_from_dataset`, `pairs_from_dataset`) so it
can be tested offline on small in-memory datasets with the real features.

Sources (feature names as published):
- `google/xtreme`, configs `udpos.<English name>` (tokens, pos_tags: ClassLabel),
  `PAN-X.<xx>` (tokens, ner_tags: ClassLabel, langs), `PAWS-X.<xx>` (sentence1, sentence2,
  label: string "0"/"1"), `XNLI` (language, sentence1, sentence2, gold_label: string; all
  15 languages in one config, splits validation and test).
- `universal-dependencies/universal_dependencies`, configs `en_ewt` … (idx, tokens, upos:
  ClassLabel, head …). It is a script dataset, which recent `datasets` no longer runs, so it
  is read from the Hub's parquet conversion (revision `refs/convert/parquet`). Its rows keep
  multiword tokens (UPOS `_`) and empty nodes (no head): both are dropped, as locally.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from probe.data.sources.records import TaggedSentence, TextPair
from probe.errors import ProbeError, unknown_name
from probe.runtime.hub import hub_endpoint, hub_offline, hub_reachable

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

XTREME = "google/xtreme"
UD = "universal-dependencies/universal_dependencies"
UD_REVISION = "refs/convert/parquet"

# XTREME names its UD-POS configs by English language name.
UDPOS_CONFIGS: dict[str, str] = {
    "af": "Afrikaans", "ar": "Arabic", "bg": "Bulgarian", "de": "German", "el": "Greek",
    "en": "English", "es": "Spanish", "et": "Estonian", "eu": "Basque", "fa": "Persian",
    "fi": "Finnish", "fr": "French", "he": "Hebrew", "hi": "Hindi", "hu": "Hungarian",
    "id": "Indonesian", "it": "Italian", "ja": "Japanese", "kk": "Kazakh", "ko": "Korean",
    "mr": "Marathi", "nl": "Dutch", "pt": "Portuguese", "ru": "Russian", "ta": "Tamil",
    "te": "Telugu", "th": "Thai", "tl": "Tagalog", "tr": "Turkish", "ur": "Urdu",
    "vi": "Vietnamese", "yo": "Yoruba", "zh": "Chinese",
}  # fmt: skip
# The local files call the development split `dev`; the Hub calls it `validation`.
_SPLITS = {"dev": "validation", "validation": "validation", "train": "train", "test": "test"}


# --- loading ------------------------------------------------------------------------------


def load_udpos(lang: str, split: str) -> list[TaggedSentence]:
    """XTREME UD-POS for one language (`en` or the config's name `English`)."""
    name = lang if lang in UDPOS_CONFIGS.values() else UDPOS_CONFIGS.get(lang)
    if name is None:
        raise unknown_name("XTREME UD-POS language", lang, list(UDPOS_CONFIGS))
    ds = _load(XTREME, f"udpos.{name}", split)
    return tagged_from_dataset(ds, tags="pos_tags", id_prefix=f"udpos.{name}/{split}")


def load_panx(lang: str, split: str) -> list[TaggedSentence]:
    """XTREME PAN-X (WikiANN) NER for one language."""
    ds = _load(XTREME, f"PAN-X.{lang}", split)
    return tagged_from_dataset(ds, tags="ner_tags", id_prefix=f"PAN-X.{lang}/{split}")


def load_ud(treebank: str, split: str) -> list[TaggedSentence]:
    """A UD treebank (`en_ewt`, `de_gsd` …): syntactic words and UPOS, ids from `idx`."""
    ds = _load(UD, treebank, split, revision=UD_REVISION)
    return tagged_from_dataset(
        ds, tags="upos", id_column="idx", id_prefix=f"{treebank}/{split}", keep=_ud_word
    )


def load_pawsx(lang: str, split: str) -> list[TextPair]:
    """XTREME PAWS-X for one language; labels "0"/"1" as in the local files."""
    ds = _load(XTREME, f"PAWS-X.{lang}", split)
    return pairs_from_dataset(ds, id_prefix=f"PAWS-X.{lang}/{split}")


def load_xnli(lang: str, split: str) -> list[TextPair]:
    """XTREME XNLI for one language (the config holds all 15; rows are filtered by language)."""
    ds = _load(XTREME, "XNLI", split)
    if "language" in ds.column_names:
        ds = ds.filter(lambda row: row["language"] == lang)
    if len(ds) == 0:
        raise ProbeError(f"XNLI ({split}) has no rows for language {lang!r}")
    return pairs_from_dataset(ds, label="gold_label", id_prefix=f"XNLI.{lang}/{split}")


def _load(repo: str, config: str, split: str, revision: str | None = None) -> datasets.Dataset:
    """`datasets.load_dataset` that fails fast, with a --data-dir hint, when the Hub is away."""
    hub_split = _SPLITS.get(split)
    if hub_split is None:
        raise unknown_name("split", split, list(_SPLITS))
    offline = hub_offline(datasets=True)
    if not offline:
        _check_reachable()
    import datasets

    log.info("loading %s (%s, %s) from the Hugging Face Hub", repo, config, hub_split)
    try:
        return datasets.load_dataset(repo, config, split=hub_split, revision=revision)
    except Exception as exc:  # any failure here has the same fix for the user
        where = "the local HF cache (offline mode)" if offline else "the Hugging Face Hub"
        raise ProbeError(
            f"could not load {repo} config {config!r} split {hub_split!r} from {where}: "
            f"{type(exc).__name__}: {exc}. Use local files with --data-dir (or PROBE_DATA)."
        ) from exc


def _check_reachable() -> None:
    """Fail in seconds, not after the HF client's retries, when the Hub cannot be reached."""
    if not hub_reachable():
        raise ProbeError(
            f"the Hugging Face Hub ({hub_endpoint()}) is not reachable. Use local files with "
            "--data-dir (or PROBE_DATA), or set HF_HUB_OFFLINE=1 to use datasets already in "
            "the HF cache."
        )


# --- conversion (pure; tested offline) --------------------------------------------------


def tagged_from_dataset(
    ds: datasets.Dataset,
    *,
    tokens: str = "tokens",
    tags: str,
    id_column: str | None = None,
    id_prefix: str = "",
    keep: Callable[[dict[str, Any], int, str], bool] | None = None,
) -> list[TaggedSentence]:
    """Turn rows of a token-classification dataset into TaggedSentence with tag NAMES.

    Tags stored as ClassLabel ints are mapped through the feature's own `names` (each
    dataset orders them differently: XTREME's UD-POS starts at ADJ, UD's at NOUN); string
    tags are kept. `keep(row, i, tag)` may drop word i (UD's multiword tokens). Ids come from
    `id_column`, else `<id_prefix>:<row number>`.
    """
    names = _label_names(ds, tags)
    out: list[TaggedSentence] = []
    for n, row in enumerate(ds):
        words, labels = row[tokens], row[tags]
        if len(words) != len(labels):
            raise ProbeError(
                f"{id_prefix} row {n}: {len(words)} tokens but {len(labels)} {tags!r} values"
            )
        named = [_name(v, names, tags) for v in labels]
        kept = [
            (w, t) for i, (w, t) in enumerate(zip(words, named, strict=True))
            if keep is None or keep(row, i, t)
        ]  # fmt: skip
        if not kept:
            continue
        sent_id = str(row[id_column]) if id_column else f"{id_prefix}:{n}"
        out.append(TaggedSentence(sent_id, tuple(w for w, _ in kept), tuple(t for _, t in kept)))
    return out


def pairs_from_dataset(
    ds: datasets.Dataset,
    *,
    text_a: str = "sentence1",
    text_b: str = "sentence2",
    label: str = "label",
    id_column: str | None = None,
    id_prefix: str = "",
) -> list[TextPair]:
    """Turn rows of a sentence-pair dataset into TextPair with the label as a NAME (or None).

    ClassLabel ints are mapped to their names; -1 (the HF convention for a hidden label) and
    empty strings become None, so `require_labels` can refuse to score on them.
    """
    names = _label_names(ds, label) if label in ds.column_names else None
    out: list[TextPair] = []
    for n, row in enumerate(ds):
        raw = row.get(label)
        hidden = raw is None or raw == "" or raw == -1
        name = None if hidden else _name(raw, names, label)
        pair_id = str(row[id_column]) if id_column else f"{id_prefix}:{n}"
        out.append(TextPair(pair_id, row[text_a], row[text_b], name))
    return out


def _label_names(ds: datasets.Dataset, column: str) -> Sequence[str] | None:
    """The ClassLabel names behind `column` (a label or a sequence of labels), else None."""
    if column not in ds.features:
        raise ProbeError(f"dataset has no column {column!r}; columns: {ds.column_names}")
    feature = ds.features[column]
    feature = getattr(feature, "feature", feature)  # List/Sequence(ClassLabel) -> ClassLabel
    return getattr(feature, "names", None)


def _name(value: Any, names: Sequence[str] | None, column: str) -> str:
    if names is None:
        return str(value)
    if not isinstance(value, int) or not 0 <= value < len(names):
        raise ProbeError(f"column {column!r}: {value!r} is not a class index below {len(names)}")
    return names[value]


def _ud_word(row: dict[str, Any], i: int, tag: str) -> bool:
    """A syntactic word of a UD row: not a multiword token (UPOS `_`), not an empty node."""
    heads = row.get("head")
    return tag != "_" and not (heads is not None and heads[i] in ("None", "_", None))
