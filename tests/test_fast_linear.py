"""fast_linear: split-K matrix-vector products and prepare_for_decode, against F.linear and the
unprepared model."""

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from llmnotes import GPT, GPTConfig
from llmnotes import fast_linear
from llmnotes.fast_linear import SplitKLinear, column_major, prepare_for_decode, split_k_linear
from llmnotes.sampling import generate



def make(preset: str, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig.from_preset(preset)).eval()


@pytest.mark.parametrize("shape", [(1, 48), (3, 48), (2, 5, 48)])
@pytest.mark.parametrize("shards", [1, 2, 4, 3])
@pytest.mark.parametrize("bias", [False, True])
def test_split_k_linear_equals_f_linear(shape, shards, bias):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(*shape, generator=g)
    w = torch.randn(20, 48, generator=g)
    b = torch.randn(20, generator=g) if bias else None
    y = split_k_linear(x, w.t().contiguous().t(), b, shards)
    assert y.shape == (*shape[:-1], 20)
    torch.testing.assert_close(y, F.linear(x, w, b), atol=1e-5, rtol=1e-5)


def test_split_k_linear_rejects_bad_layouts():
    w = torch.randn(20, 48)
    with pytest.raises(ValueError, match="column-major"):
        split_k_linear(torch.randn(1, 48), w, None, 2)  # row-major weight
    with pytest.raises(ValueError, match="divisible by shards"):
        split_k_linear(torch.randn(1, 48), w.t().contiguous().t(), None, 5)


def test_split_k_linear_is_differentiable():
    w = torch.randn(6, 8).t().contiguous().t().requires_grad_()
    x = torch.randn(2, 8, requires_grad=True)
    split_k_linear(x, w, None, 2).square().sum().backward()
    w2, x2 = w.detach().clone().requires_grad_(), x.detach().clone().requires_grad_()
    F.linear(x2, w2).square().sum().backward()
    torch.testing.assert_close(w.grad, w2.grad)
    torch.testing.assert_close(x.grad, x2.grad)


def test_split_path_taken_only_when_it_applies(two_threads, monkeypatch):
    calls = []
    real = fast_linear.split_k_linear
    monkeypatch.setattr(fast_linear, "split_k_linear", lambda *a: calls.append(a[0].shape) or real(*a))
    layer = prepare_for_decode(nn.Linear(1024, 256), path="split-K")  # forced: "auto" measures
    assert isinstance(layer, SplitKLinear) and column_major(layer.weight)
    layer(torch.randn(1, 1, 1024))  # one decode row: split
    layer(torch.randn(1000, 1024))  # a big matrix-matrix product: plain F.linear
    prepare_for_decode(nn.Linear(64, 32))(torch.randn(1, 64))  # a weight that fits in cache
    torch.set_num_threads(1)
    layer(torch.randn(1, 1024))  # one thread: nothing to split across
    assert calls == [torch.Size([1, 1, 1024])]


@pytest.mark.parametrize("preset", ["tiny", "llama-tiny", "qwen-tiny"])
def test_prepared_model_computes_the_same(two_threads, preset):
    model = make(preset)
    idx = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        before = model(idx)
        state = {k: v.clone() for k, v in model.state_dict().items()}
    tokens = generate(model, idx[:1, :4], 20, temperature=0)
    assert prepare_for_decode(model, path="split-K") is model  # forced: "auto" may keep layers plain
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    assert linears and all(type(m) is SplitKLinear and column_major(m.weight) for m in linears)
    if model.config.tie_embeddings:
        assert model.lm_head.weight is model.transformer.wte.weight  # still one matrix
    with torch.no_grad():
        torch.testing.assert_close(model(idx), before, atol=1e-5, rtol=1e-5)
        cache = model.make_cache(2)  # the cached decode path: one row per sequence per step
        model(idx[:, :11], cache=cache)
        torch.testing.assert_close(model(idx[:, 11:], cache=cache)[:, -1], before[:, -1], atol=1e-5, rtol=1e-5)
    after = model.state_dict()
    assert list(after) == list(state) and all(torch.equal(after[k], state[k]) for k in state)
    assert torch.equal(generate(model, idx[:1, :4], 20, temperature=0), tokens)
    model.prepare_for_decode(enable=False)
    assert all(type(m) is nn.Linear and m.weight.is_contiguous() for m in linears)
    with torch.no_grad():
        torch.testing.assert_close(model(idx), before, atol=0, rtol=0)


def test_prepared_model_saves_quantizes_trains_and_takes_lora(two_threads, tmp_path):
    from llmnotes.finetune.lora import apply_lora, merge_lora
    from llmnotes.quantize import quantize_model

    model = make("tiny").prepare_for_decode()
    idx = torch.randint(0, 2048, (2, 16), generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        ref = model(idx)
    model.save_pretrained(tmp_path)  # safetensors refuses non-contiguous tensors unless handled
    with torch.no_grad():
        torch.testing.assert_close(GPT.from_pretrained(tmp_path)(idx), ref, atol=1e-5, rtol=1e-5)

    q = quantize_model(make("tiny").prepare_for_decode(), "int8")
    q_ref = quantize_model(make("tiny"), "int8")
    with torch.no_grad():
        torch.testing.assert_close(q(idx), q_ref(idx), atol=1e-5, rtol=1e-5)

    model.train()
    loss = F.cross_entropy(model(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
    loss.backward()
    plain = make("tiny").train()
    loss2 = F.cross_entropy(plain(idx[:, :-1]).flatten(0, 1), idx[:, 1:].flatten())
    loss2.backward()
    torch.testing.assert_close(loss, loss2, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(model.lm_head.weight.grad, plain.lm_head.weight.grad, atol=1e-5, rtol=1e-4)

    lora = apply_lora(make("tiny").prepare_for_decode().eval(), r=4)
    for layer in lora.modules():
        if hasattr(layer, "lora_B"):
            nn.init.normal_(layer.lora_B.weight, std=0.02)
    with torch.no_grad():
        y = lora(idx)
        torch.testing.assert_close(merge_lora(lora)(idx), y, atol=1e-4, rtol=1e-4)
