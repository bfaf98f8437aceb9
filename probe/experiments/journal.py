"""A run's journal: each finished job's rows saved at once, so a stopped run resumes with
only the missing jobs (valid only for the same data fingerprint)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from probe.results.items import ItemScores
from probe.results.report import Row

log = logging.getLogger(__name__)


class Journal:
    """Finished jobs of one run, one JSON file each, valid only for one data fingerprint."""

    def __init__(self, directory: Path, fingerprint: str) -> None:
        self.directory = directory
        self.fingerprint = fingerprint

    def _path(self, name: str) -> Path:
        if not name or any(c in name for c in "/\\") or name.startswith("."):
            raise ValueError(f"job name {name!r} is not a plain file name")
        return self.directory / f"{name}.json"

    def load(self, name: str) -> list[Row | ItemScores] | None:
        """The saved output of a job (its rows, then its item statistics), or None if it has
        to run (missing, stale or unreadable)."""
        path = self._path(name)
        if not path.exists():
            return None
        try:
            payload = json.loads(path.read_text())
            if payload["fingerprint"] != self.fingerprint:
                log.info("%s was saved for other data or code; rerunning job %s", path, name)
                return None
            rows: list[Row | ItemScores] = [Row.from_dict(row) for row in payload["rows"]]
            return rows + [ItemScores.from_dict(item) for item in payload.get("items", ())]
        except (ValueError, KeyError, TypeError) as err:
            log.warning("unreadable job file %s (%s); rerunning job %s", path, err, name)
            return None

    def save(self, name: str, output: Sequence[Row | ItemScores]) -> None:
        path = self._path(name)
        self.directory.mkdir(parents=True, exist_ok=True)
        rows_json = [r.to_dict() for r in output if isinstance(r, Row)]
        items_json = [r.to_dict() for r in output if isinstance(r, ItemScores)]
        payload = {"job": name, "fingerprint": self.fingerprint, "rows": rows_json,
                   "items": items_json}  # fmt: skip
        tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        tmp.write_text(json.dumps(payload))
        tmp.replace(path)

    def saved(self) -> list[str]:
        return sorted(p.stem for p in self.directory.glob("*.json"))

    def clear(self) -> None:
        """Forget every job (the run is complete and its results are written)."""
        shutil.rmtree(self.directory, ignore_errors=True)


def fingerprint(*parts: Any) -> str:
    """sha256 of the canonical JSON of what saved jobs depend on (objects by their repr):
    a journal from another config, other cached data or another version is not reused."""
    text = json.dumps(parts, sort_keys=True, default=repr)
    return hashlib.sha256(text.encode()).hexdigest()
