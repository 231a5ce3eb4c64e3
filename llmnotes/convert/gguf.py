"""GGUF export: one file that llama.cpp can run, written byte by byte.

A GGUF (version 3) file is, in order (all little-endian):

1. a header: the magic ``b"GGUF"``, ``uint32`` version 3, ``uint64`` tensor count, ``uint64``
   metadata count;
2. metadata: ``key`` (a string: ``uint64`` length + UTF-8 bytes), ``uint32`` value type, value.
   Arrays are ``uint32`` element type + ``uint64`` count + elements;
3. tensor infos: name, ``uint32`` number of dimensions, ``uint64`` each dimension (fastest-
   varying first, so a PyTorch (rows, cols) matrix is written ``[cols, rows]``), ``uint32``
   ggml type, ``uint64`` offset of its data from the start of the data section;
4. padding to ``general.alignment`` (32), then every tensor's data, each padded to 32.

``BF16`` (ggml type 30, file type 32) stores each value's top 16 bits after rounding to
nearest even: float32's exponent with 7 mantissa bits.

Quantized types store blocks of 32 consecutive values of a row (ggml's ``QK8_0 = QK4_0 = 32``):

* ``Q8_0`` (34 bytes a block): fp16 scale ``d = max|x| / 127``, then 32 int8 ``round(x / d)``.
* ``Q4_0`` (18 bytes a block): fp16 ``d = m / -8`` where ``m`` is the value of largest
  magnitude (sign kept), then 16 bytes of 4-bit codes ``min(15, trunc(x / d + 8.5))``; element
  ``j`` sits in the low nibble of byte ``j`` and element ``j + 16`` in its high nibble.
  Decoding is ``d * (code - 8)``.

Tensor names and metadata keys follow llama.cpp's ``gpt2`` architecture (``gguf-py``'s
constants and ``convert_hf_to_gguf.py``): ``token_embd``, ``position_embd``,
``blk.N.attn_norm``, ``blk.N.attn_qkv``, ``blk.N.attn_output``, ``blk.N.ffn_norm``,
``blk.N.ffn_up``, ``blk.N.ffn_down``, ``output_norm``, ``output``. As the converter does, 1-D
tensors (norms, biases) and the position table stay F32, and a matrix whose rows are not a
multiple of 32 falls back to F16. Quantizing every other matrix (embedding and output included)
is what ``llama-quantize --pure`` does; its default mixes keep the output matrix at higher
precision.
"""

from __future__ import annotations

import struct
from pathlib import Path

import numpy as np
import torch

from llmnotes.tokenizer import eos_id_of
from llmnotes.utils import atomic_path

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32
QK = 32  # values per Q8_0 / Q4_0 block

# ggml tensor types (ggml.h) and the general.file_type each export writes (llama.h's ftype)
QTYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0")
GGML_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 8, "BF16": 30}
FILE_TYPES = {"F32": 0, "F16": 1, "Q4_0": 2, "Q8_0": 7, "BF16": 32}
BLOCK_BYTES = {"Q8_0": 2 + QK, "Q4_0": 2 + QK // 2}

# GGUF metadata value types
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)
_SCALAR = {UINT8: "<B", INT8: "<b", UINT16: "<H", INT16: "<h", UINT32: "<I", INT32: "<i",
           FLOAT32: "<f", BOOL: "<?", UINT64: "<Q", INT64: "<q", FLOAT64: "<d"}

TOKEN_NORMAL, TOKEN_CONTROL, TOKEN_UNUSED = 1, 3, 5  # llama.cpp's token types

# ---------------------------------------------------------------------------------------------
# Block quantization, exactly as ggml's reference C (quantize_row_q8_0_ref / _q4_0_ref)
# ---------------------------------------------------------------------------------------------


def _blocks(x) -> np.ndarray:
    a = np.asarray(x.detach().cpu().float().numpy() if isinstance(x, torch.Tensor) else x, dtype=np.float32)
    if a.shape[-1] % QK:
        raise ValueError(f"row length {a.shape[-1]} is not a multiple of {QK}; keep this tensor in F16/F32")
    return a.reshape(-1, QK)


def quantize_q8_0(x) -> np.ndarray:
    """Rows of ``x`` (..., n) with n % 32 == 0 → Q8_0 blocks, uint8 (n_blocks, 34)."""
    b = _blocks(x)
    d = np.abs(b).max(axis=1, keepdims=True) / np.float32(127)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    v = b * inv
    q = (np.sign(v) * np.floor(np.abs(v) + np.float32(0.5))).astype(np.int8)  # C roundf: ties away from 0
    return np.concatenate([d.astype(np.float16).view(np.uint8), q.view(np.uint8)], axis=1)


def dequantize_q8_0(blocks: np.ndarray) -> np.ndarray:
    """Q8_0 blocks (n_blocks, 34) → float32 values (n_blocks * 32,)."""
    blocks = np.asarray(blocks, dtype=np.uint8).reshape(-1, 34)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    q = blocks[:, 2:].copy().view(np.int8).astype(np.float32)
    return (d * q).reshape(-1)


def quantize_q4_0(x) -> np.ndarray:
    """Rows of ``x`` (..., n) with n % 32 == 0 → Q4_0 blocks, uint8 (n_blocks, 18)."""
    b = _blocks(x)
    m = np.take_along_axis(b, np.abs(b).argmax(axis=1)[:, None], axis=1)  # largest |x|, sign kept
    d = m / np.float32(-8)
    with np.errstate(divide="ignore"):
        inv = np.where(d == 0, np.float32(0), np.float32(1) / d).astype(np.float32)
    codes = np.minimum(15, np.trunc(b * inv + np.float32(8.5))).astype(np.uint8)  # (n_blocks, 32)
    packed = codes[:, :QK // 2] | (codes[:, QK // 2:] << 4)  # j low nibble, j + 16 high nibble
    return np.concatenate([d.astype(np.float16).view(np.uint8), packed], axis=1)


def dequantize_q4_0(blocks: np.ndarray) -> np.ndarray:
    """Q4_0 blocks (n_blocks, 18) → float32 values (n_blocks * 32,)."""
    blocks = np.asarray(blocks, dtype=np.uint8).reshape(-1, 18)
    d = blocks[:, :2].copy().view(np.float16).astype(np.float32)
    qs = blocks[:, 2:]
    codes = np.concatenate([qs & 0x0F, qs >> 4], axis=1).astype(np.float32)
    return (d * (codes - 8)).reshape(-1)


# ---------------------------------------------------------------------------------------------
# The writer
# ---------------------------------------------------------------------------------------------


def _string(s: str) -> bytes:
    raw = s.encode("utf-8")
    return struct.pack("<Q", len(raw)) + raw


def _value(vtype: int, value) -> bytes:
    if vtype == STRING:
        return _string(value)
    if vtype == ARRAY:
        etype, items = value
        body = b"".join(_value(etype, v) for v in items) if etype == STRING else \
            np.asarray(items, dtype=np.dtype(_SCALAR[etype])).tobytes()
        return struct.pack("<IQ", etype, len(items)) + body
    return struct.pack(_SCALAR[vtype], value)


def _pad(n: int) -> int:
    return (-n) % ALIGNMENT


def write_gguf(path, metadata: list[tuple[str, int, object]], tensors: list[tuple[str, str, np.ndarray, tuple]]) -> Path:
    """Write a GGUF v3 file.

    Args:
        metadata: ``(key, value type, value)``; arrays as ``(key, ARRAY, (element type, list))``.
        tensors: ``(name, ggml type name, raw data as a uint8/float array, torch shape)``.
    """
    head = GGUF_MAGIC + struct.pack("<IQQ", GGUF_VERSION, len(tensors), len(metadata))
    kv = b"".join(_string(k) + struct.pack("<I", t) + _value(t, v) for k, t, v in metadata)
    infos, offset, datas = [], 0, []
    for name, kind, data, shape in tensors:
        dims = tuple(reversed(shape))  # ggml lists the fastest-varying dimension first
        infos.append(_string(name) + struct.pack("<I", len(dims)) + struct.pack(f"<{len(dims)}Q", *dims)
                     + struct.pack("<IQ", GGML_TYPES[kind], offset))
        raw = np.ascontiguousarray(data).tobytes()
        datas.append(raw + b"\0" * _pad(len(raw)))
        offset += len(datas[-1])
    prefix = head + kv + b"".join(infos)
    path = Path(path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(prefix + b"\0" * _pad(len(prefix)))
        for raw in datas:
            f.write(raw)
    return path


# ---------------------------------------------------------------------------------------------
# A GPT and its tokenizer → llama.cpp's gpt2 layout
# ---------------------------------------------------------------------------------------------

_BLOCK_NAMES = {"ln_1": "attn_norm", "attn.c_attn": "attn_qkv", "attn.c_proj": "attn_output",
                "ln_2": "ffn_norm", "mlp.c_fc": "ffn_up", "mlp.c_proj": "ffn_down"}


def gguf_tensor_name(name: str) -> str:
    """``transformer.h.3.mlp.c_fc.weight`` → ``blk.3.ffn_up.weight`` (llama.cpp's gpt2 names)."""
    fixed = {"transformer.wte.weight": "token_embd.weight", "transformer.wpe.weight": "position_embd.weight",
             "transformer.ln_f.weight": "output_norm.weight", "transformer.ln_f.bias": "output_norm.bias",
             "lm_head.weight": "output.weight"}
    if name in fixed:
        return fixed[name]
    parts = name.split(".")
    if parts[:2] == ["transformer", "h"] and len(parts) >= 4:
        module, leaf = ".".join(parts[3:-1]), parts[-1]
        if module in _BLOCK_NAMES:
            return f"blk.{parts[2]}.{_BLOCK_NAMES[module]}.{leaf}"
    raise ValueError(f"no GGUF name for tensor {name!r}: is this an llmnotes GPT?")


def _float_weights(model) -> dict[str, torch.Tensor]:
    """Every float tensor of the model by its state_dict name; quantized layers dequantized.

    A quantized layer is any module with ``dequantize_weight()`` (every layer of
    ``llmnotes.quantize`` has it), so this module needs nothing from ``llmnotes.quantize``,
    which re-exports :func:`export_gguf`."""
    out = {k: v for k, v in model.state_dict().items() if v.is_floating_point()}
    for name, module in model.named_modules():
        if callable(getattr(module, "dequantize_weight", None)):
            for k in [k for k in out if k.startswith(name + ".")]:
                del out[k]
            out[f"{name}.weight"] = module.dequantize_weight()
            if getattr(module, "bias", None) is not None:
                out[f"{name}.bias"] = module.bias.detach()
    return {k: v.detach().float().cpu() for k, v in out.items()}


def tensor_type(gguf_name: str, shape: tuple, qtype: str) -> str:
    """The ggml type a tensor gets in a ``qtype`` export (llama.cpp's converter's rules)."""
    if len(shape) == 1 or gguf_name.endswith("_norm.weight") or not gguf_name.endswith(".weight") \
            or gguf_name.startswith("position_embd"):
        return "F32"
    if qtype in ("F32", "F16", "BF16"):
        return qtype
    return qtype if shape[-1] % QK == 0 else "F16"


def _encode(t: torch.Tensor, kind: str) -> np.ndarray:
    if kind == "F32":
        return t.numpy().astype(np.float32)
    if kind == "F16":
        return t.numpy().astype(np.float16)
    if kind == "BF16":  # numpy has no bfloat16: the raw 16 bits, rounded to nearest even by PyTorch
        return t.to(torch.bfloat16).view(torch.int16).numpy().view(np.uint16)
    return quantize_q8_0(t) if kind == "Q8_0" else quantize_q4_0(t)


def tokenizer_metadata(tokenizer, n_vocab: int) -> list[tuple[str, int, object]]:
    """``tokenizer.ggml.*`` keys: GPT-2 byte-level token strings, types, merges, special ids."""
    from llmnotes.tokenizer import GPT2_SPLIT_PATTERN, bytes_to_unicode

    if getattr(tokenizer, "pattern", GPT2_SPLIT_PATTERN) != GPT2_SPLIT_PATTERN:
        raise ValueError("llama.cpp's 'gpt-2' pre-tokenizer splits text with GPT-2's regex; this "
                         "tokenizer uses another pattern, so llama.cpp would tokenize differently")
    if tokenizer.vocab_size > n_vocab:
        raise ValueError(f"the tokenizer has {tokenizer.vocab_size} ids but the model only {n_vocab}")
    b2u = bytes_to_unicode()
    special = {i: s for s, i in tokenizer.special_tokens.items()}
    tokens, types = [], []
    for i in range(n_vocab):
        if i in special:
            tokens.append(special[i]), types.append(TOKEN_CONTROL)
        elif i in tokenizer.decoder:
            tokens.append("".join(b2u[b] for b in tokenizer.decoder[i])), types.append(TOKEN_NORMAL)
        else:  # the model has more rows than the tokenizer has ids
            tokens.append(f"[PAD{i}]"), types.append(TOKEN_UNUSED)
    merges = ["".join(b2u[x] for x in a) + " " + "".join(b2u[x] for x in b) for a, b in tokenizer.merges]
    meta = [("tokenizer.ggml.model", STRING, "gpt2"), ("tokenizer.ggml.pre", STRING, "gpt-2"),
            ("tokenizer.ggml.tokens", ARRAY, (STRING, tokens)),
            ("tokenizer.ggml.token_type", ARRAY, (INT32, types)),
            ("tokenizer.ggml.merges", ARRAY, (STRING, merges)),
            ("tokenizer.ggml.add_bos_token", BOOL, False)]
    eos = eos_id_of(tokenizer)
    if eos is not None:
        meta += [("tokenizer.ggml.bos_token_id", UINT32, eos), ("tokenizer.ggml.eos_token_id", UINT32, eos)]
    return meta


def shape_metadata(arch: str, config) -> list[tuple[str, int, object]]:
    """The ``{arch}.*`` shape keys llama.cpp reads for every architecture (gpt2, llama, ...)."""
    return [
        (f"{arch}.context_length", UINT32, config.block_size),
        (f"{arch}.embedding_length", UINT32, config.n_embd),
        (f"{arch}.feed_forward_length", UINT32, config.n_inner),
        (f"{arch}.block_count", UINT32, config.n_layer),
        (f"{arch}.attention.head_count", UINT32, config.n_head),
    ]


def export_gguf(model, tokenizer, path, qtype: str = "F16") -> Path:
    """Write ``model`` (an llmnotes GPT) and its ``BPETokenizer`` to ``path`` as GGUF v3.

    Args:
        qtype: ``"F32"``, ``"F16"``, ``"BF16"``, ``"Q8_0"`` or ``"Q4_0"`` for the matrices (see
            module doc).

    Returns:
        The path written. Run it with ``llama-cli -m path -p "Once upon a time"``.
    """
    if qtype not in FILE_TYPES:
        raise ValueError(f"qtype must be one of {', '.join(QTYPES)}, got {qtype!r}")
    config = getattr(model, "config", None)
    if config is None or not hasattr(config, "n_embd"):
        raise TypeError(f"model must be an llmnotes GPT, got {type(model).__name__}")
    if tokenizer is None or not hasattr(tokenizer, "merges"):
        raise TypeError("tokenizer must be a BPETokenizer (llama.cpp needs the vocabulary in the file)")
    weights = _float_weights(model)
    if getattr(config, "pos_emb", "learned") == "rope":  # Llama-style: llama.cpp's llama layout
        from llmnotes.convert import gguf_llama

        gguf_llama.check_exportable(config)
        arch, named = "llama", gguf_llama.llama_tensors(weights, config)
        arch_meta = shape_metadata(arch, config) + gguf_llama.llama_metadata(config, UINT32, FLOAT32, STRING)
    else:
        if "lm_head.weight" not in weights:  # tied and dropped from a state_dict: llama.cpp wants it
            weights["lm_head.weight"] = weights["transformer.wte.weight"]
        arch, named = "gpt2", {gguf_tensor_name(k): v for k, v in weights.items()}
        arch_meta = shape_metadata(arch, config) + [
            ("gpt2.attention.layer_norm_epsilon", FLOAT32, config.layer_norm_eps)]
    tensors = []
    for gname, t in named.items():
        kind = tensor_type(gname, tuple(t.shape), qtype)
        tensors.append((gname, kind, _encode(t, kind), tuple(t.shape)))
    metadata = [
        ("general.architecture", STRING, arch),
        ("general.name", STRING, "llmnotes"),
        ("general.file_type", UINT32, FILE_TYPES[qtype]),
        ("general.quantization_version", UINT32, 2),
        ("general.alignment", UINT32, ALIGNMENT),
    ] + arch_meta + tokenizer_metadata(tokenizer, config.vocab_size)
    return write_gguf(path, metadata, tensors)
