"""Cross-lingual maths against known answers, Tatoeba pooling against a direct forward pass,
and `probe map` end to end on a tiny random BERT (plus a real-MiniLM run, marked `real`)."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from transformers import AutoModel, AutoTokenizer

from probe.analysis.crosslingual.alignment import (
    NetConfig,
    fit_least_squares,
    fit_linear_net,
    fit_procrustes,
    heldout_alignment,
    split_pairs,
)
from probe.analysis.crosslingual.cka import linear_cka
from probe.analysis.crosslingual.correlation import correlate
from probe.analysis.crosslingual.retrieval import (
    centred_retrieval,
    retrieval_accuracy,
    retrieval_both_ways,
    xtreme_accuracy,
)
from probe.analysis.crosslingual.typology import (
    DISTANCE_KINDS,
    cosine_distance,
    language_distance,
    typology_vector,
    uriel_code,
)
from probe.errors import ProbeError
from tests.helpers import SENTENCES, TATOEBA, cache_fields, config, extract, make_tatoeba, make_ud

RNG = np.random.default_rng(0)


def random_rotation(d: int, rng: np.random.Generator) -> np.ndarray:
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    return q * np.sign(np.diag(r))  # a proper Haar-random orthogonal matrix


# --- retrieval -------------------------------------------------------------------------------


def test_retrieval_is_perfect_on_identical_embeddings() -> None:
    x = RNG.normal(size=(300, 32))
    assert retrieval_accuracy(x, x) == 1.0
    assert retrieval_both_ways(x, x.copy()) == {"xx2en": 1.0, "en2xx": 1.0, "mean": 1.0}
    # A language offset changes nothing once centred, a per-sentence scale nothing for cosine
    assert centred_retrieval(x + 50.0, x, seed=0) == {"xx2en": 1.0, "en2xx": 1.0, "mean": 1.0}
    assert retrieval_accuracy(x * RNG.uniform(0.5, 2.0, size=(300, 1)), x) == 1.0


def test_retrieval_on_shuffled_pairs_scores_only_the_fixed_points() -> None:
    """Shuffled rows: each query's nearest candidate is its own vector, now at the wrong row,
    so exactly the rows the permutation leaves in place count as hits (chance level)."""
    n = 500
    x = RNG.normal(size=(n, 32))
    perm = RNG.permutation(n)
    expected = float(np.mean(perm == np.arange(n)))
    assert retrieval_accuracy(x, x[perm]) == expected
    assert expected < 0.02
    # Independent embeddings: a hit rate near 1/n (binomial; 10+ hits out of 500 at p=1/500
    # has probability below 1e-7).
    assert retrieval_accuracy(x, RNG.normal(size=(n, 32))) < 10 / n


def test_centring_removes_a_shared_language_offset() -> None:
    """A large common offset per language hides the signal from raw cosine, not from centred."""
    x = RNG.normal(size=(200, 16))
    y = x + 0.3 * RNG.normal(size=(200, 16))
    offset = np.full(16, 40.0)
    assert centred_retrieval(x + offset, y - offset, seed=0)["mean"] > 0.95
    assert retrieval_accuracy(x + offset, y - offset) < 0.5


# --- CKA -------------------------------------------------------------------------------------


def test_cka_of_a_matrix_with_itself_is_one() -> None:
    x = RNG.normal(size=(100, 20))
    assert linear_cka(x, x) == pytest.approx(1.0, abs=1e-12)


def test_cka_is_invariant_to_orthogonal_transforms_and_scale_not_to_general_maps() -> None:
    x = RNG.normal(size=(200, 24))
    y = np.tanh(x @ RNG.normal(size=(24, 24)))  # some other representation of the same items
    q = random_rotation(24, RNG)
    base = linear_cka(x, y)
    assert linear_cka(x @ q, y) == pytest.approx(base, abs=1e-10)
    assert linear_cka(3.0 * x @ q, y @ random_rotation(24, RNG)) == pytest.approx(base, abs=1e-10)
    stretch = np.diag(np.linspace(0.1, 10, 24))
    assert abs(linear_cka(x @ stretch, y) - base) > 1e-3  # not invariant to any linear map


def test_cka_hand_computed_and_bounds() -> None:
    """n = 3, one feature each: linear CKA of 1-d features is the squared Pearson r."""
    x = np.array([[1.0], [2.0], [4.0]])
    y = np.array([[1.0], [3.0], [2.0]])
    # centred: x = (-4/3, -1/3, 5/3), y = (-1, 1, 0); <x,y> = 4/3 - 1/3 = 1; |x|² = 42/9; |y|² = 2
    assert linear_cka(x, y) == pytest.approx(1.0 / (42 / 9 * 2))
    assert 0.0 <= linear_cka(RNG.normal(size=(50, 5)), RNG.normal(size=(50, 7))) <= 1.0
    with pytest.raises(ValueError, match="constant"):
        linear_cka(np.ones((5, 3)), RNG.normal(size=(5, 3)))


# --- alignment -------------------------------------------------------------------------------


def test_procrustes_recovers_a_planted_rotation() -> None:
    q = random_rotation(16, RNG)
    x = RNG.normal(size=(100, 16))
    mapping = fit_procrustes(x, x @ q)
    np.testing.assert_allclose(mapping.weight, q, atol=1e-10)
    # With noise it still finds the rotation closely, and the map is exactly orthogonal.
    noisy = fit_procrustes(x, x @ q + 0.05 * RNG.normal(size=(100, 16)))
    np.testing.assert_allclose(noisy.weight.T @ noisy.weight, np.eye(16), atol=1e-10)
    assert np.abs(noisy.weight - q).max() < 0.05


def test_least_squares_recovers_a_planted_linear_map() -> None:
    w = RNG.normal(size=(12, 8))
    x = RNG.normal(size=(60, 12))
    np.testing.assert_allclose(fit_least_squares(x, x @ w).weight, w, atol=1e-10)
    ridge = fit_least_squares(x, x @ w, ridge=10.0).weight
    assert np.linalg.norm(ridge) < np.linalg.norm(w)  # ridge shrinks


def test_linear_net_learns_a_planted_map_by_gradient_descent() -> None:
    w = random_rotation(8, RNG)
    x = RNG.normal(size=(200, 8))
    y = x @ w + 0.5
    mapping = fit_linear_net(x, y, NetConfig(steps=2000, lr=2e-2, patience=100))
    assert np.abs(mapping(x) - y).max() < 0.05
    np.testing.assert_allclose(mapping.bias, 0.5, atol=0.05)


def test_heldout_alignment_fits_on_one_part_and_scores_the_other() -> None:
    """English = a rotation of X plus noise: the maps lift held-out retrieval from near chance
    to near perfect; the split is a seeded random half."""
    fit, test = split_pairs(10)
    assert len(fit) == len(test) == 5 and sorted([*fit, *test]) == list(range(10))
    assert (split_pairs(10)[0] == fit).all() and any(
        (split_pairs(10, seed=s)[0] != fit).any() for s in range(1, 5)
    )  # seeded: the same seed the same split, another seed another
    d, n = 16, 400
    x = RNG.normal(size=(n, d))
    eng = x @ random_rotation(d, RNG) + 0.1 * RNG.normal(size=(n, d))
    out = heldout_alignment(x, eng, net=NetConfig(steps=400, lr=1e-2))
    assert set(out) == {"none", "lstsq", "procrustes", "net"}
    assert out["none"]["mean"] < 0.1
    assert out["procrustes"]["mean"] > 0.95 and out["lstsq"]["mean"] > 0.95
    assert out["net"]["mean"] > 0.9
    with pytest.raises(ValueError, match="too few"):
        split_pairs(3)


# --- typology --------------------------------------------------------------------------------


def test_cosine_distance_hand_computed() -> None:
    assert cosine_distance([1, 0], [1, 1]) == pytest.approx(1 - 1 / math.sqrt(2))
    assert cosine_distance([1, 2, 3], [2, 4, 6]) == pytest.approx(0.0, abs=1e-12)
    assert cosine_distance([1, 0], [0, 1]) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        cosine_distance([0, 0], [1, 1])


def test_genetic_distance_counts_shared_glottolog_nodes() -> None:
    """Hand-counted from lang2vec's family_features.npz: English has 9 family nodes (Indo-
    European > Germanic > Northwest Germanic > West Germanic > North Sea Germanic > Anglo-
    Frisian > Anglian > Mercian > Macro-English), German 6 (sharing the first 4), French 12
    (sharing only Indo-European), Turkish 6 (Turkic, none shared). For binary vectors the
    cosine distance is 1 - shared / sqrt(n_a n_b)."""
    assert language_distance("en", "de", "genetic") == pytest.approx(1 - 4 / math.sqrt(9 * 6))
    assert language_distance("en", "fr", "genetic") == pytest.approx(1 - 1 / math.sqrt(9 * 12))
    assert language_distance("en", "tr", "genetic") == pytest.approx(1.0)
    assert typology_vector("en", "genetic").sum() == 9


def test_typology_vectors_codes_and_symmetry() -> None:
    sizes = {kind: typology_vector("de", kind).shape for kind in DISTANCE_KINDS}
    assert sizes == {"syntactic": (103,), "phonological": (28,), "inventory": (158,),
                     "genetic": (3718,), "geographic": (299,)}  # fmt: skip
    assert uriel_code("de") == uriel_code("deu") == "deu"
    assert uriel_code("zh") == "zho" and uriel_code("pcm") == "pcm"
    for kind in DISTANCE_KINDS:
        assert language_distance("en", "en", kind) == 0.0
        assert language_distance("en", "tr", kind) == pytest.approx(
            language_distance("tr", "en", kind)
        )
    # Syntax: German (V2, SVO-ish) is closer to English than Turkish (SOV) is.
    assert language_distance("en", "de", "syntactic") < language_distance("en", "tr", "syntactic")
    with pytest.raises(ProbeError, match="unknown URIEL language 'xq'"):
        uriel_code("xq")
    with pytest.raises(ProbeError, match="distance kind"):
        typology_vector("en", "lexical")


def test_typology_data_is_found_when_lang2vec_py_shadows_the_package(tmp_path: Path) -> None:
    """lang2vec installs bin/lang2vec.py, first on sys.path under the `probe` console script;
    importing it fails, so the data must be found without importing `lang2vec`."""
    (tmp_path / "lang2vec.py").write_text("raise ModuleNotFoundError('pkg_resources')\n")
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]);"
        "from probe.analysis.crosslingual.typology import language_distance;"
        "print(language_distance('en', 'de', 'syntactic'))"
    )
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert float(done.stdout) == pytest.approx(language_distance("en", "de", "syntactic"))


# --- correlation -----------------------------------------------------------------------------


def test_pearson_and_spearman_against_hand_computed_values() -> None:
    """x = 1..4, y = (1, 3, 2, 4): deviations dx = (-1.5, -0.5, 0.5, 1.5), dy = (-1.5, 0.5,
    -0.5, 1.5), so r = sum(dx dy) / sqrt(sum dx² sum dy²) = 4 / 5 = 0.8; y is its own ranks,
    so rho = 0.8 too. Pearson's p: with n = 4 the t statistic t = r sqrt(2 / (1 - r²)) has 2
    degrees of freedom, whose two-sided p is 1 - |t| / sqrt(t² + 2) = 0.2 exactly.
    Spearman's exact p: rho = 1 - sum(d²) / 10 for n = 4, and |rho| >= 0.8 needs sum(d²) <= 2
    (the identity and 3 adjacent swaps) or >= 18 (their 4 reverses): 8 of 24 orderings."""
    c = correlate([1, 2, 3, 4], [1, 3, 2, 4])
    assert c.n == 4
    assert c.pearson_r == pytest.approx(0.8)
    assert c.spearman_rho == pytest.approx(0.8)
    assert c.pearson_p == pytest.approx(0.2)
    assert c.spearman_p == pytest.approx(8 / 24)
    # Monotone but not linear: rho = 1 (exact p = 2/24: the identity and its reverse), and
    # Pearson from the deviations by hand (mean of y is 4).
    c = correlate([1, 2, 3, 4], [1, 2, 3, 10])
    assert c.spearman_rho == pytest.approx(1.0) and c.spearman_p == pytest.approx(2 / 24)
    dx, dy = np.array([-1.5, -0.5, 0.5, 1.5]), np.array([-3, -2, -1, 6])
    assert c.pearson_r == pytest.approx(dx @ dy / math.sqrt((dx @ dx) * (dy @ dy)))
    # Above n = 8 the p-value is scipy's t approximation.
    x = np.arange(12.0)
    y = x + np.sin(x) * 3
    from scipy import stats

    assert correlate(x, y).spearman_p == pytest.approx(stats.spearmanr(x, y).pvalue)


def test_correlation_undefined_cases_are_nan_not_numbers() -> None:
    assert math.isnan(correlate([1, 2], [2, 1]).pearson_r)  # n < 3
    assert math.isnan(correlate([1, 2, 3], [5, 5, 5]).spearman_rho)  # constant
    c = correlate([1, 2, float("nan"), 4, 5], [2, 4, 1, 8, 10])  # NaN pair dropped
    assert c.n == 4 and c.pearson_r == pytest.approx(1.0)


# --- Tatoeba pooling and `probe map` on a tiny model -----------------------------------------


def test_tatoeba_cache_holds_mean_over_subwords_of_each_side_alone(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """Each side is encoded on its own and averaged over its subword tokens, [CLS] and [SEP]
    excluded (XTREME's mean pooling with --pool_skip_special_token)."""
    from probe.cache import SplitReader

    make_tatoeba(tmp_path / "data")
    report = extract(config(tmp_path, tiny_bert, task="tatoeba", langs=("deu",)), progress=False)
    tok = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModel.from_pretrained(tiny_bert).eval()
    with SplitReader.open(tmp_path / "cache", report.key, "tatoeba", "deu", "test") as reader:
        assert reader.attrs["pooling"] == "mean"
        for name, texts in (("sentence_features", TATOEBA["deu"][0]),
                            ("sentence_features_b", TATOEBA["deu"][1])):  # fmt: skip
            for i in (0, 2):
                enc = tok(texts[i], return_tensors="pt")
                with torch.no_grad():
                    states = model(**enc, output_hidden_states=True).hidden_states
                for layer in range(3):
                    direct = states[layer][0, 1:-1].mean(0).numpy()  # drop [CLS], [SEP]
                    np.testing.assert_allclose(reader.layer(layer, name)[i], direct, atol=1e-5)


def test_map_end_to_end_tiny(tmp_path: Path, tiny_bert: Path) -> None:
    from probe.experiments.base import RunOptions
    from probe.experiments.map import MapConfig, run_map
    from probe.experiments.map_parallel import ParallelConfig
    from probe.train import TrainConfig

    data = make_ud(tmp_path / "data", SENTENCES * 4)
    make_tatoeba(data)
    ex = cache_fields(tmp_path, tiny_bert, data_dir=data, compute_dtype="float32")
    config = MapConfig(**ex, train=TrainConfig(max_epochs=2), extra_parallel=("tur",),
                       parallel=ParallelConfig(net=NetConfig(steps=20)))  # fmt: skip
    threads = torch.get_num_threads()
    result = run_map(config, RunOptions(results_dir=tmp_path / "results", progress=False))
    assert torch.get_num_threads() == threads  # capped while scoring, then restored
    heads = {(r.head, r.metric) for r in result.rows}
    for pair in [("linear", "accuracy"), ("linear", "selectivity"), ("transfer", "ratio"),
                 ("retrieval-centred", "xx2en"), ("retrieval-centred", "en2xx"),
                 ("retrieval-xtreme", "en2xx"), ("cka", "linear_cka"),
                 ("align-none", "mean"), ("align-procrustes", "mean"), ("align-net", "mean"),
                 ("distance", "syntactic")]:  # fmt: skip
        assert pair in heads, pair
    retrieval_langs = {r.lang for r in result.rows if r.head == "retrieval-centred"}
    assert retrieval_langs == {"de", "tur"}
    assert {r.layer for r in result.rows if r.head == "cka"} == {"0", "1", "2"}
    # XTREME's protocol: one row per language, at mBERT's layer 8 of 12 scaled to 2 layers
    xtreme = {r.lang: r for r in result.rows if r.head == "retrieval-xtreme"}
    assert set(xtreme) == {"de", "tur"}
    assert {(r.layer, r.layers, r.metric) for r in xtreme.values()} == {("1", (1,), "en2xx")}
    for r in result.rows:
        if r.head.startswith(("retrieval", "align-")) or r.head == "cka":
            assert 0.0 <= r.value <= 1.0 + 1e-9, r
    de_ratio = {r.layer: r.value for r in result.rows if r.head == "transfer"}
    acc = {(r.layer, r.lang): r.value for r in result.rows
           if r.head == "linear" and r.metric == "accuracy"}  # fmt: skip
    assert de_ratio["1"] == pytest.approx(acc[("1", "de")] / acc[("1", "en")])
    assert {c.distance for c in result.correlations} == set(DISTANCE_KINDS)
    assert all(c.correlation.n == 1 for c in result.correlations)  # one target: undefined
    assert result.typology is not None and result.typology.layer == 1  # 8 of 12 -> 1 of 2
    assert "n = 1: too few targets" in result.table
    assert 0 <= result.most_structural_layer <= 2 and result.most_neutral_layer in (0, 1, 2)
    source_acc = [acc[(str(layer), "en")] for layer in range(3)]
    assert source_acc[result.most_structural_layer] == max(source_acc)
    for name in ("results.csv", "map.csv", "correlation.csv", "distances.csv", "summary.txt",
                 "settings.json", "map.png", "transfer_vs_distance.png"):  # fmt: skip
        assert (result.directory / name).stat().st_size > 0, name
    settings = json.loads((result.directory / "settings.json").read_text())
    assert settings["tatoeba_codes"] == {"de": "deu", "tur": "tur"}
    assert settings["tatoeba_pairs"] == {"de": 10, "tur": 10}
    assert settings["xtreme_layer"] == 1
    assert "most language-neutral layer: " in result.table
    assert "(centred Tatoeba retrieval, mean of xx->en and en->xx" in result.table
    assert "XTREME's protocol (layer 1 of 2" in result.table
    assert "Tatoeba, XTREME's protocol (en->xx, layer 1): " in result.table
    # the cross-validated least-squares ridge, per layer and language, in the summary
    ridge = {(r.layer, r.lang): r.value for r in result.rows
             if r.head == "align-lstsq" and r.metric == "ridge"}  # fmt: skip
    assert set(ridge) == {(str(layer), lang) for layer in range(3) for lang in ("de", "tur")}
    lines = result.table.splitlines()
    at = lines.index(next(line for line in lines if line.startswith("least-squares ridge alpha")))
    assert lines[at + 1].split() == ["layer", "de", "tur"]
    for layer in range(3):
        expected = [str(layer), *(f"{ridge[(str(layer), lang)]:.3g}" for lang in ("de", "tur"))]
        assert lines[at + 2 + layer].split() == expected
    header = (result.directory / "map.csv").read_text().splitlines()[0].split(",")
    assert header[:4] == ["layer", "source_score", "selectivity", "target_score"]


def test_map_xtreme_rows_are_xtremes_search_on_the_specials_cache(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """The `retrieval-xtreme` rows are XTREME's accuracy (English queries) on the pairs pooled
    with [CLS]/[SEP] at the chosen layer, not on the subword-only pairs."""
    from probe.cache import SplitReader
    from probe.experiments.base import RunOptions
    from probe.experiments.map import MapConfig, run_map
    from probe.experiments.map_parallel import ParallelConfig
    from probe.train import TrainConfig

    data = make_ud(tmp_path / "data", SENTENCES * 4)
    make_tatoeba(data)
    ex = cache_fields(tmp_path, tiny_bert, data_dir=data, compute_dtype="float32")
    parallel = ParallelConfig(net=NetConfig(steps=5), xtreme_layer=2)
    config = MapConfig(**ex, train=TrainConfig(max_epochs=1), parallel=parallel)
    result = run_map(config, RunOptions(results_dir=tmp_path / "results", progress=False))
    row = result.rows.filter(head="retrieval-xtreme")
    assert [(r.lang, r.layer) for r in row] == [("de", "2")]
    root, key = ex["paths"].cache_root, row[0].model
    with SplitReader.open(root, key, "tatoeba-xtreme", "deu", "test") as reader:
        assert reader.attrs["pooling"] == "mean-with-specials"
        x, eng = reader.layer(2, "sentence_features"), reader.layer(2, "sentence_features_b")
    with SplitReader.open(root, key, "tatoeba", "deu", "test") as reader:
        plain = reader.layer(2, "sentence_features")
    assert not np.allclose(x, plain)  # the special tokens are in XTREME's vectors
    assert row[0].value == xtreme_accuracy(x.astype(np.float64), eng.astype(np.float64))
    with pytest.raises(ProbeError, match="--xtreme-layer 3 is not a layer"):
        run_map(MapConfig(**ex, parallel=ParallelConfig(xtreme_layer=3)),
                RunOptions(results_dir=tmp_path / "bad", progress=False))  # fmt: skip


def test_map_killed_after_its_first_job_resumes_with_only_the_missing_jobs(
    tmp_path: Path, tiny_bert: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run that dies in its second job keeps the first in its journal; the rerun runs the
    other jobs only and writes what an uninterrupted run writes."""
    import probe.experiments.map as map_module
    from probe.experiments.base import RunOptions
    from probe.experiments.map import MapConfig, run_map
    from probe.experiments.map_parallel import ParallelConfig
    from probe.train import TrainConfig

    data = make_ud(tmp_path / "data", SENTENCES * 4)
    make_tatoeba(data)
    ex = cache_fields(tmp_path, tiny_bert, data_dir=data, compute_dtype="float32")
    config = MapConfig(**ex, train=TrainConfig(max_epochs=2), extra_parallel=("tur",),
                       parallel=ParallelConfig(net=NetConfig(steps=20)), seeds=(0,))  # fmt: skip
    clean = run_map(config, RunOptions(results_dir=tmp_path / "clean", progress=False))
    real = map_module.run_map_job
    calls: list[object] = []

    def crash_on_second(job: object) -> list:
        calls.append(job)
        if len(calls) == 2:
            raise RuntimeError("killed")
        return real(job)

    options = RunOptions(results_dir=tmp_path / "res", workers=1, progress=False)
    monkeypatch.setattr(map_module, "run_map_job", crash_on_second)
    with pytest.raises(RuntimeError, match="killed"):
        run_map(config, options)
    calls.clear()
    monkeypatch.setattr(map_module, "run_map_job", lambda job: calls.append(job) or real(job))
    resumed = run_map(config, options)
    # 3 layers x (linear, control) + 2 Tatoeba languages = 8 jobs; the first was saved.
    assert len(calls) == 7
    assert list(resumed.rows) == list(clean.rows)
    for name in ("results.csv", "map.csv", "correlation.csv", "distances.csv", "summary.txt"):
        assert (resumed.directory / name).read_text() == (clean.directory / name).read_text()
    assert not list((resumed.directory / "jobs").glob("*.json"))  # cleared once written


def test_map_typology_on_many_targets_with_seeds(tmp_path: Path, tiny_bert: Path) -> None:
    """Six targets, four without Tatoeba pairs, two seeds: the typology runs on transfer at
    the fixed layer with intervals and Holm, on seed-mean scores, and says so."""
    import csv

    from probe.analysis.multiple import holm
    from probe.experiments.base import RunOptions
    from probe.experiments.map import MapConfig, run_map
    from probe.experiments.map_parallel import ParallelConfig
    from probe.train import TrainConfig
    from tests.helpers import conllu_text

    data = make_ud(tmp_path / "data", SENTENCES * 4)
    for lang, name in (("fr", "French-GSD"), ("es", "Spanish-GSD"), ("ja", "Japanese-GSD"),
                       ("tr", "Turkish-IMST"), ("ru", "Russian-GSD")):  # fmt: skip
        path = data / "ud" / f"UD_{name}" / f"{lang}_{name.split('-')[1].lower()}-ud-test.conllu"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(conllu_text((SENTENCES * 2)[len(lang) :]), encoding="utf-8")
    make_tatoeba(data)
    ex = cache_fields(tmp_path, tiny_bert, data_dir=data, langs=("all",),
                      compute_dtype="float32")  # fmt: skip
    config = MapConfig(**ex, train=TrainConfig(max_epochs=2), seeds=(0, 1), n_boot=200,
                       parallel=ParallelConfig(net=NetConfig(steps=5)))  # fmt: skip
    result = run_map(config, RunOptions(results_dir=tmp_path / "results", progress=False))
    rows = result.rows
    targets = ["de", "es", "fr", "ja", "ru", "tr"]
    # per-seed probe rows and their means; the ratio is of the seed-mean scores
    acc = rows.filter(head="linear", metric="accuracy", layers=(1,), stat="")
    assert set(acc.values("seed")) == {0, 1, None}
    mean = {r.lang: r.value for r in acc.filter(seed=None)}
    for lang in ("en", "de"):
        per_seed = [r.value for r in acc.filter(lang=lang, seed=lambda s: s is not None)]
        assert mean[lang] == pytest.approx(float(np.mean(per_seed)))
    ratio = rows.filter(head="transfer", metric="ratio", layers=(1,), lang="de")
    assert ratio.one() == pytest.approx(mean["de"] / mean["en"])
    # typology: every target (Tatoeba or not), at the fixed layer 1, Holm over the kinds
    typology = result.typology
    assert typology is not None and typology.layer == 1
    assert list(typology.languages) == targets
    assert settings_of(result)["no_parallel_data"] == ["es", "fr", "ja", "ru"]
    fixed = typology.at(1)
    assert [t.correlation.n for t in fixed] == [6] * len(DISTANCE_KINDS)
    np.testing.assert_allclose([t.p_holm for t in fixed],
                               holm([t.correlation.spearman_p for t in fixed]))  # fmt: skip
    for t in fixed:  # (a percentile interval over 6 languages may miss rho itself)
        if not math.isnan(t.correlation.spearman_rho):
            assert -1 <= t.ci_low <= t.ci_high <= 1
    assert typology.partial is not None and typology.partial.correlation.n == 6
    rho = rows.filter(head="typology", metric="spearman_rho", subset="fixed")
    assert {r.config for r in rho} == set(DISTANCE_KINDS) and all(r.layer == "1" for r in rho)
    assert len(rows.filter(head="typology", metric="p_holm_sweep")) == 3 * len(DISTANCE_KINDS)
    assert len(rows.filter(head="typology", metric="partial_spearman_rho")) == 1
    with (result.directory / "correlation.csv").open() as f:
        table = list(csv.DictReader(f))
    assert {r["analysis"] for r in table} == {"fixed", "exploratory", "partial"}
    assert [r["distance"] for r in table if r["analysis"] == "partial"] == ["syntactic|genetic"]
    text = result.table
    assert "typology at layer 1 (fixed in advance" in text
    assert "seed-mean target accuracy (2 seeds)" in text
    assert "n = 6 targets is small" in text and "exploratory sweep" in text
    with pytest.raises(ProbeError, match="--typology-layer 5 is not a layer"):
        run_map(MapConfig(**ex, seeds=(0,), typology_layer=5),
                RunOptions(results_dir=tmp_path / "bad", progress=False))  # fmt: skip


def test_pos_pud_transfer_trains_on_ewt_and_scores_every_pud(
    tmp_path: Path, tiny_bert: Path
) -> None:
    """`pos-pud-transfer`: the source trains on EWT train (early stop on EWT dev); every
    language, English too, is scored on its PUD test, never on EWT's or GSD's test."""
    from probe.cache import SplitReader
    from probe.data.discovery import languages_for
    from probe.data.tasks import get_task
    from probe.experiments.base import RunOptions
    from probe.experiments.map import MapConfig, run_map
    from probe.experiments.map_parallel import ParallelConfig
    from probe.train import TrainConfig
    from tests.helpers import conllu_text

    data = make_ud(tmp_path / "data", SENTENCES * 4)  # en_ewt train/dev/test, de_gsd test
    pud = {"en": SENTENCES[:3], "de": SENTENCES[:5], "fr": SENTENCES[:4]}
    for lang, name in (("en", "English"), ("de", "German"), ("fr", "French")):
        path = data / "ud" / f"UD_{name}-PUD" / f"{lang}_pud-ud-test.conllu"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(conllu_text(pud[lang]), encoding="utf-8")
    task = get_task("pos-pud-transfer")
    assert languages_for(task, data) == ("de", "en", "fr")
    assert task.files(data, "en", "train")[0].name == "en_ewt-ud-train.conllu"
    assert task.files(data, "en", "dev")[0].name == "en_ewt-ud-dev.conllu"
    assert task.files(data, "de", "test")[0].name == "de_pud-ud-test.conllu"
    ex = cache_fields(tmp_path, tiny_bert, task="pos-pud-transfer", data_dir=data,
                      langs=("all",), compute_dtype="float32")  # fmt: skip
    config = MapConfig(**ex, train=TrainConfig(max_epochs=1), seeds=(0,), n_boot=50,
                       parallel=ParallelConfig(net=NetConfig(steps=5)))  # fmt: skip
    result = run_map(config, RunOptions(results_dir=tmp_path / "results", progress=False))
    scored = set(result.rows.filter(head="linear", metric="accuracy").values("lang"))
    assert {"en", "de", "fr"} <= scored
    settings = settings_of(result)
    assert settings["treebanks"] == {"de": ["de_pud"], "en": ["en_pud", "en_ewt"],
                                     "fr": ["fr_pud"]}  # fmt: skip
    key = result.rows[0].model
    for lang, sents in pud.items():
        with SplitReader.open(ex["paths"].cache_root, key, task.name, lang, "test") as reader:
            assert len(reader.offsets) - 1 == len(sents)  # the PUD file, not EWT/GSD test
    assert result.typology is not None and list(result.typology.languages) == ["de", "fr"]


def settings_of(result: object) -> dict:
    return json.loads((result.directory / "settings.json").read_text())  # type: ignore[attr-defined]


def test_map_refuses_parallel_task_and_tiny_pair_sets(tmp_path: Path, tiny_bert: Path) -> None:
    from probe.experiments.base import RunOptions
    from probe.experiments.map import MapConfig, run_map
    from probe.experiments.map_parallel import ParallelConfig

    ex = cache_fields(tmp_path, tiny_bert, task="tatoeba", langs=("all",), data_dir=tmp_path)
    with pytest.raises(ProbeError, match="task with labels"):
        run_map(MapConfig(**ex), RunOptions(progress=False))
    with pytest.raises(ProbeError, match="fit fraction"):
        ParallelConfig(fit_fraction=1.0)


@pytest.mark.real
def test_map_real_minilm_small(tmp_path: Path, shared_data: Path) -> None:
    """The real MiniLM on 40 sentences/pairs per split: every curve is present and sane."""
    from probe.experiments.base import RunOptions
    from probe.experiments.map import MapConfig, run_map
    from probe.train import TrainConfig

    n = 40
    ex = cache_fields(tmp_path, "minilm", data_dir=shared_data, max_sentences=n)
    result = run_map(MapConfig(**ex, extra_parallel=("tr",), train=TrainConfig(max_epochs=3)),
                     RunOptions(results_dir=tmp_path / "res", progress=False))  # fmt: skip
    retrieval = {(r.layer, r.lang): r.value for r in result.rows
                 if r.head == "retrieval-centred" and r.metric == "mean"}  # fmt: skip
    assert set(retrieval) == {(str(i), lang) for i in range(7) for lang in ("de", "tr")}
    # German shares far more with English than Turkish does, even for an English-only model,
    # and both beat the 1/n chance level at their best layer.
    best = {lang: max(v for (_, la), v in retrieval.items() if la == lang) for lang in ("de", "tr")}
    assert best["de"] > best["tr"] > 1 / n
    score = {r.layer: r.value for r in result.rows
             if r.head == "linear" and r.metric == "accuracy" and r.lang == "en"}  # fmt: skip
    assert max(score.values()) > 0.6
    assert len(result.correlations) == 7 * len(DISTANCE_KINDS)
    assert (result.directory / "map.png").stat().st_size > 0


def test_map_cli_help_and_friendly_error(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from probe.cli import cli

    runner = CliRunner()
    help_text = runner.invoke(cli, ["map", "--help"]).output
    assert "probe map --task pos --model minilm" in help_text and "--fit-fraction" in help_text
    assert "--typology-layer" in help_text and "--seeds" in help_text
    result = runner.invoke(cli, ["map", "--task", "tatoeba", "--model", "minilm",
                                 "--data-dir", str(tmp_path)])  # fmt: skip
    assert result.exit_code != 0
    assert "needs a task with labels" in result.output and "Traceback" not in result.output
