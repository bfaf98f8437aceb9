"""Heads and bodies by name (`probe.heads.registry`): builds, views, layers, unknown names."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
import torch
from torch import nn

from probe.errors import ProbeError
from probe.heads.dlfa import ConcatHead, DLFAHead, SelfGatedHead
from probe.heads.linear import LinearProbe, PairLinearProbe
from probe.heads.multitask import FusionBody, MixBody, MLPBody
from probe.heads.registry import BODIES, HEADS, pair_heads
from probe.heads.scalar_mix import PairScalarMixProbe, ScalarMixProbe
from probe.train import PairData, SequenceData, WordData

HIDDEN, CLASSES, N_LAYERS = 8, 3, 4
CPU = torch.device("cpu")
RNG = np.random.default_rng(0)
WORDS = WordData(
    RNG.standard_normal((N_LAYERS, 9, HIDDEN)).astype(np.float32),
    RNG.integers(0, CLASSES, 9),
    np.array([0, 4, 5, 9]),
)
PAIRS = PairData(
    RNG.standard_normal((N_LAYERS, 6, HIDDEN)).astype(np.float32),
    RNG.standard_normal((N_LAYERS, 6, HIDDEN)).astype(np.float32),
    RNG.integers(0, CLASSES, 6),
)
READS = {"one": 2, "all": tuple(range(N_LAYERS)), "pair": (N_LAYERS - 1, 1),
         "last": (N_LAYERS - 1, N_LAYERS - 1)}  # fmt: skip
# What each name built before the registry, per level: the same classes, so the same numbers.
BUILT = {
    ("linear", "word"): lambda: LinearProbe(HIDDEN, CLASSES),
    ("linear", "pair"): lambda: PairLinearProbe(HIDDEN, CLASSES),
    ("scalar_mix", "word"): lambda: ScalarMixProbe(N_LAYERS, HIDDEN, CLASSES),
    ("scalar_mix", "pair"): lambda: PairScalarMixProbe(N_LAYERS, HIDDEN, CLASSES),
    ("dlfa", "word"): lambda: DLFAHead(HIDDEN, CLASSES, reduction=2),
    ("concat", "word"): lambda: ConcatHead(HIDDEN, CLASSES),
    ("gated-last", "word"): lambda: SelfGatedHead(HIDDEN, CLASSES, reduction=2),
    # a pair's token view: fused per token, the [CLS] row classified (pool "first")
    ("dlfa", "pair-tokens"): lambda: DLFAHead(
        HIDDEN, CLASSES, reduction=2, level="sentence", sentence_pool="first"
    ),
    ("concat", "pair-tokens"): lambda: ConcatHead(
        HIDDEN, CLASSES, level="sentence", sentence_pool="first"
    ),
    ("gated-last", "pair-tokens"): lambda: SelfGatedHead(
        HIDDEN, CLASSES, reduction=2, level="sentence", sentence_pool="first"
    ),
}
SEQUENCES = SequenceData(
    RNG.standard_normal((N_LAYERS, 11, HIDDEN)).astype(np.float32),
    np.array([0, 5, 7, 11]),
    RNG.integers(0, CLASSES, 3),
)
DATA = {"word": WORDS, "pair": PAIRS, "pair-tokens": SEQUENCES}


def _same_weights(a: nn.Module, b: nn.Module) -> None:
    assert type(a) is type(b)
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        torch.testing.assert_close(sa[name], sb[name], atol=0, rtol=0)


@pytest.mark.parametrize(
    "name, level", [(n, lv) for n, kind in HEADS.items() for lv in kind.levels]
)
def test_every_head_builds_and_reads_its_view_at_each_level(name: str, level: str) -> None:
    kind = HEADS.get(name)
    torch.manual_seed(0)
    head = kind.build(level, HIDDEN, CLASSES, n_layers=N_LAYERS, reduction=2)
    torch.manual_seed(0)
    _same_weights(head, BUILT[name, level]())
    view = kind.view(level, DATA[level], READS[kind.reads])
    batch = next(iter(view.batches(64, generator=None, device=CPU)))
    logits = head(*batch.inputs)
    assert logits.shape == (*batch.labels.shape, CLASSES)


def test_every_built_pair_is_listed() -> None:
    assert {(n, lv) for n, kind in HEADS.items() for lv in kind.levels} == set(BUILT)
    assert HEADS.names() == ("linear", "scalar_mix", "dlfa", "concat", "gated-last")
    assert pair_heads() == ("dlfa", "concat")  # the grid's control is not a --head choice
    assert [n for n, kind in HEADS.items() if kind.has_gate] == ["dlfa", "gated-last"]


def test_unknown_names_and_unserved_levels_are_refused() -> None:
    with pytest.raises(ProbeError, match="Did you mean 'dlfa'"):
        HEADS.get("dlfx")
    with pytest.raises(ProbeError, match="Did you mean 'mlp'"):
        BODIES.get("mpl")
    with pytest.raises(ProbeError, match="serves word and pair-tokens tasks, not 'pair'"):
        HEADS.get("dlfa").build("pair", HIDDEN, CLASSES)
    with pytest.raises(ProbeError, match="serves word and pair tasks"):
        HEADS.get("linear").view("parallel", WORDS, 0)


@pytest.mark.parametrize(
    "body, layer, expected",
    [
        ("mlp", None, (12,)),
        ("mlp", 5, (5,)),
        ("mix", None, tuple(range(13))),
        ("mix", 4, tuple(range(4, 13))),
        ("dlfa", None, (12, 11)),
        ("dlfa", 3, (12, 3)),
        ("dlfa", 0, (12, 0)),
    ],
)
def test_body_layers_as_before(body: str, layer: int | None, expected: tuple[int, ...]) -> None:
    assert BODIES.get(body).layers(13, layer) == expected


def test_body_layers_refuse_out_of_range_and_dlfa_on_the_last_layer() -> None:
    for body in BODIES.names():
        with pytest.raises(ProbeError, match="outside 0..12"):
            BODIES.get(body).layers(13, 13)
        with pytest.raises(ProbeError, match="outside"):
            BODIES.get(body).layers(13, -1)
    with pytest.raises(ProbeError, match="fuses the last layer"):
        BODIES.get("dlfa").layers(13, 12)


def test_bodies_build_the_same_modules() -> None:
    expected = {
        "mlp": lambda: MLPBody(HIDDEN, 6),
        "mix": lambda: MixBody(HIDDEN, 6, (1, 2, 3)),
        "dlfa": lambda: FusionBody(HIDDEN, 2),
    }
    assert BODIES.names() == tuple(expected)
    for name, make in expected.items():
        torch.manual_seed(0)
        body = BODIES.get(name).build(HIDDEN, (1, 2, 3), 6, 2)
        torch.manual_seed(0)
        _same_weights(body, make())
    mix = BODIES.get("mix").build(HIDDEN, (1, 2, 3))
    assert isinstance(mix, MixBody) and mix.mix.layer_ids == (1, 2, 3)


def test_registry_names_load_without_torch() -> None:
    """The CLI may list head and body names: the registries themselves must not load torch."""
    code = (
        "import sys\n"
        "from probe.heads.registry import BODIES, HEADS\n"
        "HEADS.names(), BODIES.names(), HEADS.get('dlfa').reads\n"
        "print('torch' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
