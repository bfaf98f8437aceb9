"""A model directory's content identity: what its cache keys are built on."""

from __future__ import annotations

import hashlib
from pathlib import Path

from probe.runtime.fileid import cached_sha256

# Files whose bytes change the numbers a model produces; everything else (READMEs) is ignored.
_IDENTITY_SUFFIXES = (".json", ".txt", ".model", ".safetensors", ".bin")


def directory_identity(path: Path) -> str:
    """sha256 over the names and contents of every file that changes the model's outputs.

    A renamed copy of a checkpoint has the same identity (its cache is reused); one changed
    byte in a weight, config or tokenizer file gives a new one. File digests are memoised
    (`probe.runtime.fileid.cached_sha256`), so a 700 MB checkpoint is hashed once, not on
    every run.
    """
    files = [
        file
        for file in sorted(p for p in path.rglob("*") if p.is_file())
        if file.suffix in _IDENTITY_SUFFIXES and file.name != "README.md"
    ]
    digest = hashlib.sha256()
    for file, sha in zip(files, cached_sha256(files), strict=True):
        digest.update(f"{file.relative_to(path)}={sha}\n".encode())
    return digest.hexdigest()
