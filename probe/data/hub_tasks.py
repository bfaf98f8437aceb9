"""Which public dataset each built-in task reads when there is no data directory (the hub).

A task's hub source gives its language list (what `--langs all` means without local data)
and reads one split through `probe.data.sources.hub`, which converts the rows to the local
readers' records. UD tasks (those with a `TreebankRule`: `pos`, `pos-gum`, ...) read the
UD 2.7 configs of `universal-dependencies/universal_dependencies`, one per treebank, with the
local rule deciding which treebanks a task admits; which one a language reads by default is
the table `HUB_UD_DEFAULTS` (the hub cannot compare file sizes before downloading):

    `--treebank` if given (`cs_pdt`, or `en_ewt+en_gum` concatenated split by split),
    else the language's only admitted treebank,
    else its entry in HUB_UD_DEFAULTS: the treebank of the shared data where it has one
    (EWT, GSD, IMST ...), else the language's main general-domain treebank.

Tasks without a hub source (task files, say) fail with the one fix: a data directory.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from probe.data.sources import hub
from probe.data.sources.hub import HubSplit
from probe.data.ud import Treebank, TreebankRule, parse_picks
from probe.errors import ProbeError

if TYPE_CHECKING:
    from probe.data.tasks import Task


@dataclass(frozen=True)
class HubSource:
    """One task's data on the hub: its languages (`--langs all`), the further ones it reads
    when named, and how one split of a language is read."""

    languages: tuple[str, ...]
    read: Callable[[str, str], HubSplit]
    also: tuple[str, ...] = ()


# `--langs all` for panx is XTREME's 40; WikiANN's other 136 are read when named (`--langs
# az,lt`): all 176 would be some 40 times the data of the benchmark the task is named after.
_WIKIANN_ONLY = tuple(x for x in hub.WIKIANN_LANGS if x not in hub.PANX_LANGS)
SOURCES: dict[str, HubSource] = {
    "panx": HubSource(hub.PANX_LANGS, hub.load_panx, also=_WIKIANN_ONLY),
    "udpos": HubSource(hub.UDPOS_LANGS, hub.load_udpos),
    "ner": HubSource(hub.MASAKHANER_LANGS, hub.load_masakhaner),
    "xnli": HubSource(hub.XNLI_LANGS, hub.load_xnli),
    "pawsx": HubSource(hub.PAWSX_LANGS, hub.load_pawsx),
    "tatoeba": HubSource(hub.TATOEBA_LANGS, hub.load_tatoeba),
    "tatoeba-xtreme": HubSource(hub.TATOEBA_LANGS, hub.load_tatoeba),
}

# The default treebank of every UD 2.7 language with more than one non-PUD treebank.
HUB_UD_DEFAULTS: dict[str, str] = {
    "akk": "akk_riao", "ar": "ar_padt", "cs": "cs_pdt", "de": "de_gsd", "en": "en_ewt",
    "es": "es_gsd", "et": "et_edt", "fa": "fa_perdt", "fi": "fi_tdt", "fo": "fo_farpahc",
    "fr": "fr_gsd", "gl": "gl_ctg", "grc": "grc_proiel", "gun": "gun_thomas", "id": "id_gsd",
    "it": "it_isdt", "ja": "ja_gsd", "ko": "ko_kaist", "kpv": "kpv_lattice", "la": "la_ittb",
    "lt": "lt_alksnis", "nl": "nl_alpino", "no": "no_bokmaal", "orv": "orv_torot",
    "pl": "pl_pdb", "pt": "pt_bosque", "ro": "ro_rrt", "ru": "ru_gsd", "sa": "sa_vedic",
    "sl": "sl_ssj", "sv": "sv_talbanken", "ta": "ta_ttb", "tl": "tl_trg", "tr": "tr_imst",
    "zh": "zh_gsd",
}  # fmt: skip


def hub_languages(task: Task, *, named: bool = False) -> tuple[str, ...]:
    """The languages of the task's hub source: `--langs all` without a data directory, or
    with `named` every language it reads when asked by name (panx: WikiANN's too)."""
    rule = _rule(task)
    if rule is not None:
        return tuple(sorted({tb.lang for tb in _admitted(rule)}))
    source = _source(task)
    return (*source.languages, *source.also) if named else source.languages


def hub_treebanks(task: Task, lang: str, picks: Sequence[str] = ()) -> tuple[str, ...]:
    """The UD treebanks one language of a UD task reads from the hub (module docstring)."""
    rule = _rule(task)
    if rule is None:
        raise ProbeError(f"task {task.name!r} reads no UD treebanks; --treebank is for UD tasks")
    admitted = [tb for tb in _admitted(rule) if tb.lang == lang]
    chosen = parse_picks(picks).get(lang)
    if chosen is not None:
        names = {tb.name for tb in admitted}
        for name in chosen:
            if name not in names:
                raise ProbeError(
                    f"--treebank {name}: not a UD 2.7 treebank on the hub that task "
                    f"{task.name!r} reads ({rule.describe()}); {lang!r} has: "
                    f"{', '.join(sorted(names)) or 'none'}"
                )
        return chosen
    if not admitted:
        raise ProbeError(
            f"task {task.name!r}: UD 2.7 on the hub has no treebank of language {lang!r} among "
            f"{rule.describe()}; languages: {', '.join(hub_languages(task))}"
        )
    if len(admitted) == 1:
        return (admitted[0].name,)
    default = HUB_UD_DEFAULTS.get(lang)
    if default is None or default not in {tb.name for tb in admitted}:
        raise ProbeError(
            f"task {task.name!r}: language {lang!r} has several treebanks on the hub "
            f"({', '.join(tb.name for tb in admitted)}); pick one with --treebank"
        )
    return (default,)


def read_hub_split(task: Task, lang: str, split: str, treebanks: Sequence[str] = ()) -> HubSplit:
    """One split of one language from the task's hub source, as the local reader's records.

    `treebanks` is the `--treebank` choice (`("en_ewt+en_gum", "cs_pdt")`), for UD tasks.
    The records are not yet checked against the task's label set (the caller does that the
    same way for local and hub records).
    """
    if _rule(task) is not None:
        from probe.data.catalogue import UPOS

        if task.labels != UPOS:  # the hub's UD rows are read as UPOS tags only
            raise ProbeError(
                f"task {task.name!r} reads UD trees or features, which only local treebanks "
                "give: pass --data-dir (or set PROBE_DATA)"
            )
        return hub.load_ud(hub_treebanks(task, lang, treebanks), split)
    if treebanks:
        raise ProbeError(f"task {task.name!r} reads no UD treebanks; --treebank is for UD tasks")
    return _source(task).read(lang, split)


def _source(task: Task) -> HubSource:
    source = SOURCES.get(task.name)
    if source is None:
        raise ProbeError(
            f"task {task.name!r} has no hub source (the hub serves: "
            f"{', '.join([*SOURCES, 'the UD tasks'])}); pass --data-dir or set PROBE_DATA"
        )
    return source


def _rule(task: Task) -> TreebankRule | None:
    if task.treebanks is not None and task.treebanks.split_corpus:
        raise ProbeError(f"task {task.name!r} reads its splits from different treebanks of a "
                         "local ud/ folder, not from the hub: pass --data-dir")  # fmt: skip
    return task.treebanks


def _admitted(rule: TreebankRule) -> list[Treebank]:
    """The hub's UD treebanks the rule admits (files unknown before download: empty)."""
    every = (Treebank(name, name.partition("_")[0], {}) for name in hub.UD_TREEBANKS)
    return [tb for tb in every if rule.admits(tb)]
