"""The one hub check: the offline flags parse as huggingface_hub parses them, a proxy skips
the direct connect, the port follows the endpoint's scheme, and each caller words its error."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from probe.errors import ProbeError
from probe.runtime import hub

_VARIABLES = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE", "HF_ENDPOINT", "HTTPS_PROXY",
              "https_proxy", "ALL_PROXY", "all_proxy")  # fmt: skip


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in _VARIABLES:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def connections(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, int]]:
    """Every (host, port) the check connects to; each connection is refused."""
    seen: list[tuple[str, int]] = []

    def refuse(address: tuple[str, int], timeout: float) -> socket.socket:
        seen.append(address)
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(hub.socket, "create_connection", refuse)
    return seen


@pytest.mark.parametrize(
    "value, offline",
    [("1", True), ("true", True), ("YES", True), (" on ", True), ("0", False), ("", False),
     ("false", False), ("no", False), ("off", False)],
)  # fmt: skip
def test_offline_flag_parses_like_huggingface_hub(
    value: str, offline: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", value)
    assert hub.hub_offline() is offline
    assert hub.hub_offline(datasets=True) is offline


def test_datasets_flag_counts_only_for_datasets(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    assert not hub.hub_offline()
    assert hub.hub_offline(datasets=True)


@pytest.mark.parametrize(
    "endpoint, address",
    [(None, ("huggingface.co", 443)), ("http://mirror.local", ("mirror.local", 80)),
     ("https://mirror.local:8443/hf", ("mirror.local", 8443))],
)  # fmt: skip
def test_port_follows_the_endpoint_scheme(
    endpoint: str | None,
    address: tuple[str, int],
    connections: list[tuple[str, int]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    if endpoint:
        monkeypatch.setenv("HF_ENDPOINT", endpoint)
    assert not hub.hub_reachable(timeout=0.1)
    assert connections == [address]


def test_behind_a_proxy_no_direct_connection_is_tried(
    connections: list[tuple[str, int]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy:3128")
    assert hub.hub_reachable()
    assert connections == []


def test_unreachable_hub_fails_a_model_fast_with_the_aliases(
    connections: list[tuple[str, int]], tmp_path: Path
) -> None:
    from probe.models import resolve_model

    with pytest.raises(ProbeError, match=r"'xlmrr' is not cached and the hub is unreachable\. "
                                         r"Did you mean 'xlmr'\?"):  # fmt: skip
        resolve_model("xlmrr", tmp_path)
    assert connections == [("huggingface.co", 443)]


# --- the hub as a data source (probe.data.sources.hub, probe.data.hub_tasks) ---------------


@pytest.fixture
def loads(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, str, str]]:
    """Every (repo, config, split) the readers ask for; each gets a one-row dataset in the
    shape of its source, so the routing can be checked without the network."""
    from datasets import ClassLabel, Dataset, Features, Sequence, Value

    from probe.data.sources import hub as data_hub

    seen: list[tuple[str, str, str]] = []
    tags = ClassLabel(names=["O", "B-PER", "I-PER", "B-ORG", "I-ORG", "B-LOC", "I-LOC"])

    def fake(repo: str, config: str, split: str) -> tuple[Dataset, str]:
        seen.append((repo, config, split))
        if config == "XNLI":
            ds = Dataset.from_dict(
                {
                    "language": ["de", "en", "de"],
                    "sentence1": ["a", "b", "c"],
                    "sentence2": ["x", "y", "z"],
                    "gold_label": ["neutral", "entailment", "contradiction"],
                }
            )
        elif repo == data_hub.UD:
            ds = Dataset.from_dict(
                {
                    "idx": [f"{config}-1"],
                    "tokens": [["Wir", "gehen"]],
                    "upos": [[11, 16]],
                    "head": [["2", "0"]],
                },
                features=Features(
                    {
                        "idx": Value("string"),
                        "tokens": Sequence(Value("string")),
                        "upos": Sequence(ClassLabel(names=_UD_UPOS)),
                        "head": Sequence(Value("string")),
                    }
                ),
            )
        elif config.startswith("udpos."):
            ds = Dataset.from_dict(
                {"tokens": [["Ok"]], "pos_tags": [[6]]},
                features=Features(
                    {
                        "tokens": Sequence(Value("string")),
                        "pos_tags": Sequence(
                            ClassLabel(names=sorted(_UD_UPOS[:13] + _UD_UPOS[14:]))
                        ),
                    }
                ),
            )
        elif config.startswith("PAWS-X."):
            ds = Dataset.from_dict({"sentence1": ["a"], "sentence2": ["b"], "label": ["1"]})
        elif config.startswith("tatoeba."):
            ds = Dataset.from_dict({"source_sentence": ["a\n"], "target_sentence": ["b\r\n"]})
        else:
            ds = Dataset.from_dict(
                {"tokens": [["Anton"]], "ner_tags": [[1]]},
                features=Features(
                    {"tokens": Sequence(Value("string")), "ner_tags": Sequence(tags)}
                ),
            )
        return ds, data_hub.hub_identity(repo, config, split, ds._fingerprint)

    monkeypatch.setattr(data_hub, "_load", fake)
    return seen  # fmt: skip


_UD_UPOS = ["NOUN", "PUNCT", "ADP", "NUM", "SYM", "SCONJ", "ADJ", "PART", "DET", "CCONJ",
            "PROPN", "PRON", "X", "_", "ADV", "INTJ", "VERB", "AUX"]  # fmt: skip


def test_panx_reads_xtreme_where_it_has_the_language_and_wikiann_elsewhere(
    loads: list[tuple[str, str, str]],
) -> None:
    from probe.data.discovery import check_language, languages_for
    from probe.data.hub_tasks import hub_languages, read_hub_split
    from probe.data.sources.hub import PANX_LANGS, WIKIANN_LANGS
    from probe.data.tasks import get_task

    panx = get_task("panx")
    assert len(PANX_LANGS) == 40 and len(WIKIANN_LANGS) == 176
    assert languages_for(panx, None) == hub_languages(panx) == PANX_LANGS  # `--langs all`
    assert set(hub_languages(panx, named=True)) == set(WIKIANN_LANGS)
    check_language(panx, "az", None)  # WikiANN's, read when named
    th = read_hub_split(panx, "th", "dev")
    az = read_hub_split(panx, "az", "train")
    assert loads == [("google/xtreme", "PAN-X.th", "validation"),
                     ("unimelb-nlp/wikiann", "az", "train")]  # fmt: skip
    assert th.records[0].tags == ("B-PER",)
    assert th.source.startswith("hub:google/xtreme/PAN-X.th:validation@refs/convert/parquet#")
    assert az.source.startswith("hub:unimelb-nlp/wikiann/az:train@")


def test_every_task_maps_its_splits_to_the_hubs_names(loads: list[tuple[str, str, str]]) -> None:
    from probe.data.hub_tasks import read_hub_split
    from probe.data.tasks import get_task

    assert read_hub_split(get_task("udpos"), "fr", "test").records[0].tags == ("INTJ",)
    read_hub_split(get_task("ner"), "tsn", "dev")
    assert read_hub_split(get_task("pawsx"), "ko", "dev").records[0].label == "1"
    pair = read_hub_split(get_task("tatoeba"), "tel", "test").records[0]
    assert (pair.text_a, pair.text_b, pair.label) == ("a", "b", None)
    assert loads == [("google/xtreme", "udpos.French", "test"),
                     ("masakhane/masakhaner2", "tsn", "validation"),
                     ("google/xtreme", "PAWS-X.ko", "validation"),
                     ("google/xtreme", "tatoeba.tel", "validation")]  # fmt: skip
    with pytest.raises(ProbeError, match="unknown split 'dev'"):
        read_hub_split(get_task("tatoeba"), "deu", "dev")  # Tatoeba has a test set only


def test_xnli_keeps_one_languages_rows_and_names_it(loads: list[tuple[str, str, str]]) -> None:
    from probe.data.hub_tasks import read_hub_split
    from probe.data.tasks import get_task

    split = read_hub_split(get_task("xnli"), "de", "dev")
    assert [(p.text_a, p.label) for p in split.records] == [("a", "neutral"),
                                                            ("c", "contradiction")]  # fmt: skip
    assert split.source.endswith("[language=de]")
    with pytest.raises(ProbeError, match="no rows for language 'ar'"):
        read_hub_split(get_task("xnli"), "ar", "dev")


def test_ud_tasks_read_their_treebanks_by_the_documented_rule(
    loads: list[tuple[str, str, str]],
) -> None:
    from probe.data.hub_tasks import HUB_UD_DEFAULTS, hub_languages, hub_treebanks, read_hub_split
    from probe.data.tasks import get_task

    pos, gsd, pud = get_task("pos"), get_task("pos-gsd"), get_task("pos-pud")
    assert hub_treebanks(pos, "en") == ("en_ewt",) and hub_treebanks(pos, "hu") == ("hu_szeged",)
    assert hub_treebanks(gsd, "ko") == ("ko_gsd",) and hub_treebanks(pud, "en") == ("en_pud",)
    assert "th" not in hub_languages(pos) and "th" in hub_languages(pud)  # th: PUD only
    for task in (pos, gsd, pud, get_task("pos-gum")):  # every language has one default
        assert all(hub_treebanks(task, lang) for lang in hub_languages(task))
    assert all(hub_treebanks(pos, lang) == (tb,) for lang, tb in HUB_UD_DEFAULTS.items())
    assert hub_treebanks(pos, "en", ("en_ewt+en_gum", "cs_pdt")) == ("en_ewt", "en_gum")
    with pytest.raises(ProbeError, match=r"--treebank en_pud: .*'en' has: .*en_ewt"):
        hub_treebanks(pos, "en", ("en_pud",))
    both = read_hub_split(pos, "en", "dev", ("en_ewt+en_gum",))
    assert [r.sent_id for r in both.records] == ["en_ewt-1", "en_gum-1"]
    assert both.records[0].tags == ("PRON", "VERB")
    assert both.source.count("hub:universal-dependencies/universal_dependencies/") == 2
    assert loads[-2:] == [(hub_ud := "universal-dependencies/universal_dependencies", "en_ewt",
                           "validation"), (hub_ud, "en_gum", "validation")]  # fmt: skip


def test_hub_languages_are_what_all_and_the_language_check_use() -> None:
    from probe.data.discovery import check_language, languages_for
    from probe.data.hub_tasks import hub_languages
    from probe.data.tasks import get_task

    ner = get_task("ner")
    assert languages_for(ner, None) == hub_languages(ner) and len(hub_languages(ner)) == 20
    check_language(ner, "tsn", None)
    with pytest.raises(ProbeError, match=r"no language 'xx' on the hub; its languages: bam"):
        check_language(ner, "xx", None)


def test_a_task_without_a_hub_source_asks_for_a_data_directory() -> None:
    import dataclasses

    from probe.data.hub_tasks import read_hub_split
    from probe.data.tasks import get_task

    mine = dataclasses.replace(get_task("panx"), name="my-ner")
    with pytest.raises(ProbeError, match=r"task 'my-ner' has no hub source.*--data-dir"):
        read_hub_split(mine, "en", "train")


def test_offline_without_the_dataset_in_the_hf_cache_fails_in_one_line(tmp_path: Path) -> None:
    """The real `datasets` call, offline, on an empty HF cache: one line with the fix. In a
    fresh process: the HF libraries read the offline flags once, when first imported."""
    import os
    import subprocess
    import sys

    from tests.conftest import REPO

    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_HOME": str(tmp_path / "hf")}  # fmt: skip
    code = (
        "from probe.data.sources import hub\n"
        "from probe.errors import ProbeError\n"
        "hub.hub_reachable = lambda: 1 / 0  # offline: no connection is tried\n"
        "try:\n    hub.load_udpos('en', 'train')\n"
        "except ProbeError as err:\n    print(err)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)  # fmt: skip
    assert done.returncode == 0, done.stderr
    message = done.stdout.strip()
    assert "\n" not in message
    assert "udpos.English" in message and "offline mode" in message and "--data-dir" in message
