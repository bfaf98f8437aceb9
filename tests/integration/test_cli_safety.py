"""`probe cache rm` removes only what is provably cache, bad input ends as one `Error:` line,
and a new extractor version is a new cache key."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from probe import cache as store
from probe.cache import schema
from probe.cache.inventory import plan_removal
from probe.cli import cli
from probe.errors import CacheError
from tests.helpers import config, extract, make_ud


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory: pytest.TempPathFactory, tiny_bert: Path) -> Path:
    """A real cache of the tiny BERT (pos: en dev/test, de test), built once; tests copy it."""
    tmp = tmp_path_factory.mktemp("built")
    make_ud(tmp / "data")
    extract(config(tmp, tiny_bert), progress=False)
    return tmp / "cache"


@pytest.fixture()
def workspace(tmp_path: Path, built_cache: Path) -> Path:
    """A user's folder: the cache, a notes folder beside it and a file of their own."""
    import shutil

    shutil.copytree(built_cache, tmp_path / "cache")
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "ideas.txt").write_text("my unpublished results\n")
    return tmp_path


def _key_dir(root: Path) -> Path:
    (key,) = [p for p in (root / "cache").iterdir() if p.is_dir()]
    return key


def _all_files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file()}


def _rm(*args: str) -> Result:
    return CliRunner().invoke(cli, ["cache", "rm", *args])


def test_rm_refuses_an_ordinary_directory_and_touches_nothing(workspace: Path) -> None:
    before = _all_files(workspace)
    result = _rm(str(workspace / "notes"))
    assert result.exit_code != 0
    assert "not cache" in result.output and "nothing was removed" in result.output
    assert _all_files(workspace) == before


def test_rm_refuses_the_cache_root_and_the_folder_above_it(workspace: Path) -> None:
    before = _all_files(workspace)
    assert "is a cache root" in _rm(str(workspace / "cache")).output
    assert _rm(str(workspace)).exit_code != 0
    assert _all_files(workspace) == before


def test_rm_refuses_a_dotdot_path_that_leaves_the_cache(workspace: Path) -> None:
    key = _key_dir(workspace)
    sneaky = key / "pos" / ".." / ".." / ".." / "notes"
    before = _all_files(workspace)
    result = _rm(str(sneaky))
    assert result.exit_code != 0 and "not cache" in result.output
    assert _all_files(workspace) == before


def test_rm_refuses_symlinks_into_and_out_of_the_cache(workspace: Path) -> None:
    key = _key_dir(workspace)
    link_in = workspace / "link-to-shard.h5"
    link_in.symlink_to(key / "pos" / "en" / "test.h5")
    (key / "pos" / "de" / "my-notes").symlink_to(workspace / "notes")
    before = _all_files(workspace)
    assert "symbolic link" in _rm(str(link_in)).output
    result = _rm(str(key / "pos"))  # holds a link to the user's notes
    assert result.exit_code != 0 and "does not write" in result.output
    assert _all_files(workspace) == before


def test_rm_refuses_a_key_folder_holding_a_users_file(workspace: Path) -> None:
    key = _key_dir(workspace)
    (key / "pos" / "en" / "analysis.ipynb").write_text("{}")
    before = _all_files(workspace)
    result = _rm(str(key))
    assert result.exit_code != 0
    assert "analysis.ipynb" in result.output and "nothing was removed" in result.output
    assert _all_files(workspace) == before


def test_rm_checks_every_path_before_removing_any(workspace: Path) -> None:
    key = _key_dir(workspace)
    before = _all_files(workspace)
    result = _rm(str(key / "pos" / "en" / "test.h5"), str(workspace / "notes"))
    assert result.exit_code != 0
    assert _all_files(workspace) == before


def test_rm_dry_run_lists_and_keeps(workspace: Path) -> None:
    key = _key_dir(workspace)
    before = _all_files(workspace)
    result = _rm("--dry-run", str(key))
    assert result.exit_code == 0, result.output
    assert f"would remove model key {key}" in result.output
    assert _all_files(workspace) == before


@pytest.mark.parametrize("rel, kind", [("pos/en/test.h5", "shard"), ("pos/de", "language folder"),
                                       ("pos", "task folder"), ("", "model key")])  # fmt: skip
def test_rm_removes_cache_and_only_it(workspace: Path, rel: str, kind: str) -> None:
    key = _key_dir(workspace)
    target = key / rel if rel else key
    result = _rm(str(target))
    assert result.exit_code == 0, result.output
    assert f"removed {kind}" in result.output
    assert not target.exists()
    assert (workspace / "notes" / "ideas.txt").read_text() == "my unpublished results\n"
    if rel:
        assert (key / "spec.json").exists()


def test_rm_removes_a_corrupt_shard_and_a_dead_writers_temporary(workspace: Path) -> None:
    lang = _key_dir(workspace) / "pos" / "en"
    (lang / "dev.h5").write_bytes(os.urandom(1000))
    (lang / "test.h5.tmp-host-123").write_bytes(b"half")
    assert plan_removal(lang / "dev.h5").kind == "shard"
    assert _rm(str(lang / "dev.h5"), str(lang / "test.h5.tmp-host-123")).exit_code == 0
    assert not (lang / "dev.h5").exists() and not (lang / "test.h5.tmp-host-123").exists()


def test_a_folder_that_only_looks_like_a_key_is_not_cache(tmp_path: Path) -> None:
    fake = tmp_path / "cache" / "minilm-0123456789abcdef" / "pos" / "en"
    fake.mkdir(parents=True)
    (fake / "test.h5").write_bytes(b"user data")
    (fake.parent.parent.parent / "spec.json").write_text(json.dumps({"note": "mine"}))
    with pytest.raises(CacheError, match="not cache"):
        plan_removal(fake / "test.h5")


def _error_line(result: Result) -> str:
    """The command failed with exactly one `Error:` line and no traceback."""
    assert result.exit_code not in (0, None), result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.output
    return errors[0]


@pytest.fixture()
def ud(tmp_path: Path) -> Path:
    return make_ud(tmp_path / "data")


BAD_INPUT = {
    "data dir missing": (["extract", "-m", "{model}", "-t", "pos", "--data-dir", "{tmp}/nope",
                          "--cache-dir", "{tmp}/c"], "nope"),
    "data dir is a file": (["layers", "-m", "{model}", "-t", "pos", "--data-dir", "{file}"],
                           "is a file"),
    "cache dir is a file": (["extract", "-m", "{model}", "-t", "pos", "--data-dir", "{data}",
                             "--cache-dir", "{file}"], "is a file"),
    "results dir is a file": (["layers", "-m", "{model}", "-t", "pos", "--data-dir", "{data}",
                               "--cache-dir", "{tmp}/c", "--results-dir", "{file}"], "is a file"),
    "negative count": (["layers", "-m", "{model}", "-t", "pos", "--max-train-words", "-5"],
                       "-5"),
    "zero batch": (["extract", "-m", "{model}", "-t", "pos", "--batch-tokens", "0"], "0"),
    "non-positive lr": (["grid", "-m", "{model}", "-t", "pos", "--lr", "0"], "0"),
    "unknown task": (["extract", "-m", "{model}", "-t", "postag"], "postag"),
    "unknown pooling": (["extract", "-m", "{model}", "-t", "pos", "--pool", "max"], "max"),
    "unknown model": (["extract", "-m", "mbertt", "-t", "pos", "--data-dir", "{data}",
                       "--cache-dir", "{tmp}/c"], "mbertt"),
    "unknown language": (["extract", "-m", "{model}", "-t", "pos", "--langs", "xx",
                          "--data-dir", "{data}", "--cache-dir", "{tmp}/c"], "xx"),
    "info on a missing shard": (["cache", "info", "{tmp}/none.h5"], "none.h5"),
    "info on a folder": (["cache", "info", "{tmp}"], "is a directory"),
    "info on a non-HDF5 file": (["cache", "info", "{file}"], "not a readable HDF5"),
    "verify a non-HDF5 file": (["cache", "verify", "{file}"], "corrupt or incomplete"),
    "ls on a file": (["cache", "ls", "--cache-dir", "{file}"], "is a file"),
    "rm a missing path": (["cache", "rm", "{tmp}/none"], "no such file"),
    "unreadable data file": (["extract", "-m", "{model}", "-t", "pos", "--data-dir", "{data}",
                              "--cache-dir", "{tmp}/c", "--langs", "de"], "ermission"),
}  # fmt: skip


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_is_one_error_line_without_traceback(
    case: str, tmp_path: Path, ud: Path, tiny_bert: Path
) -> None:
    args, expected = BAD_INPUT[case]
    file = tmp_path / "a-file.txt"
    file.write_text("not a directory, not a shard\n")
    if case == "unreadable data file":
        if os.geteuid() == 0:
            pytest.skip("root reads files without read permission")
        (ud / "ud/UD_German-GSD/de_gsd-ud-test.conllu").chmod(0)
    filled = [a.format(model=tiny_bert, tmp=tmp_path, file=file, data=ud) for a in args]
    line = _error_line(CliRunner().invoke(cli, filled))
    assert expected in line


def test_an_unexpected_exception_is_one_line_and_vv_keeps_the_traceback(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import probe.cache.inventory

    def broken(root: Path) -> list[object]:
        raise RuntimeError("boom\nsecond line")

    monkeypatch.setattr(probe.cache.inventory, "list_shards", broken)
    args = ["cache", "ls", "--cache-dir", str(tmp_path)]
    line = _error_line(CliRunner().invoke(cli, args))
    assert "unexpected RuntimeError: boom" in line and "-vv" in line
    loud = CliRunner().invoke(cli, ["-vv", *args])
    assert isinstance(loud.exception, RuntimeError)


def test_log_lines_go_above_progress_bars(monkeypatch: pytest.MonkeyPatch) -> None:
    """A log record is written with tqdm.write (which clears and redraws the bars)."""
    import logging

    import tqdm

    from probe.cli import _configure_logging

    written: list[str] = []
    monkeypatch.setattr(tqdm.tqdm, "write", classmethod(lambda cls, s, **kw: written.append(s)))
    _configure_logging(0)
    logging.getLogger("probe.experiments").info("extracting")
    logging.getLogger("probe.train.loop").info("trained LinearProbe")  # per-job: -v only
    assert written == ["INFO probe.experiments: extracting"]
    _configure_logging(1)
    logging.getLogger("probe.train.loop").info("trained LinearProbe")
    assert written[-1] == "INFO probe.train.loop: trained LinearProbe"
    _configure_logging(0)


def test_a_new_extractor_version_is_a_new_key_and_is_recorded(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, tiny_bert: Path, ud: Path
) -> None:
    first = extract(config(tmp_path, tiny_bert, langs=("de",)), progress=False)
    monkeypatch.setattr(schema, "EXTRACTOR_VERSION", schema.EXTRACTOR_VERSION + 1)
    second = extract(config(tmp_path, tiny_bert, langs=("de",)), progress=False)
    assert second.key != first.key
    assert second.extracted, "shards of the old extractor must not be reused"
    with store.open_shard(second.cache_dir / "pos/de/test.h5") as shard:
        assert shard.attrs["extractor_version"] == schema.EXTRACTOR_VERSION
