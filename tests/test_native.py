"""llmnotes' own C++ decode kernels (llmnotes.native) against PyTorch.

Three oracles: ``F.linear`` for the float32 kernel (to float rounding); for the integer kernels,
the same arithmetic written out in PyTorch (activations rounded to int8 in blocks of 32, exact
integer dot products, then the scales: must agree to float rounding), and the readable
dequantize-then-matmul path (must agree within the activation rounding, under 1% in norm).
Where the kernels cannot be built here the tests say why and skip; the fallback is tested too.
"""

import copy
import subprocess
import sys

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmnotes import GPT, GPTConfig, fast_linear, native
from llmnotes.quantize import QuantizedLinear, layers, quantize_model, set_kernel
from llmnotes.sampling import generate

KERNELS = native.kernels()
needs_native = pytest.mark.skipif(KERNELS is None, reason=f"llmnotes.native unavailable: {native.unavailable()}")


def rel_err(y, ref):
    return ((y - ref).norm() / ref.norm()).item()


def blocks_of_32(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """x (K,) -> (int8 values (K,), scale per block of 32), as the kernels round activations."""
    pad = (-x.numel()) % 32
    blocks = F.pad(x, (0, pad)).view(-1, 32)
    scale = blocks.abs().amax(1) / 127
    q = torch.where(scale[:, None] > 0, torch.round(blocks / scale[:, None].clamp_min(1e-30)), 0.0)
    return q.flatten()[: x.numel()].to(torch.int64), scale


def int8_oracle(x, codes, row_scale, group_scale=None, group_size=None, bias=None):
    """The integer kernels' arithmetic in PyTorch: exact int64 dot products per block of 32."""
    qx, sx = blocks_of_32(x)
    n, k = codes.shape
    qx = F.pad(qx, (0, (-k) % 32)).view(-1, 32)
    w = F.pad(codes.to(torch.int64), (0, (-k) % 32)).view(n, -1, 32)
    per_block = (w * qx).sum(-1).double() * sx.double()  # (n, blocks)
    if group_scale is not None:
        per_block = per_block * group_scale.double().repeat_interleave(group_size // 32, 1)
        y = per_block.sum(1)
    else:
        y = per_block.sum(1) * row_scale.double()
    return (y if bias is None else y + bias.double()).float()


@needs_native
@pytest.mark.parametrize("shape", [(2304, 768), (50, 100), (7, 3), (130, 1000)])
@pytest.mark.parametrize("bias", [True, False])
def test_gemv_f32_matches_f_linear(shape, bias):
    torch.manual_seed(0)
    w, x = torch.randn(shape), torch.randn(shape[1])
    b = torch.randn(shape[0]) if bias else None
    torch.testing.assert_close(KERNELS.gemv_f32(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-4)


@needs_native
@pytest.mark.parametrize("shape", [(768, 768), (300, 3072), (33, 100), (5, 40)])
def test_gemv_q8_is_exact_block_arithmetic(shape):
    torch.manual_seed(1)
    w, x, b = torch.randn(shape), torch.randn(shape[1]) * 3, torch.randn(shape[0])
    x[::17] = 0.0  # zeros and a whole zero block must not divide by zero
    x[:32] = 0.0
    scale = w.abs().amax(1) / 127
    codes = torch.round(w / scale[:, None]).clamp(-127, 127).to(torch.int8)
    y = KERNELS.gemv_q8(x, codes, scale, b)
    torch.testing.assert_close(y, int8_oracle(x, codes, scale, bias=b), rtol=1e-5, atol=1e-4)
    reference = F.linear(x, codes.float() * scale[:, None], b)  # dequantize, then matmul
    assert rel_err(y, reference) < 0.01


@needs_native
@pytest.mark.parametrize("group_size", [32, 64, 128])
def test_gemv_q4_is_exact_block_arithmetic(group_size):
    torch.manual_seed(2)
    n, k = 96, 768
    w, x = torch.randn(n, k), torch.randn(k)
    scale = w.view(n, -1, group_size).abs().amax(-1) / 7
    codes = torch.round(w.view(n, -1, group_size) / scale[..., None]).clamp(-8, 7).view(n, k)
    packed = KERNELS.pack_q4((codes + 8).to(torch.uint8))
    y = KERNELS.gemv_q4(x, packed, scale.contiguous(), group_size, None)
    oracle = int8_oracle(x, codes.to(torch.int8), None, scale, group_size)
    torch.testing.assert_close(y, oracle, rtol=1e-5, atol=1e-4)
    assert rel_err(y, F.linear(x, (codes.view(n, -1, group_size) * scale[..., None]).view(n, k))) < 0.01


@needs_native
@pytest.mark.parametrize("rows", [1, 2, 3, 4, 5, 16, 17, 64])
@pytest.mark.parametrize("shape", [(2304, 768), (7, 3), (130, 1000), (6, 16)])
@pytest.mark.parametrize("bias", [True, False])
def test_gemm_f32_rows_matches_f_linear(rows, shape, bias):
    """Every tile size (4 x 4 and the edges: 1-3 input rows, 1-3 weight rows, a partial vector)."""
    torch.manual_seed(rows)
    w, x = torch.randn(shape), torch.randn(rows, shape[1])
    b = torch.randn(shape[0]) if bias else None
    torch.testing.assert_close(KERNELS.gemm_f32_rows(x, w, b), F.linear(x, w, b), rtol=1e-5, atol=1e-4)


needs_bf16 = pytest.mark.skipif(native.bf16_kernel() is None, reason="no AVX512-BF16 kernel on this CPU/build")


@needs_bf16
@pytest.mark.parametrize("shape", [(2304, 768), (50, 100), (7, 3), (130, 1000)])
@pytest.mark.parametrize("bias", [True, False])
def test_gemv_bf16_is_float32_sums_rounded_once(shape, bias):
    """Oracle: the bf16 products summed in float32 (exact: bf16 x bf16 fits in float32), the
    bias added, one rounding to bf16. Summation order may move a result by one bf16 step."""
    torch.manual_seed(1)
    w, x = torch.randn(shape).bfloat16(), torch.randn(shape[1]).bfloat16()
    b = torch.randn(shape[0]).bfloat16() if bias else None
    got = KERNELS.gemv_bf16(x, w, b)
    exact = w.double() @ x.double() + (b.double() if bias else 0)
    assert got.dtype == torch.bfloat16
    step = torch.finfo(torch.bfloat16).eps * exact.abs().clamp_min(1e-3)  # one bf16 step at each value
    assert ((got.double() - exact).abs() <= step).all()
    torch.testing.assert_close(got, F.linear(x, w, b), rtol=1e-2, atol=1e-2)


@needs_bf16
def test_gemv_bf16_rejects_other_dtypes():
    with pytest.raises(RuntimeError, match="bfloat16"):
        KERNELS.gemv_bf16(torch.randn(64), torch.randn(8, 64).bfloat16(), None)
    with pytest.raises(RuntimeError, match="bfloat16 matrix"):
        KERNELS.gemv_bf16(torch.randn(64).bfloat16(), torch.randn(8, 64), None)
    with pytest.raises(RuntimeError, match="bias must be"):
        KERNELS.gemv_bf16(torch.randn(64).bfloat16(), torch.randn(8, 64).bfloat16(), torch.randn(8))


@needs_native
def test_kernels_give_the_same_bits_at_any_thread_count():
    torch.manual_seed(3)
    w, x = torch.randn(4096, 768), torch.randn(768)
    codes = torch.randint(-127, 128, (4096, 768), dtype=torch.int8)
    scale = torch.rand(4096)
    threads = torch.get_num_threads()
    try:
        out = []
        for t in (1, 2):
            torch.set_num_threads(t)
            out.append((KERNELS.gemv_f32(x, w, None), KERNELS.gemv_q8(x, codes, scale, None),
                        KERNELS.gemm_f32_rows(torch.stack([x, -x, 2 * x]), w, None)))
    finally:
        torch.set_num_threads(threads)
    assert all(torch.equal(a, b) for a, b in zip(out[0], out[1]))


@needs_native
def test_bad_inputs_say_what_is_wrong():
    w = torch.randn(8, 64)
    with pytest.raises(RuntimeError, match="one row of 64"):
        KERNELS.gemv_f32(torch.randn(2, 64), w, None)
    with pytest.raises(RuntimeError, match="float32"):
        KERNELS.gemv_f32(torch.randn(64).double(), w, None)
    with pytest.raises(RuntimeError, match="bias must be"):
        KERNELS.gemv_f32(torch.randn(64), w, torch.randn(7))
    with pytest.raises(RuntimeError, match="row_scale"):
        KERNELS.gemv_q8(torch.randn(64), torch.zeros(8, 64, dtype=torch.int8), torch.ones(3), None)
    with pytest.raises(RuntimeError, match="x has 32 columns but w has 64"):
        KERNELS.gemm_f32_rows(torch.randn(3, 32), w, None)
    with pytest.raises(RuntimeError, match=r"\(rows, in\) float32"):
        KERNELS.gemm_f32_rows(torch.randn(3, 64).t(), w, None)
    with pytest.raises(RuntimeError, match="0..15"):
        KERNELS.pack_q4(torch.full((2, 64), 16, dtype=torch.uint8))
    with pytest.raises(RuntimeError, match="divisible by 64"):
        KERNELS.pack_q4(torch.zeros(2, 96, dtype=torch.uint8))


def test_disabled_by_the_environment_with_a_reason():
    code = "from llmnotes import native; print(native.kernels() is None, native.unavailable())"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={"LLMNOTES_NATIVE": "0", "PATH": "/usr/bin:/bin"}).stdout
    assert out.strip() == "True disabled by LLMNOTES_NATIVE=0"


# ---------------------------------------------------------------------------------------------
# In the layers
# ---------------------------------------------------------------------------------------------


def gpt2_shaped():
    """GPT-2 small's widths with two layers and a small vocabulary: big enough to measure."""
    torch.manual_seed(0)
    return GPT(GPTConfig.from_preset("gpt2", n_layer=2, vocab_size=4096, block_size=64)).eval()


@needs_native
def test_native_linear_decodes_the_same_tokens():
    model = gpt2_shaped()
    idx = torch.randint(0, 4096, (1, 6), generator=torch.Generator().manual_seed(1))
    plain = generate(model, idx, 12, temperature=0)
    fast = fast_linear.prepare_for_decode(copy.deepcopy(model), path="native")
    assert {type(m) for m in fast.modules()} >= {fast_linear.NativeLinear}
    assert torch.equal(generate(fast, idx, 12, temperature=0), plain)
    # prompts (many rows) and training go through F.linear, with gradients
    F.cross_entropy(fast(idx).flatten(0, 1), idx.flatten()).backward()
    assert fast.lm_head.weight.grad is not None


@needs_native
def test_native_linear_one_row_matches_f_linear_under_no_grad():
    lin = nn.Linear(768, 512)
    fast = copy.deepcopy(lin)
    fast.__class__ = fast_linear.NativeLinear
    x = torch.randn(1, 1, 768)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), lin(x), rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(fast(torch.randn(3, 768)).shape, torch.Size([3, 512]))


@needs_native
def test_native_linear_rows_kernel_for_prompts_only_where_set():
    lin = nn.Linear(768, 512)
    fast = copy.deepcopy(lin)
    fast.__class__ = fast_linear.NativeLinear
    x = torch.randn(2, 5, 768)  # 10 rows: a prompt or a small batch
    calls = []
    real = KERNELS.gemm_f32_rows

    class Spy:
        def __getattr__(self, name):
            return getattr(KERNELS, name)

        def gemm_f32_rows(self, *a):
            calls.append(a[0].shape)
            return real(*a)

    import llmnotes.native as native_mod
    orig = native_mod.kernels
    native_mod.kernels = lambda: Spy()
    try:
        with torch.no_grad():
            fast(x)
            assert calls == []  # not measured faster: F.linear
            fast.rows_kernel = True
            torch.testing.assert_close(fast(x), lin(x), rtol=1e-5, atol=1e-5)
            assert calls == [torch.Size([10, 768])]
            fast(torch.randn(65, 768))  # above MAX_SPLIT_ROWS: F.linear again
            assert len(calls) == 1
        out = fast(x.requires_grad_())  # training: F.linear, with gradients
        out.sum().backward()
        assert len(calls) == 1 and x.grad is not None
    finally:
        native_mod.kernels = orig


@needs_native
def test_prepare_measures_the_rows_kernel_and_reports_it():
    model = fast_linear.prepare_for_decode(gpt2_shaped(), path="native")
    assert all(m.rows_kernel for m in model.modules() if type(m) is fast_linear.NativeLinear)
    model = gpt2_shaped()
    fast_linear.prepare_for_decode(model)
    for entry in fast_linear.decode_plan(model):
        if entry["path"] == "native":
            choice, ms = entry["rows"]
            assert choice in ("native", "torch") and set(ms) == {"native", "torch"}


@needs_native
@pytest.mark.parametrize("bits,group_size,name",
                         [(8, None, "int8-native"), (4, 32, "int4-native"), (4, 128, "int4-native")])
def test_quantized_layer_native_kernel_matches_its_reference(bits, group_size, name):
    torch.manual_seed(4)
    q = QuantizedLinear.from_linear(nn.Linear(768, 300), bits, group_size, symmetric=True)
    assert name in q.kernel_names()
    run = q._packed(name)
    assert run.kernel == name
    with torch.no_grad():
        for x in (torch.randn(1, 768), torch.randn(1, 1, 768), torch.randn(4, 768)):  # 4 rows: the fallback
            y, ref = run(x), q.forward_reference(x)
            assert y.shape == ref.shape and rel_err(y, ref) < 0.02


@needs_native
def test_native_kernel_follows_a_changed_weight():
    q = QuantizedLinear.from_linear(nn.Linear(256, 64), 8)
    x = torch.randn(1, 256)
    with torch.no_grad():
        before = q._packed("int8-native")(x)
        q.scale.mul_(2)  # in place: the stamp changes, the kernel must re-read the scales
        after = q._packed("int8-native")(x)
    torch.testing.assert_close(after - q.bias, 2 * (before - q.bias), rtol=1e-4, atol=1e-4)


@needs_native
@pytest.mark.parametrize("method,kw", [("int8", {"embeddings": True}), ("int4", {"group_size": 32, "symmetric": True})])
def test_prepared_quantized_model_uses_and_agrees_with_the_native_kernels(method, kw):
    q = quantize_model(gpt2_shaped(), method, **kw)
    chosen = {m.choose_decode_kernel(from_memory=False) for m in q.modules() if isinstance(m, QuantizedLinear)}
    assert chosen <= {"readable", "int8", "int4", "int8-native", "int4-native"}
    idx = torch.randint(0, 4096, (1, 6), generator=torch.Generator().manual_seed(2))
    ref = set_kernel(copy.deepcopy(q), "reference")
    set_kernel(q, "native")  # llmnotes' kernels whatever measured fastest: this test checks them
    with torch.no_grad():
        tokens, ref_tokens = generate(q, idx, 16, temperature=0), generate(ref, idx, 16, temperature=0)
        last, ref_last = q(idx[:, :1])[0, -1], ref(idx[:, :1])[0, -1]  # one row: the native kernels
    assert rel_err(last, ref_last) < 0.02
    assert (tokens == ref_tokens).float().mean() > 0.8  # activation rounding may flip a near tie
    used = {getattr(layers._FAST[m][1], "kernel", None) for m in q.modules() if isinstance(m, QuantizedLinear)}
    assert used == {f"{method}-native"}
