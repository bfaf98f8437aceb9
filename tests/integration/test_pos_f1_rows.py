"""`probe layers --task udpos` reports XTREME's pos_f1 beside accuracy in every scored row."""

from __future__ import annotations

from pathlib import Path

from probe.experiments.base import RunOptions
from probe.experiments.layers import LayersConfig, run_layers
from probe.results.table import read_table
from probe.train import TrainConfig
from tests.helpers import cache_fields

# Runs of one tag (NOUN NOUN, ADJ ADJ) and S-initial tags (SCONJ, SYM), where XTREME's F1
# and accuracy part ways.
_SENTENCES = [
    [("the", "DET"), ("big", "ADJ"), ("old", "ADJ"), ("dog", "NOUN"), ("ran", "VERB")],
    [("because", "SCONJ"), ("it", "PRON"), ("rained", "VERB"), ("!", "PUNCT")],
    [("New", "PROPN"), ("York", "PROPN"), ("city", "NOUN"), ("hall", "NOUN")],
    [("and", "CCONJ"), ("she", "PRON"), ("saw", "VERB"), ("%", "SYM"), ("$", "SYM")],
]


def _write_udpos(root: Path) -> None:
    """XTREME's layout: en train/dev/test, de test (word<TAB>UPOS, blank line between)."""
    splits = [("en", "train", _SENTENCES * 3), ("en", "dev", _SENTENCES),
              ("en", "test", _SENTENCES[::-1]), ("de", "test", _SENTENCES[1:])]  # fmt: skip
    for lang, split, sents in splits:
        path = root / "xtreme" / "udpos" / lang / f"{split}-{lang}.tsv"
        path.parent.mkdir(parents=True, exist_ok=True)
        blocks = ["\n".join(f"{w}\t{t}" for w, t in sent) for sent in sents]
        path.write_text("\n\n".join(blocks) + "\n", encoding="utf-8")


def test_layers_rows_carry_pos_f1_beside_accuracy(tmp_path: Path, tiny_bert: Path) -> None:
    _write_udpos(tmp_path / "data")
    config = LayersConfig(
        **cache_fields(tmp_path, tiny_bert, task="udpos", compute_dtype="float32"),
        train=TrainConfig(max_epochs=2), control=True,
    )  # type: ignore[arg-type]  # fmt: skip
    result = run_layers(config, RunOptions(results_dir=tmp_path / "results", progress=False))
    means = [r for r in result.rows if r.seed is None and not r.group]  # seed means per language
    scored = {(r.head, r.layer, r.lang) for r in means if r.metric == "accuracy"}
    f1 = {(r.head, r.layer, r.lang): r.value for r in means if r.metric == "pos_f1"}
    probes = {k for k in scored if k[0] in ("linear", "scalar_mix")}
    assert probes and set(f1) == probes  # every probe row, not the control task's
    assert all(0.0 <= v <= 1.0 for v in f1.values())
    assert {k[2] for k in f1} == {"en", "de"}
    summary = (result.directory / "summary.txt").read_text()
    headline = summary.index("udpos: accuracy x100 of a linear probe per layer")
    assert headline < summary.index("udpos: pos_f1 x100 of the same probes")  # accuracy first
    on_disk = read_table(result.directory / "results.csv")
    assert len(on_disk.filter(metric="pos_f1", seed=None, group="")) == len(f1)
