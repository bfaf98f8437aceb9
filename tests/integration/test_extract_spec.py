"""The split extraction config: only `ExtractSpec` makes the cache key, one `ensure_cached`
call is one key and at most one encoder load, and its `CacheHandle` travels by pickle."""

from __future__ import annotations

import pickle
import shutil
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from probe.errors import ProbeError
from probe.extract import (
    CacheHandle,
    CachePaths,
    ExtractOptions,
    ExtractRequest,
    ExtractSpec,
    ensure_cached,
)
from tests.helpers import SENTENCES, make_tatoeba, make_ud

EN = ExtractRequest("pos", ("en",), ("dev",))


@pytest.fixture()
def data(tmp_path: Path) -> Path:
    return make_ud(tmp_path / "data", SENTENCES[:2])


def _spec(model: Path) -> ExtractSpec:
    return ExtractSpec(str(model), compute_dtype="float32", dtype="float32")


def _key(spec: ExtractSpec, paths: CachePaths, options: ExtractOptions | None = None) -> str:
    return ensure_cached(spec, EN, options or ExtractOptions(device="cpu"), paths,
                         progress=False).key  # fmt: skip


def _changed_model(tiny_bert: Path, where: Path) -> Path:
    """The tiny BERT with one weight nudged: the same architecture, other numbers."""
    from safetensors.torch import load_file, save_file

    shutil.copytree(tiny_bert, where)
    weights = load_file(where / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1e-3
    save_file(weights, where / "model.safetensors", metadata={"format": "pt"})
    return where


def test_every_spec_field_changes_the_key(tmp_path: Path, tiny_bert: Path, data: Path) -> None:
    paths = CachePaths(tmp_path / "cache", data)
    base = _spec(tiny_bert)
    changes: dict[str, Any] = {
        "model": str(_changed_model(tiny_bert, tmp_path / "other-model")),
        "pooling": "mean",
        "dtype": "float16",
        "compute_dtype": "bfloat16",
        "max_length": 64,
        "window_stride": 7,
        "random_weights": 0,
    }
    assert set(changes) == {f.name for f in fields(ExtractSpec)}, "a new field needs a case"
    keys = {"base": _key(base, paths)}
    for name, value in changes.items():
        keys[name] = _key(replace(base, **{name: value}), paths)
    assert len(set(keys.values())) == len(keys), keys


def test_no_option_or_path_changes_the_key(tmp_path: Path, tiny_bert: Path, data: Path) -> None:
    spec = _spec(tiny_bert)
    paths = CachePaths(tmp_path / "cache", data)
    base = ExtractOptions(device="cpu")
    key = _key(spec, paths, base)
    options: dict[str, Any] = {
        "device": "auto", "batch_tokens": 64, "shard_rows": 5, "block_bytes": 1,
        "overwrite": "always",
    }  # fmt: skip
    assert set(options) == {f.name for f in fields(ExtractOptions)}, "a new field needs a case"
    for name, value in options.items():
        assert _key(spec, paths, replace(base, **{name: value})) == key, name
    copied = tmp_path / "copied-data"
    shutil.copytree(data, copied)
    places: dict[str, Any] = {"cache_root": tmp_path / "elsewhere", "data_dir": copied}
    assert set(places) == {f.name for f in fields(CachePaths)}, "a new field needs a case"
    for name, value in places.items():
        assert _key(spec, replace(paths, **{name: value}), base) == key, name


def test_two_tasks_in_one_call_share_one_key_and_one_load(
    tmp_path: Path, tiny_bert: Path, data: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import probe.extract.run as run_module

    make_tatoeba(data)
    spec, options = _spec(tiny_bert), ExtractOptions(device="cpu")
    tatoeba = ExtractRequest("tatoeba", ("deu", "tur"), ("test",))
    loads: list[object] = []
    real_load = run_module.load_encoder

    def counted(*args: Any, **kwargs: Any) -> Any:
        loads.append(args)
        return real_load(*args, **kwargs)

    monkeypatch.setattr(run_module, "load_encoder", counted)
    paths = CachePaths(tmp_path / "cache", data)
    both = ensure_cached(spec, [ExtractRequest("pos", ("en", "de")), tatoeba], options, paths,
                         progress=False)  # fmt: skip
    assert len(loads) == 1
    assert both.languages("pos", "en") == ("en", "de")
    assert both.languages("tatoeba") == ("deu", "tur")
    assert {s.path.parent.parent.name for s in both.report.extracted} == {"pos", "tatoeba"}
    assert len({s.path.parts[-4] for s in both.report.shards}) == 1  # one key directory
    # The same key as each request alone, and nothing left to do (no load) on a rerun.
    alone = CachePaths(tmp_path / "alone", data)
    assert ensure_cached(spec, tatoeba, options, alone, progress=False).key == both.key
    again = ensure_cached(spec, [tatoeba, ExtractRequest("pos", ("en", "de"))], options, paths,
                          progress=False)  # fmt: skip
    assert again.key == both.key and not again.report.extracted
    assert len(loads) == 2  # one for `both`, one for `alone`, none for the cached rerun
    assert both.n_layers == 3


def test_a_split_asked_twice_is_extracted_once_and_conflicts_are_refused(
    tmp_path: Path, tiny_bert: Path, data: Path
) -> None:
    paths = CachePaths(tmp_path / "cache", data)
    spec, options = _spec(tiny_bert), ExtractOptions(device="cpu")
    zero_shot = ExtractRequest("pos", ("en",), None, "en")  # en train, dev and test
    handle = ensure_cached(spec, [EN, zero_shot], options, paths, progress=False)
    names = [s.path.relative_to(handle.directory).as_posix() for s in handle.report.shards]
    assert names == ["pos/en/dev.h5", "pos/en/train.h5", "pos/en/test.h5"]
    with pytest.raises(ProbeError, match="requested twice with different data"):
        ensure_cached(spec, [EN, replace(EN, max_sentences=1)], options, paths, progress=False)
    with pytest.raises(ProbeError, match="no request"):
        ensure_cached(spec, [], options, paths, progress=False)


def test_cache_handle_pickles(tmp_path: Path, tiny_bert: Path, data: Path) -> None:
    handle = ensure_cached(_spec(tiny_bert), EN, ExtractOptions(device="cpu"),
                           CachePaths(tmp_path / "cache", data), progress=False)  # fmt: skip
    back = pickle.loads(pickle.dumps(handle))
    assert isinstance(back, CacheHandle)
    assert (back.key, back.root, back.spec, back.cache_spec) == (
        handle.key, handle.root, handle.spec, handle.cache_spec
    )  # fmt: skip
    assert back.identity() == handle.identity() and back.identity()["key"] == handle.key
    assert list(back.identity()["shards"]) == ["pos/en/dev.h5"]
    assert back.n_layers == 3
    with back.open("pos", "en", "dev") as reader:
        assert reader.n_layers == 3
    assert back.settings() == {"model": str(tiny_bert), "cache_key": handle.key,
                               "extract": {f.name: getattr(handle.spec, f.name)
                                           for f in fields(ExtractSpec)
                                           if f.name != "random_weights"}}  # fmt: skip


def test_cache_paths_resolve_and_require_data(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PROBE_CACHE", str(tmp_path / "env-cache"))
    monkeypatch.setenv("PROBE_DATA", str(tmp_path / "env-data"))
    assert CachePaths.resolve() == CachePaths(tmp_path / "env-cache", tmp_path / "env-data")
    given = CachePaths.resolve(tmp_path / "c", tmp_path / "d")
    assert given == CachePaths(tmp_path / "c", tmp_path / "d")
    monkeypatch.delenv("PROBE_CACHE")
    monkeypatch.delenv("PROBE_DATA")
    assert CachePaths.resolve() == CachePaths(Path("cache"), None)


def test_bad_values_fail_where_they_are_given() -> None:
    with pytest.raises(ProbeError, match="pooling must be one of"):
        ExtractSpec("m", pooling="max")  # type: ignore[arg-type]
    with pytest.raises(ProbeError, match="max_length must be at least 8"):
        ExtractSpec("m", max_length=4)
    with pytest.raises(ProbeError, match="overwrite must be one of"):
        ExtractOptions(overwrite="sometimes")
