"""Tests of the probes and the training loop on synthetic features with a planted signal."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch
from torch import Tensor, nn

import probe.train.optim as optim_module
from probe.errors import ProbeError
from probe.heads.linear import LinearProbe, PairLinearProbe, pair_features
from probe.heads.scalar_mix import PairScalarMixProbe, ScalarMix, ScalarMixProbe
from probe.train import (
    PairData,
    SequenceData,
    TrainConfig,
    WordData,
    evaluate,
    fit,
    predict_proba,
)

LAYERS, HIDDEN, CLASSES, SIGNAL = 4, 24, 5, 2
CONFIG = TrainConfig(lr=2e-2, batch_size=256, max_epochs=40, patience=4, seed=0, device="cpu")
CPU = torch.device("cpu")


def _lengths_to_offsets(lengths: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)


def _planted_words(n_sentences: int, seed: int) -> WordData:
    """Layer SIGNAL's features decide the label (argmax of a fixed linear map); others are noise."""
    rng = np.random.default_rng(seed)
    lengths = rng.integers(0, 12, n_sentences)  # zero-length sentences included on purpose
    n = int(lengths.sum())
    features = rng.standard_normal((LAYERS, n, HIDDEN)).astype(np.float16)
    mapping = np.random.default_rng(1234).standard_normal((HIDDEN, CLASSES))  # shared by splits
    labels = (features[SIGNAL].astype(np.float32) @ mapping).argmax(axis=1)
    return WordData(features, labels, _lengths_to_offsets(lengths))


@pytest.fixture(scope="module")
def words() -> tuple[WordData, WordData]:
    return _planted_words(500, seed=1), _planted_words(200, seed=2)


def _accuracy(probs: np.ndarray, gold: np.ndarray) -> float:
    return float((probs.argmax(axis=1) == gold).mean())


def _majority(gold: np.ndarray) -> float:
    return float(np.bincount(gold).max() / len(gold))


# --- probes recover the planted layer, and only it -----------------------------------------


def test_linear_probe_finds_the_informative_layer(words: tuple[WordData, WordData]) -> None:
    train, dev = words
    scores = {}
    for layer in range(LAYERS):
        result = fit(
            lambda: LinearProbe(HIDDEN, CLASSES), train.words(layer), dev.words(layer), CONFIG
        )
        scores[layer] = _accuracy(predict_proba(result.head, dev.words(layer)), dev.labels)
    chance = _majority(dev.labels)
    assert scores[SIGNAL] > 0.9
    for layer in set(range(LAYERS)) - {SIGNAL}:
        assert scores[layer] < chance + 0.08, scores


def test_shuffled_labels_leave_the_probe_at_chance(words: tuple[WordData, WordData]) -> None:
    train, dev = words
    shuffled = np.random.default_rng(0).permutation(train.labels)
    noise = WordData({SIGNAL: train.layers[SIGNAL]}, shuffled, train.offsets)
    result = fit(
        lambda: LinearProbe(HIDDEN, CLASSES), noise.words(SIGNAL), dev.words(SIGNAL), CONFIG
    )
    accuracy = _accuracy(predict_proba(result.head, dev.words(SIGNAL)), dev.labels)
    assert accuracy < _majority(dev.labels) + 0.08


def test_scalar_mix_weights_the_informative_layer(words: tuple[WordData, WordData]) -> None:
    train, dev = words
    layers = tuple(range(LAYERS))
    result = fit(lambda: ScalarMixProbe(LAYERS, HIDDEN, CLASSES), train.words(layers),
                 dev.words(layers), CONFIG)  # fmt: skip
    head = result.head
    assert isinstance(head, ScalarMixProbe)
    weights = head.weights
    assert weights.shape == (LAYERS,) and abs(float(weights.sum()) - 1) < 1e-6
    assert int(weights.argmax()) == SIGNAL and float(weights[SIGNAL]) > 0.5
    assert abs(head.centre_of_gravity - SIGNAL) < 0.6
    assert _accuracy(predict_proba(head, dev.words(layers)), dev.labels) > 0.85


def test_scalar_mix_formula_and_centre_of_gravity() -> None:
    mix = ScalarMix(3, layer_ids=(4, 8, 12))
    with torch.no_grad():
        mix.scalars.copy_(torch.tensor([0.0, np.log(2.0), np.log(5.0)]))
        mix.gamma.fill_(2.0)
    s = torch.tensor([1.0, 2.0, 5.0]) / 8
    x = torch.randn(6, 3, 7)  # (batch, layers, hidden)
    torch.testing.assert_close(mix(x), 2.0 * (s[None, :, None] * x).sum(1))
    torch.testing.assert_close(mix.weights, s)
    assert mix.centre_of_gravity == pytest.approx(float((torch.tensor([4.0, 8, 12]) * s).sum()))
    with pytest.raises(ValueError, match="expected 3 layers"):
        mix(torch.randn(6, 4, 7))


# --- sentence pairs ------------------------------------------------------------------------


def _planted_pairs(n: int, seed: int, layers: int = 3, signal: int = 1) -> PairData:
    """Label = whether a and b agree along a fixed direction (sign of sum v*a*b) on one layer."""
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((layers, n, HIDDEN)).astype(np.float16)
    b = rng.standard_normal((layers, n, HIDDEN)).astype(np.float16)
    v = np.random.default_rng(99).standard_normal(HIDDEN)
    labels = ((a[signal].astype(np.float32) * b[signal] * v).sum(1) > 0).astype(np.int64)
    return PairData(a, b, labels)


def test_pair_features_layout() -> None:
    a, b = torch.tensor([[1.0, -2.0]]), torch.tensor([[3.0, 1.0]])
    expected = torch.tensor([[1.0, -2.0, 3.0, 1.0, 2.0, 3.0, 3.0, -2.0]])
    torch.testing.assert_close(pair_features(a, b), expected)


def test_pair_probes_recover_an_interaction_signal() -> None:
    """a*b is in the pair features, so a linear probe reads the interaction label."""
    train, dev = _planted_pairs(3000, seed=1), _planted_pairs(600, seed=2)
    result = fit(lambda: PairLinearProbe(HIDDEN, 2), train.pairs(1), dev.pairs(1), CONFIG)
    probs = predict_proba(result.head, dev.pairs(1))
    assert probs.shape == (600, 2) and _accuracy(probs, dev.labels) > 0.9

    layers = (0, 1, 2)
    result = fit(lambda: PairScalarMixProbe(3, HIDDEN, 2), train.pairs(layers), dev.pairs(layers),
                 CONFIG)  # fmt: skip
    head = result.head
    assert isinstance(head, PairScalarMixProbe)
    assert int(head.weights.argmax()) == 1 and float(head.weights[1]) > 0.5


# --- batches -------------------------------------------------------------------------------


def _tiny() -> WordData:
    """Sentences of 3, 0, 1 and 4 words; feature value = 10*layer + word row, labels = row."""
    n, hidden = 8, 2
    rows = np.arange(n, dtype=np.float16)[None, :, None]
    features = (10 * np.arange(2, dtype=np.float16)[:, None, None] + rows).repeat(hidden, axis=2)
    return WordData(features, np.arange(n), _lengths_to_offsets(np.array([3, 0, 1, 4])))


def test_padded_sentence_batches_have_the_right_mask() -> None:
    data = _tiny()
    (batch,) = data.sentences(1).batches(100, generator=None, device=CPU)  # empty one skipped
    h, mask = batch.inputs
    # Prediction batches are sorted by length (less padding); `items` maps back.
    expected = torch.tensor([[1, 0, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]], dtype=torch.bool)
    assert torch.equal(mask, expected) and torch.equal(batch.mask, expected)
    assert batch.items.tolist() == [3, 0, 1, 2, 4, 5, 6, 7]
    items = torch.from_numpy(batch.items).float()
    assert h.shape == (3, 4, 2) and h.dtype == torch.float32
    assert torch.equal(h[..., 0][mask], 10 + items)  # real words, tracked by `items`
    assert torch.all(h[~mask] == 0)
    assert torch.equal(batch.labels[mask], torch.from_numpy(batch.items))
    assert torch.all(batch.labels[~mask] == -100)

    (batch,) = data.sentences((1, 0)).batches(100, generator=None, device=CPU)
    h1, h0, mask = batch.inputs  # one tensor per layer, in the order asked, then the mask
    assert torch.equal(h1[mask][:, 0] - h0[mask][:, 0], torch.full((8,), 10.0))
    (batch,) = data.sentences((0, 1), stack=True).batches(100, generator=None, device=CPU)
    x, mask = batch.inputs
    assert x.shape == (3, 4, 2, 2)
    assert torch.equal(x[mask][:, :, 0], torch.stack([items, 10 + items], 1))


def test_sentence_batches_hold_whole_sentences_and_cover_each_once() -> None:
    data = _planted_words(60, seed=3)
    gen = torch.Generator().manual_seed(0)
    seen = []
    for batch in data.sentences(0).batches(20, generator=gen, device=CPU):
        lengths = batch.mask.sum(1)
        assert torch.all(lengths > 0)
        assert lengths.sum() - lengths[-1] < 20  # whole sentences: only the last runs over
        seen.append(batch.labels[batch.mask])
    assert sorted(torch.cat(seen).tolist()) == sorted(data.labels.tolist())


def test_word_batches_cover_each_word_once_as_float32() -> None:
    data = _tiny()
    gen = torch.Generator().manual_seed(0)
    batches = list(data.words((0, 1)).batches(3, generator=gen, device=CPU))
    labels = torch.cat([b.labels for b in batches])
    assert sorted(labels.tolist()) == list(range(8))
    x = batches[0].inputs[0]
    assert x.dtype == torch.float32 and x.shape[1:] == (2, 2)  # (B, layers, hidden)
    torch.testing.assert_close(x[:, 1, 0] - x[:, 0, 0], torch.full((x.shape[0],), 10.0))
    (one,) = next(iter(data.words(1).batches(8, generator=None, device=CPU))).inputs
    assert one.shape == (8, 2) and torch.equal(one[:, 0], 10 + torch.arange(8.0))


def test_predictions_agree_between_word_and_sentence_views(
    words: tuple[WordData, WordData],
) -> None:
    """A per-word head trains on either view and predicts one row per word, in order."""
    train, dev = words
    by_word = fit(
        lambda: LinearProbe(HIDDEN, CLASSES), train.words(SIGNAL), dev.words(SIGNAL), CONFIG
    )
    by_sentence = fit(lambda: LinearProbe(HIDDEN, CLASSES), train.sentences(SIGNAL),
                      dev.sentences(SIGNAL), CONFIG)  # fmt: skip
    p_word = predict_proba(by_word.head, dev.words(SIGNAL))
    p_sent = predict_proba(by_word.head, dev.sentences(SIGNAL))
    np.testing.assert_allclose(p_word, p_sent, atol=1e-6)
    assert _accuracy(predict_proba(by_sentence.head, dev.words(SIGNAL)), dev.labels) > 0.9


class _MeanPoolProbe(nn.Module):
    """A stand-in for a sentence-level fusion head: masked means of two layers, then linear."""

    def __init__(self) -> None:
        super().__init__()
        self.classifier = nn.Linear(2 * HIDDEN, 2)

    def forward(self, h_a: Tensor, h_b: Tensor, mask: Tensor) -> Tensor:
        """h_a, h_b: (B, T, H); mask: (B, T) -> logits (B, 2)."""
        m = mask[..., None].float()
        pooled = torch.cat(((h_a * m).sum(1), (h_b * m).sum(1)), dim=-1) / m.sum(1)
        return self.classifier(pooled)


def test_sequence_labels_train_a_sentence_level_head() -> None:
    """SequenceData feeds token features with one label per sequence (DLFA's sentence level)."""

    def make(n: int, seed: int) -> SequenceData:
        rng = np.random.default_rng(seed)
        lengths = rng.integers(2, 9, n)
        tokens = rng.standard_normal((2, int(lengths.sum()), HIDDEN)).astype(np.float16)
        offsets = _lengths_to_offsets(lengths)
        means = np.add.reduceat(tokens[0, :, 0].astype(np.float32), offsets[:-1]) / lengths
        return SequenceData(tokens, offsets, (means > 0).astype(np.int64))

    train, dev = make(1500, 1), make(300, 2)
    result = fit(_MeanPoolProbe, train.sentences((0, 1)), dev.sentences((0, 1)), CONFIG)
    probs = predict_proba(result.head, dev.sentences((0, 1)))
    assert probs.shape == (300, 2) and _accuracy(probs, dev.labels) > 0.85


# --- the loop: determinism, early stopping, errors -----------------------------------------


def test_training_is_deterministic(words: tuple[WordData, WordData]) -> None:
    train, dev = words
    before = torch.random.get_rng_state()

    def run(seed: int) -> np.ndarray:
        config = TrainConfig(lr=2e-2, batch_size=256, max_epochs=5, seed=seed, device="cpu")
        layers = tuple(range(LAYERS))
        head = fit(lambda: ScalarMixProbe(LAYERS, HIDDEN, CLASSES), train.words(layers),
                   dev.words(layers), config).head  # fmt: skip
        return predict_proba(head, dev.words(layers))

    first, second, other = run(0), run(0), run(1)
    assert np.array_equal(first, second)
    assert not np.array_equal(first, other)
    assert torch.equal(torch.random.get_rng_state(), before)  # the caller's RNG is untouched


def test_best_dev_weights_are_restored(words: tuple[WordData, WordData]) -> None:
    train, dev = words
    small = WordData({0: train.layers[0][:300]}, train.labels[:300], np.array([0, 300]))
    config = TrainConfig(lr=5e-2, batch_size=64, max_epochs=40, patience=3, device="cpu")
    result = fit(LinearProbe(HIDDEN, CLASSES), small.words(0), dev.words(0), config)
    assert result.stopped_early and result.best_epoch < result.epochs_run  # noise overfits
    dev_losses = [e.dev_loss for e in result.history]
    assert result.best_dev_loss == min(dev_losses)
    loss, _ = evaluate(result.head, dev.words(0))
    assert loss == pytest.approx(result.best_dev_loss, rel=1e-5)


def test_bad_inputs_fail_clearly(words: tuple[WordData, WordData]) -> None:
    train, dev = words
    with pytest.raises(TypeError, match=r"data\.words\(layer\)"):
        fit(LinearProbe(HIDDEN, CLASSES), train, None, CONFIG)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"logits must be the label shape"):
        fit(LinearProbe(HIDDEN, CLASSES), train.sentences((0, 1), stack=True), None, CONFIG)
    with pytest.raises(ValueError, match=r"holds layers \[0, 1, 2, 3\]"):
        train.words(7)
    with pytest.raises(ValueError, match="offsets"):
        WordData(train.layers[0], train.labels, train.offsets[:-1])
    with pytest.raises(ProbeError, match="lr must be positive"):
        TrainConfig(lr=0)
    if not torch.cuda.is_available():
        with pytest.raises(ProbeError, match="no GPU"):
            fit(LinearProbe(HIDDEN, CLASSES), train.words(0), None, TrainConfig(device="cuda"))


def test_adamw_matches_torch_bit_for_bit() -> None:
    """`train.AdamW` (written out to keep torch._dynamo unloaded) updates exactly as
    torch.optim.AdamW does, weight-decay groups included."""
    from probe.train import AdamW

    torch.manual_seed(0)
    ours = nn.Sequential(nn.Linear(HIDDEN, 8), nn.ReLU(), nn.Linear(8, CLASSES))
    theirs = nn.Sequential(nn.Linear(HIDDEN, 8), nn.ReLU(), nn.Linear(8, CLASSES))
    theirs.load_state_dict(ours.state_dict())

    def groups(model: nn.Module) -> list[tuple[list[nn.Parameter], float]]:
        params = list(model.parameters())
        return [
            ([p for p in params if p.dim() >= 2], 0.05),
            ([p for p in params if p.dim() < 2], 0.0),
        ]

    opt_ours = AdamW(groups(ours), lr=3e-2)
    opt_theirs = torch.optim.AdamW(
        [{"params": ps, "weight_decay": wd} for ps, wd in groups(theirs)], lr=3e-2, foreach=False
    )
    x, y = torch.randn(64, HIDDEN), torch.randint(0, CLASSES, (64,))
    for _ in range(6):
        for model, opt in ((ours, opt_ours), (theirs, opt_theirs)):
            opt.zero_grad()
            nn.functional.cross_entropy(model(x), y).backward()
            opt.step()
    for (name, a), b in zip(ours.state_dict().items(), theirs.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert not torch.equal(ours[0].weight, torch.zeros_like(ours[0].weight))


def test_training_leaves_torch_dynamo_unloaded() -> None:
    """Fitting a head imports neither torch._dynamo nor torch._inductor (2-4 s each per
    process: more than a probe takes to train). Checked in a fresh interpreter."""
    import subprocess
    import sys
    from pathlib import Path

    code = (
        "import sys, numpy as np\n"
        "from probe.train import TrainConfig, WordData, fit\n"
        "from probe.heads.linear import LinearProbe\n"
        "x = np.random.default_rng(0).standard_normal((64, 8)).astype(np.float16)\n"
        "d = WordData(x, np.arange(64) % 3, np.array([0, 32, 64]))\n"
        "fit(lambda: LinearProbe(8, 3), d.words(0), d.words(0), TrainConfig(max_epochs=2))\n"
        "heavy = ('torch._dynamo', 'torch._inductor')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    repo = Path(__file__).resolve().parents[2]
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=repo)  # fmt: skip
    assert out.stdout.strip() == "[]", out.stdout[-500:]


# --- schedule, precision and batching ------------------------------------------------------


def test_linear_schedule_lowers_the_rate_each_epoch(
    words: tuple[WordData, WordData], monkeypatch: pytest.MonkeyPatch
) -> None:
    train, dev = words
    seen: list[float] = []
    step = optim_module.AdamW.step

    def spy(self: optim_module.AdamW) -> None:
        seen.append(self.lr)
        step(self)

    monkeypatch.setattr(optim_module.AdamW, "step", spy)
    config = TrainConfig(lr=0.1, batch_size=10_000, max_epochs=4, patience=10,
                         schedule="linear", device="cpu")  # fmt: skip
    fit(LinearProbe(HIDDEN, CLASSES), train.words(0), dev.words(0), config)
    assert seen == pytest.approx([0.1, 0.075, 0.05, 0.025])  # one step per epoch
    seen.clear()
    fit(
        LinearProbe(HIDDEN, CLASSES),
        train.words(0),
        dev.words(0),
        replace(config, schedule="constant"),
    )
    assert seen == pytest.approx([0.1] * 4)
    with pytest.raises(ProbeError, match="schedule"):
        TrainConfig(schedule="cosine")  # type: ignore[arg-type]
    with pytest.raises(ProbeError, match="precision"):
        TrainConfig(precision="int8")  # type: ignore[arg-type]


def test_bfloat16_training_learns_and_tracks_float32(words: tuple[WordData, WordData]) -> None:
    """Autocast caches its bf16 weight copies until its region ends: a region around the
    whole loop would keep training the initial weights. This catches that."""
    train, dev = words
    config = replace(CONFIG, max_epochs=15)
    results = {}
    for precision in ("float32", "bfloat16"):
        result = fit(lambda: LinearProbe(HIDDEN, CLASSES), train.words(SIGNAL),
                     dev.words(SIGNAL), replace(config, precision=precision))  # fmt: skip
        probs = predict_proba(result.head, dev.words(SIGNAL))
        results[precision] = (result, _accuracy(probs, dev.labels))
    (fp32, acc32), (bf16, acc16) = results["float32"], results["bfloat16"]
    assert acc16 > 0.85 and abs(acc16 - acc32) < 0.03
    assert bf16.history[-1].train_loss < 0.5 * bf16.history[0].train_loss
    assert bf16.best_dev_loss == pytest.approx(fp32.best_dev_loss, rel=0.1)


def test_prediction_batches_pad_little_and_keep_data_order() -> None:
    """A large prediction batch must not pad every short sentence to the longest one."""
    rng = np.random.default_rng(0)
    lengths = np.concatenate([rng.integers(1, 6, 300), [120]])  # many short, one long
    offsets = _lengths_to_offsets(lengths)
    n = int(offsets[-1])
    data = WordData(rng.standard_normal((1, n, 4)).astype(np.float16), np.arange(n) % 3,
                    offsets)  # fmt: skip
    batches = list(data.sentences(0).batches(512, generator=None, device=CPU))
    padded = sum(b.mask.numel() for b in batches)
    assert padded < 1.3 * n  # all in one batch would be 301 x 120 = 36,120 positions for ~1k
    for b in batches:
        assert b.mask.numel() <= 512 or b.mask.shape[0] == 1  # only a lone long one runs over
    head = LinearProbe(4, 3)
    probs = predict_proba(head, data.sentences(0), batch_size=512)
    flat = predict_proba(head, data.words(0))
    np.testing.assert_allclose(probs, flat, rtol=1e-5, atol=1e-6)  # same rows, data order


def test_a_layer_named_twice_is_one_tensor() -> None:
    data = _tiny()
    (batch,) = data.sentences((1, 1)).batches(100, generator=None, device=CPU)
    a, b, mask = batch.inputs
    assert a is b and torch.all(a[mask][:, 0] >= 10)
    (batch,) = data.sentences((1, 0, 1), stack=True).batches(100, generator=None, device=CPU)
    (x, mask) = batch.inputs
    assert x.shape[2] == 3 and torch.equal(x[:, :, 0], x[:, :, 2])
    assert torch.equal(x[mask][:, 0, 0] - x[mask][:, 1, 0], torch.full((8,), 10.0))
