"""The compute dtypes settings.json records (never "auto"), and float32 evaluation."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from probe.experiments.dtypes import compute_dtypes
from probe.experiments.finetune import FinetuneConfig
from probe.heads.linear import LinearProbe
from probe.runtime.precision import pick_compute_dtype
from probe.train import TrainConfig, WordData, evaluate, fit, predict_proba

CPU = torch.device("cpu")


@dataclass(frozen=True)
class _Probing:
    train: TrainConfig
    dlfa_train: TrainConfig


def test_auto_is_resolved_to_the_dtype_this_machine_uses() -> None:
    cfg = _Probing(TrainConfig(device="cpu"), TrainConfig(precision="auto", device="cpu"))
    auto = str(pick_compute_dtype("auto", CPU)).removeprefix("torch.")
    assert compute_dtypes(cfg, "float32") == {
        "extract": "float32", "train": "float32", "dlfa_train": auto, "evaluate": "float32",
    }  # fmt: skip
    assert auto in ("float32", "bfloat16")
    tuned = FinetuneConfig(model="m", task="pos", device="cpu", precision="auto")
    assert compute_dtypes(tuned) == {"finetune": "float32", "evaluate": "float32"}  # CPU rule


def test_a_bfloat16_trained_head_is_evaluated_in_float32() -> None:
    rng = np.random.default_rng(0)
    n, hidden = 400, 16
    x = rng.standard_normal((1, n, hidden)).astype(np.float32)
    y = (x[0, :, 0] > 0).astype(np.int64)
    data = WordData({0: x[0]}, y, np.arange(0, n + 1, 4))
    config = TrainConfig(max_epochs=2, device="cpu", precision="bfloat16", batch_size=64)
    head = fit(lambda: LinearProbe(hidden, 2), data.words(0), data.words(0), config).head
    probs = predict_proba(head, data.words(0))
    with torch.inference_mode():
        want = torch.softmax(head(torch.from_numpy(x[0])).float(), -1).numpy()
    np.testing.assert_allclose(probs, want, rtol=0, atol=1e-6)  # bf16 would be ~1e-2 off
    loss, _ = evaluate(head, data.words(0))
    want_loss = torch.nn.functional.cross_entropy(
        torch.log(torch.from_numpy(want)), torch.from_numpy(y)
    )
    assert abs(loss - float(want_loss)) < 1e-5
