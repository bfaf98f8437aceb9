"""Tests of the DLFA head: gate shapes and range, padding invariance, and a two-layer toy task."""

from __future__ import annotations

import itertools

import pytest
import torch
from torch import Tensor, nn

from probe.errors import ProbeError
from probe.heads.dlfa import AIF, ConcatHead, DLFAHead, gate_mean

HIDDEN = 16
LENGTHS = [5, 3, 7]


def _batch(lengths: list[int], total: int, seed: int = 0) -> tuple[Tensor, Tensor, Tensor]:
    """Random (h_last, h_k, mask) with sentences of ``lengths`` padded with zeros to ``total``."""
    g = torch.Generator().manual_seed(seed)
    h_last = torch.randn(len(lengths), total, HIDDEN, generator=g)
    h_k = torch.randn(len(lengths), total, HIDDEN, generator=g)
    mask = torch.arange(total)[None, :] < torch.tensor(lengths)[:, None]
    h_last[~mask] = 0.0
    h_k[~mask] = 0.0
    return h_last, h_k, mask


def _repad(x: Tensor, mask: Tensor, total: int, seed: int) -> Tensor:
    """``x`` padded out to ``total`` with every padded position (old and new) set to garbage."""
    g = torch.Generator().manual_seed(seed)
    out = 100 * torch.randn(x.shape[0], total, x.shape[2], generator=g)
    out[:, 0, 0] = float("nan")  # overwritten below wherever position 0 is a real token
    out[:, -1, 1] = float("inf")
    out[:, : x.shape[1]][mask] = x[mask]
    return out


pytestmark = pytest.mark.usefixtures("one_thread")


def _scramble(module: nn.Module, seed: int = 0) -> None:
    """Give every parameter random values, so no branch hides behind its zero init."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(0.5 * torch.randn(p.shape, generator=g))


@pytest.mark.parametrize(
    ("norm", "level", "global_pool", "train"),
    list(
        itertools.product(
            ["layer", "batch", "none"], ["token", "sentence"], ["mean", "max"], [False, True]
        )
    ),
)
def test_padding_never_changes_real_outputs(
    norm: str, level: str, global_pool: str, train: bool
) -> None:
    """Appending padding of any value (NaN, inf, huge) leaves real logits and gates alone."""
    torch.manual_seed(0)
    head = DLFAHead(HIDDEN, 5, norm=norm, dropout=0.0, level=level, global_pool=global_pool)
    _scramble(head)
    h_last, h_k, mask = _batch(LENGTHS, 7)
    if norm == "batch":  # give the running statistics something other than their init
        head.train()
        head(h_last, h_k, mask)
    head.train(train)
    logits, gate = head(h_last, h_k, mask, return_gate=True)

    long_mask = torch.zeros(len(LENGTHS), 11, dtype=torch.bool)
    long_mask[:, :7] = mask
    long_last, long_k = _repad(h_last, mask, 11, 1), _repad(h_k, mask, 11, 2)
    long_logits, long_gate = head(long_last, long_k, long_mask, return_gate=True)

    assert torch.isfinite(long_logits).all() and torch.isfinite(long_gate).all()
    torch.testing.assert_close(long_gate[long_mask], gate[mask])
    if level == "token":
        torch.testing.assert_close(long_logits[long_mask], logits[mask])
    else:
        torch.testing.assert_close(long_logits, logits)


@pytest.mark.parametrize("level", ["token", "sentence"])
def test_concat_head_shapes_and_padding(level: str) -> None:
    """ConcatHead shares DLFAHead's signature, output shapes and padding invariance."""
    head = ConcatHead(HIDDEN, 4, dropout=0.0, level=level)
    h_last, h_k, mask = _batch(LENGTHS, 7)
    logits = head(h_last, h_k, mask)
    long_mask = torch.zeros(len(LENGTHS), 9, dtype=torch.bool)
    long_mask[:, :7] = mask
    long_logits = head(_repad(h_last, mask, 9, 1), _repad(h_k, mask, 9, 2), long_mask)
    if level == "token":
        assert logits.shape == (3, 7, 4)
        torch.testing.assert_close(long_logits[long_mask], logits[mask])
    else:
        assert logits.shape == (3, 4)
        torch.testing.assert_close(long_logits, logits)


def test_shapes_gate_range_and_init() -> None:
    """Logits and gate shapes per level; M lies strictly in (0, 1) and is exactly 0.5 at init."""
    h_last, h_k, mask = _batch(LENGTHS, 7)
    token = DLFAHead(HIDDEN, 5, level="token")
    logits, gate = token(h_last, h_k, mask, return_gate=True)
    assert logits.shape == (3, 7, 5) and gate.shape == (3, 7, HIDDEN)
    assert torch.all(gate == 0.5) and gate_mean(gate, mask) == 0.5
    sentence = DLFAHead(HIDDEN, 3, level="sentence")
    assert sentence(h_last, h_k, mask).shape == (3, 3)

    _scramble(token)
    _, gate = token(h_last, h_k, mask, return_gate=True)
    assert torch.all(gate[mask] > 0) and torch.all(gate[mask] < 1)
    assert gate[mask].std() > 0.05  # scrambled, the gate really varies


def test_fusing_a_layer_with_itself_gives_that_layer() -> None:
    """With k = last, Z = M*H + (1-M)*H = H whatever the gate."""
    aif = AIF(HIDDEN, norm="layer")
    _scramble(aif)
    h, _, mask = _batch(LENGTHS, 7)
    z, _ = aif(h, h.clone(), mask)
    torch.testing.assert_close(z[mask], h[mask])


def test_bad_choices_and_inputs_fail_clearly() -> None:
    """Unknown option names list the alternatives; malformed batches are refused."""
    with pytest.raises(ProbeError, match="Did you mean 'layer'"):
        DLFAHead(HIDDEN, 2, norm="layr")
    with pytest.raises(ProbeError, match="Available: sentence, token"):
        ConcatHead(HIDDEN, 2, level="word")
    h_last, h_k, mask = _batch(LENGTHS, 7)
    with pytest.raises(ValueError, match="mask must be"):
        DLFAHead(HIDDEN, 2)(h_last, h_k, mask[:, :5])
    mask[1] = False
    with pytest.raises(ValueError, match="no real token"):
        DLFAHead(HIDDEN, 2)(h_last, h_k, mask)


def test_gradients_reach_both_branches() -> None:
    """After one step off the zero init, every parameter of both branches gets a gradient."""
    torch.manual_seed(0)
    head = DLFAHead(HIDDEN, 4, dropout=0.0)
    h_last, h_k, mask = _batch(LENGTHS, 7)
    labels = torch.randint(0, 4, (3, 7))
    opt = torch.optim.SGD(head.parameters(), lr=0.1)
    for _ in range(2):
        opt.zero_grad()
        nn.functional.cross_entropy(head(h_last, h_k, mask)[mask], labels[mask]).backward()
        opt.step()
    for name, p in head.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert {n.split(".")[1] for n, _ in head.named_parameters() if n.startswith("aif.")} == {
        "global_branch",
        "local_branch",
    }


# --- a token task whose label needs one bit from each layer ---------------------------------


def _split_signal_task(n: int, seed: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """Label = 2*bit_last + bit_k (4 classes); each layer carries its own bit and a decoy.

    H_last holds bit_last on features 0-3 and a random decoy bit on 4-7; H_k holds
    bit_k on 4-7 and a decoy on 0-3. Either layer alone knows one bit (50% at best);
    their plain average mixes each bit with a decoy, so the head has to learn a gate
    that takes features 0-3 from H_last and 4-7 from H_k.
    """
    g = torch.Generator().manual_seed(seed)
    length = 10
    sign = lambda b: 2.0 * b - 1.0  # noqa: E731
    bit_last, bit_k, decoy_last, decoy_k = (
        torch.randint(0, 2, (n, length), generator=g).float() for _ in range(4)
    )
    h_last = 0.5 * torch.randn(n, length, HIDDEN, generator=g)
    h_k = 0.5 * torch.randn(n, length, HIDDEN, generator=g)
    h_last[..., 0:4] += sign(bit_last)[..., None]
    h_last[..., 4:8] += sign(decoy_last)[..., None]
    h_k[..., 4:8] += sign(bit_k)[..., None]
    h_k[..., 0:4] += sign(decoy_k)[..., None]
    lengths = torch.randint(4, length + 1, (n,), generator=g)
    mask = torch.arange(length)[None, :] < lengths[:, None]
    labels = (2 * bit_last + bit_k).long()
    return h_last, h_k, mask, labels


class _Fixed(nn.Module):
    """A linear classifier on a fixed view of the two layers: the capacity of DLFA's classifier.

    ``which`` is "last", "k", or "average" (DLFA with its gate frozen at M = 0.5).
    """

    def __init__(self, which: str) -> None:
        super().__init__()
        self.which = which
        self.classifier = nn.Linear(HIDDEN, 4)

    def forward(self, h_last: Tensor, h_k: Tensor, mask: Tensor) -> Tensor:
        views = {"last": h_last, "k": h_k, "average": (h_last + h_k) / 2}
        return self.classifier(views[self.which])


def _fit_and_score(head: nn.Module, train: tuple, test: tuple, steps: int = 200) -> float:
    """Full-batch Adam on the real tokens, then token accuracy on the held-out batch."""
    torch.manual_seed(0)
    opt = torch.optim.Adam(head.parameters(), lr=0.02)
    h_last, h_k, mask, labels = train
    head.train()
    for _ in range(steps):
        opt.zero_grad()
        loss = nn.functional.cross_entropy(head(h_last, h_k, mask)[mask], labels[mask])
        loss.backward()
        opt.step()
    head.eval()
    h_last, h_k, mask, labels = test
    with torch.no_grad():
        pred = head(h_last, h_k, mask).argmax(-1)
    return float((pred[mask] == labels[mask]).float().mean())


def test_dlfa_learns_a_signal_split_across_two_layers() -> None:
    """DLFA beats either layer alone and the fixed average, matches concat, and its gate
    takes each bit's features from the layer that carries the bit."""
    train, test = _split_signal_task(256, seed=1), _split_signal_task(256, seed=2)
    torch.manual_seed(0)
    dlfa = DLFAHead(HIDDEN, 4, dropout=0.0)
    scores = {
        "dlfa": _fit_and_score(dlfa, train, test),
        "last": _fit_and_score(_Fixed("last"), train, test),
        "k": _fit_and_score(_Fixed("k"), train, test),
        "average": _fit_and_score(_Fixed("average"), train, test),
        "concat": _fit_and_score(ConcatHead(HIDDEN, 4, dropout=0.0), train, test),
    }
    print("split-signal token accuracy:", {k: round(v, 3) for k, v in scores.items()})
    assert scores["dlfa"] > 0.9
    assert scores["last"] < 0.6 and scores["k"] < 0.6
    assert scores["dlfa"] > max(scores["last"], scores["k"]) + 0.3
    assert scores["dlfa"] > scores["average"] + 0.1
    assert scores["concat"] > 0.9

    h_last, h_k, mask, _ = test
    with torch.no_grad():
        _, gate = dlfa(h_last, h_k, mask, return_gate=True)
    real = gate[mask]
    print("mean gate on bit_last's features:", round(float(real[:, 0:4].mean()), 3))
    print("mean gate on bit_k's features:", round(float(real[:, 4:8].mean()), 3))
    assert real[:, 0:4].mean() > 0.75  # bit_last's features come from H_last
    assert real[:, 4:8].mean() < 0.25  # bit_k's features come from H_k


def test_one_layer_twice_skips_the_gate_with_the_same_output() -> None:
    """The grid's (last, last) baseline: the same tensor twice gives the gated output bit
    for bit, without computing the gate (and training it leaves the gate untouched)."""
    for level in ("token", "sentence"):
        head = DLFAHead(HIDDEN, 3, level=level, dropout=0.0)
        _scramble(head)
        h, _, mask = _batch(LENGTHS, 7)
        h[~mask] = float("nan")  # padding is still masked out
        shortcut = head(h, h, mask)
        gated = head(h, h.clone(), mask)
        real = mask if level == "token" else slice(None)
        assert torch.equal(shortcut[real], gated[real]) and not shortcut[real].isnan().any()
        _, gate = head(h, h, mask, return_gate=True)  # asking for the gate still computes it
        assert gate.shape == h.shape
    head = DLFAHead(HIDDEN, 3)
    h, _, mask = _batch(LENGTHS, 7)
    head(h, h, mask).sum().backward()
    assert all(p.grad is None for p in head.aif.parameters())
    assert head.classifier.weight.grad is not None


def test_the_equal_capacity_control_is_the_last_layer_head_when_its_gate_is_fixed() -> None:
    """SelfGatedHead has DLFA's parameters; with its zero-initialised gate (M = 0.5 until it
    trains) it is exactly the last layer through the same classifier, and a trained gate
    changes its output (it is a bigger head, not a relabelled linear one)."""
    from probe.heads.dlfa import SelfGatedHead

    for level in ("token", "sentence"):
        control = SelfGatedHead(HIDDEN, 3, level=level, dropout=0.0)
        linear = DLFAHead(HIDDEN, 3, level=level, dropout=0.0)
        linear.load_state_dict(control.state_dict())  # the same modules, the same weights
        assert sum(p.numel() for p in control.parameters()) == sum(
            p.numel() for p in linear.parameters()
        )
        h, other, mask = _batch(LENGTHS, 7)
        real = mask if level == "token" else slice(None)
        fixed = control(h, other, mask)  # the second input is ignored
        assert torch.allclose(fixed[real], linear(h, h, mask)[real], atol=1e-6)
        _scramble(control)  # a trained gate
        linear.load_state_dict(control.state_dict())
        assert not torch.allclose(control(h, h, mask)[real], linear(h, h, mask)[real], atol=1e-3)
