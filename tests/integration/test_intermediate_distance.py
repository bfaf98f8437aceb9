"""`probe intermediate --distance` end to end on the tiny BERT: distances, points, plot."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner
from scipy import stats

from probe.analysis.bootstrap import N_BOOT
from probe.analysis.crosslingual.gain_distance import (
    correlate_points,
    crossed_bootstrap_spearman,
)
from probe.analysis.crosslingual.typology import DISTANCE_KINDS, language_distance
from probe.cli import cli
from probe.experiments import intermediate_distance
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


def test_distance_end_to_end_tiny(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Target pos (en source; de, fr, tr zero-shot), stages udpos (English), pawsx (English)
    and pawsx:fr, seed 5: one point per configuration, target and kind, with the run's own
    gains and the archives' distances; the correlation per (task, kind) over single-stage
    configurations only (pawsx: two language sets; udpos: one, across targets only), the
    two-stage sets kept in the CSV with used 0 and counted; the bootstrap seeded with 5."""
    data = make_data(tmp_path / "data")
    for shift, name in enumerate(("UD_French-GSD/fr_gsd", "UD_Turkish-IMST/tr_imst"), 1):
        path = data / "ud" / f"{name}-ud-test.conllu"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(_shifted(conllu_text(SENTENCES[::-1] * 2), shift), encoding="utf-8")
    english = data / "xtreme" / "pawsx" / "en" / "dev-en.tsv"
    french = data / "xtreme" / "pawsx" / "fr" / "dev-fr.tsv"
    french.parent.mkdir(parents=True, exist_ok=True)
    french.write_text("".join(f"{b}\t{a}\t{y}\n" for a, b, y in
                              (line.split("\t") for line in english.read_text().split("\n")
                               if line)))  # fmt: skip
    seeds: list[int] = []  # the bootstrap seeds the analysis is called with

    def recording(*args: Any) -> Any:
        seeds.append(args[3])
        return correlate_points(*args)

    monkeypatch.setattr(intermediate_distance, "correlate_points", recording)
    # lr 0.02 for one epoch: the configurations' gains differ, so rho is defined.
    args = ["intermediate", "--target", "pos", "--via", "udpos,pawsx,pawsx:fr", "--model",
            str(tiny_bert), "--langs", "en,de,fr,tr", "--data-dir", str(data), "--cache-dir",
            str(tmp_path / "cache"), "--results-dir", str(tmp_path / "res"), "--compute",
            "float32", "--max-epochs", "1", "--lr", "0.02", "--schedule", "sequential",
            "--max-train-words", "18", "--seeds", "5", "--distance"]  # fmt: skip
    out = CliRunner().invoke(cli, args, catch_exceptions=False)
    assert out.exit_code == 0, out.output
    assert seeds == [5]  # --seeds 5: the run's first seed, not a fixed 0
    directory = next((tmp_path / "res" / "pos").glob("*/intermediate-mlp-en-*"))
    for name in ("distances.csv", "gain_vs_distance.csv", "gain_vs_distance.png"):
        assert (directory / name).stat().st_size > 0
    payload = json.loads((directory / "results.json").read_text())
    record = payload["settings"]["distances"]
    assert record["intermediate_languages"] == ["en", "fr"] and record["missing"] == {}
    assert record["targets"] == ["en", "de", "fr", "tr"]
    gains = {(r.config, r.lang): r for r in map(Row.from_dict, payload["rows"])
             if r.metric == "gain_accuracy" and not r.group and r.stat == ""}  # fmt: skip
    with (directory / "gain_vs_distance.csv").open() as f:
        points = list(csv.DictReader(f))
    single = {"udpos": "udpos", "pawsx": "pawsx", "pawsx:fr": "pawsx"}
    multi = sorted({p["config"] for p in points} - set(single))
    assert multi and all(">" in c for c in multi)
    assert len(points) == (len(single) + len(multi)) * 3 * len(DISTANCE_KINDS)
    assert {p["target_lang"] for p in points} == {"de", "fr", "tr"}  # not the source
    for p in points:
        row = gains[(p["config"], p["target_lang"])]
        assert float(p["gain"]) == row.value and float(p["ci_low"]) == row.ci_low
        langs = p["intermediate_langs"].split("+")
        want = np.mean([language_distance(x, p["target_lang"], p["kind"]) for x in langs])
        assert float(p["distance"]) == pytest.approx(want, abs=1e-12)
        if p["config"] in single:
            assert (p["task"], p["stages"], p["used"]) == (single[p["config"]], "1", "1")
        else:
            assert p["stages"] == str(p["config"].count(">") + 1) and p["used"] == "0"
    with (directory / "distances.csv").open() as f:  # en, fr x every language
        assert len(list(csv.DictReader(f))) == 2 * 4 * len(DISTANCE_KINDS)
    summary = (directory / "summary.txt").read_text()
    for task in ("udpos", "pawsx"):  # the printed rho is scipy's on the task's used points
        for kind in DISTANCE_KINDS:
            mine = [p for p in points if (p["task"], p["kind"], p["used"]) == (task, kind, "1")]
            xs, ys = [float(p["distance"]) for p in mine], [float(p["gain"]) for p in mine]
            rho = stats.spearmanr(xs, ys).statistic
            assert np.isfinite(rho) and f"  {task:<7}{kind:<14}rho {rho:+.2f} " in summary
    assert "n 3 (1 configuration in 1 language set x 3 targets)" in summary
    assert "n 6 (2 configurations in 2 language sets x 3 targets)" in summary
    assert "  pawsx: 2 distinct intermediate languages (en, fr)\n" in summary
    assert "  udpos: 1 distinct intermediate language (en); one language set" in summary
    assert (
        f"with used 0): {len(multi)} ({', '.join(c for c in points_order(points, multi))})"
        in summary
    )
    # The bootstrap is seeded with the run's seed (5): pawsx's syntactic interval, the
    # (task, kind) correlation at index len(DISTANCE_KINDS) + 0, from seed 5 + that index.
    mine = [p for p in points if (p["task"], p["kind"], p["used"]) == ("pawsx", "syntactic",
                                                                       "1")]  # fmt: skip
    low, high = crossed_bootstrap_spearman(
        [float(p["distance"]) for p in mine],
        [float(p["gain"]) for p in mine],
        [p["intermediate_langs"] for p in mine],
        [p["target_lang"] for p in mine],
        N_BOOT,
        seed=5 + len(DISTANCE_KINDS),
    )
    assert f"[{low:+.2f}, {high:+.2f}], n 6" in summary
    # --distance is an analysis: the same run without it writes to the same directory.
    assert directory.name in out.output


def points_order(points: list[dict[str, str]], configs: list[str]) -> list[str]:
    """`configs` in the CSV's order (the plan's)."""
    return [c for c in dict.fromkeys(p["config"] for p in points) if c in configs]


def test_distance_refuses_finetune_mode(tmp_path: Path) -> None:
    args = ["intermediate", "--target", "pos", "--via", "udpos", "--model", "minilm",
            "--finetune", "--distance", "--results-dir", str(tmp_path)]  # fmt: skip
    out = CliRunner().invoke(cli, args)
    assert out.exit_code != 0 and "--distance runs on cached features only" in out.output
