"""The runs of one model found under a results directory: what `probe report` reads.

A run directory is `<results>/<task>/<model key>/<command>-...-<hash>/` with settings.json,
results.json/csv, summary.txt and PNGs (probe.experiments.base writes them). Nothing here
opens the encoder or the cache: a report of a finished study reads its files only, so it
takes a second and works on a copy of the results without the cache.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

from probe.errors import ProbeError
from probe.results.table import Table, read_table

# A cache key is `<model slug>-<16 hex digits>` (probe.cache.key); the slug is what the
# user typed as --model (an alias) or a slug of it; a random-weights twin's slug carries
# `+random<seed>` and is a model of its own.
_KEY = re.compile(r"^(?P<slug>.+)-(?P<digest>[0-9a-f]{16})$")


@dataclass(frozen=True)
class Run:
    """One finished run directory: its identity (command, task, source) and its files."""

    path: Path
    task: str
    key: str
    settings: dict[str, Any] = field(repr=False, compare=False)

    @property
    def command(self) -> str:
        return str(self.settings.get("command") or self.path.name.split("-")[0])

    @property
    def source(self) -> str:
        return str(self.settings.get("source") or "")

    @property
    def name(self) -> str:
        return self.path.name

    @property
    def languages(self) -> list[str]:
        return [str(lang) for lang in self.settings.get("languages") or []]

    @property
    def targets(self) -> list[str]:
        return [lang for lang in self.languages if lang != self.source]

    @cached_property
    def rows(self) -> Table:
        return read_table(self.path)

    @property
    def figures(self) -> list[Path]:
        return sorted(self.path.glob("*.png"))

    @property
    def summary(self) -> str:
        path = self.path / "summary.txt"
        return path.read_text() if path.is_file() else ""

    @property
    def mtime(self) -> float:
        return (self.path / "settings.json").stat().st_mtime


@dataclass(frozen=True)
class ModelRuns:
    """Every finished run of one cache key, and the directories skipped (with why)."""

    model: str
    key: str
    runs: list[Run]
    skipped: list[tuple[Path, str]]

    @property
    def alias(self) -> str:
        """The --model the runs were made with (their settings'), for commands to rerun."""
        for run in self.runs:
            if run.settings.get("model"):
                return str(run.settings["model"])
        return self.model

    def latest(self) -> list[Run]:
        """The newest run of each (command, task): the one the atlas reads. A rerun with
        other settings makes a second directory; the report lists the older ones."""
        newest: dict[tuple[str, str], Run] = {}
        for run in sorted(self.runs, key=lambda r: r.mtime):
            newest[(run.command, run.task)] = run
        return sorted(newest.values(), key=_order)

    def superseded(self) -> list[Run]:
        kept = {r.path for r in self.latest()}
        return sorted((r for r in self.runs if r.path not in kept), key=_order)


# The order sections appear in: the per-layer probes first, the studies built on them after.
COMMAND_ORDER = (
    "layers",
    "structural",
    "map",
    "grid",
    "intermediate",
    "domain-shift",
    "calibration",
    "finetune",
)


# Issue 21's one task per morphological feature (morph-Number, ...): after the main tasks.
MORPH_PREFIX = "morph-"


def _order(run: Run) -> tuple[int, bool, str, str]:
    """Sections and columns in reading order: POS, then syntax (structural), morphology,
    then the cross-lingual studies."""
    morph = run.task.startswith(MORPH_PREFIX)
    command = "structural" if morph else run.command
    rank = COMMAND_ORDER.index(command) if command in COMMAND_ORDER else len(COMMAND_ORDER)
    return rank, morph, run.task, run.name


def model_keys(results: Path) -> dict[str, list[Path]]:
    """{cache key: [its <task>/<key> directories]} under a results directory."""
    keys: dict[str, list[Path]] = {}
    for task_dir in sorted(p for p in results.iterdir() if p.is_dir()):
        for key_dir in sorted(p for p in task_dir.iterdir() if p.is_dir()):
            keys.setdefault(key_dir.name, []).append(key_dir)
    return keys


def matching_key(model: str, keys: dict[str, list[Path]]) -> str:
    """The one cache key `model` names: the key itself, or the slug before its hash.

    Two keys of one model (extracted with another --pool, or by a toolkit whose cache format
    changed since) are two atlases, not one: mixing them would put numbers of different
    features in one column, so the user picks, told how many runs each key has."""
    if model in keys:
        return model
    found = [k for k in keys if (m := _KEY.match(k)) and m["slug"] == model]
    if not found:
        there = ", ".join(sorted(keys)) or "none"
        raise ProbeError(f"no results of model {model!r} (cache keys there: {there})")
    if len(found) > 1:
        counts = ", ".join(
            f"{k}: {sum(1 for d in keys[k] for p in d.iterdir() if p.is_dir())} run(s)"
            for k in found
        )
        raise ProbeError(
            f"model {model!r} has results under {len(found)} cache keys ({counts}): "
            "pass one of them as --model"
        )
    return found[0]


def collect_runs(results: Path, model: str) -> ModelRuns:
    """Every run directory of `model` (an alias or a cache key) under `results`, any task.

    A directory without settings.json and results.json/csv is a run that did not finish (or
    is still running): skipped and listed, never read half-written."""
    if not results.is_dir():
        raise ProbeError(f"results directory {results} does not exist (--results-dir)")
    keys = model_keys(results)
    key = matching_key(model, keys)
    runs: list[Run] = []
    skipped: list[tuple[Path, str]] = []
    for key_dir in keys[key]:
        for run_dir in sorted(p for p in key_dir.iterdir() if p.is_dir()):
            reason = _unfinished(run_dir)
            if reason:
                skipped.append((run_dir, reason))
                continue
            settings = json.loads((run_dir / "settings.json").read_text())
            runs.append(Run(run_dir, key_dir.parent.name, key, settings))
    if not runs:
        raise ProbeError(f"no finished run of {key} under {results}")
    return ModelRuns(model, key, runs, skipped)


def _unfinished(run_dir: Path) -> str:
    if not (run_dir / "settings.json").is_file():
        return "no settings.json"
    if not ((run_dir / "results.json").is_file() or (run_dir / "results.csv").is_file()):
        return "no results.json or results.csv"
    return ""
