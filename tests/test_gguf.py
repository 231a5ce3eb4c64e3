"""GGUF export, checked with the `gguf` package (llama.cpp's own Python reader) as the oracle."""

import subprocess
import sys

import numpy as np
import pytest
import torch

gguf = pytest.importorskip("gguf")
from gguf import GGMLQuantizationType, GGUFReader  # noqa: E402
from gguf.quants import dequantize as gguf_dequantize  # noqa: E402
from gguf.quants import quantize as gguf_quantize  # noqa: E402

from llmnotes import GPT, GPTConfig  # noqa: E402
from llmnotes.convert.gguf import (dequantize_q4_0, dequantize_q8_0, export_gguf, quantize_q4_0,  # noqa: E402
                           quantize_q8_0)
from llmnotes.quantize import export_gguf as export_from_quantize  # noqa: E402
from llmnotes.quantize import quantize_model  # noqa: E402
from llmnotes.tokenizer import BPETokenizer, bytes_to_unicode  # noqa: E402

TEXT = ("Once upon a time, a small fox found a red ball in the garden. The fox liked the ball. "
        "It rolled the ball to the river, and the river carried it away. 123 apples! ") * 20


@pytest.fixture(scope="module")
def tok():
    return BPETokenizer.train(TEXT, 300, special_tokens=["<|endoftext|>"])


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    # n_embd 64: rows of 64 and 256 quantize; vocab 320 > tokenizer's 300 ids exercises padding
    return GPT(GPTConfig(vocab_size=320, block_size=32, n_layer=2, n_head=2, n_embd=64)).eval()


def _field(reader, key):
    f = reader.fields[key]
    if f.types[0] == gguf.GGUFValueType.ARRAY:
        if f.types[1] == gguf.GGUFValueType.STRING:
            return [bytes(f.parts[i]).decode("utf-8") for i in f.data]
        return [f.parts[i].item() for i in f.data]
    if f.types[0] == gguf.GGUFValueType.STRING:
        return bytes(f.parts[f.data[0]]).decode("utf-8")
    return f.parts[f.data[0]].item()


@pytest.mark.parametrize("kind,mine,back", [(GGMLQuantizationType.Q8_0, quantize_q8_0, dequantize_q8_0),
                                            (GGMLQuantizationType.Q4_0, quantize_q4_0, dequantize_q4_0)])
def test_block_quantization_is_byte_identical_to_ggml(kind, mine, back):
    torch.manual_seed(1)
    x = torch.randn(16, 128) * torch.logspace(-3, 2, 16)[:, None]
    x[0, :32] = 0.0  # an all-zero block
    x[1, :32] = 1.0  # a block of ties
    x[2, 3], x[2, 7] = 5.0, -5.0  # equal magnitudes: the first one decides Q4_0's sign
    ours = mine(x).reshape(16, -1)
    assert ours.shape[1] == 128 // 32 * {GGMLQuantizationType.Q8_0: 34, GGMLQuantizationType.Q4_0: 18}[kind]
    np.testing.assert_array_equal(ours, gguf_quantize(x.numpy(), kind))
    np.testing.assert_array_equal(back(ours), gguf_dequantize(ours, kind).reshape(-1))


def test_block_error_bounds_and_q4_layout():
    x = torch.randn(4, 64)
    d8 = x.view(-1, 32).abs().amax(1, keepdim=True) / 127
    # half a step, plus the fp16 rounding of d times the largest code (127 · 2**-11 steps)
    assert (torch.from_numpy(dequantize_q8_0(quantize_q8_0(x))).view(-1, 32) - x.view(-1, 32)).abs().le(
        d8 * (0.5 + 127 / 2048)).all()
    # one block by hand: values j/2 for j=0..31 → the max (15.5) gets code 0, d = -15.5/8
    v = torch.arange(32, dtype=torch.float32) / 2
    blk = quantize_q4_0(v)[0]
    d = np.frombuffer(blk[:2].tobytes(), np.float16)[0]
    assert d == np.float16(-15.5 / 8)
    codes = np.concatenate([blk[2:] & 15, blk[2:] >> 4])
    assert codes[31] == 0 and codes[0] == 8  # x=0 ↦ 8; element 31 lives in byte 15's high nibble
    assert blk[2 + 15] >> 4 == codes[31] and blk[2] & 15 == codes[0]
    with pytest.raises(ValueError, match="not a multiple of 32"):
        quantize_q8_0(torch.randn(2, 48))


@pytest.mark.parametrize("qtype", ["F32", "F16", "BF16", "Q8_0", "Q4_0"])
def test_export_reads_back_with_gguf_reader(tmp_path, model, tok, qtype):
    path = export_gguf(model, tok, tmp_path / f"m-{qtype}.gguf", qtype)
    r = GGUFReader(path)
    assert _field(r, "GGUF.version") == 3
    assert _field(r, "general.architecture") == "gpt2"
    assert _field(r, "general.alignment") == 32
    assert _field(r, "general.file_type") == {"F32": 0, "F16": 1, "BF16": 32, "Q8_0": 7, "Q4_0": 2}[qtype]
    c = model.config
    assert _field(r, "gpt2.context_length") == c.block_size
    assert _field(r, "gpt2.embedding_length") == c.n_embd
    assert _field(r, "gpt2.feed_forward_length") == 4 * c.n_embd
    assert _field(r, "gpt2.block_count") == c.n_layer
    assert _field(r, "gpt2.attention.head_count") == c.n_head
    assert abs(_field(r, "gpt2.attention.layer_norm_epsilon") - 1e-5) < 1e-12
    # tokenizer
    assert _field(r, "tokenizer.ggml.model") == "gpt2" and _field(r, "tokenizer.ggml.pre") == "gpt-2"
    tokens, types = _field(r, "tokenizer.ggml.tokens"), _field(r, "tokenizer.ggml.token_type")
    assert len(tokens) == len(types) == c.vocab_size
    b2u = bytes_to_unicode()
    for i in range(tok.vocab_size):
        if i == tok.eot_id:
            assert tokens[i] == "<|endoftext|>" and types[i] == 3
        else:
            assert tokens[i] == "".join(b2u[b] for b in tok.decoder[i]) and types[i] == 1
    assert types[tok.vocab_size:] == [5] * (c.vocab_size - tok.vocab_size)
    merges = _field(r, "tokenizer.ggml.merges")
    assert len(merges) == len(tok.merges) and merges[0].count(" ") == 1
    assert _field(r, "tokenizer.ggml.eos_token_id") == tok.eot_id
    # tensors: names, shapes, types, values
    sd = {k: v.float() for k, v in model.state_dict().items()}
    expected_names = {"token_embd.weight", "position_embd.weight", "output_norm.weight", "output_norm.bias",
                      "output.weight"} | {f"blk.{i}.{n}.{wb}" for i in range(c.n_layer)
                                          for n in ("attn_norm", "attn_qkv", "attn_output", "ffn_norm",
                                                    "ffn_up", "ffn_down") for wb in ("weight", "bias")}
    tensors = {t.name: t for t in r.tensors}
    assert set(tensors) == expected_names
    pairs = {"token_embd.weight": "transformer.wte.weight", "blk.1.attn_qkv.weight": "transformer.h.1.attn.c_attn.weight",
             "blk.0.ffn_down.weight": "transformer.h.0.mlp.c_proj.weight", "blk.0.ffn_up.bias": "transformer.h.0.mlp.c_fc.bias",
             "position_embd.weight": "transformer.wpe.weight", "output.weight": "lm_head.weight",
             "blk.1.attn_norm.weight": "transformer.h.1.ln_1.weight"}
    for gname, pname in pairs.items():
        t, w = tensors[gname], sd[pname]
        assert list(t.shape) == list(reversed(w.shape))  # ggml: fastest-varying dimension first
        one_d = w.ndim == 1 or gname.startswith("position_embd")
        want = "F32" if one_d else qtype
        assert t.tensor_type.name == want
        values = gguf_dequantize(t.data, t.tensor_type).reshape(w.shape)
        if want == "F32":
            np.testing.assert_array_equal(values, w.numpy())
        elif want == "F16":
            np.testing.assert_array_equal(values, w.numpy().astype(np.float16).astype(np.float32))
        elif want == "BF16":  # gguf's own decoding equals PyTorch's rounding to bfloat16
            np.testing.assert_array_equal(values, w.bfloat16().float().numpy())
        else:
            ours = (dequantize_q8_0 if want == "Q8_0" else dequantize_q4_0)(np.asarray(t.data))
            np.testing.assert_array_equal(values.reshape(-1), ours)  # llmnotes' dequantization == gguf's
            blocks = w.reshape(-1, 32)
            step = blocks.abs().amax(1, keepdim=True) / (127 if want == "Q8_0" else 8)
            err = (torch.from_numpy(values.copy()).reshape(-1, 32) - blocks).abs()
            # Q8_0: half a step + fp16 rounding of d; Q4_0: values of the sign opposite to the
            # block's extreme reach code 16, clipped to 15, so up to one step (+ fp16 rounding)
            bound = (0.5 + 127 / 2048) if want == "Q8_0" else (1 + 8 / 2048)
            assert (err <= step * bound + 1e-8).all()


def test_odd_row_lengths_fall_back_to_f16(tmp_path, tok):
    m = GPT(GPTConfig(vocab_size=320, block_size=16, n_layer=1, n_head=2, n_embd=48))  # 48 % 32 != 0
    r = GGUFReader(export_gguf(m, tok, tmp_path / "odd.gguf", "Q8_0"))
    kinds = {t.name: t.tensor_type.name for t in r.tensors}
    assert kinds["blk.0.attn_qkv.weight"] == "F16"  # rows of 48
    assert kinds["blk.0.ffn_down.weight"] == "Q8_0"  # rows of 192
    assert kinds["blk.0.attn_qkv.bias"] == "F32"


def test_quantized_model_exports_its_dequantized_weights(tmp_path, model, tok):
    import copy

    q = quantize_model(copy.deepcopy(model), "int8")
    r = GGUFReader(export_from_quantize(q, tok, tmp_path / "q.gguf", "F32"))
    t = next(t for t in r.tensors if t.name == "blk.0.attn_qkv.weight")
    w = q.transformer.h[0].attn.c_attn.dequantize_weight()
    np.testing.assert_array_equal(np.asarray(t.data).reshape(w.shape), w.numpy())


def test_bad_arguments(tmp_path, model, tok):
    with pytest.raises(ValueError, match="qtype must be one of F32, F16, BF16, Q8_0, Q4_0, got 'Q5_K'"):
        export_gguf(model, tok, tmp_path / "x.gguf", "Q5_K")
    with pytest.raises(TypeError, match="tokenizer must be a BPETokenizer"):
        export_gguf(model, None, tmp_path / "x.gguf", "F16")
    with pytest.raises(TypeError, match="llmnotes GPT"):
        export_gguf(torch.nn.Linear(2, 2), tok, tmp_path / "x.gguf", "F16")
    assert not (tmp_path / "x.gguf").exists()


def test_export_command(tmp_path, model, tok):
    model.save_pretrained(tmp_path / "m")
    tok.save(tmp_path / "m")
    out = tmp_path / "m.gguf"
    res = subprocess.run([sys.executable, "-m", "llmnotes", "export", "--model", str(tmp_path / "m"),
                          "--out", str(out), "--qtype", "Q8_0"], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    assert "llama-cli -m" in res.stdout
    assert GGUFReader(out).fields["general.file_type"].parts[-1].item() == 7
