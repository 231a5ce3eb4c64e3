"""The fused decode step (llmnotes.fused): one C++ call per token must give the Python path's
hidden states bit for bit when both use llmnotes' kernels, step aside when it does not apply,
and notice weights that changed under it."""

import copy

import pytest
import torch

from llmnotes import GPT, GPTConfig, fast_linear, fused, native
from llmnotes.finetune import apply_lora
from llmnotes.quantize import quantize_model, set_kernel
from llmnotes.sampling import generate

needs_native = pytest.mark.skipif(native.kernels() is None,
                                  reason=f"llmnotes.native unavailable: {native.unavailable()}")


def gpt2_shaped(**overrides):
    torch.manual_seed(0)
    config = dict(n_layer=2, vocab_size=512, block_size=64, n_embd=256, n_head=4)
    return GPT(GPTConfig.from_preset("gpt2", **{**config, **overrides})).eval()


needs_bf16 = pytest.mark.skipif(native.bf16_kernel() is None, reason="no AVX512-BF16 kernel on this CPU/build")


def prepared(kind: str):
    model = gpt2_shaped()
    if kind in ("fp32", "bf16"):
        model = model.to(torch.bfloat16) if kind == "bf16" else model
        fast_linear.prepare_for_decode(model, path="native")
    else:
        kw = {"embeddings": True} if kind == "int8" else {"group_size": 32, "symmetric": True}
        model = set_kernel(quantize_model(model, kind, **kw), "native")
        fast_linear.prepare_for_decode(model, path="native")
    assert fused.is_fused(model), fused.status(model)
    return model


def python_path(model):
    """The same model decoding through the Python forward (the plan set aside)."""
    twin = copy.deepcopy(model)  # a copy has no plan; its layers keep llmnotes' kernels
    assert not fused.is_fused(twin)
    return twin


@needs_native
@pytest.mark.parametrize("kind", ["fp32", "int8", "int4", pytest.param("bf16", marks=needs_bf16)])
def test_fused_step_equals_the_python_path_bit_for_bit(kind):
    model = prepared(kind)
    twin = python_path(model)
    set_kernel(twin, "native")
    idx = torch.randint(0, 512, (1, 9), generator=torch.Generator().manual_seed(1))
    with torch.inference_mode():
        caches = model.make_cache(1, 32), twin.make_cache(1, 32)
        model(idx, cache=caches[0])
        twin(idx, cache=caches[1])
        for t in range(6):
            token = idx[:, t:t + 1]
            a, b = model(token, cache=caches[0]), twin(token, cache=caches[1])
            assert torch.equal(a, b), f"step {t}: largest difference {(a - b).abs().max().item()}"
        assert caches[0].seq_len == caches[1].seq_len == 15
        for k0, k1 in zip(caches[0].k + caches[0].v, caches[1].k + caches[1].v):
            assert torch.equal(k0, k1)
        assert torch.equal(generate(model, idx, 12, temperature=0), generate(twin, idx, 12, temperature=0))


@needs_native
def test_fused_step_survives_crop_and_matches_plain_decoding_to_rounding():
    plain = gpt2_shaped()
    model = prepared("fp32")
    idx = torch.randint(0, 512, (1, 5), generator=torch.Generator().manual_seed(2))
    with torch.inference_mode():
        cache, ref = model.make_cache(1, 32), plain.make_cache(1, 32)
        model(idx, cache=cache)
        plain(idx, cache=ref)
        model(idx[:, :1], cache=cache)
        cache.crop(5)  # forget the step, as speculative decoding does with rejected drafts
        a, b = model(idx[:, 1:2], cache=cache), plain(idx[:, 1:2], cache=ref)
    torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-4)


@needs_native
def test_other_calls_take_the_python_path():
    model = prepared("fp32")
    plain = gpt2_shaped()
    idx = torch.randint(0, 512, (2, 4), generator=torch.Generator().manual_seed(3))
    with torch.inference_mode():  # a batch of two, and prompts of several tokens
        torch.testing.assert_close(model(idx, cache=model.make_cache(2, 16)), plain(idx), rtol=1e-4, atol=1e-4)
    token = idx[:1, :1]
    loss = model(token, cache=model.make_cache(1, 8)).sum()  # gradients on: Python path
    loss.backward()
    assert model.lm_head.weight.grad is not None


@needs_native
def test_a_weight_changed_in_place_retires_the_plan():
    model = prepared("fp32")
    with torch.no_grad():
        model.transformer.h[0].mlp.c_fc.weight.mul_(2.0)
    twin = python_path(model)
    with torch.inference_mode():
        token = torch.tensor([[7]])
        a = model(token, cache=model.make_cache(1, 4))
        b = twin(token, cache=twin.make_cache(1, 4))
    assert not fused.is_fused(model)
    assert torch.equal(a, b)


@needs_native
def test_fusable_says_why_not():
    reason = fused.fusable(GPT(GPTConfig.from_preset("llama-nano")))
    assert reason.startswith("needs") and "LayerNorm" in reason and "GELU" in reason
    lora = apply_lora(gpt2_shaped(), r=2)
    assert "is not a layer the native kernels run" in fused.fusable(lora)
    model = gpt2_shaped()
    fast_linear.prepare_for_decode(model, enable=False)
    assert fused.status(model) == "fused decode step off" and not fused.is_fused(model)
    assert "float16" in fused.fusable(gpt2_shaped().half())
    mixed = gpt2_shaped().to(torch.bfloat16)
    mixed.transformer.ln_f.float()  # one LayerNorm left in float32: not one dtype throughout
    if native.bf16_kernel() is not None:
        assert fused.fusable(mixed) == "transformer.ln_f is not a bfloat16 nn.LayerNorm"


def test_without_the_kernels_nothing_is_fused(monkeypatch):
    monkeypatch.setattr(native, "kernels", lambda: None)
    monkeypatch.setattr(native, "unavailable", lambda: "no compiler (test)")
    model = gpt2_shaped()
    fast_linear.prepare_for_decode(model)
    assert not fused.is_fused(model)
    assert fused.status(model) == "fused decode step not used: llmnotes.native is unavailable: no compiler (test)"


@needs_native
@pytest.mark.parametrize("fused_faster", [True, False])
def test_whole_step_timing_decides_against_per_shape_winners(monkeypatch, fused_faster):
    """A shape whose product alone is faster column-major keeps the fused step out of the per-shape
    plan; prepare_for_decode then times whole steps both ways and keeps the faster, and the
    tokens are the plain model's either way."""
    model = gpt2_shaped()
    plain = copy.deepcopy(model)
    c_fc = model.transformer.h[0].mlp.c_fc.weight.shape
    real_choose = fast_linear.choose_path
    monkeypatch.setattr(fast_linear, "choose_path", lambda w, from_memory=True: (
        ("column-major", {}) if tuple(w.shape) == tuple(c_fc) else real_choose(w, from_memory)))
    monkeypatch.setattr(fast_linear, "MIN_SPLIT_ELEMENTS", 0)
    fast_ms = {True: 1.0, False: 2.0} if fused_faster else {True: 2.0, False: 1.0}
    monkeypatch.setattr(fused, "decode_step_ms", lambda m, steps=4: fast_ms[fused.is_fused(m)])
    fast_linear.prepare_for_decode(model)
    layer = model.transformer.h[0].mlp.c_fc
    assert fused.is_fused(model) is fused_faster, fused.status(model)
    assert f"per-shape winners ({tuple(c_fc)} column-major" in fused.status(model)
    assert fast_linear.current_path(layer) == ("native" if fused_faster else "column-major")
    entry = {e["shape"]: e for e in fast_linear.decode_plan(model)}[tuple(c_fc)]
    assert entry["path"] == ("native" if fused_faster else "column-major")
    assert entry.get("fastest_alone") == ("column-major" if fused_faster else None)
    idx = torch.randint(0, 512, (1, 5), generator=torch.Generator().manual_seed(2))
    assert torch.equal(generate(model, idx, 12, temperature=0), generate(plain, idx, 12, temperature=0))
