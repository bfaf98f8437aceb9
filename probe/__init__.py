"""probe: layer-wise probing of multilingual encoders on an HDF5 feature cache.

The public API is small and lazy: `import probe` loads neither torch nor transformers (the
command line's start-up pays only for what a command uses); each name is imported from its
stage package on first access.
"""

from __future__ import annotations

import importlib
from typing import Any

from probe._version import __version__

_WHERE = {
    "ProbeError": "probe.errors",
    "DataError": "probe.errors",
    "CacheError": "probe.errors",
    "ExtractSpec": "probe.extract",
    "ExtractRequest": "probe.extract",
    "ExtractOptions": "probe.extract",
    "CachePaths": "probe.extract",
    "CacheHandle": "probe.extract",
    "ensure_cached": "probe.extract",
    "open_shard": "probe.cache",
    "SplitReader": "probe.cache",
    "get_task": "probe.data.tasks",
    "TASKS": "probe.data.tasks",
    "TrainConfig": "probe.train",
    "WordData": "probe.train",
    "PairData": "probe.train",
    "fit": "probe.train",
    "predict_proba": "probe.train",
    "Row": "probe.results.report",
}

__all__ = ["__version__", *_WHERE]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'probe' has no attribute {name!r}")
    return getattr(importlib.import_module(_WHERE[name]), name)
