"""The leakage guard in real runs: planted copies and translations stop `probe layers` before it
writes anything, `--allow-overlap` runs and records the counts, a clean run records 0; and on
../shared/data the guard catches pos-pud in XTREME's UD-POS test but passes the default pairs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from probe.experiments.base import RunOptions
from probe.experiments.layers import LayersConfig, run_layers
from probe.experiments.leakage import LeakageError, SplitRef, SplitUse, check_leakage
from probe.train import TrainConfig
from tests.helpers import cache_fields, make_ud, write_conllu

EN_TRAIN = [
    "the committee approved the new budget after a long debate on monday .",
    "scientists found that the river had been polluted for more than ten years .",
    "she told reporters that the company would open three factories next spring .",
    "local farmers say the drought has destroyed most of this season 's harvest .",
    "the museum will stay closed until the repairs to its roof are finished .",
    "a small team of volunteers cleaned the beach every weekend during the summer .",
]
EN_TEST = [
    "the new bridge across the bay was opened to traffic early this morning .",
    "several schools in the north of the country were closed because of snow .",
    "the minister did not say when the new rules would come into force .",
]
DE_TEST = [
    "der ausschuss billigte den neuen haushalt nach einer langen debatte am montag .",
    "die neue brücke über die bucht wurde heute früh für den verkehr freigegeben .",
]


def _data(root: Path, en_test: list[str], train_ids: list[str] | None = None,
          de_ids: list[str] | None = None) -> Path:  # fmt: skip
    """en train/dev/test and de test, each sentence's words split on spaces."""
    ud = root / "ud"
    train_ids = train_ids or [f"train-{i}" for i in range(len(EN_TRAIN))]
    write_conllu(
        ud / "UD_English-EWT/en_ewt-ud-train.conllu",
        [(i, s.split()) for i, s in zip(train_ids, EN_TRAIN, strict=True)],
    )
    write_conllu(
        ud / "UD_English-EWT/en_ewt-ud-dev.conllu",
        [("dev-0", "the weather was fine .".split()), ("dev-1", "he read a book .".split())],
    )
    write_conllu(
        ud / "UD_English-EWT/en_ewt-ud-test.conllu",
        [(f"test-{i}", s.split()) for i, s in enumerate(en_test)],
    )
    de_ids = de_ids or [f"de-{i}" for i in range(len(DE_TEST))]
    write_conllu(
        ud / "UD_German-GSD/de_gsd-ud-test.conllu",
        [(i, s.split()) for i, s in zip(de_ids, DE_TEST, strict=True)],
    )
    return root


def _config(tmp_path: Path, model: Path) -> LayersConfig:
    return LayersConfig(**cache_fields(tmp_path, model, compute_dtype="float32"),
                        train=TrainConfig(max_epochs=1), control=False,
                        scalar_mix=False)  # type: ignore[arg-type]  # fmt: skip


def _options(tmp_path: Path, allow: bool = False) -> RunOptions:
    return RunOptions(results_dir=tmp_path / "results", progress=False, allow_overlap=allow)


def _planted() -> list[str]:
    """Two training sentences again: one re-cased, one re-tokenised (`season's harvest.`)."""
    return [*EN_TEST, EN_TRAIN[0].upper(), EN_TRAIN[3].replace(" 's", "'s").replace(" .", ".")]


def test_planted_copies_stop_the_run_before_it_writes(tmp_path: Path, tiny_bert: Path) -> None:
    _data(tmp_path / "data", _planted())
    with pytest.raises(LeakageError) as err:
        run_layers(_config(tmp_path, tiny_bert), _options(tmp_path))
    message = str(err.value)
    assert "\n" not in message
    assert "pos/en/test 2 of 5 (40.0%: 2 copies, 0 translations) in pos/en/train 2" in message
    assert not list((tmp_path / "results").rglob("settings.json"))


def test_allow_overlap_runs_and_records_the_count(tmp_path: Path, tiny_bert: Path) -> None:
    _data(tmp_path / "data", _planted())
    result = run_layers(_config(tmp_path, tiny_bert), _options(tmp_path, allow=True))
    leakage = json.loads((result.directory / "settings.json").read_text())["leakage"]
    assert leakage["allowed"] is True and leakage["overlapping"] == 2
    assert leakage["leaking"] == ["pos/en/test"]
    assert leakage["found"]["pos/en/test"]["by_train"]["pos/en/train"]["long_copies"] == 2
    assert set(leakage["evals"]) == {"pos/en/test", "pos/de/test"}
    assert set(leakage["trains"]) == {"pos/en/train", "pos/en/dev"}
    # The summary ends with the counts, found (any length) and long.
    summary = (result.directory / "summary.txt").read_text().splitlines()
    assert summary[-2].startswith("leakage guard (--allow-overlap): evaluation items found")
    line = "  pos/en/test: 2 of 5 found (2 copies, 0 translations), 2 long (40.00%, over the limit)"
    assert summary[-1] == line


def test_planted_translations_stop_the_run_by_parallel_id(tmp_path: Path, tiny_bert: Path) -> None:
    """de test sentence n01001011 translates en train sentence n01001011 (PUD's ids)."""
    pud = [f"n0100{1 + i // 3}{i % 3 + 11:03d}" for i in range(len(EN_TRAIN))]
    _data(tmp_path / "data", EN_TEST, train_ids=pud, de_ids=[pud[0], "n09009011"])
    with pytest.raises(LeakageError, match=r"pos/de/test 1 of 2 \(50.0%: 0 copies, 1 "
                       r"translations\) in pos/en/train 1"):  # fmt: skip
        run_layers(_config(tmp_path, tiny_bert), _options(tmp_path))


def test_a_clean_run_records_zero(tmp_path: Path, tiny_bert: Path) -> None:
    _data(tmp_path / "data", EN_TEST)
    result = run_layers(_config(tmp_path, tiny_bert), _options(tmp_path))
    leakage = result.settings["leakage"]
    assert leakage["overlapping"] == 0 and leakage["leaking"] == [] and leakage["found"] == {}
    assert leakage["allowed"] is False
    assert "leakage guard" not in (result.directory / "summary.txt").read_text()


def test_cli_refuses_in_one_line_and_allow_overlap_runs(tmp_path: Path, tiny_bert: Path) -> None:
    from probe.cli import cli

    data = _data(tmp_path / "data", _planted())
    args = ["layers", "--model", str(tiny_bert), "--task", "pos", "--langs", "en,de",
            "--data-dir", str(data), "--cache-dir", str(tmp_path / "cache"),
            "--results-dir", str(tmp_path / "results"), "--compute", "float32",
            "--no-control", "--no-mix"]  # fmt: skip
    refused = CliRunner().invoke(cli, args)
    assert refused.exit_code != 0 and "Traceback" not in refused.output
    errors = [line for line in refused.output.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "2 of 5" in errors[0] and "--allow-overlap" in errors[0]
    allowed = CliRunner().invoke(cli, [*args, "--allow-overlap"])
    assert allowed.exit_code == 0, allowed.output
    (settings,) = (tmp_path / "results").rglob("settings.json")
    assert json.loads(settings.read_text())["leakage"]["overlapping"] == 2


def test_make_ud_data_is_clean_for_the_guard(tmp_path: Path, tiny_bert: Path) -> None:
    """The tests' tiny UD data repeats its sentences across splits, but all are short."""
    make_ud(tmp_path / "data")
    result = run_layers(_config(tmp_path, tiny_bert), _options(tmp_path))
    assert result.settings["leakage"]["leaking"] == []
    # Short copies are under the rule but above zero: the summary still prints them.
    found = result.settings["leakage"]["found"]
    assert found and all(c["long_copies"] == 0 for c in found.values())
    summary = (result.directory / "summary.txt").read_text()
    lines = [line for line in summary.splitlines() if line.startswith("  pos/")]
    assert len(lines) == len(found) and all(line.endswith("0 long (0.00%)") for line in lines)


# --- the real data -------------------------------------------------------------------------


@pytest.mark.real
def test_real_pos_pud_in_udpos_test_is_caught(shared_data: Path) -> None:
    from probe.experiments.leakage import file_sentences

    use = SplitUse((SplitRef("pos-pud", "en", "test"),), (SplitRef("udpos", "en", "test"),))
    with pytest.raises(LeakageError, match=r"udpos/en/test 928 of 5,440 \(17.1%"):
        check_leakage(use, file_sentences(shared_data, {}), allow=False)


@pytest.mark.real
def test_real_default_pairs_pass(shared_data: Path) -> None:
    """EWT and UD-POS repeat short lines and a few long ones; under the limit."""
    from probe.experiments.leakage import file_sentences

    read = file_sentences(shared_data, {})
    pos = SplitUse((SplitRef("pos", "en", "train"), SplitRef("pos", "en", "dev")),
                   (SplitRef("pos", "en", "test"), SplitRef("pos", "de", "test")))  # fmt: skip
    report = check_leakage(pos, read, allow=False)
    assert report.overlapping == 2 and report.leaking == ()
    udpos = SplitUse((SplitRef("udpos", "en", "train"), SplitRef("udpos", "en", "dev")),
                     (SplitRef("udpos", "en", "test"),))  # fmt: skip
    assert check_leakage(udpos, read, allow=False).overlapping == 2
