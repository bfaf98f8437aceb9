"""`python -m benchmarks --device cuda`: an mBERT-sized encoder on a GPU, and what the host adds.

Three fresh processes, each on the GPU:

    toolkit     `ensure_cached` over the test splits with bert-base-multilingual-cased: the
                real checkpoint when the hub answers, else its `BertConfig` with random
                weights (the same compute: 12 layers x 768, 119,547-word vocabulary) and the
                benchmark model's tokenizer (`--model`; its ids fit mBERT's vocabulary)
    forward     the bare forward passes of the toolkit's own batches (nothing pooled,
                copied or written): the ceiling
    host        the host pipeline with the stand-in encoder (benchmarks/host_pipeline.py) on
                CUDA: pooling on the device, pinned copies on a side stream, scatter, checksums
                and writes, against the disk

`host_share` = 1 - toolkit / forward words per s: the part of the run the GPU waits for the
host. GPU utilisation is sampled (NVML through torch, else nvidia-smi) while each runs.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

from benchmarks.harness import Settings, run_step

MBERT = "bert-base-multilingual-cased"
REAL = "mbert"  # the toolkit's alias of MBERT on the hub
# bert-base-multilingual-cased's config.json, for the random-weights stand-in offline.
MBERT_CONFIG: dict[str, Any] = {
    "vocab_size": 119547, "hidden_size": 768, "num_hidden_layers": 12,
    "num_attention_heads": 12, "intermediate_size": 3072, "max_position_embeddings": 512,
    "type_vocab_size": 2, "hidden_act": "gelu", "layer_norm_eps": 1e-12,
}  # fmt: skip


@contextlib.contextmanager
def mbert_encoder(settings: Settings) -> Iterator[str]:
    """Patch extraction's model loading to an mBERT-sized encoder; yields what it is."""
    from probe.runtime.hub import hub_offline, hub_reachable

    if not hub_offline() and hub_reachable():
        yield REAL  # the real checkpoint: the callers run with --model mbert
        return
    import torch
    from transformers import AutoTokenizer, BertConfig, BertModel

    from probe.models import resolve_model

    ref = resolve_model(settings.model, Path(settings.work_dir) / "unused-cache")
    tokenizer = AutoTokenizer.from_pretrained(ref.path)
    torch.manual_seed(0)
    model = BertModel(BertConfig(**MBERT_CONFIG), add_pooling_layer=False).eval()

    def load(_ref: Any, device: str) -> tuple[Any, Any]:
        return model.to(device), tokenizer

    with (
        mock.patch("probe.extract.run.load_encoder", load),
        mock.patch("probe.models.load_encoder", load),
    ):
        yield f"{MBERT} config, random weights (hub not reachable), {settings.model} tokenizer"


def toolkit(settings: Settings, cache: str) -> dict[str, Any]:
    """(a) on the GPU with the mBERT-sized encoder."""
    from dataclasses import replace

    from benchmarks import extraction

    with mbert_encoder(settings) as what:
        run_settings = replace(settings, model=REAL) if what == REAL else settings
        return {"model": what, **extraction.toolkit(run_settings, cache)}


def forward_only(settings: Settings) -> dict[str, Any]:
    """(c) on the GPU with the mBERT-sized encoder."""
    from dataclasses import replace

    from benchmarks import extraction

    with mbert_encoder(settings) as what:
        run_settings = replace(settings, model=REAL) if what == REAL else settings
        return {"model": what, **extraction.forward_only(run_settings)}


def measure(settings: Settings) -> dict[str, Any]:
    """The three GPU measurements of one run (one round each: a GPU is not shared)."""
    from benchmarks import host_pipeline

    cache = str(Path(settings.work_dir) / "gpu-cache")
    a = run_step("benchmarks.gpu:toolkit", settings, cache=cache)
    c = run_step("benchmarks.gpu:forward_only", settings)
    host = host_pipeline.measure(settings, shape="mbert")
    return {
        "model": a["model"],
        "toolkit": a,
        "forward_only": c,
        "host_pipeline": host,
        "toolkit_words_per_s": a["words_per_s"],
        "forward_words_per_s": c["words_per_s"],
        "host_share": round(1 - a["words_per_s"] / c["words_per_s"], 3),
        "toolkit_gpu_utilisation": a["gpu_utilisation"],
        "forward_gpu_utilisation": c["gpu_utilisation"],
    }


def copy_test_splits(data_dir: Path, out: Path) -> int:
    """Copy every UD test split (37 MB) to `out`, laid out as under `data_dir`: the data a
    GPU machine without ../shared/data needs for `--device cuda --only gpu`. Files copied."""
    import shutil

    count = 0
    for path in sorted((data_dir / "ud").glob("UD_*/*-test.conllu")):
        target = out / path.relative_to(data_dir)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        count += 1
    return count


if __name__ == "__main__":  # python -m benchmarks.gpu --copy-data OUT [DATA_DIR]
    import sys

    if len(sys.argv) < 3 or sys.argv[1] != "--copy-data":
        raise SystemExit("usage: python -m benchmarks.gpu --copy-data OUT [DATA_DIR]")
    source = Path(sys.argv[3]) if len(sys.argv) > 3 else Path(__file__).parents[2] / "shared/data"
    print(f"copied {copy_test_splits(source, Path(sys.argv[2]))} test splits to {sys.argv[2]}")
