"""Models: the MODELS aliases, hub ids and local directories, their identity, and loading.

Modules: `aliases` (MODELS, ModelRef, resolve_model), `identity` (directory_identity),
`loading` (load_encoder), `random_init` (random-weights twins: random_encoder), `me5` and
`me5_image` (the offline `me5-small` conversion).
transformers is imported only inside the functions that load or convert a model.
"""

from __future__ import annotations

from probe.models.aliases import MODELS, ModelRef, ModelSource, minilm_dir, resolve_model
from probe.models.identity import directory_identity
from probe.models.loading import load_encoder
from probe.models.random_init import random_encoder, random_slug

__all__ = [
    "MODELS",
    "ModelRef",
    "ModelSource",
    "directory_identity",
    "load_encoder",
    "minilm_dir",
    "random_encoder",
    "random_slug",
    "resolve_model",
]
