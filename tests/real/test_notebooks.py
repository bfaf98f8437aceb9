"""The docs notebooks run top to bottom against a real cache, so they cannot rot.

The cache and the `probe layers` results are built here (real MiniLM, a slice of the real
UD data, splits cut into numbered shards so the notebook's multi-shard reading is exercised);
each notebook is converted from its jupytext source and executed with nbclient in a fresh
python3 kernel, with matplotlib on the Agg backend. Executed copies stay in tmp.
"""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
NOTEBOOKS = REPO / "docs" / "notebooks"
EXPLORE = NOTEBOOKS / "explore_cache.py"
N = 200  # sentences per split
SHARD_ROWS = 2000  # words per shard file: 200 sentences of a split make 2-3 numbered shards
LAYER = 3


@pytest.fixture(scope="module")
def layers_run(tmp_path_factory: pytest.TempPathFactory, shared_data: Path) -> dict[str, Path]:
    """A minilm POS cache for en and de and the `probe layers` results computed from it."""
    from probe.experiments.base import RunOptions
    from probe.experiments.layers import LayersConfig, run_layers
    from probe.train import TrainConfig
    from tests.helpers import cache_fields

    base = tmp_path_factory.mktemp("notebook")
    extract = cache_fields(
        base,
        "minilm",
        data_dir=shared_data,
        cache_root=base / "cache",
        max_sentences=N,
        shard_rows=SHARD_ROWS,
    )
    config = LayersConfig(
        **extract,
        train=TrainConfig(max_epochs=10),
        control=False,
        scalar_mix=False,
    )
    result = run_layers(config, RunOptions(base / "results", progress=False))
    assert list((base / "cache").glob("*/pos/en/dev-00001.h5")), "expected numbered shards"
    return {
        "base": base,
        "cache": base / "cache",
        "results": base / "results",
        "run": result.directory,
    }


def execute(path: Path, cwd: Path, env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """Convert a jupytext notebook and run every cell in a new python3 kernel (raises on error)."""
    import jupytext
    import nbformat
    from nbclient import NotebookClient

    for name, value in {"MPLBACKEND": "Agg", **env}.items():
        monkeypatch.setenv(name, value)  # the kernel inherits this process's environment
    # The kernel imports this checkout's `probe` (for training) even when pytest was started
    # without an install of it: the kernel runs in cwd, not in the repository.
    monkeypatch.setenv(
        "PYTHONPATH", os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))
    )
    notebook = jupytext.read(path)
    client = NotebookClient(
        notebook, timeout=120, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    )
    client.execute()
    nbformat.write(notebook, cwd / f"{path.stem}.ipynb")  # executed copy, tmp only


def notebook_env(run: dict[str, Path], figures: Path) -> dict[str, str]:
    return {
        "PROBE_CACHE": str(run["cache"]),
        "PROBE_RESULTS": str(run["results"]),
        "PROBE_TASK": "pos",
        "PROBE_LAYER": str(LAYER),
        "PROBE_FIGURES": str(figures),
    }


def test_notebook_reads_the_cache_with_h5py_only() -> None:
    """The point of the notebook: the format is readable without the toolkit's reader."""
    source = EXPLORE.read_text()
    assert "import h5py" in source
    imports = [
        line.split()[1]
        for line in source.splitlines()
        if line.startswith(("import probe", "from probe"))
    ]
    assert imports and all(m in ("probe.heads.linear", "probe.train") for m in imports), imports


@pytest.mark.real
def test_explore_cache_notebook_reproduces_probe_layers(
    layers_run: dict[str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    figures = layers_run["base"] / "figures"
    execute(EXPLORE, layers_run["base"], notebook_env(layers_run, figures), monkeypatch)
    png = figures / f"pca_pos_layer{LAYER}.png"
    assert png.is_file() and png.stat().st_size > 10_000
    executed = (layers_run["base"] / "explore_cache.ipynb").read_text()
    assert f"reproduced: layer {LAYER} accuracy on en, de" in executed


@pytest.mark.real
def test_explore_cache_notebook_fails_when_results_disagree(
    layers_run: dict[str, Path], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A results.csv whose de number is one point off must make the notebook fail."""
    from nbclient.exceptions import CellExecutionError

    run = tmp_path / "results" / "pos" / layers_run["run"].parent.name / layers_run["run"].name
    run.mkdir(parents=True)
    (run / "settings.json").write_bytes((layers_run["run"] / "settings.json").read_bytes())
    with (layers_run["run"] / "results.csv").open() as f:
        rows = list(csv.DictReader(f))
    seed = str(json.loads((layers_run["run"] / "settings.json").read_text())["train"]["seed"])
    wanted = {"head": "linear", "layer": str(LAYER), "lang": "de", "metric": "accuracy",
              "seed": seed}  # the first seed's row: the one the notebook retrains  # fmt: skip
    (row,) = [r for r in rows if all(r[k] == v for k, v in wanted.items())]
    row["value"] = str(float(row["value"]) + 0.01)
    with (run / "results.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    env = {
        **notebook_env(layers_run, tmp_path / "figures"),
        "PROBE_RUN_DIR": str(run),
        "PROBE_MAX_POINTS": "300",
    }
    with pytest.raises(CellExecutionError, match="disagrees with"):
        execute(EXPLORE, tmp_path, env, monkeypatch)
