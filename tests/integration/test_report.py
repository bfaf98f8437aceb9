"""`probe report`: the per-model atlas read from hand-written results directories."""

from __future__ import annotations

import html
import re
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from probe.cli import cli
from probe.cli.report import RESULTS_DIR
from probe.errors import ProbeError
from probe.results.atlas import write_report
from probe.results.atlas.measures import build_atlas
from probe.results.atlas.runs import collect_runs
from tests.atlas_results import (
    DLFA,
    KEY,
    NUMBER_ACC,
    OTHER_KEY,
    RETRIEVAL,
    SOURCE_ACC,
    TARGET_ACC,
    UUAS,
    full_results,
    layers_rows,
    settings,
    shallow_results,
    write_run,
)


def _cell_texts(page: str, caption: str) -> list[list[str]]:
    """The visible text of each body row of the atlas table captioned `caption`."""
    table = page.split(f"<caption>{caption}</caption>", 1)[1].split("</table>", 1)[0]
    body = table.split("<tbody>", 1)[1]
    rows = []
    for tr in re.findall(r"<tr>(.*?)</tr>", body):
        cells = re.findall(r"<t[hd][^>]*>(.*?)</t[hd]>", tr)
        rows.append([html.unescape(re.sub(r"<[^>]+>", " ", c)).split()[0] for c in cells])
    return rows


def test_the_atlas_reads_every_measure_and_marks_the_planted_layers(tmp_path: Path) -> None:
    atlas = build_atlas(collect_runs(full_results(tmp_path), KEY).latest())
    got = {c.label: c for c in atlas.columns}
    assert list(got) == [
        "pos accuracy (en)",
        "pos selectivity (en)",
        "UUAS (en)",
        "distance Spearman (en)",
        "root accuracy (en)",
        "depth Spearman (en)",
        "Number (en)",
        "pos zero-shot",
        "UUAS zero-shot",
        "transfer ratio",
        "retrieval",
        "CKA",
        "DLFA (k,4) zero-shot",
    ]
    assert atlas.n_layers == 5
    assert atlas.most_structural == 2 and atlas.most_neutral == 4
    assert atlas.structural_rule == "the peak of pos accuracy (en), 95.0"
    assert got["UUAS (en)"].peak() == 3 and got["Number (en)"].peak() == 1
    assert got["DLFA (k,4) zero-shot"].peak() == 2
    for layer in range(5):  # the layers run wins over the map's own probe rows
        assert got["pos accuracy (en)"].cells[layer].value == pytest.approx(SOURCE_ACC[layer])
        assert got["pos accuracy (en)"].cells[layer].sd == pytest.approx(0.004)
        zero_shot = got["pos zero-shot"].cells[layer]
        assert (zero_shot.low, zero_shot.high) == pytest.approx(
            (TARGET_ACC[layer] - 0.01, TARGET_ACC[layer] + 0.01)
        )
        assert got["UUAS zero-shot"].cells[layer].value == pytest.approx(UUAS[layer] - 0.15)
        assert got["DLFA (k,4) zero-shot"].cells[layer].value == pytest.approx(DLFA[layer])
        assert got["retrieval"].cells[layer].value == pytest.approx(RETRIEVAL[layer])


def test_the_page_shows_the_runs_numbers_marks_and_intervals(tmp_path: Path) -> None:
    path, _ = write_report(full_results(tmp_path), [KEY])
    page = path.read_text()
    rows = _cell_texts(page, KEY)
    assert [r[0] for r in rows] == ["emb", "1", "2", "3", "4"]
    assert [r[1] for r in rows] == [f"{100 * v:.1f}" for v in SOURCE_ACC]
    assert "most structural" in page.split("<tbody>")[-1].split("</tr>")[2]  # layer 2's row
    assert "most language-neutral" in page.split("<caption>")[1].split("</tr>")[-2]
    assert "[65.0, 67.0]" in page and "±0.4" in page  # layer 3's interval; an sd over seeds
    assert f"{100 * NUMBER_ACC[1]:.1f}" in page
    # every run's figures, inline, and its summary; the unfinished run named, not read
    assert page.count('<img src="data:image/png;base64,') == 8
    assert "grid-dlfa-en-00000005: planted summary line" in page
    assert "layers-en-0000dead" in page and "no results.json or results.csv" in page
    assert 'href="pos/' in page and "settings.json" in page


def test_the_page_is_valid_self_contained_html(tmp_path: Path) -> None:
    html5lib = pytest.importorskip("html5lib", reason="html5lib (the dev extra) validates HTML")
    path, _ = write_report(full_results(tmp_path), [KEY])
    shallow_results(tmp_path)
    two, _ = write_report(tmp_path, [KEY, OTHER_KEY], tmp_path / "two.html")
    for page in (path.read_text(), two.read_text()):
        html5lib.HTMLParser(strict=True).parse(page)  # raises on any parse error
        assert page.startswith("<!DOCTYPE html>")
        # nothing fetched: no remote address, no external script, style sheet or image
        assert not re.search(r"(src|href)=\"(https?:|//)", page)
        assert "<link" not in page and not re.search(r"<script[^>]*src=", page)
        assert all(
            src.startswith("data:image/png;base64,")
            for src in re.findall(r'<img src="([^"]*)"', page)
        )
        ids = re.findall(r' id="([^"]*)"', page)
        assert len(ids) == len(set(ids))


def test_missing_experiments_are_listed_with_their_commands(tmp_path: Path) -> None:
    root = tmp_path / "results"
    write_run(
        root,
        "pos",
        KEY,
        "layers-en-00000001",
        layers_rows(SOURCE_ACC, TARGET_ACC),
        settings("layers", "pos", KEY),
    )
    _, [atlas] = write_report(root, ["tiny"])
    commands = [m.command for m in atlas.missing]
    shared = "--model tiny --max-train-words 2000 --seeds 0,1"
    assert f"probe map --task pos {shared}" in commands
    assert f"probe structural --task pos {shared}" in commands
    assert f"probe layers --task morph-Number {shared}" in commands
    assert not any(c.startswith("probe layers --task pos") for c in commands)
    assert atlas.atlas.most_neutral is None and "probe map" in atlas.atlas.neutral_rule
    _, [complete] = write_report(full_results(tmp_path / "full"), [KEY])
    assert [m.command.split()[1] for m in complete.missing] == ["intermediate", "domain-shift"]


def test_two_models_side_by_side_show_depth_as_a_fraction(tmp_path: Path) -> None:
    full_results(tmp_path)
    shallow_results(tmp_path)
    path, atlases = write_report(tmp_path, ["tiny", "small"], tmp_path / "both.html")
    assert [a.atlas.n_layers for a in atlases] == [5, 3]
    page = path.read_text()
    deep, shallow = _cell_texts(page, KEY), _cell_texts(page, OTHER_KEY)
    assert [r[1] for r in deep] == ["0.00", "0.25", "0.50", "0.75", "1.00"]
    assert [r[1] for r in shallow] == ["0.00", "0.50", "1.00"]
    assert len(deep[0]) == len(shallow[0])  # the same columns; the shallow model's are empty
    assert shallow[0][-1] == "-"


def test_the_command_writes_the_page_and_names_the_marked_layers(tmp_path: Path) -> None:
    root = full_results(tmp_path / "results")
    result = CliRunner().invoke(cli, ["report", "--model", "tiny", "--results-dir", str(root)])
    assert result.exit_code == 0, result.output
    out = root / f"report-{KEY}.html"
    assert out.is_file() and f"wrote {out}" in result.output
    assert "most structural layer 2, most language-neutral 4" in result.output


@pytest.mark.parametrize(
    ("models", "message"),
    [
        (["nope"], "no results of model 'nope' (cache keys there: tiny-0123456789abcdef)"),
        (["tiny", KEY], "the same cache key twice in --model"),
    ],
)
def test_bad_models_are_refused_in_one_line(
    tmp_path: Path, models: list[str], message: str
) -> None:
    root = full_results(tmp_path / "results")
    args = ["report", "--results-dir", str(root)]
    for m in models:
        args += ["--model", m]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code != 0
    assert result.output.strip() == f"Error: {message}" or message in result.output
    assert len(result.output.strip().splitlines()) == 1


def test_a_model_under_two_cache_keys_asks_for_the_key(tmp_path: Path) -> None:
    full_results(tmp_path)
    full_results(tmp_path / "x", key="tiny-aaaaaaaaaaaaaaaa")
    for task in ("pos", "morph-Number"):
        (tmp_path / "x" / task / "tiny-aaaaaaaaaaaaaaaa").rename(
            tmp_path / task / "tiny-aaaaaaaaaaaaaaaa"
        )
    with pytest.raises(ProbeError, match="2 cache keys .* pass one of them as --model"):
        collect_runs(tmp_path, "tiny")
    assert collect_runs(tmp_path, "tiny-aaaaaaaaaaaaaaaa").key == "tiny-aaaaaaaaaaaaaaaa"


def test_the_newest_run_of_a_command_is_read_and_the_older_listed(tmp_path: Path) -> None:
    import os

    root = full_results(tmp_path)
    newer = write_run(
        root,
        "pos",
        KEY,
        "layers-en-00000009",
        layers_rows(tuple(v - 0.1 for v in SOURCE_ACC), TARGET_ACC),
        settings("layers", "pos", KEY, max_train_words=500),
    )
    old = root / "pos" / KEY / "layers-en-00000001" / "settings.json"
    os.utime(old, (old.stat().st_mtime - 100,) * 2)
    runs = collect_runs(root, KEY)
    assert [r.path for r in runs.superseded()] == [old.parent]
    atlas = build_atlas(runs.latest())
    column = atlas.column("pos accuracy (en)")
    assert column is not None and column.cells[0].value == pytest.approx(0.7)
    assert newer in [r.path for r in runs.latest()]


def test_report_loads_neither_torch_nor_the_encoder(tmp_path: Path) -> None:
    """It reads result files only, so it runs in about a second, without the cache."""
    root = full_results(tmp_path / "results")
    code = (
        "import sys; from probe.cli import cli\n"
        f"cli(['report', '--model', 'tiny', '--results-dir', {str(root)!r}], "
        "standalone_mode=False)\n"
        "print(sorted(m for m in ('torch', 'transformers', 'h5py', 'probe.extract', "
        "'probe.models', 'probe.cache') if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert done.stdout.strip().splitlines()[-1] == "[]"


def test_the_default_results_dir_is_the_experiments(tmp_path: Path) -> None:
    from probe.experiments.base import RunOptions

    assert Path(RunOptions.results_dir) == RESULTS_DIR


def test_a_mark_names_the_layers_that_print_the_same_value(tmp_path: Path) -> None:
    """Layers 1 and 3 differ from the peak (2) below the table's precision: the mark says so
    rather than let a reader see a difference the numbers do not show."""
    write_run(tmp_path, "pos", KEY, "layers-en-00000001",
              layers_rows((0.80, 0.9371, 0.9374, 0.9368, 0.85), TARGET_ACC),
              settings("layers", "pos", KEY))  # fmt: skip
    atlas = build_atlas(collect_runs(tmp_path, KEY).latest())
    assert atlas.most_structural == 2
    assert atlas.structural_rule == (
        "the peak of pos accuracy (en), 93.7; layers 1, 3 print the same 93.7"
    )
