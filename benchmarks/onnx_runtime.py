"""Is ONNX Runtime a faster CPU forward than eager torch, with the same features?

    pip install onnxruntime onnxscript && python -m benchmarks.onnx_runtime [--model minilm]

Exports the encoder with every hidden state as an output (torch's dynamo exporter), then
runs four batches of 4,096 tokens (widths 32-256, a quarter of the rows half padded) through
eager torch and ONNX Runtime, alternating for `--rounds`, plus the graph after
`onnxruntime.transformers.optimizer` (BERT fusions). Prints each round's seconds and the
largest difference on kept positions. Not part of `python -m benchmarks`: onnxruntime is not
a dependency of probe, and it stays out unless it is faster by >= 10% with equal features
(issue 23; the result is in benchmarks/README.md, "CPU forward").
"""

from __future__ import annotations

import argparse
import importlib
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

SHAPES = ((128, 32), (64, 64), (32, 128), (16, 256))


class _AllStates(torch.nn.Module):
    """The encoder as (input_ids, attention_mask) -> every hidden state, for the exporter."""

    def __init__(self, model: Any) -> None:
        super().__init__()
        self.model = model

    def forward(self, ids: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, ...]:
        out = self.model(input_ids=ids, attention_mask=mask, output_hidden_states=True)
        return tuple(out.hidden_states)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    args = parser.parse_args()
    try:
        ort = importlib.import_module("onnxruntime")
        fusion = importlib.import_module("onnxruntime.transformers.optimizer")
    except ImportError as err:
        raise SystemExit(f"needs onnxruntime and onnxscript ({err})") from err
    from transformers import AutoModel

    from probe.models import resolve_model

    work = Path(tempfile.mkdtemp(prefix="probe-onnx-"))
    ref = resolve_model(args.model, work / "models")
    model = AutoModel.from_pretrained(ref.path).eval()
    config = model.config
    wrapped = _AllStates(model)
    n_states = config.num_hidden_layers + 1
    gen = torch.Generator().manual_seed(0)
    batches = []
    for rows, width in SHAPES:
        ids = torch.randint(1000, 20000, (rows, width), generator=gen)
        mask = torch.ones_like(ids)
        mask[::4, width // 2 :] = 0
        batches.append((ids, mask))
    plain = work / "model.onnx"
    dynamic = {"ids": {0: "b", 1: "t"}, "mask": {0: "b", 1: "t"}}
    dynamic.update({f"h{i}": {0: "b", 1: "t"} for i in range(n_states)})
    torch.onnx.export(wrapped, batches[0], str(plain), input_names=["ids", "mask"],
                      output_names=[f"h{i}" for i in range(n_states)], dynamic_axes=dynamic,
                      opset_version=18, dynamo=True)  # fmt: skip
    fused = work / "model-fused.onnx"
    optimized = fusion.optimize_model(
        str(plain), model_type="bert", num_heads=config.num_attention_heads,
        hidden_size=config.hidden_size, opt_level=1,
    )  # fmt: skip
    optimized.save_model_to_file(str(fused))
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    cpu = ["CPUExecutionProvider"]
    graphs = {"onnxruntime": plain, "onnxruntime fused": fused}
    sessions = {
        name: ort.InferenceSession(str(path), options, providers=cpu)
        for name, path in graphs.items()
    }

    def eager() -> list[list[np.ndarray]]:
        with torch.inference_mode():
            return [[s.numpy() for s in wrapped(ids, mask)] for ids, mask in batches]

    def runner(session: Any) -> Any:
        def run() -> list[list[np.ndarray]]:
            return [session.run(None, {"ids": i.numpy(), "mask": m.numpy()}) for i, m in batches]

        return run

    ways = {"eager torch": eager, **{name: runner(s) for name, s in sessions.items()}}
    reference = eager()
    for name, way in ways.items():
        got = way()
        diff = max(
            float(np.abs(a[m.numpy().astype(bool)] - b[m.numpy().astype(bool)]).max())
            for (_, m), ra, rb in zip(batches, reference, got, strict=True)
            for a, b in zip(ra, rb, strict=True)
        )
        print(f"{name}: max abs difference to eager on kept positions {diff:.2e}")
    for round_ in range(args.rounds):
        for name, way in ways.items():
            began = time.perf_counter()
            way()
            print(f"round {round_ + 1} {name}: {time.perf_counter() - began:.3f} s")


if __name__ == "__main__":
    main()
