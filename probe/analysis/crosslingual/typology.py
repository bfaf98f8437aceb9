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
"""

from __future__ import annotations

import functools
import json
from importlib import metadata
from pathlib import Path

import numpy as np
from numpy.typing import ArrayLike

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
