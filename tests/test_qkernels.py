"""Fast CPU kernels of the quantized layers (llmnotes.qkernels) against the readable
dequantize-then-matmul path they replace.

Tolerances: the int8 kernel also rounds the *activations* to 8 bits (one scale per call), which
costs about 1% of the output's norm; the int4 kernel computes with bfloat16 activations and
scales, about 0.5%. Each test allows 3% (int8) / 1.5% (int4) relative error in norm.
"""

import copy

import pytest
import torch
import torch.nn as nn

from llmnotes import GPT, GPTConfig, qkernels
from llmnotes.quantize import KERNELS, QuantizedLinear, quantize_model, set_kernel
from llmnotes.sampling import generate

INT8_TOL, INT4_TOL = 0.03, 0.015

needs_int8 = pytest.mark.skipif(not qkernels.int8_available(), reason="no FBGEMM in this PyTorch build")
needs_int4 = pytest.mark.skipif(not qkernels.int4_available(), reason="no CPU int4 matmul in this PyTorch build")


def rel_err(y, ref):
    return ((y - ref).norm() / ref.norm()).item()


def layer(bits, group_size, symmetric, shape=(200, 256), bias=True):
    torch.manual_seed(0)
    lin = nn.Linear(shape[1], shape[0], bias=bias)
    return QuantizedLinear.from_linear(lin, bits, group_size, symmetric)


@needs_int8
@pytest.mark.parametrize("bias", [True, False])
@pytest.mark.parametrize("rows", [1, 5])
def test_int8_kernel_matches_reference(bias, rows):
    q = layer(8, None, True, bias=bias)
    q.kernel = "fast"
    x = torch.randn(2, rows, 256)
    with torch.no_grad():
        y, ref = q(x), q.forward_reference(x)
    assert q.kernel_name() == "int8" and y.shape == ref.shape == (2, rows, 200)
    assert rel_err(y, ref) < INT8_TOL


@needs_int4
@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("group_size", [32, 128])
def test_int4_kernel_matches_reference(symmetric, group_size):
    q = layer(4, group_size, symmetric, shape=(200, 256))  # 200 rows: padded to 208 inside
    q.kernel = "fast"
    x = torch.randn(3, 256)
    with torch.no_grad():
        y, ref = q(x), q.forward_reference(x)
    assert q.kernel_name() == "int4" and y.shape == (3, 200)
    assert rel_err(y, ref) < INT4_TOL


def test_formats_without_a_kernel_use_the_readable_path():
    assert layer(8, 64, True).kernel_name() is None  # int8 in groups: no per-row kernel
    assert layer(8, None, False).kernel_name() is None  # asymmetric int8
    assert layer(4, 48, False, shape=(64, 96)).kernel_name() is None  # group size the kernel lacks


@needs_int8
def test_training_and_reference_mode_take_the_readable_path(monkeypatch):
    q = layer(8, None, True)
    q.kernel = "fast"
    monkeypatch.setattr(qkernels, "int8_linear", lambda *a: pytest.fail("kernel used"))
    x = torch.randn(1, 256, requires_grad=True)
    q(x).sum().backward()  # grad needed: readable path (the kernel has no backward)
    assert x.grad is not None
    q.kernel = "reference"
    with torch.no_grad():
        q(torch.randn(1, 256))


@needs_int8
def test_kernel_repacks_after_the_weights_change():
    q = layer(8, None, True)
    q.kernel = "fast"
    x = torch.randn(1, 256)
    with torch.no_grad():
        q(x)
        q.load_state_dict(layer(8, None, True, bias=True).state_dict() | {"bias": torch.ones(200)})
        assert rel_err(q(x), q.forward_reference(x)) < INT8_TOL


def test_set_kernel_validates():
    with pytest.raises(ValueError, match="kernel must be one of"):
        set_kernel(nn.Linear(2, 2), "fastest")
    assert set(KERNELS) == {"auto", "fast", "native", "reference"}


@needs_int8
@pytest.mark.parametrize("method,kw", [("int8", {}), ("int8", {"embeddings": True}), ("int4", {"group_size": 64})])
def test_quantized_model_decodes_the_same_tokens_with_the_kernels(method, kw):
    torch.manual_seed(0)
    model = GPT(GPTConfig.from_preset("tiny")).eval()
    q = quantize_model(copy.deepcopy(model), method, **kw)
    idx = torch.randint(0, 2048, (1, 8), generator=torch.Generator().manual_seed(3))
    ref = generate(set_kernel(q, "reference"), idx, 24, temperature=0)
    fast = generate(set_kernel(q, "fast"), idx, 24, temperature=0)
    auto = generate(set_kernel(q, "auto"), idx, 24, temperature=0)
    assert torch.equal(fast, ref) and torch.equal(auto, ref)


@needs_int8
def test_deepcopy_after_a_kernel_ran():
    q = layer(8, None, True)
    q.kernel = "fast"
    with torch.no_grad():
        q(torch.randn(1, 256))
        q2 = copy.deepcopy(q)
        torch.testing.assert_close(q2(torch.randn(1, 256) * 0), q2.bias.detach().expand(1, -1), atol=1e-2, rtol=0)


def test_cpu_line_names_the_features():
    line = qkernels.cpu_line()
    assert "avx512_bf16" in line and "amx" in line
    assert qkernels.native_bf16() == bool({"avx512_bf16", "amx_bf16"} & qkernels.cpu_flags())
