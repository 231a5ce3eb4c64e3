"""Quantization: error bounds, packing, NF4 code book, LLM.int8 outliers, GPTQ vs RTN, models."""

import copy

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from llmnotes import GPT, GPTConfig
from llmnotes.quantize import (dequantize_codes, gptq_quantize_weight, gptq_reference, output_error,
                           rtn_quantize_weight)
from llmnotes.quantize import (METHODS, NF4_CODE, LLMInt8Linear, NF4Linear, QuantizedLinear, QuantizedLinearBase,
                               absmax_quantize, dequantize, model_bytes, nf4_quantize, pack_int4,
                               perplexity, quantize_model, unpack_int4, zeropoint_quantize)

finite = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, width=32)


def _bound_ok(x, xhat, scale):
    # half a step, plus float32 rounding of the arithmetic itself
    return bool(((x - xhat).abs() <= scale / 2 * (1 + 1e-5) + 1e-6 * x.abs().clamp(min=1)).all())


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 16)), elements=finite),
       st.sampled_from([4, 8]), st.sampled_from([None, 0, 1]))
def test_absmax_roundtrip_within_half_step(a, bits, dim):
    x = torch.from_numpy(a)
    q, s = absmax_quantize(x, bits, dim=dim)
    qmax = 2 ** (bits - 1) - 1
    assert q.dtype == torch.int8 and int(q.abs().max()) <= qmax
    assert _bound_ok(x, dequantize(q, s), s)


@settings(max_examples=60, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 6), st.integers(1, 16)), elements=finite),
       st.sampled_from([4, 8]), st.sampled_from([None, 0, 1]))
def test_zeropoint_roundtrip_within_half_step(a, bits, dim):
    x = torch.from_numpy(a)
    q, s, z = zeropoint_quantize(x, bits, dim=dim)
    assert q.dtype == torch.uint8 and int(q.max()) <= 2 ** bits - 1
    assert _bound_ok(x, dequantize(q, s, z), s)


@settings(max_examples=40, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(1, 4), st.sampled_from([8, 16, 32])), elements=finite),
       st.sampled_from([2, 4, 8]))
def test_grouped_roundtrip_within_half_step(a, g):
    x = torch.from_numpy(a)
    q, s = absmax_quantize(x, 4, group_size=g)
    assert s.shape == (x.shape[0], x.shape[1] // g)
    assert _bound_ok(x, dequantize(q, s, group_size=g), s.repeat_interleave(g, -1))
    q, s, z = zeropoint_quantize(x, 4, group_size=g)
    assert _bound_ok(x, dequantize(q, s, z, group_size=g), s.repeat_interleave(g, -1))


def test_absmax_worked_example_and_zero_is_exact():
    q, s = absmax_quantize(torch.tensor([0.5, -1.27, 0.01, 0.0]))
    assert q.tolist() == [50, -127, 1, 0] and abs(s.item() - 0.01) < 1e-7
    q, s, z = zeropoint_quantize(torch.tensor([0.0, 1.0, 2.55]))
    assert z.item() == 0 and q.tolist() == [0, 100, 255]
    q, s, z = zeropoint_quantize(torch.tensor([-1.0, 0.0, 3.0]), bits=4)
    assert dequantize(q, s, z)[1].item() == 0.0  # zero survives exactly
    tiny = torch.tensor([1e-45, -2e-45, 0.0])  # subnormal: max / 127 underflows to 0
    for out in (absmax_quantize(tiny), zeropoint_quantize(tiny)):
        assert torch.isfinite(dequantize(*out)).all() and (dequantize(*out) - tiny).abs().max() < 1e-44


def test_grouped_scale_matches_per_row_on_reshaped_tensor():
    x = torch.randn(3, 12)
    _, s = absmax_quantize(x, group_size=4)
    _, s2 = absmax_quantize(x.view(3, 3, 4), dim=2)
    torch.testing.assert_close(s, s2.squeeze(-1))


def test_bad_arguments_raise_clear_errors():
    x = torch.randn(4, 8)
    with pytest.raises(ValueError, match="bits must be 4 or 8, got 3"):
        absmax_quantize(x, bits=3)
    with pytest.raises(ValueError, match="bits must be 4 or 8"):
        zeropoint_quantize(x, bits=16)
    with pytest.raises(ValueError, match="multiple of group_size=3"):
        absmax_quantize(x, group_size=3)
    with pytest.raises(ValueError, match="not both"):
        absmax_quantize(x, dim=0, group_size=4)
    with pytest.raises(TypeError, match="floating-point"):
        absmax_quantize(torch.ones(3, dtype=torch.long))
    model = GPT(GPTConfig.from_preset("nano"))
    with pytest.raises(ValueError, match="unknown method 'int3'; choose one of int8, int4, nf4, llm.int8, gptq"):
        quantize_model(model, "int3")
    with pytest.raises(ValueError, match="needs calibration"):
        quantize_model(model, "gptq")
    with pytest.raises(ValueError, match="bits must be 4 or 8, got 2"):
        quantize_model(model, "gptq", bits=2, calibration=torch.zeros(1, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="must divide in_features"):
        quantize_model(model, "int4", group_size=12)
    with pytest.raises(ValueError, match="4-bit codes must lie in"):
        pack_int4(torch.tensor([3, 16]))


def test_int4_packing_round_trip_and_layout():
    codes = torch.randint(0, 16, (5, 10), dtype=torch.uint8)
    packed = pack_int4(codes)
    assert packed.shape == (5, 5) and packed.dtype == torch.uint8
    assert torch.equal(unpack_int4(packed), codes)
    assert pack_int4(torch.tensor([0x3, 0xA])).item() == 0xA3  # element 0 low nibble, 1 high


@pytest.mark.parametrize("bits,group_size,symmetric", [(8, None, True), (8, 16, True), (8, 16, False),
                                                       (4, 16, False), (4, 16, True), (4, None, True)])
def test_quantized_linear_error_bound_and_paths_agree(bits, group_size, symmetric):
    torch.manual_seed(0)
    lin = nn.Linear(64, 24)
    ql = QuantizedLinear.from_linear(lin, bits, group_size, symmetric)
    w = ql.dequantize_weight()
    torch.testing.assert_close(w, ql.dequantize_weight_reference())
    gs = ql.group_size
    step = ql.scale.float().repeat_interleave(gs, -1)
    assert _bound_ok(lin.weight.detach(), w, step)
    x = torch.randn(3, 7, 64)
    torch.testing.assert_close(ql(x), ql.forward_reference(x), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(ql.forward_reference(x), nn.functional.linear(x, w, lin.bias), rtol=1e-5, atol=1e-5)
    # storage: 4-bit packs two codes a byte
    assert ql.qweight.numel() == 24 * 64 * bits // 8


def test_nf4_code_book_is_the_papers():
    # Rebuild QLoRA's construction: quantiles of N(0,1) at evenly spaced probabilities from
    # 0.5 to offset = (1/2)(1/30 + 1/32)... bitsandbytes uses offset 0.9677083; 8 positive, 7
    # negative levels plus an exact 0, each side normalised to [-1, 1].
    normal = torch.distributions.Normal(0.0, 1.0)
    offset = 0.9677083
    pos = normal.icdf(torch.linspace(offset, 0.5, 9, dtype=torch.float64)[:-1])
    neg = -normal.icdf(torch.linspace(offset, 0.5, 8, dtype=torch.float64)[:-1])
    v = torch.cat([pos, torch.zeros(1, dtype=torch.float64), neg]).sort().values
    v = v / v.abs().max()
    torch.testing.assert_close(NF4_CODE.double(), v, atol=1e-6, rtol=0)
    assert NF4_CODE[0] == -1 and NF4_CODE[7] == 0 and NF4_CODE[15] == 1 and len(NF4_CODE) == 16


def test_nf4_picks_nearest_level_and_double_quant():
    torch.manual_seed(0)
    x = torch.randn(4, 64)
    idx, absmax = nf4_quantize(x)
    normed = (x / x.abs().amax(1, keepdim=True)).flatten()
    nearest = (normed[:, None] - NF4_CODE[None, :]).abs().argmin(1)
    assert torch.equal(idx.flatten().long(), nearest)
    lin = nn.Linear(128, 96)
    a, b = NF4Linear.from_linear(lin), NF4Linear.from_linear(lin, double_quant=True)
    torch.testing.assert_close(a.dequantize_weight(), a.dequantize_weight_reference())
    torch.testing.assert_close(b.dequantize_weight(), b.dequantize_weight_reference())
    # double quantization perturbs the absmax only slightly and saves bytes
    rel = ((a.block_absmax() - b.block_absmax()).abs() / a.block_absmax()).max()
    assert 0 < rel < 0.05
    assert model_bytes(b) < model_bytes(a)
    err = (a.dequantize_weight() - lin.weight).abs()
    assert err.max() <= a.block_absmax().max() * 0.16  # widest NF4 gap is 1 - 0.723 ≈ 0.277


def test_nf4_block_is_quant_block_and_quantize_model_passes_group_size_as_it():
    torch.manual_seed(0)
    lin = nn.Linear(96, 8)
    layer = NF4Linear.from_linear(lin, quant_block=32)
    # one absmax per 32 consecutive weights of the flattened matrix
    assert layer.quant_block == 32 and layer.block_absmax().numel() == 96 * 8 // 32
    torch.testing.assert_close(layer.block_absmax(), lin.weight.detach().flatten().view(-1, 32).abs().amax(1))
    model = quantize_model(GPT(GPTConfig.from_preset("nano")).eval(), "nf4", group_size=16)
    assert {m.quant_block for m in model.modules() if isinstance(m, NF4Linear)} == {16}
    with pytest.raises(ValueError, match="must be even"):
        quantize_model(GPT(GPTConfig.from_preset("nano")), "nf4", group_size=15)
    with pytest.raises(ValueError, match="quant_block must be even"):
        NF4Linear(32, 32, quant_block=7)
    with pytest.raises(ValueError, match="double_quant applies to method 'nf4' only"):
        quantize_model(GPT(GPTConfig.from_preset("nano")), "int4", double_quant=True)


# Every quantized layer class, built from a float layer (several formats per class where they differ).
LINEAR_FACTORIES = {
    "QuantizedLinear int8 per row": lambda lin: QuantizedLinear.from_linear(lin, 8),
    "QuantizedLinear int8 g32 zero-point": lambda lin: QuantizedLinear.from_linear(lin, 8, 32, symmetric=False),
    "QuantizedLinear int4 g32 absmax": lambda lin: QuantizedLinear.from_linear(lin, 4, 32, symmetric=True),
    "QuantizedLinear int4 g32 zero-point": lambda lin: QuantizedLinear.from_linear(lin, 4, 32, symmetric=False),
    "NF4Linear": lambda lin: NF4Linear.from_linear(lin),
    "NF4Linear double_quant": lambda lin: NF4Linear.from_linear(lin, double_quant=True),
    "LLMInt8Linear": lambda lin: LLMInt8Linear.from_linear(lin, [3, 50]),
}


def _all_subclasses(cls):
    return {cls} | {s for c in cls.__subclasses__() for s in _all_subclasses(c)}


def test_every_quantized_layer_class_is_covered_and_saved_by_name():
    from llmnotes.quantize import LAYER_CLASSES, QuantizedEmbedding, QuantizedLayer

    concrete = _all_subclasses(QuantizedLayer) - {QuantizedLayer, QuantizedLinearBase}
    concrete = {c for c in concrete if c.__module__.startswith("llmnotes.")}
    covered = {type(make(nn.Linear(64, 16))) for make in LINEAR_FACTORIES.values()} | {QuantizedEmbedding}
    assert concrete == covered == set(LAYER_CLASSES.values())


@pytest.mark.parametrize("name", list(LINEAR_FACTORIES))
@pytest.mark.parametrize("bias", [True, False])
def test_quantized_linear_interface(name, bias):
    """Shape, bias, bits, init_args, and forward == F.linear(x, dequantize_weight(), bias)."""
    from llmnotes.quantize import QuantizedLayer

    torch.manual_seed(0)
    lin = nn.Linear(128, 96, bias=bias)
    layer = LINEAR_FACTORIES[name](lin)
    assert isinstance(layer, QuantizedLinearBase) and isinstance(layer, QuantizedLayer)
    assert (layer.in_features, layer.out_features) == (128, 96) and layer.bits in (4, 8)
    assert (layer.bias is None) == (not bias)
    if bias:
        assert isinstance(layer.bias, nn.Parameter) and torch.equal(layer.bias.detach(), lin.bias.detach())
    w = layer.dequantize_weight()
    assert w.shape == (96, 128) and w.dtype == torch.float32
    assert (w - lin.weight).abs().max() < 0.3 * lin.weight.abs().max()  # a 4-bit grid at worst
    x = torch.randn(3, 5, 128)
    with torch.no_grad():
        y, ref = layer(x), F.linear(x, w, layer.bias)
        assert y.shape == (3, 5, 96)
        torch.testing.assert_close(layer.forward_reference(x), ref)
        # exact paths agree to rounding; int8 kernels and LLM.int8() also round the activations
        rel = ((y - ref).norm() / ref.norm()).item()
        assert rel < (0.03 if layer.bits == 8 else 0.015), f"{name}: relative error {rel:.4f}"
    # init_args rebuilds an empty layer of the same shape that the state dict fills exactly
    empty = type(layer)(**layer.init_args())
    empty.load_state_dict(layer.state_dict())
    assert torch.equal(empty.dequantize_weight(), w)


def test_quantized_embedding_interface():
    from llmnotes.quantize import QuantizedEmbedding, QuantizedLayer

    torch.manual_seed(0)
    emb = nn.Embedding(50, 24)
    q = QuantizedEmbedding.from_embedding(emb)
    assert isinstance(q, QuantizedLayer) and not isinstance(q, QuantizedLinearBase) and q.bits == 8
    w = q.dequantize_weight()
    assert w.shape == (50, 24) and (w - emb.weight).abs().max() < emb.weight.abs().max() / 127
    idx = torch.tensor([[0, 7, 49], [3, 3, 1]])
    torch.testing.assert_close(q(idx), F.embedding(idx, w))
    empty = type(q)(**q.init_args())
    empty.load_state_dict(q.state_dict())
    assert torch.equal(empty.dequantize_weight(), w)


def test_is_quantized_means_any_quantized_layer():
    from llmnotes.quantize import QuantizedLayer

    for method in METHODS:
        ids = torch.randint(0, 512, (2, 16))
        kw = {"calibration": ids} if method in ("llm.int8", "gptq") else {}
        q = quantize_model(GPT(GPTConfig.from_preset("nano")).eval(), method, **kw)
        assert sum(isinstance(m, QuantizedLayer) for m in q.modules()) == 8, method
    assert not any(isinstance(m, QuantizedLayer) for m in GPT(GPTConfig.from_preset("nano")).modules())
    with pytest.raises(NotImplementedError, match="must implement dequantize_weight"):
        QuantizedLayer(8).dequantize_weight()


def test_llm_int8_keeps_outlier_columns_exact():
    torch.manual_seed(0)
    lin = nn.Linear(32, 16)
    calib = torch.randn(200, 32)
    calib[:, [3, 17]] *= 20  # two outlier features
    from llmnotes.quantize import activation_absmax

    class Wrap(nn.Module):  # token ids index rows of the calibration activations
        def __init__(self):
            super().__init__()
            self.lin = lin

        def forward(self, ids):
            return self.lin(calib[ids.flatten()])

    stats = activation_absmax(Wrap(), [("lin", lin)], torch.arange(200).view(10, 20))
    cols = torch.nonzero(stats["lin"] > 6.0).flatten().tolist()
    assert cols == [3, 17]
    q = LLMInt8Linear.from_linear(lin, cols)
    assert torch.equal(q.outlier_weight, lin.weight.detach()[:, cols].half())
    # an input living only on the outlier features goes through the 16-bit path alone
    x = torch.zeros(5, 32)
    x[:, cols] = (torch.randn(5, 2) * 30).half().float()  # fp16-representable inputs
    expect = x[:, cols] @ lin.weight.detach()[:, cols].half().float().T + lin.bias.detach()
    torch.testing.assert_close(q(x), expect, rtol=1e-6, atol=1e-6)
    # and with outliers present, LLM.int8 beats plain vector-wise int8 by a wide margin
    xs = calib[:50]
    ref = lin(xs)
    err_mixed = (q(xs) - ref).abs().max()
    err_plain = (LLMInt8Linear.from_linear(lin, [])(xs) - ref).abs().max()
    assert err_mixed * 5 < err_plain


def _correlated(n_in=96, n=3000, seed=0):
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(n_in, n_in, generator=g) * 0.3 + torch.eye(n_in)
    return torch.randn(n, n_in, generator=g) @ A


@pytest.mark.parametrize("symmetric", [False, True])
def test_gptq_fast_equals_reference_and_beats_rtn(symmetric):
    torch.manual_seed(0)
    W = torch.randn(40, 96)
    X = _correlated()
    H = 2 * X.T @ X / X.shape[0]
    ref = gptq_reference(W, H, 4, 32, symmetric)
    for bs in (128, 40, 7):  # lazy batches of any size give the same answer
        fast = gptq_quantize_weight(W, H, 4, 32, symmetric, column_batch=bs)
        assert torch.equal(fast[0], ref[0]) and torch.equal(fast[1], ref[1])
    Wg = dequantize_codes(*ref, 32, symmetric)
    Wr = dequantize_codes(*rtn_quantize_weight(W, 4, 32, symmetric), 32, symmetric)
    assert output_error(W, Wg, X) < 0.8 * output_error(W, Wr, X)
    # act-order (with static groups) also beats RTN
    Wa = dequantize_codes(*gptq_quantize_weight(W, H, 4, 32, symmetric, act_order=True), 32, symmetric)
    assert output_error(W, Wa, X) < output_error(W, Wr, X)


def test_gptq_with_identity_hessian_is_rtn():
    # H ∝ I means no correlation to exploit: GPTQ's updates vanish... except dampening changes
    # nothing either, so the codes equal round-to-nearest exactly.
    W = torch.randn(8, 64)
    H = torch.eye(64)
    g = gptq_quantize_weight(W, H, 4, 16)
    r = rtn_quantize_weight(W, 4, 16)
    assert torch.equal(g[0], r[0])


@pytest.mark.parametrize("method", METHODS)
def test_quantized_model_still_generates(method):
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("nano")).eval()
    ids = torch.randint(0, 512, (4, 32))
    kw = {"calibration": ids} if method in ("llm.int8", "gptq") else {}
    q = quantize_model(copy.deepcopy(model), method, **kw)
    assert sum(isinstance(m, QuantizedLinearBase) for m in q.modules()) == 4 * 2
    assert isinstance(q.lm_head, nn.Linear) and q.lm_head.weight is q.transformer.wte.weight
    with torch.no_grad():
        a, b = model(ids), q(ids)
        # greedy decoding with the KV cache: same tokens as re-running the full sequence each step
        x, cache = ids[:2, :8], q.make_cache(2)
        logits = q(x, cache=cache)[:, -1]
        for _ in range(8):
            nxt = logits.argmax(-1, keepdim=True)
            assert torch.equal(nxt, q(x)[:, -1].argmax(-1, keepdim=True))
            x = torch.cat([x, nxt], 1)
            logits = q(nxt, cache=cache)[:, -1]
    assert x.shape == (2, 16)
    assert (a.argmax(-1) == b.argmax(-1)).float().mean() > 0.8
    assert model_bytes(q) < model_bytes(model)


def test_model_bytes_counts_tied_once_and_int8_is_small():
    model = GPT(GPTConfig.from_preset("tiny"))
    assert model_bytes(model) == 4 * model.num_params()
    linears = [m for n, m in model.named_modules() if isinstance(m, nn.Linear) and n != "lm_head"]
    weights = sum(m.weight.numel() for m in linears)
    rows = sum(m.out_features for m in linears)
    q = quantize_model(copy.deepcopy(model), "int8")
    # every linear weight went from 4 bytes to 1, plus one fp16 scale per output row
    assert model_bytes(model) - model_bytes(q) == 3 * weights - 2 * rows


def test_perplexity_of_uniform_model_is_vocab_size():
    class Uniform(nn.Module):
        config = GPTConfig.from_preset("nano")

        def __init__(self):
            super().__init__()
            self.p = nn.Parameter(torch.zeros(1))

        def forward(self, x):
            return torch.zeros(*x.shape, 512) + self.p

    ids = torch.randint(0, 512, (200,))
    assert abs(perplexity(Uniform(), ids, block_size=16) - 512) < 1e-3


def test_quantize_perplexity_is_the_evaluate_one():
    from llmnotes import evaluate, quantize

    assert quantize.perplexity is evaluate.perplexity  # one model-level perplexity
    with pytest.raises(ValueError, match="1-D integer tensor"):
        quantize.perplexity(nn.Linear(2, 2), torch.zeros(3, 4, dtype=torch.long))


@pytest.mark.parametrize("method", METHODS)
def test_save_and_load_quantized_round_trip(tmp_path, method):
    from llmnotes.quantize import load_quantized, save_quantized

    torch.manual_seed(0)
    ids = torch.randint(0, 512, (2, 16))
    kw = {"calibration": ids} if method in ("llm.int8", "gptq") else {}
    q = quantize_model(GPT(GPTConfig.from_preset("nano")).eval(), method, **kw)
    save_quantized(q, method, tmp_path / "q")
    back = load_quantized(tmp_path / "q")
    assert torch.equal(back(ids), q(ids))
    assert back.lm_head.weight is back.transformer.wte.weight
    with pytest.raises(FileNotFoundError, match="quantization.json"):
        load_quantized(tmp_path)


def test_nf4_directory_saved_with_the_old_argument_names_still_loads(tmp_path):
    import json

    from llmnotes.quantize import load_quantized, save_quantized

    q = quantize_model(GPT(GPTConfig.from_preset("nano")).eval(), "nf4", double_quant=True)
    save_quantized(q, "nf4", tmp_path)
    meta = json.loads((tmp_path / "quantization.json").read_text())
    old = {"quant_block": "block_size", "dq_block": "dq_block_size"}
    for spec in meta["layers"].values():  # as written before the NF4 block had its own name
        spec["args"] = {old.get(k, k): v for k, v in spec["args"].items()}
    assert "block_size" in json.dumps(meta["layers"])
    (tmp_path / "quantization.json").write_text(json.dumps(meta))
    ids = torch.randint(0, 512, (1, 8))
    assert torch.equal(load_quantized(tmp_path)(ids), q(ids))


def test_quantize_command(tmp_path):
    import subprocess
    import sys

    from llmnotes.data import load_corpus
    from llmnotes.tokenizer import BPETokenizer

    tok = BPETokenizer.train(load_corpus("val")[:5000], 300, special_tokens=["<|endoftext|>"])
    torch.manual_seed(0)
    GPT(GPTConfig.from_preset("nano")).save_pretrained(tmp_path / "m")
    tok.save(tmp_path / "m")
    res = subprocess.run([sys.executable, "-m", "llmnotes", "quantize", "--model", str(tmp_path / "m"),
                          "--method", "int4", "--group-size", "32", "--tokens", "1000", "--out", str(tmp_path / "q")],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert "bytes" in res.stdout and "perplexity" in res.stdout
    assert (tmp_path / "q" / "quantized.safetensors").is_file() and (tmp_path / "q" / "vocab.json").is_file()
    bad = subprocess.run([sys.executable, "-m", "llmnotes", "quantize", "--model", str(tmp_path / "m"),
                          "--method", "int3"], capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "int3" in bad.stderr


def test_int8_embeddings_keep_the_tie_and_shrink_the_model(tmp_path):
    from llmnotes.quantize import QuantizedEmbedding
    from llmnotes.quantize import load_quantized, save_quantized

    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny")).eval()
    q = quantize_model(copy.deepcopy(model), "int8", embeddings=True)
    wte = q.transformer.wte
    assert isinstance(wte, QuantizedEmbedding) and isinstance(q.lm_head, QuantizedLinear)
    assert q.lm_head.qweight is wte.qweight and q.lm_head.scale is wte.scale  # one table in memory
    # each row within half a step of its fp16 scale
    w = model.transformer.wte.weight.detach()
    assert _bound_ok(w, wte.dequantize_weight(), wte.scale.float())
    ids = torch.randint(0, 2048, (2, 24))
    torch.testing.assert_close(wte(ids), wte.dequantize_weight()[ids])
    torch.testing.assert_close(q.lm_head.dequantize_weight(), wte.dequantize_weight())
    assert model_bytes(q) <= 0.30 * model_bytes(model)
    with torch.no_grad():
        assert (q(ids).argmax(-1) == model(ids).argmax(-1)).float().mean() > 0.9
        save_quantized(q, "int8", tmp_path / "q")
        back = load_quantized(tmp_path / "q")
        assert torch.equal(back(ids), q(ids))
    assert back.lm_head.qweight is back.transformer.wte.qweight
