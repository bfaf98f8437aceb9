"""Hand-written results directories for `probe report`: every kind of run the atlas reads,
with planted per-layer curves whose peaks the tests know.

Written with the toolkit's own writer (probe.results.table.Table.write), so the files are
the ones a run writes; the structural and morphology runs follow issue 21's names (metrics
`uuas`, `dspr`, `root_acc`, `nspr`; tasks `morph-<Feature>`) without needing its code.
"""

from __future__ import annotations

import csv
import struct
import zlib
from pathlib import Path
from typing import Any

from probe.results.rows import Row
from probe.results.table import Table

KEY = "tiny-0123456789abcdef"
OTHER_KEY = "small-fedcba9876543210"
LANGS = ("en", "de", "fr")

# Planted curves over layers 0..4 (0 = embeddings): each peaks at a known layer.
SOURCE_ACC = (0.80, 0.90, 0.95, 0.93, 0.85)  # most structural: layer 2
TARGET_ACC = (0.40, 0.55, 0.60, 0.66, 0.58)  # zero-shot peaks at 3
UUAS = (0.30, 0.50, 0.60, 0.70, 0.40)  # UUAS peaks at 3
NUMBER_ACC = (0.70, 0.88, 0.84, 0.80, 0.78)  # morph-Number peaks at 1
RETRIEVAL = (0.50, 0.60, 0.70, 0.65, 0.90)  # most language-neutral: layer 4
CKA = (0.40, 0.45, 0.50, 0.55, 0.52)
RATIO = (0.50, 0.61, 0.63, 0.71, 0.68)
DLFA = (0.61, 0.63, 0.67, 0.64, 0.62)  # DLFA (k, 4) on the targets peaks at 2


def png(path: Path, width: int = 40, height: int = 24) -> Path:
    """A valid RGB PNG of a grey gradient (a figure's stand-in)."""
    raw = b"".join(
        b"\x00" + bytes((x * 6) % 256 for x in range(width) for _ in range(3))
        for _ in range(height)
    )

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw))
        + chunk(b"IEND", b"")
    )
    return path


def settings(command: str, task: str, key: str, **extra: Any) -> dict[str, Any]:
    return {
        "command": command,
        "task": task,
        "source": "en",
        "languages": list(LANGS),
        "model": key.rsplit("-", 1)[0],
        "cache_key": key,
        "train_split": "train",
        "dev_split": "dev",
        "eval_split": "test",
        "train_size": {"en train": 2000},
        "train_unit": "words",
        "max_train_words": 2000,
        "seeds": [0, 1],
        "extract": {"pooling": "first-content", "dtype": "float16"},
        **extra,
    }


def write_run(
    root: Path,
    task: str,
    key: str,
    name: str,
    rows: list[Row],
    run_settings: dict[str, Any],
    figures: tuple[str, ...] = ("curve.png",),
) -> Path:
    """One run directory as the experiment base writes it (results, settings, summary, PNGs)."""
    directory = root / task / key / name
    Table(rows).write(directory, run_settings)
    (directory / "summary.txt").write_text(f"{name}: planted summary line\nlayer  value\n")
    for figure in figures:
        png(directory / figure)
    return directory


def _per_layer(
    head: str, metric: str, lang: str, values: tuple[float, ...], **kw: Any
) -> list[Row]:
    return [Row(head, str(i), lang, metric, v, layers=(i,), **kw) for i, v in enumerate(values)]


def layers_rows(source: tuple[float, ...], targets: tuple[float, ...]) -> list[Row]:
    rows = []
    for i, (s, t) in enumerate(zip(source, targets, strict=True)):
        for seed, shift in ((0, -0.01), (1, 0.01)):  # seed rows: the atlas reads their mean
            rows.append(Row("linear", str(i), "en", "accuracy", s + shift, layers=(i,), seed=seed))
        rows += [
            Row("linear", str(i), "en", "accuracy", s, layers=(i,)),
            Row("linear", str(i), "en", "accuracy_sd", 0.004, layers=(i,), stat="sd"),
            Row("linear", str(i), "de", "accuracy", t - 0.02, layers=(i,)),
            Row("linear", str(i), "fr", "accuracy", t + 0.02, layers=(i,)),
            Row(
                "linear",
                str(i),
                "targets",
                "accuracy",
                t,
                layers=(i,),
                group="targets",
                ci_low=t - 0.01,
                ci_high=t + 0.01,
            ),
            Row("linear", str(i), "en", "selectivity", s - 0.5, layers=(i,)),
            Row("linear", str(i), "en", "accuracy", 0.1, layers=(i,), subset="reviews"),
            Row("linear", str(i), "en", "ece", 0.05, layers=(i,)),
        ]
    return rows


def structural_rows() -> list[Row]:
    rows = []
    for metric, curve in (
        ("uuas", UUAS),
        ("dspr", UUAS),
        ("root_acc", SOURCE_ACC),
        ("nspr", SOURCE_ACC),
    ):
        rows += _per_layer(
            "distance" if metric in ("uuas", "dspr") else "depth", metric, "en", curve
        )
        if metric == "uuas":
            rows += _per_layer("distance", metric, "de", tuple(v - 0.1 for v in curve))
            rows += _per_layer("distance", metric, "fr", tuple(v - 0.2 for v in curve))
    return rows


def grid_rows() -> list[Row]:
    last = len(DLFA) - 1
    rows = []
    for k, v in enumerate(DLFA):
        for lang, value in (("en", 0.9), ("de", v - 0.01), ("fr", v + 0.01)):
            rows.append(Row("dlfa", f"{k},{last}", lang, "accuracy", value, layers=(k, last)))
    rows.append(Row("dlfa", "dev", "de", "accuracy", 0.5, config="dlfa (dev)"))
    return rows


def write_map_csv(directory: Path) -> None:
    with (directory / "map.csv").open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["layer", "source_score", "transfer_ratio", "retrieval", "cka"])
        for i in range(len(RETRIEVAL)):
            writer.writerow([i, SOURCE_ACC[i], RATIO[i], RETRIEVAL[i], CKA[i]])


def full_results(root: Path, key: str = KEY) -> Path:
    """Every run kind of one model (depth 5), plus an unfinished directory."""
    write_run(
        root,
        "pos",
        key,
        "layers-en-00000001",
        layers_rows(SOURCE_ACC, TARGET_ACC),
        settings("layers", "pos", key),
        ("score_per_layer.png", "source_vs_target.png"),
    )
    write_run(
        root,
        "pos",
        key,
        "structural-en-00000002",
        structural_rows(),
        settings("structural", "pos", key),
    )
    write_run(
        root,
        "morph-Number",
        key,
        "layers-en-00000003",
        layers_rows(NUMBER_ACC, NUMBER_ACC),
        settings("layers", "morph-Number", key),
    )
    mapped = write_run(
        root,
        "pos",
        key,
        "map-en-00000004",
        layers_rows(tuple(v - 0.05 for v in SOURCE_ACC), TARGET_ACC),
        settings("map", "pos", key),
        ("map.png", "transfer_vs_distance.png"),
    )
    write_map_csv(mapped)
    write_run(
        root,
        "pos",
        key,
        "grid-dlfa-en-00000005",
        grid_rows(),
        settings("grid", "pos", key),
        ("grid_heatmap.png",),
    )
    write_run(
        root,
        "pos",
        key,
        "calibration-en-00000006",
        [Row("linear@en", "2", "en", "ece", 0.02, layers=(2,))],
        settings("calibration", "pos", key),
        ("reliability_en.png",),
    )
    unfinished = root / "pos" / key / "layers-en-0000dead"
    unfinished.mkdir(parents=True)
    (unfinished / "settings.json").write_text("{}")
    return root


def shallow_results(root: Path, key: str = OTHER_KEY) -> Path:
    """A second model of depth 3 with only a layers run."""
    write_run(
        root,
        "pos",
        key,
        "layers-en-00000007",
        layers_rows((0.70, 0.85, 0.80), (0.30, 0.45, 0.50)),
        settings("layers", "pos", key),
    )
    return root
