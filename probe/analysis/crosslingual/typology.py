"""Linguistic distance between languages from the URIEL typology vectors that lang2vec ships.

`lang2vec` (Littell et al. 2017) bundles URIEL as numpy archives, but its module cannot be
imported here (it needs `pkg_resources`, which current setuptools no longer provides) and
its `distance()` downloads a precomputed table from the internet. So the archives are read
directly from the installed package's `data/` folder and the distances computed here, each
as the cosine distance 1 - cos(u, v) between two languages' vectors of one feature set:

    syntactic      syntax_knn       feature_predictions.npz, features "S_*"   (103 features)
    phonological   phonology_knn    feature_predictions.npz, features "P_*"   (28)
    inventory      inventory_knn    feature_predictions.npz, features "INV_*" (158)
    genetic        fam              family_features.npz, Glottolog family-tree nodes (3718)
    geographic     geo              geocoord_features.npz, closeness to 299 points on Earth

The three typological kinds use URIEL's kNN-predicted vectors (no missing values), which is
how URIEL defines its syntactic, phonological and inventory distances. For the genetic and
geographic kinds URIEL's precomputed table uses tree distance and great-circle distance
instead; the cosine distances of the `fam` and `geo` vectors used here order language pairs
alike (shared tree nodes; shared nearby reference points) but their values are not those of
`lang2vec.distance`, and the geographic ones are small (all `geo` entries are positive).

`typology_tests` sets the distances against per-layer transfer scores honestly (issue 20):
the confirmatory test is at one layer fixed before the scores are seen (`default_layer`),
with a bootstrap interval over languages and Holm's correction over the distance kinds; the
sweep over every layer is reported as exploratory, Holm-corrected over layers x kinds; and
the syntactic distance is also tested with the genetic one partialled out (related languages
share word order, so a raw syntactic correlation may be genealogy in disguise).
"""

from __future__ import annotations

import functools
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

from probe.analysis.crosslingual.correlation import (
    Correlation,
    PartialCorrelation,
    bootstrap_correlation,
    correlate,
    partial_spearman,
)
from probe.analysis.multiple import holm, min_spearman_p
from probe.errors import ProbeError, unknown_name

DISTANCE_KINDS: tuple[str, ...] = (
    "syntactic", "phonological", "inventory", "genetic", "geographic",
)  # fmt: skip

# kind -> (archive, feature-name prefix); the archives hold data (langs, feats, sources).
_FEATURE_SETS: dict[str, tuple[str, str]] = {
    "syntactic": ("feature_predictions.npz", "S_"),
    "phonological": ("feature_predictions.npz", "P_"),
    "inventory": ("feature_predictions.npz", "INV_"),
    "genetic": ("family_features.npz", "F_"),
    "geographic": ("geocoord_features.npz", "GC_"),
}


def cosine_distance(u: ArrayLike, v: ArrayLike) -> float:
    """1 - u·v / (|u| |v|); undefined (an error) when either vector is all zeros."""
    a, b = np.asarray(u, dtype=np.float64), np.asarray(v, dtype=np.float64)
    na, nb = np.linalg.norm(a), np.linalg.norm(b)
    if na == 0 or nb == 0:
        raise ValueError("cosine distance is undefined for a zero vector")
    return float(1.0 - (a @ b) / (na * nb))


def _data_file(name: str) -> Path:
    """A file of lang2vec's data, found through the installed distribution's metadata.

    Not through `import lang2vec`: lang2vec also installs a script `lang2vec.py` into the
    environment's bin/, which is the first entry of sys.path when `probe` runs as a console
    script, and importing it fails (pkg_resources).
    """
    try:
        dist = metadata.distribution("lang2vec")
    except metadata.PackageNotFoundError as err:
        raise ProbeError(
            "linguistic distances need the URIEL data of the `lang2vec` package: "
            "pip install lang2vec"
        ) from err
    path = Path(str(dist.locate_file(f"lang2vec/data/{name}")))
    if not path.is_file():
        raise ProbeError(f"lang2vec is installed but its data file {name} is missing ({path})")
    return path


@functools.cache
def _archive(name: str) -> dict[str, np.ndarray]:
    with _data_file(name).open("rb") as f, np.load(f) as npz:
        return {key: npz[key] for key in ("langs", "feats", "data")}


@functools.cache
def _letter_codes() -> dict[str, str]:
    with _data_file("letter_codes.json").open("r", encoding="utf-8") as f:
        return dict(json.load(f))


@functools.cache
def _index(name: str) -> dict[str, int]:
    return {str(code): i for i, code in enumerate(_archive(name)["langs"])}


def uriel_code(lang: str) -> str:
    """URIEL's ISO 639-3 code for an ISO 639-1 or 639-3 code (`de` -> `deu`, `pcm` -> `pcm`).

    Two-letter codes go through lang2vec's own table, which maps macrolanguages to the
    macrolanguage code URIEL uses (`zh` -> `zho`, `sw` -> `swa`, `fa` -> `fas`).
    """
    code = _letter_codes().get(lang, lang)
    if code not in _index("family_features.npz"):
        raise unknown_name("URIEL language", lang, sorted(_letter_codes()))
    return code


def typology_vector(lang: str, kind: str) -> np.ndarray:
    """One language's URIEL vector of one kind (see the module docstring), float64."""
    if kind not in _FEATURE_SETS:
        raise unknown_name("distance kind", kind, DISTANCE_KINDS)
    archive_name, prefix = _FEATURE_SETS[kind]
    archive = _archive(archive_name)
    code = uriel_code(lang)
    columns = np.char.startswith(archive["feats"].astype(str), prefix)
    vector = archive["data"][_index(archive_name)[code], columns, 0].astype(np.float64)
    if np.any(vector < 0):  # -1 marks a missing value in URIEL
        raise ProbeError(f"URIEL has no complete {kind} vector for {lang!r} ({code})")
    return vector


def language_distance(a: str, b: str, kind: str) -> float:
    """Cosine distance between the URIEL vectors of languages a and b (0 = identical)."""
    va, vb = typology_vector(a, kind), typology_vector(b, kind)
    try:
        return min(2.0, max(0.0, cosine_distance(va, vb)))  # clip rounding below 0
    except ValueError as err:
        raise ProbeError(f"{kind} distance of {a!r} and {b!r}: URIEL vector is empty") from err


def distances_from(
    source: str, targets: list[str] | tuple[str, ...], kinds: tuple[str, ...] = DISTANCE_KINDS
) -> dict[tuple[str, str], float]:
    """{(target, kind): distance from source} for every target and kind."""
    return {(t, k): language_distance(source, t, k) for t in targets for k in kinds}


# --- transfer vs distance, tested -------------------------------------------------------------

# The confirmatory layer: two thirds up the encoder, mBERT's 8 of 12, the layer XTREME reads
# for Tatoeba retrieval (--specific_layer 7 = hidden_states[8]); fixed by depth alone.
TYPOLOGY_LAYER, TYPOLOGY_DEPTH = 8, 12
PARTIAL = ("syntactic", "genetic")  # syntactic distance controlling for genetic distance


def default_layer(depth: int) -> int:
    """The layer the typology test reads when none is given: 8 of 12 at the same relative
    depth, rounded half up (MiniLM's 6 layers: 4; 24 layers: 16).

    Fixed in advance by the encoder's depth alone, never by the scores: picking the layer
    whose correlation looks strongest and then testing it there is a test on its own
    outcome. Two thirds up is the convention XTREME uses for its retrieval layer, and where
    multilingual encoders are commonly found most language-neutral, so it is the layer a
    reader would name before seeing any number.
    """
    if depth < 1:
        raise ProbeError(f"an encoder needs at least one transformer layer, not {depth}")
    return max(1, math.floor(depth * TYPOLOGY_LAYER / TYPOLOGY_DEPTH + 0.5))


@dataclass(frozen=True)
class DistanceTest:
    """Target scores vs the targets' distance from the source, at one layer, for one kind.

    `correlation`: Pearson and Spearman with their raw p; `ci_low`/`ci_high`: the bootstrap
    interval of Spearman's rho over languages; `p_holm`: Spearman's p Holm-adjusted over the
    distance kinds at the fixed layer (NaN at every other layer); `p_holm_sweep`: adjusted
    over every layer x kind (the exploratory sweep). The transfer ratio is not tested apart:
    at one layer it is every target's score over the same source score, so its rank
    correlations are the same.
    """

    layer: int
    distance: str
    correlation: Correlation
    ci_low: float = math.nan
    ci_high: float = math.nan
    p_holm: float = math.nan
    p_holm_sweep: float = math.nan


@dataclass(frozen=True)
class PartialTest:
    """Spearman's rho of the scores with `distance`, `control` partialled out, at `layer`."""

    layer: int
    distance: str
    control: str
    correlation: PartialCorrelation
    ci_low: float = math.nan
    ci_high: float = math.nan


@dataclass(frozen=True)
class TypologyTests:
    """The typology analysis of one run: `layer` the fixed layer, `languages` the targets
    tested (with a score and every distance), `tests` every layer x kind (the fixed layer's
    carry `p_holm`), `partial` the syntactic | genetic test at the fixed layer (None when a
    kind is not asked for), and `min_p` the smallest exact Spearman p possible at n."""

    layer: int
    languages: tuple[str, ...]
    tests: list[DistanceTest]
    partial: PartialTest | None
    n_boot: int
    alpha: float = 0.05

    @property
    def n(self) -> int:
        return len(self.languages)

    @property
    def min_p(self) -> float:
        return min_spearman_p(self.n)

    def at(self, layer: int) -> list[DistanceTest]:
        return [t for t in self.tests if t.layer == layer]


def _value(v: float) -> float:
    """A float, with every NaN the one `math.nan` object: rows holding it then compare equal
    across runs (NaN != NaN, but tuple and dataclass equality check identity first)."""
    return math.nan if math.isnan(v) else float(v)


def typology_tests(
    scores: Mapping[int, Mapping[str, float]],
    distances: Mapping[tuple[str, str], float],
    kinds: Sequence[str],
    layer: int,
    *,
    n_boot: int = 1000,
    seed: int = 0,
) -> TypologyTests:
    """Correlate each layer's target scores ({layer: {target: score}}) with each distance
    kind ({(target, kind): distance}); test at `layer` with intervals and Holm over kinds,
    and Holm the whole sweep. Targets missing a score at a layer drop out of that layer's
    correlations (NaN-safe); targets missing a distance of any kind are left out entirely,
    so every kind is tested on the same languages."""
    if layer not in scores:
        raise ProbeError(f"typology layer {layer} has no scores (layers: "
                         f"{', '.join(map(str, sorted(scores)))})")  # fmt: skip
    langs = sorted({t for t, _ in distances})
    langs = [t for t in langs if all((t, k) in distances for k in kinds)]
    dist = {k: np.array([distances[(t, k)] for t in langs]) for k in kinds}

    def values(at: int) -> np.ndarray:
        return np.array([scores[at].get(t, math.nan) for t in langs], dtype=np.float64)

    raw: list[tuple[int, str, Correlation, tuple[float, float]]] = []
    for at in sorted(scores):
        y = values(at)
        for i, kind in enumerate(kinds):
            interval = (bootstrap_correlation(dist[kind], y, n_boot, seed + i)
                        if at == layer else (math.nan, math.nan))  # fmt: skip
            raw.append((at, kind, correlate(dist[kind], y), interval))
    sweep = holm([c.spearman_p for _, _, c, _ in raw])
    fixed_p = holm([c.spearman_p for at, _, c, _ in raw if at == layer])
    fixed_iter = iter(fixed_p)
    tests = []
    for (at, kind, corr, (low, high)), p_sweep in zip(raw, sweep, strict=True):
        p_fixed = _value(next(fixed_iter)) if at == layer else math.nan
        tests.append(DistanceTest(at, kind, corr, low, high, p_fixed, _value(p_sweep)))
    partial = None
    if all(k in kinds for k in PARTIAL):
        x, z, y = dist[PARTIAL[0]], dist[PARTIAL[1]], values(layer)
        low, high = bootstrap_correlation(x, y, n_boot, seed + len(kinds), z=z)
        partial = PartialTest(layer, *PARTIAL, partial_spearman(x, y, z), low, high)
    return TypologyTests(layer, tuple(langs), tests, partial, n_boot)
