"""The CoNLL-U reader's trees and FEATS, and the UD tasks built on them (deprel, morph-*)."""

from __future__ import annotations

from pathlib import Path

import pytest

from probe.data.catalogue import NO_FEATURE, OTHER_VALUE
from probe.data.sources.conllu import feature_value, parse_feats, read_conllu
from probe.data.tasks import get_task
from probe.errors import DataError

HEADER = "# sent_id = a\n"
SENTENCE = (
    "1\tWho\twho\tPRON\t_\tPronType=Int,Rel\t2\tnsubj\t_\t_\n"
    "2-3\tsaw'em\t_\t_\t_\t_\t_\t_\t_\t_\n"
    "2\tsaw\tsee\tVERB\t_\tMood=Ind|Number=Sing|Person=3|Tense=Past|VerbForm=Fin\t0\troot\t_\t_\n"
    "3\tthem\tthey\tPRON\t_\tCase=Acc|Number=Plur|Person=3|PronType=Prs\t2\tobj\t2:obj\t_\n"
    "3.1\telided\t_\tVERB\t_\t_\t_\t_\t2:conj\t_\n"
    "4\t?\t?\tPUNCT\t_\t_\t2\tpunct\t_\t_\n"
)


def _write(tmp_path: Path, text: str, name: str = "x.conllu") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_reader_keeps_heads_relations_and_feats(tmp_path: Path) -> None:
    (sent,) = read_conllu(_write(tmp_path, HEADER + SENTENCE))
    assert sent.words == ("Who", "saw", "them", "?")  # multiword token and empty node skipped
    assert sent.heads == (2, 0, 2, 2)
    assert sent.deprels == ("nsubj", "root", "obj", "punct")  # DEPS (2:obj) ignored
    assert sent.feats[3] == "" and sent.has_tree


def test_feats_parsing_several_and_multi_valued() -> None:
    feats = parse_feats("Case=Acc|Number=Plur|PronType=Int,Rel")
    assert feats == {"Case": ("Acc",), "Number": ("Plur",), "PronType": ("Int", "Rel")}
    assert parse_feats("_") == {} and parse_feats("") == {}
    assert feature_value("Number=Plur|PronType=Int,Rel", "PronType") == "Int,Rel"
    assert feature_value("Number[psor]=Sing", "Number") is None  # a layered feature is its own
    assert feature_value("Number[psor]=Sing", "Number[psor]") == "Sing"


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("1\tx\tx\tNOUN\t_\tNumber\t0\troot\t_\t_\n", "FEATS"),
        ("1\tx\tx\tNOUN\t_\t_\t5\troot\t_\t_\n", "HEAD"),
        ("1\tx\tx\tNOUN\t_\t_\t1\troot\t_\t_\n", "HEAD"),
        ("1\tx\tx\tNOUN\t_\t_\t2\tdep\t_\t_\n2\ty\ty\tNOUN\t_\t_\t1\tdep\t_\t_\n", "cycle"),
        ("1\tx\tx\tNOUN\t_\t_\t0\t_\t_\t_\n", "DEPREL"),
    ],
)
def test_bad_trees_and_feats_fail_at_their_line(tmp_path: Path, line: str, message: str) -> None:
    with pytest.raises(DataError, match=message):
        read_conllu(_write(tmp_path, HEADER + line))


def test_a_file_without_trees_reads_for_pos_but_not_for_deprel(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + "1\tx\tx\tNOUN\t_\t_\t_\t_\t_\t_\n")
    (sent,) = read_conllu(path)
    assert not sent.has_tree and sent.heads == ()
    with pytest.raises(DataError, match="no dependency tree"):
        get_task("deprel").read((path,))


def test_deprel_and_morph_labels(tmp_path: Path) -> None:
    path = _write(tmp_path, HEADER + SENTENCE.replace("\tobj\t", "\tobj:x\t"))
    (rels,) = get_task("deprel").read((path,))
    assert rels.tags == ("nsubj", "root", "obj", "punct")  # subtype cut
    assert rels.heads == (2, 0, 2, 2)
    (number,) = get_task("morph-Number").read((path,))
    assert number.tags == (NO_FEATURE, "Sing", "Plur", NO_FEATURE)
    (pron,) = get_task("morph-PronType").read((path,))
    assert pron.tags == (OTHER_VALUE, NO_FEATURE, "Prs", NO_FEATURE)  # Int,Rel: two values
    task = get_task("morph-Number")
    assert set(number.tags) <= set(task.labels)
    assert task.skip_language is not None and task.skip_language([number]) is None
    (case,) = get_task("morph-Definite").read((path,))
    assert get_task("morph-Definite").skip_language([case]) == (  # type: ignore[misc]
        "its treebank does not annotate Definite (no word carries it)"
    )


def test_every_morph_task_is_a_ud_word_task() -> None:
    for name in ("morph-Number", "morph-Case", "morph-Gender", "morph-Tense", "morph-Person",
                 "morph-Mood", "morph-VerbForm", "morph-Definite"):  # fmt: skip
        task = get_task(name)
        assert task.level == "word" and task.treebanks is not None
        assert task.labels[0] == NO_FEATURE and task.labels[-1] == OTHER_VALUE
    assert get_task("deprel-arc").probe_level == "pair" and get_task("deprel").probe_level == "word"


def test_real_treebanks_read_with_trees(shared_data: Path) -> None:
    path = shared_data / "ud" / "UD_Turkish-IMST" / "tr_imst-ud-test.conllu"
    sents = read_conllu(path)
    assert all(s.has_tree and len(s.heads) == len(s.words) for s in sents)
    assert all(s.heads.count(0) >= 1 for s in sents)


def test_tree_and_feature_tasks_refuse_the_hub() -> None:
    from probe.data.hub_tasks import read_hub_split
    from probe.errors import ProbeError

    for name in ("deprel", "deprel-arc", "morph-Case"):
        with pytest.raises(ProbeError, match="pass --data-dir"):
            read_hub_split(get_task(name), "en", "test")
