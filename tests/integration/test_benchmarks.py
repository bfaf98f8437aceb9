"""The benchmark scripts run end to end and write every number the table reports.

Timings are not checked here (the tiny model and a handful of sentences say nothing about
speed); `python -m benchmarks` on the real model does that. This keeps the scripts from
rotting as the toolkit changes under them.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.helpers import make_ud


@pytest.mark.filterwarnings("ignore::UserWarning")
def test_quick_benchmark_writes_every_key(tiny_bert: Path, tmp_path: Path) -> None:
    from benchmarks.run import main

    data = make_ud(tmp_path / "data")
    out = tmp_path / "results"
    record = main([
        "--model", str(tiny_bert), "--data-dir", str(data), "--max-sentences", "4",
        "--inline", "--grid-workers", "1", "--repeats", "1", "--name", "smoke",
        "--out-dir", str(out), "--work-dir", str(tmp_path / "work"),
    ])  # fmt: skip
    saved = json.loads((out / "smoke.json").read_text())
    assert saved["targets"] == record["targets"]

    ex = saved["extraction"]
    words = ex["toolkit"]["words"]
    assert words == ex["naive"]["words"] == ex["forward_only"]["words"] > 0
    for way in ("toolkit", "naive", "forward_only"):
        assert ex[way]["words_per_s"] > 0
    assert 0 <= ex["toolkit"]["padding_waste"] < 1
    assert ex["ratio_toolkit_to_naive"] > 0 and ex["ratio_toolkit_to_forward"] > 0
    cache = ex["cache"]
    assert cache["raw_bytes_per_word"] == 3 * 64 * 2  # tiny BERT: 3 hidden states x 64, fp16
    assert cache["bytes_per_word"] > cache["raw_bytes_per_word"]
    assert cache["read_gb_per_s"] > 0 and cache["numpy_read_gb_per_s"] > 0
    long = ex["long_sentence"]
    assert long["words"] == long["long"]["words"] == long["normal"]["words"] == 20_000
    assert long["long_sentence_vs_normal"] == ex["long_sentence_vs_normal"] > 0
    runs = ex["memory"]["runs"]
    assert [r["sentences"] for r in runs] == [4, 8] and runs[0]["words"] < runs[1]["words"]

    tr = saved["cached_training"]
    assert tr["extraction"]["words"] > 0
    assert tr["layers"]["call_seconds"] > 0 and tr["grid"]["call_seconds"] > 0
    assert tr["layers"]["scores"] and tr["grid"]["scores"]  # accuracies were produced
    assert tr["ratio_layers_to_extraction"] > 0 and tr["ratio_grid_to_extraction"] > 0

    for shape, hidden in (("mbert", 768), ("me5-small", 384)):
        hp = saved["host_pipeline"][shape]
        host = hp["rounds"]["host"][0]
        assert host["words"] == hp["words"] > 0 and host["forward_calls"] > 0
        assert host["stand_in_regrown"] == 0  # filled before the clock started
        # the shards hold the stand-in's 13 hidden states, float16, and little else
        assert 13 * hidden * 2 < hp["bytes_per_word"] < 1.5 * 13 * hidden * 2 + 4096
        assert hp["rounds"]["disk"][0]["bytes"] == hp["words"] * 13 * hidden * 2
        direct = hp["rounds"]["disk_direct"][0]  # whole 4 KiB blocks of the same bytes
        assert 0 <= hp["words"] * 13 * hidden * 2 - direct["bytes"] < 4096 and direct["direct"]
        assert hp["host_pipeline_vs_disk_direct"] > 0
    assert saved["host_pipeline_words_per_s"] == saved["host_pipeline"]["mbert"][
        "host_pipeline_words_per_s"] > 0  # fmt: skip
    assert saved["disk_write_words_per_s"] > 0
    assert saved["host_pipeline_vs_disk"] == round(
        saved["host_pipeline_words_per_s"] / saved["disk_write_words_per_s"], 3
    )
    start = saved["startup"]
    assert saved["startup_s"] == start["startup_s"] > start["rounds"][0]["interpreter_s"] > 0
    assert start["not_needed_loaded"] == []  # no matplotlib, datasets, sklearn, seqeval
    large = saved["large_job"]
    assert large["split"] == "pos/en/train" and large["words"] > 0
    assert large["toolkit_vs_forward"] > 0

    assert saved["gpu"]["ran"] is False and "not run" in saved["gpu"]["note"]
    names = {t["name"] for t in saved["targets"]}
    assert len(names) == 9
    assert saved["missed"] == [t["name"] for t in saved["targets"] if t["met"] is False]
