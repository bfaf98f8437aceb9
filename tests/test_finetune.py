"""End-to-end fine-tuning on the tiny random BERT: the loss falls, outputs land, pairs refused."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import torch

from probe.errors import ProbeError
from probe.experiments.finetune import FinetuneConfig, run_finetune
from tests.test_extract import SENTENCES, make_ud


@pytest.fixture(autouse=True)
def one_thread() -> Iterator[None]:
    """Tiny matrices: one thread avoids spin-waiting on a busy machine (30x faster there)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _config(tmp_path: Path, tiny_bert: Path, **kw: object) -> FinetuneConfig:
    base: dict[str, object] = dict(
        model=str(tiny_bert), task="pos", langs=("en", "de"),
        data_dir=make_ud(tmp_path / "data", SENTENCES * 8), cache_root=tmp_path / "cache",
        results_dir=tmp_path / "results", epochs=10, batch_size=4, max_steps=30,
        lr=1e-3, head_lr=1e-2, warmup=0.0, device="cpu",
    )  # fmt: skip
    base.update(kw)
    return FinetuneConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("fuse_layer", [None, 1])
def test_finetune_loss_falls_and_writes_results(
    tmp_path: Path, tiny_bert: Path, fuse_layer: int | None
) -> None:
    result = run_finetune(_config(tmp_path, tiny_bert, fuse_layer=fuse_layer), progress=False)
    assert len(result.losses) == 30
    assert np.mean(result.losses[-5:]) < 0.7 * np.mean(result.losses[:5])

    layer = "last" if fuse_layer is None else "1,2"
    assert result.directory.name.startswith(f"finetune-{'last' if fuse_layer is None else 1}-en-")
    assert result.directory.parent.name == tiny_bert.name
    for name in ("results.csv", "results.json", "settings.json", "summary.txt"):
        assert (result.directory / name).is_file()
    got = {(r.layer, r.lang, r.metric): r.value for r in result.rows}
    for lang in ("en", "de"):
        assert 0.0 <= got[(layer, lang, "accuracy")] <= 1.0
        assert got[(layer, lang, "truncated_words")] == 0
    assert ("finetune", layer) == (result.rows[0].head, result.rows[0].layer)
    assert (layer, "en", "train_loss") in got
    assert (layer, "targets", "accuracy") in got
    settings = json.loads((result.directory / "settings.json").read_text())
    assert settings["fuse_layer"] == fuse_layer and settings["steps"] == 30
    assert "accuracy x100" in result.table and "de" in result.table


def test_truncated_words_predicted_as_prior(tmp_path: Path, tiny_bert: Path) -> None:
    # max_length 6 leaves 4 subwords per sentence: later words are counted and still scored.
    cfg = _config(tmp_path, tiny_bert, max_length=6, max_steps=2)
    result = run_finetune(cfg, progress=False)
    got = {(r.lang, r.metric): r.value for r in result.rows}
    assert got[("en", "truncated_words")] > 0
    assert 0.0 <= got[("en", "accuracy")] <= 1.0


def test_pair_task_rejected(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="word-level tasks only"):
        run_finetune(FinetuneConfig(model="minilm", task="xnli", data_dir=tmp_path))


def test_fuse_layer_out_of_range(tmp_path: Path, tiny_bert: Path) -> None:
    with pytest.raises(ProbeError, match="outside 0..2"):
        run_finetune(_config(tmp_path, tiny_bert, fuse_layer=5), progress=False)
