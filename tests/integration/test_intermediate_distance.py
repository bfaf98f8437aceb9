"""`probe intermediate --distance` end to end on the tiny BERT: distances, points, plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from probe.analysis.crosslingual.typology import DISTANCE_KINDS, language_distance
from probe.cli import cli
from probe.results.rows import Row
from tests.helpers import SENTENCES, TAGS, conllu_text
from tests.integration.test_intermediate import make_data

pytestmark = pytest.mark.usefixtures("one_thread")


def _shifted(conllu: str, shift: int) -> str:
    """Every other word's UPOS moved `shift` tags on: a target the heads get partly wrong,
    so configurations differ in their gains."""
    out = []
    for i, line in enumerate(conllu.split("\n")):
        cols = line.split("\t")
        if len(cols) == 10 and i % 2:
            cols[3] = TAGS[(TAGS.index(cols[3]) + shift) % len(TAGS)]
        out.append("\t".join(cols))
    return "\n".join(out)


def test_distance_end_to_end_tiny(tmp_path: Path, tiny_bert: Path) -> None:
    """Target pos (en source; de, fr, tr zero-shot), stages udpos and pawsx in their default
    source (English): one point per configuration, target and kind, with the run's own gains
    and the archives' distances; the summary has a line per kind and says the correlation is
    only across targets (one intermediate language)."""
    data = make_data(tmp_path / "data")
    for shift, name in enumerate(("UD_French-GSD/fr_gsd", "UD_Turkish-IMST/tr_imst"), 1):
        path = data / "ud" / f"{name}-ud-test.conllu"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_shifted(conllu_text(SENTENCES[::-1] * 2), shift), encoding="utf-8")
    # lr 0.02 for one epoch: the configurations' gains differ, so rho is defined.
    args = ["intermediate", "--target", "pos", "--via", "udpos,pawsx", "--model", str(tiny_bert),
            "--langs", "en,de,fr,tr", "--data-dir", str(data), "--cache-dir",
            str(tmp_path / "cache"), "--results-dir", str(tmp_path / "res"), "--compute",
            "float32", "--max-epochs", "1", "--lr", "0.02", "--schedule", "sequential",
            "--distance"]  # fmt: skip
    out = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    directory = next((tmp_path / "res" / "pos").glob("*/intermediate-mlp-en-*"))
    for name in ("distances.csv", "gain_vs_distance.csv", "gain_vs_distance.png"):
        assert (directory / name).stat().st_size > 0
    payload = json.loads((directory / "results.json").read_text())
    record = payload["settings"]["distances"]
    assert record["intermediate_languages"] == ["en"] and record["missing"] == {}
    assert record["targets"] == ["en", "de", "fr", "tr"]
    gains = {(r.config, r.lang): r for r in map(Row.from_dict, payload["rows"])
             if r.metric == "gain_accuracy" and not r.group and r.stat == ""}  # fmt: skip
    with (directory / "gain_vs_distance.csv").open() as f:
        points = list(csv.DictReader(f))
    confs = {"udpos", "pawsx", "udpos>pawsx"}
    assert len(points) == len(confs) * 3 * len(DISTANCE_KINDS)
    assert {p["config"] for p in points} == confs
    assert {p["target_lang"] for p in points} == {"de", "fr", "tr"}  # not the source
    for p in points:
        row = gains[(p["config"], p["target_lang"])]
        assert float(p["gain"]) == row.value and float(p["ci_low"]) == row.ci_low
        want = language_distance("en", p["target_lang"], p["kind"])
        assert float(p["distance"]) == pytest.approx(want, abs=1e-12)
        assert p["intermediate_langs"] == "en"
    with (directory / "distances.csv").open() as f:
        assert len(list(csv.DictReader(f))) == 4 * len(DISTANCE_KINDS)  # en x every language
    summary = (directory / "summary.txt").read_text()
    for kind in DISTANCE_KINDS:  # the printed rho is scipy's on the CSV's points
        mine = [p for p in points if p["kind"] == kind]
        xs, ys = [float(p["distance"]) for p in mine], [float(p["gain"]) for p in mine]
        rho = stats.spearmanr(xs, ys).statistic
        assert np.isfinite(rho) and f"  {kind:<14}rho {rho:+.2f} [" in summary
    assert "n 9 (3 configurations x 3 targets)" in summary
    assert "distinct intermediate languages: 1 (en)" in summary
    assert "only across target languages" in summary
    # --distance is an analysis: the same run without it writes to the same directory.
    assert directory.name in out.output


def test_distance_refuses_finetune_mode(tmp_path: Path) -> None:
    args = ["intermediate", "--target", "pos", "--via", "udpos", "--model", "minilm",
            "--finetune", "--distance", "--results-dir", str(tmp_path)]  # fmt: skip
    out = CliRunner().invoke(cli, args)
    assert out.exit_code != 0 and "--distance runs on cached features only" in out.output
