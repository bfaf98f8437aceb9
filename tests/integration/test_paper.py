"""`probe paper` on a tiny model: every task of the protocol in one table, with the paper's
numbers, Δs over the baseline and over the dev-chosen single layer, CSV/JSON and a figure."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from probe.cli import cli
from probe.errors import ProbeError
from probe.experiments.base import RunOptions
from probe.experiments.paper import PaperConfig, run_paper
from probe.extract import CachePaths, ExtractSpec
from tests.helpers import make_pawsx, make_xnli, make_xtreme_tagging


def _data(root: Path) -> Path:
    make_pawsx(root, n=40)
    make_xnli(root)
    make_xtreme_tagging(root, "udpos", {"en": ("train", "dev", "test"), "de": ("test",)},
                        ("DET", "NOUN", "VERB", "ADP", "PUNCT"))  # fmt: skip
    make_xtreme_tagging(root, "panx", {"en": ("train", "dev"), "de": ("dev",)},
                        ("B-PER", "I-PER", "O", "B-LOC", "O", "B-ORG"))  # fmt: skip
    return root


def test_paper_writes_every_task_in_the_papers_layout(tmp_path: Path, tiny_bert: Path) -> None:
    data = _data(tmp_path / "data")
    config = PaperConfig(
        spec=ExtractSpec(model=str(tiny_bert), compute_dtype="float32"), seeds=(0,),
        n_boot=50, max_eval_sentences=20,
        paths=CachePaths(tmp_path / "cache", data),
    )  # fmt: skip
    result = run_paper(config, RunOptions(tmp_path / "res", progress=False))
    cells = json.loads((result.directory / "paper_table.json").read_text())
    tasks = {c["task"] for c in cells}
    assert tasks == {"xnli", "pawsx", "panx", "udpos"}
    for task in tasks:
        systems = {c["system"] for c in cells if c["task"] == task}
        assert {"baseline", "D0", "D1", "single (dev)", "dlfa (dev)"} <= systems
        assert sum(c["best"] for c in cells if c["task"] == task) == 1  # one best D_k
        fused = [c for c in cells if c["task"] == task and c["system"] == "D1"][0]
        assert fused["delta_vs_baseline"] is not None
        assert fused["delta_vs_baseline_ci_low"] <= fused["delta_vs_baseline"]
        assert fused["delta_vs_single"] is not None
    # POS is XTREME's F1, as the paper reports it; the others their task's metric
    assert {c["metric"] for c in cells if c["task"] == "udpos"} == {"pos_f1"}
    assert {c["metric"] for c in cells if c["task"] == "xnli"} == {"accuracy"}
    # the published numbers sit in the baseline row and the paper's own best k only
    paper = {(c["task"], c["system"]): c["paper"] for c in cells if c["paper"] is not None}
    assert paper == {("xnli", "baseline"): 65.40, ("pawsx", "baseline"): 81.94,
                     ("panx", "baseline"): 62.17, ("udpos", "baseline"): 70.28}  # fmt: skip
    summary = result.summary
    for text in ("XNLI", "PAWS-X", "NER", "POS", "caveat:", "Does fusion help?",
                 "max_eval_sentences 20", "Δ x100 over single (dev)"):  # fmt: skip
        assert text in summary
    assert "enf average" not in summary  # de is the only target, and in-family: no repeat
    assert (result.directory / "gain_per_k.png").stat().st_size > 0
    assert (result.directory / "paper_table.csv").read_text().startswith("task,system,metric")
    assert result.settings["budgets"]["max_eval_sentences"] == 20
    assert set(result.settings["runs"]) == {"xnli", "pawsx", "panx", "udpos"}


def test_paper_refuses_tasks_it_cannot_run(tmp_path: Path, tiny_bert: Path) -> None:
    with pytest.raises(ProbeError, match="parallel-level"):
        PaperConfig(spec=ExtractSpec(model=str(tiny_bert)), tasks=("tatoeba",))
    out = CliRunner().invoke(cli, ["paper", "--model", str(tiny_bert), "--ks", "a,b"])
    assert out.exit_code != 0 and "expected 'all' or a comma list" in out.output
