"""Llama-style models exported as llama.cpp's 'llama' GGUF architecture, read back with `gguf`."""

import numpy as np
import pytest
import torch

from llmnotes import GPT, GPTConfig
from llmnotes.convert.gguf_llama import from_interleaved_rope, to_interleaved_rope
from llmnotes.layers import apply_rope, rope_cos_sin, rope_frequencies
from llmnotes.quantize import export_gguf
from llmnotes.tokenizer import load_tokenizer

gguf = pytest.importorskip("gguf")


def llama(**kw):
    torch.manual_seed(0)
    return GPT(GPTConfig.from_preset("llama-tiny", **kw)).eval()


def read(path):
    reader = gguf.GGUFReader(str(path))
    fields = {k: f for k, f in reader.fields.items()}
    tensors = {t.name: t for t in reader.tensors}
    return reader, fields, tensors


def scalar(field):
    return field.parts[field.data[0]][0]


def test_llama_export_metadata_and_tensors(tmp_path):
    model = llama()
    path = export_gguf(model, load_tokenizer(), tmp_path / "m.gguf", "F32")
    _, fields, tensors = read(path)
    arch = bytes(fields["general.architecture"].parts[-1]).decode()
    assert arch == "llama"
    c = model.config
    assert scalar(fields["llama.attention.head_count_kv"]) == c.n_kv_head == 2
    assert scalar(fields["llama.rope.dimension_count"]) == c.head_dim
    assert scalar(fields["llama.feed_forward_length"]) == c.n_inner
    assert scalar(fields["llama.rope.freq_base"]) == pytest.approx(c.rope_theta)
    expected = {"token_embd.weight", "output_norm.weight", "output.weight"} | {
        f"blk.{i}.{n}.weight" for i in range(c.n_layer) for n in
        ("attn_norm", "attn_q", "attn_k", "attn_v", "attn_output", "ffn_norm", "ffn_gate", "ffn_up", "ffn_down")}
    assert set(tensors) == expected
    # GGUF lists dimensions innermost first: a (out, in) matrix appears as (in, out)
    assert tuple(tensors["blk.0.attn_k.weight"].shape) == (c.n_embd, c.n_kv_head * c.head_dim)
    # values survive, and q/k rows were permuted exactly as llama.cpp's converter does
    q = torch.from_numpy(np.array(tensors["blk.1.attn_q.weight"].data)).reshape(c.n_head * c.head_dim, c.n_embd)
    ours_q = model.transformer.h[1].attn.c_attn.weight[: c.n_head * c.head_dim]
    torch.testing.assert_close(from_interleaved_rope(q, c.n_head), ours_q)
    gate = torch.from_numpy(np.array(tensors["blk.0.ffn_gate.weight"].data)).reshape(c.n_inner, c.n_embd)
    torch.testing.assert_close(gate, model.transformer.h[0].mlp.c_fc.weight[: c.n_inner])


def test_interleaved_layout_gives_the_same_attention_scores():
    """Rotating adjacent pairs of the permuted projections = rotating (i, i+d/2) of the originals."""
    torch.manual_seed(0)
    n_head, hs, C = 2, 8, 16
    wq, wk, x = torch.randn(n_head * hs, C), torch.randn(n_head * hs, C), torch.randn(5, C)
    inv = rope_frequencies(hs)
    cos, sin = rope_cos_sin(torch.arange(5)[None], inv, torch.float32)

    def heads(w):
        return (x @ w.T).view(5, n_head, hs).transpose(0, 1)[None]  # (1, nh, T, hs)

    def rope_adjacent(t):  # llama.cpp's "normal" RoPE: pairs (2i, 2i+1)
        angle = torch.arange(5)[:, None].float() * inv  # (T, hs/2)
        t0, t1 = t[..., 0::2], t[..., 1::2]
        out = torch.empty_like(t)
        out[..., 0::2] = t0 * angle.cos() - t1 * angle.sin()
        out[..., 1::2] = t0 * angle.sin() + t1 * angle.cos()
        return out

    ref = apply_rope(heads(wq), cos, sin) @ apply_rope(heads(wk), cos, sin).transpose(-1, -2)
    got = rope_adjacent(heads(to_interleaved_rope(wq, n_head))) @ \
        rope_adjacent(heads(to_interleaved_rope(wk, n_head))).transpose(-1, -2)
    torch.testing.assert_close(got, ref, atol=1e-4, rtol=1e-4)
    torch.testing.assert_close(from_interleaved_rope(to_interleaved_rope(wq, n_head), n_head), wq)


def test_q8_0_llama_export_reads_back(tmp_path):
    from gguf.quants import dequantize

    model = llama(tie_embeddings=True)
    path = export_gguf(model, load_tokenizer(), tmp_path / "q.gguf", "Q8_0")
    _, _, tensors = read(path)
    assert "output.weight" not in tensors  # tied: llama.cpp reuses token_embd
    t = tensors["blk.0.ffn_down.weight"]
    w = dequantize(t.data, t.tensor_type).reshape(model.config.n_embd, model.config.n_inner)
    ref = model.transformer.h[0].mlp.c_proj.weight.detach().numpy()
    assert np.abs(w - ref).max() <= np.abs(ref).max() / 127 + 1e-6


@pytest.mark.parametrize("kw,msg", [(dict(qk_norm=True), "QK-norm"), (dict(sliding_window=16), "sliding-window"),
                                    (dict(qkv_bias=True), "biases")])
def test_unsupported_variants_are_refused(tmp_path, kw, msg):
    with pytest.raises(ValueError, match=msg):
        export_gguf(llama(**kw), load_tokenizer(), tmp_path / "x.gguf", "F16")
