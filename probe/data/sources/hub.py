"""Reading the public sources of the built-in tasks through `datasets`, as the local readers do.

Used when no data directory is given (no `--data-dir`, no PROBE_DATA). Each loader returns a
`HubSplit`: the records, converted to exactly what the local reader of the same task yields
(words, tag names, pair texts, label names; only the ids differ), and the split's identity
`hub:<repo>/<config>:<split>@<revision>#<fingerprint>`, which becomes the shard's
`source_hash` the way a file's sha256 does for local data: changed data on the Hub means a
new fingerprint and a re-extracted shard, never a mixed cache.

Every source is read from the Hub's parquet export (revision `refs/convert/parquet`, one
folder per config): several of these datasets are script datasets (Universal Dependencies,
MasakhaNER 2.0), which `datasets` >= 4 no longer runs, and the export is the one layout all
of them share. Its parquet files carry the published features, ClassLabel names included.
`datasets` is imported inside `_load` so that importing the toolkit never pays for it.

Sources (feature names as published):
- `google/xtreme`: `PAN-X.<xx>` (tokens, ner_tags: ClassLabel, langs), `udpos.<English
  name>` (tokens, pos_tags: ClassLabel), `PAWS-X.<xx>` (sentence1, sentence2, label: string
  "0"/"1"), `XNLI` (language, sentence1, sentence2, gold_label: string; all 15 languages in
  one config, splits validation and test), `tatoeba.<xxx>` (source_sentence, target_sentence
  with their line ends, source_lang, target_lang; one split, validation).
- `unimelb-nlp/wikiann` (WikiANN, Rahimi et al.'s splits of 176 languages, PAN-X's source):
  config per language, the same features as PAN-X; read for the languages XTREME's PAN-X
  lacks.
- `masakhane/masakhaner2`: config per language (id, tokens, ner_tags: ClassLabel).
- `universal-dependencies/universal_dependencies` (UD 2.7): config per treebank (idx,
  tokens, upos: ClassLabel, head, ...). Its rows keep multiword tokens (UPOS `_`) and empty
  nodes (no head): both are dropped, as the local CoNLL-U reader drops them.
"""

from __future__ import annotations

import ast
import dataclasses
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from probe.data.sources.records import TaggedSentence, TextPair
from probe.data.sources.text import fix_mojibake
from probe.errors import ProbeError, unknown_name
from probe.runtime.hub import hub_endpoint, hub_offline, hub_reachable

if TYPE_CHECKING:
    import datasets

log = logging.getLogger(__name__)

XTREME = "google/xtreme"
WIKIANN = "unimelb-nlp/wikiann"
MASAKHANER = "masakhane/masakhaner2"
UD = "universal-dependencies/universal_dependencies"
REVISION = "refs/convert/parquet"

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
UDPOS_LANGS = tuple(UDPOS_CONFIGS)  # XTREME's 33 UD-POS languages
# XTREME's 40 PAN-X languages: `--langs all` on the hub (WikiANN's others are read when named).
PANX_LANGS = tuple(
    "af ar bg bn de el en es et eu fa fi fr he hi hu id it ja jv ka kk ko ml mr ms my nl pt "
    "ru sw ta te th tl tr ur vi yo zh".split()
)
# Every WikiANN (Rahimi et al.) language, PAN-X's 40 among them: what panx reads when named.
WIKIANN_LANGS = tuple(
    """
    ace af als am an ang ar arc arz as ast ay az ba bar bat-smg be be-x-old bg bh bn bo br bs
    ca cbk-zam cdo ce ceb ckb co crh cs csb cv cy da de diq dv el eml en eo es et eu ext fa fi
    fiu-vro fo fr frr fur fy ga gan gd gl gn gu hak he hi hr hsb hu hy ia id ig ilo io is it ja
    jbo jv ka kk km kn ko ksh ku ky la lb li lij lmo ln lt lv map-bms mg mhr mi min mk ml mn mr
    ms mt mwl my mzn nap nds ne nl nn no nov oc or os pa pdc pl pms pnb ps pt qu rm ro ru rw sa
    sah scn sco sd sh si simple sk sl so sq sr su sv sw szl ta te tg th tk tl tr tt ug uk ur uz
    vec vep vi vls vo wa war wuu xmf yi yo zea zh zh-classical zh-min-nan zh-yue
    """.split()
)
XNLI_LANGS = tuple("ar bg de el en es fr hi ru sw th tr ur vi zh".split())
PAWSX_LANGS = tuple("de en es fr ja ko zh".split())
TATOEBA_LANGS = tuple(
    "afr ara ben bul cmn deu ell est eus fin fra heb hin hun ind ita jav jpn kat kaz kor mal "
    "mar nld pes por rus spa swh tam tel tgl tha tur urd vie".split()
)
# MasakhaNER 2.0's 20 languages.
MASAKHANER_LANGS = tuple(
    "bam bbj ewe fon hau ibo kin lug luo mos nya pcm sna swa tsn twi wol xho yor zul".split()
)
# The configs of universal-dependencies/universal_dependencies (UD 2.7), one per treebank.
UD_TREEBANKS = tuple(
    """
    af_afribooms akk_pisandub akk_riao aqz_tudet sq_tsa am_att grc_perseus grc_proiel apu_ufpa
    ar_nyuad ar_padt ar_pud hy_armtdp aii_as bm_crb eu_bdt be_hse bho_bhtb br_keb bg_btb
    bxr_bdt yue_hk ca_ancora zh_cfl zh_gsd zh_gsdsimp zh_hk zh_pud ckt_hse lzh_kyoto
    cop_scriptorium hr_set cs_cac cs_cltt cs_fictree cs_pdt cs_pud da_ddt nl_alpino
    nl_lassysmall en_esl en_ewt en_gum en_gumreddit en_lines en_partut en_pronouns en_pud
    myv_jr et_edt et_ewt fo_farpahc fo_oft fi_ftb fi_ood fi_pud fi_tdt fr_fqb fr_ftb fr_gsd
    fr_partut fr_pud fr_sequoia fr_spoken gl_ctg gl_treegal de_gsd de_hdt de_lit de_pud
    got_proiel el_gdt he_htb qhe_hiencs hi_hdtb hi_pud hu_szeged is_icepahc is_pud id_csui
    id_gsd id_pud ga_idt it_isdt it_partut it_postwita it_pud it_twittiro it_vit ja_bccwj
    ja_gsd ja_modern ja_pud krl_kkpp kk_ktb kfm_aha koi_uh kpv_ikdp kpv_lattice ko_gsd
    ko_kaist ko_pud kmr_mg la_ittb la_llct la_perseus la_proiel lv_lvtb lt_alksnis lt_hse
    olo_kkpp mt_mudt gv_cadhan mr_ufal gun_dooley gun_thomas mdf_jr myu_tudet pcm_nsc nyq_aha
    sme_giella no_bokmaal no_nynorsk no_nynorsklia cu_proiel fro_srcmf orv_rnc orv_torot
    otk_tonqq fa_perdt fa_seraji pl_lfg pl_pdb pl_pud pt_bosque pt_gsd pt_pud ro_nonstandard
    ro_rrt ro_simonero ru_gsd ru_pud ru_syntagrus ru_taiga sa_ufal sa_vedic gd_arcosg sr_set
    sms_giellagas sk_snk sl_ssj sl_sst soj_aha ajp_madar es_ancora es_gsd es_pud swl_sslc
    sv_lines sv_pud sv_talbanken gsw_uzh tl_trg tl_ugnayan ta_mwtt ta_ttb te_mtg th_pud
    tpn_tudet qtd_sagt tr_boun tr_gb tr_imst tr_pud uk_iu hsb_ufal ur_udtb ug_udt vi_vtb
    wbp_ufal cy_ccg wo_wtb yo_ytb
    """.split()
)

# The local files call the development split `dev`; the Hub calls it `validation`.
SPLITS: dict[str, str] = {"train": "train", "dev": "validation", "test": "test"}
# XTREME's Tatoeba sets are test sets the Hub publishes as its only split, `validation`.
TATOEBA_SPLITS: dict[str, str] = {"test": "validation"}

Records = list[TaggedSentence] | list[TextPair]


@dataclass(frozen=True)
class HubSplit:
    """One split read from the Hub: its records and its identity (the shard's source hash)."""

    records: Records
    source: str


# --- loading ------------------------------------------------------------------------------


def load_panx(lang: str, split: str) -> HubSplit:
    """PAN-X NER: XTREME's config for its 40 languages, WikiANN's for the other 136."""
    if lang in PANX_LANGS:
        repo, config = XTREME, f"PAN-X.{lang}"
    elif lang in WIKIANN_LANGS:
        repo, config = WIKIANN, lang
    else:
        raise unknown_name("PAN-X / WikiANN language", lang, WIKIANN_LANGS)
    ds, source = _load(repo, config, _split(split, SPLITS))
    return HubSplit(tagged_from_dataset(ds, tags="ner_tags", id_prefix=config, repair=True), source)


def load_udpos(lang: str, split: str) -> HubSplit:
    """XTREME's UD-POS for one language (`en` or the config's name `English`)."""
    name = lang if lang in UDPOS_CONFIGS.values() else UDPOS_CONFIGS.get(lang)
    if name is None:
        raise unknown_name("XTREME UD-POS language", lang, list(UDPOS_CONFIGS))
    ds, source = _load(XTREME, f"udpos.{name}", _split(split, SPLITS))
    records = tagged_from_dataset(ds, tags="pos_tags", id_prefix=f"udpos.{name}", repair=True)
    return HubSplit(records, source)


def load_ud(treebanks: Sequence[str], split: str) -> HubSplit:
    """UD treebanks (`en_ewt`, or several of one language concatenated in the given order):
    syntactic words and UPOS, ids from `idx` (the files' `# sent_id`)."""
    if not treebanks:
        raise ProbeError("no UD treebank given")
    records: list[TaggedSentence] = []
    sources = []
    for name in treebanks:
        if name not in UD_TREEBANKS:
            raise unknown_name("UD treebank on the Hub (UD 2.7)", name, UD_TREEBANKS)
        ds, source = _load(UD, name, _split(split, SPLITS))
        tagged = tagged_from_dataset(ds, tags="upos", id_column="idx", id_prefix=name,
                                     keep=_ud_word)  # fmt: skip
        records += _with_trees(ds, tagged)
        sources.append(source)
    return HubSplit(records, "+".join(sources))


def _with_trees(ds: datasets.Dataset, records: list[TaggedSentence]) -> list[TaggedSentence]:
    """The records with each sentence's basic tree (HEAD, DEPREL of its syntactic words), as
    the local CoNLL-U reader gives them, when the rows carry both columns; a sentence whose
    heads are not all word numbers keeps none (so its split stores no trees)."""
    if "head" not in ds.column_names or "deprel" not in ds.column_names:
        return records
    with_feats = "feats" in ds.column_names
    trees: dict[str, tuple[tuple[int, ...], tuple[str, ...], tuple[str, ...]]] = {}
    for row in ds:
        kept = [i for i, head in enumerate(row["head"]) if head not in ("None", "_", None)]
        heads = [str(row["head"][i]) for i in kept]
        rels = tuple(str(row["deprel"][i]) for i in kept)
        feats = tuple(_feats_text(row["feats"][i]) for i in kept) if with_feats else ()
        if all(h.isdigit() and int(h) <= len(kept) for h in heads):
            trees[str(row["idx"])] = (tuple(int(h) for h in heads), rels, feats)
    out = []
    for sent in records:
        tree = trees.get(sent.sent_id)
        if tree is not None and len(tree[0]) == len(sent.words):
            sent = dataclasses.replace(sent, heads=tree[0], deprels=tree[1], feats=tree[2])
        out.append(sent)
    return out


def _feats_text(value: str | None) -> str:
    """A row's FEATS as CoNLL-U writes it: the loader stores the `conllu` package's str() of
    the features' dict ("{'Case': 'Nom', 'PronType': 'Int,Rel'}", "None" for `_`)."""
    if value in (None, "None", "_", ""):
        return ""
    parsed = ast.literal_eval(value)
    return "|".join(f"{k}={v}" for k, v in parsed.items()) if isinstance(parsed, dict) else ""


def load_masakhaner(lang: str, split: str) -> HubSplit:
    """MasakhaNER 2.0 for one language (IOB2 PER/ORG/LOC/DATE)."""
    if lang not in MASAKHANER_LANGS:
        raise unknown_name("MasakhaNER 2.0 language", lang, MASAKHANER_LANGS)
    ds, source = _load(MASAKHANER, lang, _split(split, SPLITS))
    return HubSplit(tagged_from_dataset(ds, tags="ner_tags", id_prefix=lang, repair=True), source)


def load_pawsx(lang: str, split: str) -> HubSplit:
    """XTREME's PAWS-X for one language; labels "0"/"1" as in the local files."""
    if lang not in PAWSX_LANGS:
        raise unknown_name("PAWS-X language", lang, PAWSX_LANGS)
    ds, source = _load(XTREME, f"PAWS-X.{lang}", _split(split, SPLITS))
    return HubSplit(pairs_from_dataset(ds, id_prefix=f"PAWS-X.{lang}", repair=True), source)


def load_xnli(lang: str, split: str) -> HubSplit:
    """XTREME's XNLI for one language: the config holds all 15, its rows are filtered by
    `language` (the identity names the language, the fingerprint is the whole config's)."""
    if lang not in XNLI_LANGS:
        raise unknown_name("XNLI language", lang, XNLI_LANGS)
    hub_split = _split(split, SPLITS)
    ds, source = _load(XTREME, "XNLI", hub_split)
    rows = [i for i, row_lang in enumerate(ds["language"]) if row_lang == lang]
    if not rows:
        raise ProbeError(f"XNLI ({hub_split}) on the Hub has no rows for language {lang!r}")
    pairs = pairs_from_dataset(ds.select(rows), label="gold_label", id_prefix=f"XNLI.{lang}",
                               repair=True)  # fmt: skip
    return HubSplit(pairs, f"{source}[language={lang}]")


def load_tatoeba(lang: str, split: str) -> HubSplit:
    """XTREME's Tatoeba set of one language (3-letter code): the sentence (text_a) and its
    English translation (text_b), without the line ends the Hub's rows keep."""
    if lang not in TATOEBA_LANGS:
        raise unknown_name("XTREME Tatoeba language", lang, TATOEBA_LANGS)
    ds, source = _load(XTREME, f"tatoeba.{lang}", _split(split, TATOEBA_SPLITS))
    pairs = pairs_from_dataset(
        ds, text_a="source_sentence", text_b="target_sentence", label=None,
        id_prefix=f"tatoeba.{lang}", strip_line_end=True,
    )  # fmt: skip
    return HubSplit(pairs, source)


def _split(split: str, names: dict[str, str]) -> str:
    """The Hub's name of a task split (`dev` -> `validation`)."""
    if split not in names:
        raise unknown_name("split", split, list(names))
    return names[split]


def _load(repo: str, config: str, split: str) -> tuple[datasets.Dataset, str]:
    """One config's split from the Hub's parquet export, and its identity.

    The only function that touches the network (tests replace it with in-memory datasets).
    Offline flags set: the HF cache is read, and a split not in it fails with the
    --data-dir hint; flags unset and the Hub unreachable: fails in seconds, not after the
    HF client's retries.
    """
    offline = hub_offline(datasets=True)
    if not offline:
        _check_reachable()
    import datasets

    log.info("loading %s (%s, %s) from the Hugging Face Hub", repo, config, split)
    try:
        ds = datasets.load_dataset(repo, data_dir=config, split=split, revision=REVISION)
    except Exception as exc:  # any failure here has the same fix for the user
        where = "the local HF cache (offline mode)" if offline else "the Hugging Face Hub"
        raise ProbeError(
            f"could not load {repo} config {config!r} split {split!r} from {where}: "
            f"{type(exc).__name__}: {exc}. Pass --data-dir (or set PROBE_DATA) to read "
            "local files."
        ) from exc
    return ds, hub_identity(repo, config, split, ds._fingerprint)


def hub_identity(repo: str, config: str, split: str, fingerprint: str) -> str:
    """The source identity of one Hub split, as recorded in its shards."""
    return f"hub:{repo}/{config}:{split}@{REVISION}#{fingerprint}"


def _check_reachable() -> None:
    if not hub_reachable():
        raise ProbeError(
            f"no data directory and the Hugging Face Hub ({hub_endpoint()}) is not reachable: "
            "pass --data-dir or set PROBE_DATA to read local files, or set HF_HUB_OFFLINE=1 "
            "to use datasets already in the HF cache."
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
    repair: bool = False,
) -> list[TaggedSentence]:
    """Turn rows of a token-classification dataset into TaggedSentence with tag NAMES.

    Tags stored as ClassLabel ints are mapped through the feature's own `names` (each
    dataset orders them differently: XTREME's UD-POS starts at ADJ, UD's at NOUN); string
    tags are kept. `keep(row, i, tag)` may drop word i (UD's multiword tokens). `repair`
    undoes double-encoded UTF-8 in tokens, as the local token-per-line reader does. Ids
    come from `id_column`, else `<id_prefix>:<row number>`. A row left without words is
    skipped; an empty token is refused (the tokenizer would drop it).
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
            (fix_mojibake(w) if repair else w, t)
            for i, (w, t) in enumerate(zip(words, named, strict=True))
            if keep is None or keep(row, i, t)
        ]  # fmt: skip
        if not kept:
            continue
        sent_id = str(row[id_column]) if id_column else f"{id_prefix}:{n}"
        for w, _ in kept:
            if not w.strip():
                raise ProbeError(f"{id_prefix} row {n} ({sent_id}): empty token {w!r}")
        out.append(TaggedSentence(sent_id, tuple(w for w, _ in kept), tuple(t for _, t in kept)))
    return out


def pairs_from_dataset(
    ds: datasets.Dataset,
    *,
    text_a: str = "sentence1",
    text_b: str = "sentence2",
    label: str | None = "label",
    id_column: str | None = None,
    id_prefix: str = "",
    repair: bool = False,
    strip_line_end: bool = False,
) -> list[TextPair]:
    """Turn rows of a sentence-pair dataset into TextPair with the label as a NAME (or None).

    ClassLabel ints are mapped to their names; -1 (the HF convention for a hidden label) and
    empty strings become None, so `require_labels` can refuse to score on them. `repair`
    undoes double-encoded UTF-8 as the local pair reader does; `strip_line_end` drops the
    one line end (LF or CRLF) that rows read line by line from a text file keep.
    """
    names = _label_names(ds, label) if label is not None and label in ds.column_names else None
    out: list[TextPair] = []
    for n, row in enumerate(ds):
        raw = row.get(label) if label is not None else None
        hidden = raw is None or raw == "" or raw == -1
        name = None if hidden or label is None else _name(raw, names, label)
        a, b = row[text_a], row[text_b]
        if strip_line_end:
            a, b = _without_line_end(a), _without_line_end(b)
        if repair:
            a, b = fix_mojibake(a), fix_mojibake(b)
        pair_id = str(row[id_column]) if id_column else f"{id_prefix}:{n}"
        if not a.strip() or not b.strip():
            raise ProbeError(f"{id_prefix} row {n} ({pair_id}): empty sentence")
        out.append(TextPair(pair_id, a, b, name))
    return out


def _without_line_end(text: str) -> str:
    if text.endswith("\r\n"):
        return text[:-2]
    return text[:-1] if text.endswith("\n") else text


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
