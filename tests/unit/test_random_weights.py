"""Random-weights twins: their own stable cache key, weights drawn from the model's init with a
fixed seed (not the trained ones), the same config and tokenizer, and a flag on every command."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from probe.cache import CacheSpec
from probe.errors import ProbeError
from probe.extract.spec import ExtractSpec, random_twin
from probe.models import ModelRef, load_encoder, random_encoder, resolve_model
from tests.helpers import word_bert


def _spec(**kw: object) -> CacheSpec:
    base: dict[str, object] = dict(
        model_identity="abc", pooling="first", max_length=512, window_stride=0,
        dtype="float16", compute_dtype="float32", format_version=3, extractor_version=5,
        slug="m",
    )  # fmt: skip
    base.update(kw)
    return CacheSpec(**base)  # type: ignore[arg-type]


def _ref(seed: int | None) -> ModelRef:
    return ModelRef("minilm", Path("/nowhere"), "abc", seed)


# --- the cache key --------------------------------------------------------------------------


def test_a_trained_models_key_is_the_one_it_had_before_twins() -> None:
    # Computed with probe/cache/key.py as it was before random_weights existed: existing
    # caches must still be found under their keys.
    assert _spec().key() == "m-46788789d8803828"


def test_a_twin_gets_its_own_key_stable_across_constructions() -> None:
    spec = ExtractSpec("minilm", pooling="first", dtype="float16")
    trained = spec.cache_spec(_ref(None), "float32")
    twin = random_twin(spec).cache_spec(_ref(0), "float32")
    again = random_twin(ExtractSpec("minilm", pooling="first", dtype="float16"))
    assert twin.key() != trained.key()
    assert twin.key() == again.cache_spec(_ref(0), "float32").key()
    assert twin.key().startswith("minilm+random0-") and trained.key().startswith("minilm-")
    assert twin.key().split("-")[-1] != trained.key().split("-")[-1]  # the hash, not the slug
    other_seed = random_twin(spec, 1).cache_spec(_ref(1), "float32")
    assert len({trained.key(), twin.key(), other_seed.key()}) == 3
    # The twin's hash covers how it was drawn: a new draw never reads an old draw's cache.
    assert dataclasses.replace(twin, random_init_version=2).key() != twin.key()


def test_twin_fields_are_set_together() -> None:
    with pytest.raises(ProbeError, match="together"):
        _spec(random_weights=0)


def test_cache_spec_refuses_a_ref_resolved_for_other_weights() -> None:
    with pytest.raises(ProbeError, match="random_weights"):
        random_twin(ExtractSpec("minilm")).cache_spec(_ref(None), "float32")
    with pytest.raises(ProbeError, match="random_weights"):
        ExtractSpec("minilm").cache_spec(_ref(3), "float32")


@pytest.mark.parametrize("seed", [-1, 1.5, True])
def test_bad_seeds_are_refused(seed: object) -> None:
    with pytest.raises(ProbeError, match="non-negative integer"):
        ExtractSpec("minilm", random_weights=seed)  # type: ignore[arg-type]


def test_random_twin_changes_only_the_weights() -> None:
    spec = ExtractSpec("mbert", pooling="mean", dtype="float32", max_length=128)
    twin = random_twin(spec, 7)
    assert twin.random_weights == 7
    assert dataclasses.replace(twin, random_weights=None) == spec


def test_settings_record_the_seed_for_a_twin_only() -> None:
    spec = ExtractSpec("minilm")
    assert "random_weights" not in spec.settings()
    assert random_twin(spec, 2).settings()["random_weights"] == 2


# --- the weights ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def trained_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny BERT whose saved weights are visibly not BERT's init: std 0.1 linear and
    embedding weights, LayerNorm gains of 1.5, biases of 0.3 (what training moves away from)."""
    directory = tmp_path_factory.mktemp("trained-bert")
    model = word_bert(directory, 60, hidden=64, n_layers=2, seed=1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "LayerNorm.weight" in name:
                param.fill_(1.5)
            elif name.endswith("bias") or "LayerNorm.bias" in name:
                param.fill_(0.3)
            else:
                param.normal_(0.0, 0.1)
    model.save_pretrained(directory)
    return directory


def _state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def test_same_seed_same_weights_other_seed_other_weights(trained_bert: Path) -> None:
    a, b = _state(random_encoder(trained_bert, 0)), _state(random_encoder(trained_bert, 0))
    c = _state(random_encoder(trained_bert, 1))
    assert a.keys() == b.keys() == c.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    drawn = [k for k in a if "weight" in k and "LayerNorm" not in k]
    assert drawn and all(not torch.equal(a[k], c[k]) for k in drawn)


def test_twin_weights_follow_the_init_not_the_trained_weights(trained_bert: Path) -> None:
    ref = resolve_model(str(trained_bert), trained_bert.parent, random_weights=0)
    twin, tokenizer = load_encoder(ref)
    trained, trained_tokenizer = load_encoder(resolve_model(str(trained_bert), trained_bert.parent))
    assert not twin.training
    assert tokenizer.get_vocab() == trained_tokenizer.get_vocab()
    assert twin.config.to_dict() == trained.config.to_dict()
    init_std = twin.config.initializer_range  # BERT: normal(0, 0.02) for linear and embedding
    mine, theirs = dict(twin.named_parameters()), dict(trained.named_parameters())
    assert mine.keys() == theirs.keys()
    for name, param in mine.items():
        if "LayerNorm.weight" in name:
            assert torch.all(param == 1.0) and torch.all(theirs[name] == 1.5), name
        elif name.endswith("bias"):
            assert torch.all(param == 0.0) and torch.all(theirs[name] == 0.3), name
        else:
            assert abs(param.std().item() - init_std) < 0.25 * init_std, name
            assert abs(param.mean().item()) < 0.5 * init_std, name
            assert abs(theirs[name].std().item() - 0.1) < 0.025, name


def test_drawing_a_twin_leaves_the_callers_random_state(trained_bert: Path) -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    random_encoder(trained_bert, 0)
    assert torch.equal(torch.rand(3), expected)


def test_twin_slug_names_the_seed(trained_bert: Path) -> None:
    assert resolve_model(str(trained_bert), trained_bert.parent, 4).slug.endswith("+random4")
    assert "+random" not in resolve_model(str(trained_bert), trained_bert.parent).slug


# --- the command line -----------------------------------------------------------------------


def test_every_command_with_a_model_takes_random_weights() -> None:
    import click

    from probe.cli import cli

    def commands(group: click.Group) -> list[click.Command]:
        out: list[click.Command] = []
        for command in group.commands.values():
            out += commands(command) if isinstance(command, click.Group) else [command]
        return out

    with_model = [c for c in commands(cli) if any(p.name == "model" for p in c.params)]
    assert {"extract", "layers", "grid", "finetune", "intermediate"} <= {c.name for c in with_model}
    for command in with_model:
        names = {p.name for p in command.params}
        assert {"random_weights", "random_weights_seed"} <= names, command.name


@pytest.mark.parametrize(
    "flag, seed, expected", [(False, None, None), (True, None, 0), (True, 3, 3), (False, 5, 5)]
)
def test_random_weights_options(flag: bool, seed: int | None, expected: int | None) -> None:
    from probe.cli.options import random_weights

    assert random_weights({"random_weights": flag, "random_weights_seed": seed}) == expected
