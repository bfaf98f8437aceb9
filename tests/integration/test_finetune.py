"""End-to-end fine-tuning on the tiny random BERT: the loss falls, outputs land, seeds vary
training only, scores carry bootstrap intervals; sentence pairs (pawsx, xnli) end to end with
the tokenizer's pair template, premise-group hold-outs and grid-named rows."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from probe.errors import ProbeError
from probe.experiments import finetune as finetune_module
from probe.experiments.base import RunOptions, RunResult
from probe.experiments.finetune import FinetuneConfig, FinetuneExperiment
from probe.results.rows import Row
from tests.helpers import SENTENCES, make_ud

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(tmp_path: Path, tiny_bert: Path, **kw: object) -> FinetuneConfig:
    base: dict[str, object] = dict(
        model=str(tiny_bert), task="pos", langs=("en", "de"),
        data_dir=make_ud(tmp_path / "data", SENTENCES * 8), cache_root=tmp_path / "cache",
        epochs=10, batch_size=4, max_steps=30, lr=1e-3, head_lr=1e-2, warmup=0.0, device="cpu",
    )  # fmt: skip
    base.update(kw)
    return FinetuneConfig(**base)  # type: ignore[arg-type]


def run_finetune(config: FinetuneConfig, results: Path) -> RunResult:
    return FinetuneExperiment(config, RunOptions(results, progress=False)).run()


@pytest.mark.parametrize("fuse_layer", [None, 1])
def test_finetune_loss_falls_and_writes_results(
    tmp_path: Path, tiny_bert: Path, fuse_layer: int | None
) -> None:
    result = run_finetune(_config(tmp_path, tiny_bert, fuse_layer=fuse_layer), tmp_path / "results")
    losses = result.extras["losses"]
    assert len(losses) == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])

    layer = "last" if fuse_layer is None else "1,2"
    assert result.directory.name.startswith(f"finetune-{'last' if fuse_layer is None else 1}-en-")
    assert result.directory.parent.name == tiny_bert.name
    for name in ("results.csv", "results.json", "settings.json", "summary.txt"):
        assert (result.directory / name).is_file()
    got = {(r.layer, r.lang, r.metric): r.value for r in result.rows}
    for lang in ("en", "de"):
        assert 0.0 <= got[(layer, lang, "accuracy")] <= 1.0
        assert got[(layer, lang, "truncated_words")] == 0
    assert ("finetune", layer) == (result.rows[0].head, result.rows[0].layer)
    assert (layer, "en", "train_loss") in got
    assert (layer, "targets", "accuracy") in got
    assert result.rows.values("layers") == [(2,) if fuse_layer is None else (1, 2)]
    targets = result.rows.one(group="targets", metric="accuracy", seed=None)
    assert targets == result.rows.one(group="targets", metric="accuracy", seed=0)  # one seed
    # The score's interval over the evaluation sentences brackets it.
    for lang in ("en", "de", "targets"):
        (mean,) = result.rows.filter(lang=lang, metric="accuracy", seed=None)
        assert mean.ci_low is not None and mean.ci_high is not None
        assert mean.ci_low <= mean.value <= mean.ci_high
        assert mean.ci_low < mean.ci_high or mean.value in (0.0, 1.0)  # all right: no spread
    assert not result.rows.filter(metric="accuracy_sd")  # no sd from one seed
    assert result.rows.values("subset", metric=lambda m: m.startswith("dev_")) == ["dev"]
    settings = json.loads((result.directory / "settings.json").read_text())
    assert settings["fuse_layer"] == fuse_layer and settings["steps"] == 30
    assert "accuracy x100" in result.summary and "de" in result.summary
    assert "95% CI" in result.summary and "seed 0" in result.summary


def test_truncated_words_predicted_as_prior(tmp_path: Path, tiny_bert: Path) -> None:
    # max_length 6 leaves 4 subwords per sentence: later words are counted and still scored.
    cfg = _config(tmp_path, tiny_bert, max_length=6, max_steps=2)
    result = run_finetune(cfg, tmp_path / "results")
    got = {(r.lang, r.metric): r.value for r in result.rows}
    assert got[("en", "truncated_words")] > 0
    assert 0.0 <= got[("en", "accuracy")] <= 1.0


def test_parallel_task_rejected(tmp_path: Path) -> None:
    with pytest.raises(ProbeError, match="word or pair-level tasks.*no labels"):
        run_finetune(FinetuneConfig(model="minilm", task="tatoeba", data_dir=tmp_path), tmp_path)


def test_fuse_layer_out_of_range(tmp_path: Path, tiny_bert: Path) -> None:
    with pytest.raises(ProbeError, match="outside 0..2"):
        run_finetune(_config(tmp_path, tiny_bert, fuse_layer=5), tmp_path / "results")


def test_finetune_resumes_after_a_crash_without_training_again(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The run is one job: killed after it (here: while writing the summary), the rerun loads
    the job's rows from the journal instead of fine-tuning again, and writes the same files."""
    config = _config(tmp_path, tiny_bert, max_steps=6)
    clean = run_finetune(config, tmp_path / "clean")
    real_job, real_table = finetune_module.run_finetune_job, finetune_module.finetune_table
    ran: list[str] = []

    def counted(job: finetune_module._FinetuneJob) -> list[Row]:
        ran.append(job.task)
        return real_job(job)

    def killed(*args: object, **kwargs: object) -> str:
        raise KeyboardInterrupt

    monkeypatch.setattr(finetune_module, "run_finetune_job", counted)
    monkeypatch.setattr(finetune_module, "finetune_table", killed)
    with pytest.raises(KeyboardInterrupt):
        run_finetune(config, tmp_path / "res")
    assert ran == ["pos"]
    jobs = next((tmp_path / "res").glob("pos/*/finetune-*/jobs"))
    assert sorted(p.name for p in jobs.iterdir()) == ["finetune-seed-0.json"]

    monkeypatch.setattr(finetune_module, "finetune_table", real_table)
    resumed = run_finetune(config, tmp_path / "res")
    assert ran == ["pos"]  # not trained again
    assert not jobs.exists()
    assert list(resumed.rows) == list(clean.rows)
    assert resumed.extras["losses"] == clean.extras["losses"]
    assert resumed.summary == clean.summary
    for name in ("results.csv", "summary.txt"):
        assert (resumed.directory / name).read_text() == (clean.directory / name).read_text()


def test_seeds_vary_training_only_and_average(tmp_path: Path, tiny_bert: Path) -> None:
    """--seeds 0,1: one fine-tuning per seed on the same data (drawn with the first seed); the
    seed-0 run equals a run of seed 0 alone, seed 1 trains differently, and the table's
    numbers are the means with an sd and an interval over sentences and seeds."""
    one = run_finetune(_config(tmp_path, tiny_bert, max_steps=6), tmp_path / "one")
    two = run_finetune(_config(tmp_path, tiny_bert, max_steps=6, seeds=(0, 1)), tmp_path / "two")

    def scores(result: RunResult, seed: int | None) -> dict[str, float]:
        return {r.lang: r.value for r in result.rows.filter(metric="accuracy", seed=seed)}

    assert scores(two, 0) == scores(one, 0)
    assert two.extras["seed_losses"][0] == one.extras["losses"]
    assert two.extras["seed_losses"][1] != one.extras["losses"]  # init and order changed
    assert two.settings["train_sentences"] == one.settings["train_sentences"]
    for lang, value in scores(two, None).items():
        assert value == pytest.approx((scores(two, 0)[lang] + scores(two, 1)[lang]) / 2)
        sd = two.rows.one(metric="accuracy_sd", lang=lang, stat="sd")
        assert sd == pytest.approx(abs(scores(two, 0)[lang] - scores(two, 1)[lang]) / np.sqrt(2))
        (mean,) = two.rows.filter(metric="accuracy", lang=lang, seed=None)
        assert mean.ci_low is not None and mean.ci_high is not None
        assert mean.ci_low <= value <= mean.ci_high
    assert "± sd" in two.summary and "mean of seeds [0, 1]" in two.summary
    assert sorted(two.settings["seeds"]) == [0, 1]


def test_seeds_cli_validated(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from probe.cli import cli

    out = CliRunner().invoke(cli, ["finetune", "--task", "pos", "--model", "minilm",
                                   "--seeds", "0,0"])  # fmt: skip
    assert out.exit_code != 0 and "lists a seed twice" in out.output


# --- sentence pairs --------------------------------------------------------------------------

# Which class a pair belongs to is the first word of its second text: a signal the [CLS] row
# can only read through attention across the pair, so a falling loss means the model learnt it.
CUES = {"pawsx": ("cat", "dog"), "xnli": ("cat", "dog", "house")}
FILLER = "the a big small red green old new good bad tree car".split()


def _pairs(task: str, n: int, seed: int) -> list[tuple[str, str, int]]:
    """(a, b, class id) rows; XNLI-like: each premise with one hypothesis per class."""
    rng = np.random.default_rng(seed)
    cues = CUES[task]
    rows = []
    while len(rows) < n:
        premise = " ".join(rng.choice(FILLER, size=5))
        for label in range(len(cues)) if task == "xnli" else [int(rng.integers(len(cues)))]:
            rows.append((premise, f"{cues[label]} {' '.join(rng.choice(FILLER, size=3))}", label))
    return rows[:n]


def make_pair_data(root: Path) -> Path:
    """XTREME-layout PAWS-X (train on en dev; en test unlabelled; labelled de test as an HF
    dump) and XNLI (train on en test, whose premises repeat; evaluate en and de dev)."""
    names = {"pawsx": ("0", "1"), "xnli": ("entailment", "neutral", "contradiction")}

    def write(rel: str, rows: list[tuple[str, str, int]], task: str, form: str) -> None:
        path = root / "xtreme" / task / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        labels = names[task]
        if form == "hf":
            text = "id\tsentence1\tsentence2\tlabel\n" + "".join(
                f"{i}\t{a}\t{b}\t{labels[y]}\n" for i, (a, b, y) in enumerate(rows)
            )
        elif form == "unlabelled":
            text = "".join(f"{a}\t{b}\n" for a, b, _ in rows)
        else:
            text = "".join(f"{a}\t{b}\t{labels[y]}\n" for a, b, y in rows)
        path.write_text(text, encoding="utf-8")

    write("en/dev-en.tsv", _pairs("pawsx", 96, 0), "pawsx", "labelled")
    write("en/test-en.tsv", _pairs("pawsx", 40, 1), "pawsx", "unlabelled")
    write("_hf_labeled/test-de.tsv", _pairs("pawsx", 40, 2), "pawsx", "hf")
    write("de/test-de.tsv", _pairs("pawsx", 40, 2), "pawsx", "unlabelled")  # as XTREME ships it
    write("en/test-en.tsv", _pairs("xnli", 96, 3), "xnli", "labelled")
    write("en/dev-en.tsv", _pairs("xnli", 30, 4), "xnli", "labelled")
    write("de/dev-de.tsv", _pairs("xnli", 30, 5), "xnli", "labelled")
    return root


def _pair_config(tmp_path: Path, tiny_bert: Path, **kw: object) -> FinetuneConfig:
    base: dict[str, object] = dict(
        model=str(tiny_bert), task="pawsx", langs=("all",),
        data_dir=make_pair_data(tmp_path / "pairs"), cache_root=tmp_path / "cache",
        batch_size=8, max_steps=40, lr=1e-3, head_lr=1e-2, warmup=0.0, device="cpu",
    )  # fmt: skip
    base.update(kw)
    return FinetuneConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("fuse_layer", [None, 1])
def test_finetune_pair_task_end_to_end(
    tmp_path: Path, tiny_bert: Path, fuse_layer: int | None
) -> None:
    """PAWS-X on the tiny BERT: the loss falls, the rows are named as grid names its systems
    (baseline "linear" (L, L), D_k "dlfa" (k, L)), the unlabelled en test is left unscored
    and said so, de is scored with an interval, and the budget is in settings and summary."""
    cfg = _pair_config(tmp_path, tiny_bert, fuse_layer=fuse_layer, max_eval_sentences=30)
    result = run_finetune(cfg, tmp_path / "results")
    losses = result.extras["losses"]
    assert len(losses) == 40
    assert np.mean(losses[-8:]) < 0.6 * np.mean(losses[:8])

    head, layers = ("linear", (2, 2)) if fuse_layer is None else ("dlfa", (1, 2))
    assert result.rows.values("head") == [head]
    assert result.rows.values("layers") == [layers]
    assert result.rows.values("layer") == [",".join(map(str, layers))]
    scored = result.rows.filter(metric="accuracy", seed=None, group="")
    assert [r.lang for r in scored] == ["de"]  # en's test labels are hidden
    (de,) = scored
    assert de.ci_low is not None and de.ci_high is not None
    assert de.ci_low <= de.value <= de.ci_high
    assert result.rows.one(metric="eval_pairs", lang="de", seed=None) == 30
    assert result.rows.one(group="targets", metric="accuracy", seed=None) == de.value
    dev = result.rows.one(metric="dev_accuracy", lang="en", seed=None)
    assert dev >= 0.8  # the cue is learnt on the source

    settings = result.settings
    assert settings["epochs"] == 5  # XTREME's for pair tasks
    assert settings["head"] == head and settings["layer"] == ",".join(map(str, layers))
    assert settings["not_scored"] == {"en": "test labels hidden"}
    assert settings["max_eval_sentences"] == 30 and settings["pair_pool"] == "first"
    assert settings["train_pairs"] + settings["dev_pairs"] == 96
    assert settings["dev_split"].endswith("by premise group")
    assert "budget: max pairs scored per language 30, max steps 40" in result.summary
    assert "en: test labels hidden, not scored" in result.summary
    assert "source dev accuracy of the kept epoch" in result.summary
    assert f"({head} {','.join(map(str, layers))}, [CLS] row)" in result.summary


def test_pair_encoding_is_the_tokenizers_pair_template(tiny_bert: Path) -> None:
    """`[CLS] a [SEP] b [SEP]` with segment ids 0 then 1, exactly as `tokenizer(a, b)` makes
    them; a pair past max_length is cut (longest first) and marked truncated."""
    import torch
    from transformers import AutoTokenizer

    from probe.data.sources.records import TextPair
    from probe.train.finetune_pairs import PairTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    tok = PairTokenizer(tokenizer, 128, ("0", "1"))
    pair = TextPair("p1", "the dog ran", "a zebra", "1")
    (enc,) = tok.encode([pair])
    direct = tokenizer("the dog ran", "a zebra", truncation=True, max_length=128)
    assert enc.ids.tolist() == direct["input_ids"]
    assert tokenizer.convert_ids_to_tokens(enc.ids.tolist())[:5] == [
        "[CLS]", "the", "dog", "ran", "[SEP]"]  # fmt: skip
    assert enc.types is not None and enc.types.tolist() == direct["token_type_ids"]
    assert enc.types.tolist() == [0] * 5 + [1] * (len(enc.ids) - 5)
    assert enc.label == 1 and not enc.truncated
    ids, mask, types, labels = tok.collate([enc, *tok.encode([TextPair("p2", "a", "b", "0")])],
                                           torch.device("cpu"))  # fmt: skip
    assert ids.shape == mask.shape == types.shape and labels.tolist() == [1, 0]
    assert mask[1].sum() == 5 and types[1].tolist()[:5] == [0, 0, 0, 1, 1]

    short = PairTokenizer(tokenizer, 8, ("0", "1"))
    (cut,) = short.encode([pair])
    assert cut.truncated and len(cut.ids) == 8
    assert cut.ids.tolist() == tokenizer("the dog ran", "a zebra", truncation=True,
                                         max_length=8)["input_ids"]  # fmt: skip
    with pytest.raises(ProbeError, match="no label"):
        tok.encode([TextPair("p3", "a", "b", None)])


def test_pair_model_reads_the_cls_row_and_dlfa_at_the_last_layer_is_the_baseline(
    tiny_bert: Path,
) -> None:
    """The baseline classifies the last layer's first row; DLFA fusing the last layer with
    itself is the same function (the gate cannot change Z = H), so D_k differs from the
    baseline only by what layer k adds."""
    import torch
    from transformers import AutoModel

    from probe.heads.dlfa import DLFAHead
    from probe.train.finetune_pairs import PairModel, pair_head

    encoder = AutoModel.from_pretrained(tiny_bert).eval()
    torch.manual_seed(0)
    base = PairModel(encoder, pair_head(64, 3, None, "first", 4), None, "first").eval()
    dlfa = PairModel(encoder, pair_head(64, 3, 2, "first", 4), 2, "first").eval()
    assert isinstance(dlfa.head, DLFAHead) and dlfa.head.level == "sentence"
    dlfa.head.classifier.load_state_dict(base.head[1].classifier.state_dict())
    ids = torch.tensor([[2, 10, 11, 3, 12, 3, 0], [2, 13, 3, 14, 15, 16, 3]])
    mask = (ids != 0).long()
    types = torch.tensor([[0, 0, 0, 0, 1, 1, 0], [0, 0, 0, 1, 1, 1, 1]])
    with torch.no_grad():
        cls = encoder(input_ids=ids, attention_mask=mask, token_type_ids=types).last_hidden_state
        expected = base.head[1](cls[:, 0])
        assert torch.allclose(base(ids, mask, types), expected, atol=1e-6)
        assert torch.allclose(dlfa(ids, mask, types), expected, atol=1e-6)
        # The segment ids reach the encoder: other ids, other logits.
        assert not torch.allclose(base(ids, mask, torch.zeros_like(types)), expected)
    with pytest.raises(ProbeError, match="sentence pooling 'max'"):
        PairModel(encoder, pair_head(64, 3, None, "first", 4), None, "max")


def test_pair_hold_out_keeps_premises_on_one_side(tmp_path: Path) -> None:
    """XNLI has no source dev split: whole premise groups are held out (each premise carries
    three hypotheses), so no premise is on both sides of early stopping; the training cap
    counts pairs."""
    from probe.data.tasks import get_task
    from probe.train.finetune_pairs import source_pairs

    data = make_pair_data(tmp_path / "pairs")
    cfg = FinetuneConfig(model="m", task="xnli", dev_fraction=0.25)
    train, dev = source_pairs(get_task("xnli"), data, "en", cfg)
    assert len(train) + len(dev) == 96 and len(dev) >= 24
    assert not {p.text_a for p in train} & {p.text_a for p in dev}
    capped, _ = source_pairs(get_task("xnli"), data, "en", replace(cfg, max_train_sentences=40))
    assert len(capped) + len(_) == 40


def test_finetune_xnli_scores_the_source_and_targets(tmp_path: Path, tiny_bert: Path) -> None:
    """XNLI: three classes, the source scored on its own dev split, mean pooling chosen."""
    cfg = _pair_config(tmp_path, tiny_bert, task="xnli", max_steps=6, epochs=2,
                       pair_pool="mean")  # fmt: skip
    result = run_finetune(cfg, tmp_path / "results")
    got = {r.lang: r.value for r in result.rows.filter(metric="accuracy", seed=None, group="")}
    assert sorted(got) == ["de", "en"] and all(0.0 <= v <= 1.0 for v in got.values())
    assert result.rows.one(group="targets", metric="accuracy", seed=None) == got["de"]
    assert result.settings["epochs"] == 2 and "not_scored" in result.settings
    assert result.settings["not_scored"] == {}
    assert "mean over the pair" in result.summary


def test_pair_task_without_a_labelled_language_refused_before_training(
    tmp_path: Path, tiny_bert: Path
) -> None:
    cfg = _pair_config(tmp_path, tiny_bert, langs=("en",))
    with pytest.raises(ProbeError, match="no language of 'pawsx' among en has a labelled test"):
        run_finetune(cfg, tmp_path / "results")


def test_finetune_pair_cli(tmp_path: Path, tiny_bert: Path) -> None:
    """`probe finetune --task pawsx` with the budgets a CPU run uses."""
    from click.testing import CliRunner

    from probe.cli import cli

    data = make_pair_data(tmp_path / "pairs")
    out = CliRunner().invoke(cli, [
        "finetune", "--task", "pawsx", "--model", str(tiny_bert), "--data-dir", str(data),
        "--results-dir", str(tmp_path / "results"), "--cache-dir", str(tmp_path / "cache"),
        "--device", "cpu", "--fuse-layer", "1", "--max-steps", "3", "--batch-size", "8",
        "--max-train-sentences", "60", "--max-eval-sentences", "20",
    ])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert "pawsx: accuracy x100, encoder fine-tuned end to end (dlfa 1,2, [CLS] row)" in out.output
    assert "budget: max pairs trained 60, max pairs scored per language 20, max steps 3" in (
        out.output)  # fmt: skip
