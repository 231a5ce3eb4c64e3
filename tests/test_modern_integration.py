"""The Llama/Qwen/MoE variants through the rest of the toolkit: decoding, quantization, training."""

import pytest
import torch

from llmnotes import GPT, GPTConfig

VARIANTS = {
    "llama": dict(),
    "qwen": dict(qk_norm=True, tie_embeddings=True),
    "moe": dict(mlp="moe", n_expert=4, n_expert_per_token=2),
    "window": dict(sliding_window=8),
}


def build(name):
    torch.manual_seed(0)
    return GPT(GPTConfig.from_preset("llama-nano", **VARIANTS[name])).eval()


@pytest.mark.parametrize("name", list(VARIANTS))
def test_cached_greedy_generation_equals_uncached(name):
    from llmnotes.sampling import generate, generate_reference

    model = build(name)
    idx = torch.randint(0, 512, (2, 5))
    fast = generate(model, idx, max_new_tokens=20, temperature=0)
    slow = generate_reference(model, idx, max_new_tokens=20, temperature=0)
    assert torch.equal(fast, slow)


@pytest.mark.parametrize("name", list(VARIANTS))
def test_int8_round_trip(name):
    from llmnotes.quantize import QuantizedLinear, quantize_model

    model = build(name)
    idx = torch.randint(0, 512, (2, 16))
    with torch.no_grad():
        ref = model(idx)
        q = quantize_model(model, "int8")
        out = q(idx)
    assert any(isinstance(m, QuantizedLinear) for m in q.modules())
    rel = (out - ref).norm() / ref.norm()
    assert rel < 0.02, f"{name}: relative error {rel:.4f}"


@pytest.mark.parametrize("name", ["llama", "moe"])
def test_trainer_learns(name):
    from llmnotes.train import Trainer, TrainConfig

    model = build(name).train()
    data = torch.arange(64).repeat(80)  # a repeating sequence: easy to learn
    cfg = TrainConfig(max_steps=25, batch_size=8, lr=3e-3, warmup_steps=2, log_interval=1,
                      eval_interval=0, device="cpu", progress=False)
    history = Trainer(model, data, config=cfg).fit()
    losses = [r["loss"] for r in history if "loss" in r]
    assert losses[-1] < 0.7 * losses[0]
