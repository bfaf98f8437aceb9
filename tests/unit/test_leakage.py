"""The leakage guard's core: normalised fingerprints, parallel ids, the rule and its message."""

from __future__ import annotations

import logging

import pytest

from probe.data.overlap import SentenceSet, fingerprint, normalise, overlap, parallel_id
from probe.data.sources.records import TaggedSentence, TextPair
from probe.experiments.leakage import (
    MAX_SHARE,
    MIN_CHARS,
    LeakageError,
    LeakageReport,
    Sentences,
    SplitRef,
    SplitUse,
    check_leakage,
)

LONG = [
    "The committee approved the new budget after a long debate on Monday .",
    "Scientists found that the river had been polluted for more than ten years .",
    "She told reporters that the company would open three factories next spring .",
    "Local farmers say the drought has destroyed most of this season 's harvest .",
]
FILLER = [f"Filler sentence number {i} says nothing in particular about topic {i} ." for i in
          range(200)]  # fmt: skip
TRAIN = SplitRef("pos", "en", "train")
TEST = SplitRef("pos", "en", "test")


def _words(texts: list[str], ids: list[str] | None = None) -> SentenceSet:
    sents = [TaggedSentence(ids[i] if ids else f"s{i}", tuple(t.split()), ("X",) * len(t.split()))
             for i, t in enumerate(texts)]  # fmt: skip
    return SentenceSet.from_records(sents)


class _Splits:
    """An in-memory ReadSentences that counts how often each split is read."""

    def __init__(self, splits: dict[SplitRef, SentenceSet], unlabelled: tuple[SplitRef, ...] = ()
                 ) -> None:  # fmt: skip
        self.splits, self.unlabelled = splits, unlabelled
        self.count: dict[SplitRef, int] = {}

    def __call__(self, ref: SplitRef) -> Sentences:
        self.count[ref] = self.count.get(ref, 0) + 1
        return Sentences(self.splits[ref], ref not in self.unlabelled)


def test_normalisation_makes_tokenised_raw_and_recased_copies_equal() -> None:
    tokenised = 'He said : " I do n\'t know . "'
    raw = 'he said: "I don\'t know."'
    assert normalise(tokenised) == normalise(raw) == 'hesaid:"idon\'tknow."'
    # NFKC: full-width letters and the ligature are their plain forms; casefold: ß = ss.
    assert fingerprint("ＳＴＲＡßE ﬁx") == fingerprint("strasse fix")
    assert fingerprint("the dog ran") != fingerprint("the dog sat")


def test_only_known_parallel_schemes_give_parallel_ids() -> None:
    assert parallel_id("n01001011") == "pud:n01001011"
    assert parallel_id("w05001023") == "pud:w05001023"
    # Treebanks number their own sentences: equal ids across treebanks mean nothing.
    assert parallel_id("dev-s1") is None
    assert parallel_id("test-en.tsv:12") is None
    assert parallel_id("n0100101") is None


def test_planted_exact_and_retokenised_recased_copies_are_found() -> None:
    planted = [LONG[0], LONG[1].upper(), LONG[2].replace(" '", "'").replace(" .", "."), LONG[3]]
    train = _words(FILLER + LONG)
    others = [f"An unrelated test sentence {i} about other things ." for i in range(20)]
    test = _words(others + planted)
    found = overlap(train, test, MIN_CHARS)
    assert (found.copies, found.long_copies, found.translations) == (4, 4, 0)
    report = _guard({TRAIN: train, TEST: test}, allow=True)
    assert report.overlapping == 4 and [str(e.split) for e in report.leaking] == ["pos/en/test"]


def test_planted_translations_are_found_by_parallel_id() -> None:
    ids = [f"n0100{d}0{i:02d}" for d in range(1, 3) for i in range(1, 3)]
    english = _words(FILLER + LONG, [f"f{i}" for i in range(len(FILLER))] + ids)
    german = _words([
        "Der Ausschuss billigte den neuen Haushalt nach einer langen Debatte am Montag .",
        "Forscher fanden heraus , dass der Fluss seit mehr als zehn Jahren verschmutzt war .",
        "Ein ganz anderer Satz ohne Gegenstück im Training , lang genug zum Zählen .",
    ], [ids[0], ids[1], "n09009009"])  # fmt: skip
    found = overlap(english, german, MIN_CHARS)
    assert (found.copies, found.translations, found.long_translations) == (0, 2, 2)
    de_test = SplitRef("pos-pud", "de", "test")
    with pytest.raises(LeakageError, match=r"pos-pud/de/test 2 of 3 \(66.7%: 0 copies, 2 "
                       r"translations\) in pos/en/train 2"):  # fmt: skip
        _guard({TRAIN: english, de_test: german}, evals=(de_test,))


def test_equal_non_parallel_ids_are_not_translations() -> None:
    train = _words(LONG, ["dev-s1", "dev-s2", "dev-s3", "dev-s4"])
    other = _words([s[::-1] for s in LONG], ["dev-s1", "dev-s2", "dev-s3", "dev-s4"])
    assert overlap(train, other, MIN_CHARS).translations == 0


def test_short_natural_duplicates_do_not_stop_a_run() -> None:
    """ "Thank you ." recurs in any corpus: copies under MIN_CHARS are counted, not held
    against the run, and long copies up to MAX_SHARE of the split are tolerated."""
    train = _words(FILLER + ["Thank you .", "No .", LONG[0]])
    n_test = 300  # one long copy = 0.33% < 1%
    test = _words(["Thank you .", "No .", LONG[0]]
                  + [f"Test sentence {i} is unique and long enough to count ." for i in
                     range(n_test - 3)])  # fmt: skip
    report = _guard({TRAIN: train, TEST: test})
    total = report.evals[0].total
    assert (total.copies, total.long_copies) == (3, 1) and 1 / n_test < MAX_SHARE
    assert report.leaking == () and report.overlapping == 1
    found = report.settings()["found"]["pos/en/test"]
    assert found["copies"] == 3 and found["long_copies"] == 1


def test_stop_message_is_one_line_with_the_counts() -> None:
    train = _words(FILLER + LONG)
    test = _words(LONG + [f"Test sentence {i} is unique and long enough to count ." for i in
                          range(16)])  # fmt: skip
    dev = SplitRef("pos", "en", "dev")
    with pytest.raises(LeakageError) as err:
        _guard({TRAIN: train, dev: _words(LONG[:1]), TEST: test}, trains=(TRAIN, dev))
    message = str(err.value)
    assert "\n" not in message
    assert "pos/en/test 4 of 20 (20.0%: 4 copies, 0 translations) in pos/en/train 4, " \
           "pos/en/dev 1" in message  # fmt: skip
    assert "--allow-overlap" in message


def test_allow_overlap_runs_records_and_warns(caplog: pytest.LogCaptureFixture) -> None:
    train, test = _words(FILLER + LONG), _words(LONG)
    with caplog.at_level(logging.WARNING, logger="probe.experiments.leakage"):
        report = _guard({TRAIN: train, TEST: test}, allow=True)
    settings = report.settings()
    assert settings["allowed"] is True and settings["overlapping"] == 4
    assert settings["leaking"] == ["pos/en/test"]
    assert settings["found"]["pos/en/test"]["by_train"]["pos/en/train"]["long_copies"] == 4
    assert "--allow-overlap" in caplog.text


def test_clean_run_records_zero() -> None:
    report = _guard({TRAIN: _words(FILLER), TEST: _words(LONG)})
    settings = report.settings()
    assert settings["overlapping"] == 0 and settings["leaking"] == [] and settings["found"] == {}
    assert settings["trains"] == ["pos/en/train"] and settings["evals"] == ["pos/en/test"]


def test_pairs_share_a_premise_or_a_hypothesis() -> None:
    premise = "The old man walked slowly down the hill towards the village church ."
    train = SentenceSet.from_records([TextPair("p1", premise, "A man walked .", "entailment")])
    test = SentenceSet.from_records([
        TextPair("q1", premise.lower(), "Nobody moved at all .", "contradiction"),
        TextPair("q2", "Something else entirely , long enough to be counted here .",
                 "A man walked .", "neutral"),
        TextPair("q3", "A completely different premise that nobody has seen before .",
                 "Another new hypothesis .", "neutral"),
    ])  # fmt: skip
    found = overlap(train, test, MIN_CHARS)
    # q1 shares the (long) premise, q2 only the short hypothesis.
    assert (found.copies, found.long_copies) == (2, 1)


def test_unlabelled_evaluation_splits_are_not_scored_so_not_checked() -> None:
    read = _Splits({TRAIN: _words(LONG), TEST: _words(LONG)}, unlabelled=(TEST,))
    report = check_leakage(SplitUse((TRAIN,), (TEST,)), read, allow=False)
    assert report.evals == () and report.overlapping == 0


def test_a_split_trained_on_and_scored_leaks_whatever_its_texts() -> None:
    short = _words(["No .", "Yes ."])
    with pytest.raises(LeakageError, match="pos/en/test is trained on and scored"):
        _guard({TEST: short}, trains=(TEST,))


def test_each_split_is_read_once() -> None:
    dev = SplitRef("pos", "en", "dev")
    de = SplitRef("pos", "de", "test")
    read = _Splits({TRAIN: _words(FILLER), dev: _words(FILLER[:3]), TEST: _words(LONG),
                    de: _words(LONG[:2])})  # fmt: skip
    use = SplitUse((TRAIN, dev), (TEST, de)) + SplitUse((TRAIN,), (TEST,))
    check_leakage(use, read, allow=False)
    assert read.count == {TRAIN: 1, dev: 1, TEST: 1, de: 1}


def _guard(
    splits: dict[SplitRef, SentenceSet],
    trains: tuple[SplitRef, ...] = (TRAIN,),
    evals: tuple[SplitRef, ...] = (TEST,),
    allow: bool = False,
) -> LeakageReport:
    return check_leakage(SplitUse(trains, evals), _Splits(splits), allow=allow)
