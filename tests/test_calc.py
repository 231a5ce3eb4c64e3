"""Calculators: parameter counts against real models, FLOPs by hand, memory, Chinchilla."""

from __future__ import annotations

import math

import pytest
import torch

from llmnotes.calc import (PFS_DAY, MemoryEstimate, activation_bytes, chinchilla_optimal, count_params,
                           flops_per_token, from_pfs_days, to_pfs_days, training_flops, training_memory)
from llmnotes.model import GPT, PRESETS, GPTConfig


def test_gpt2_small_count():
    assert count_params(GPTConfig.from_preset("gpt2")) == 124_439_808


@pytest.mark.parametrize("preset", sorted(PRESETS))
@pytest.mark.parametrize("overrides", [{}, {"bias": False}, {"tie_embeddings": False}, {"n_inner": 100},
                                       {"n_kv_head": 1}, {"qkv_bias": True}])
def test_count_matches_the_model(preset, overrides):
    if overrides and PRESETS[preset].get("vocab_size", 50257) > 4096:
        pytest.skip("variants are checked on the small presets (the big ones are slow to build)")
    if "n_kv_head" in overrides and PRESETS[preset].get("n_kv_head") is None:
        pytest.skip("n_kv_head=1 needs a preset with grouped-query attention")
    config = GPTConfig.from_preset(preset, **overrides)
    with torch.device("meta"):  # no memory for the big presets
        model = GPT(config)
    assert count_params(config) == model.num_params()
    assert count_params(config, exclude_embeddings=True) == model.num_params(exclude_embeddings=True)


def test_count_matches_hugging_face_gpt2():
    from transformers import GPT2Config, GPT2LMHeadModel

    hf = GPT2LMHeadModel(GPT2Config(vocab_size=300, n_positions=32, n_embd=48, n_layer=3, n_head=4))
    ours = GPTConfig(vocab_size=300, block_size=32, n_embd=48, n_layer=3, n_head=4)
    assert count_params(ours) == sum(p.numel() for p in hf.parameters())


def test_flops_per_token_by_hand():
    c = GPTConfig.from_preset("gpt2")
    n = 124_439_808 - 1024 * 768  # the position table multiplies nothing
    assert flops_per_token(c) == 6 * n + 12 * 12 * 1024 * 768
    assert flops_per_token(c, seq_len=128, training=False) == 2 * n + 4 * 12 * 128 * 768
    untied = c.replace(tie_embeddings=False)
    assert flops_per_token(untied) == flops_per_token(c)  # the head is counted once either way
    with pytest.raises(ValueError, match="seq_len"):
        flops_per_token(c, seq_len=0)
    with pytest.raises(TypeError, match="GPTConfig"):
        flops_per_token({"n_layer": 2})


def test_flops_agree_with_a_profiler_count():
    """torch's FLOP counter on one forward of a bias-free model: matmuls only."""
    from torch.utils.flop_counter import FlopCounterMode

    c = GPTConfig(vocab_size=256, block_size=32, n_layer=2, n_head=2, n_embd=64, bias=False, attn_impl="manual")
    model = GPT(c)
    idx = torch.zeros(1, 32, dtype=torch.long)
    with FlopCounterMode(display=False) as counter:
        model(idx)
    # flops_per_token's N also holds the LayerNorm gains (2 per block + the final one), which
    # multiply elementwise rather than in a matmul: the profiler does not count them.
    layer_norm_params = c.n_layer * 2 * c.n_embd + c.n_embd
    T = 32
    assert counter.get_total_flops() == T * flops_per_token(c, training=False) - T * 2 * layer_norm_params


def test_memory_bytes_per_parameter():
    one_b = 1e9
    fp32 = training_memory(one_b, precision="fp32")
    assert fp32.weights == 4e9  # 1B fp32 weights ≈ 4 GB
    assert (fp32.weights, fp32.gradients, fp32.optimizer) == (4e9, 4e9, 8e9)  # 4 + 4 + 8
    mixed = training_memory(one_b, precision="mixed")
    assert (mixed.weights, mixed.gradients, mixed.optimizer) == (2e9, 2e9, 12e9)  # 2 + 2 + 12
    assert mixed.total == fp32.total == 16e9
    assert training_memory(one_b, optimizer="adamw") == mixed
    assert training_memory(one_b, precision="fp32", optimizer="sgd").optimizer == 4e9


def test_zero_stages_divide_by_the_gpu_count():
    n, g = 7.5e9, 64  # the ZeRO paper's example: 7.5B parameters on 64 GPUs
    base = training_memory(n)
    assert base.total == 120e9  # 16 bytes/param without ZeRO
    z1, z2, z3 = (training_memory(n, zero_stage=s, n_gpus=g) for s in (1, 2, 3))
    assert z1.total == pytest.approx(2 * n + 2 * n + 12 * n / g)  # 31.4 GB in the paper
    assert z2.total == pytest.approx(2 * n + (2 + 12) * n / g)    # 16.6 GB
    assert z3.total == pytest.approx(16 * n / g)                  # 1.9 GB
    assert round(z1.total / 1e9, 1) == 31.4 and round(z2.total / 1e9, 1) == 16.6
    assert round(z3.total / 1e9, 2) == 1.88
    assert z3.gib()["total"] == pytest.approx(z3.total / 2**30)


def test_memory_rejects_bad_input():
    with pytest.raises(ValueError, match="zero_stage"):
        training_memory(1e9, zero_stage=4)
    with pytest.raises(ValueError, match="precision"):
        training_memory(1e9, precision="fp8")
    with pytest.raises(ValueError, match="n_gpus"):
        training_memory(1e9, n_gpus=0)
    with pytest.raises(ValueError, match="n_params"):
        training_memory(-1)


def test_activation_estimate():
    c = GPTConfig.from_preset("gpt2")
    full = activation_bytes(c, batch_size=1)
    s, h, a = 1024, 768, 12
    assert full == pytest.approx(12 * s * h * (34 + 5 * a * s / h) + 4 * s * c.vocab_size)
    assert activation_bytes(c, 1, recompute=True) < full / 3
    assert activation_bytes(c, 2) == pytest.approx(2 * full)
    est = training_memory(1e8, activations=full)
    assert isinstance(est, MemoryEstimate) and est.total == pytest.approx(1.6e9 + full)
    # A fused attention kernel stores no score matrices: 34·s·b·h per layer, the rest unchanged.
    fused = activation_bytes(c, 1, fused_attention=True)
    assert fused == pytest.approx(12 * s * h * 34 + 4 * s * c.vocab_size)
    assert activation_bytes(c, 1, recompute=True, fused_attention=True) == activation_bytes(c, 1, recompute=True)
    assert activation_bytes(c, 1, tensor_parallel=4, sequence_parallel=True, fused_attention=True) == \
        pytest.approx(fused / 4)
    with pytest.raises(TypeError, match="fused_attention"):
        activation_bytes(c, 1, fused_attention="yes")


def test_chinchilla():
    n, d = chinchilla_optimal(5.88e23)
    assert n == pytest.approx(70e9, rel=1e-9) and d == pytest.approx(1.4e12, rel=1e-9)
    assert training_flops(70e9, 1.4e12) == pytest.approx(5.88e23)
    n2, d2 = chinchilla_optimal(4 * 5.88e23)  # 4× compute → 2× params and 2× tokens
    assert n2 == pytest.approx(2 * n) and d2 == pytest.approx(2 * d)
    with pytest.raises(ValueError, match="compute_flops"):
        chinchilla_optimal(0)


def test_pfs_days():
    assert PFS_DAY == 8.64e19
    assert to_pfs_days(3.14e23) == pytest.approx(3634, rel=1e-3)  # GPT-3 175B: ~3,640 PF/s-days
    assert from_pfs_days(to_pfs_days(1e21)) == pytest.approx(1e21)
    assert math.isclose(to_pfs_days(training_flops(175e9, 300e9)), 3645.8, rel_tol=1e-3)


def test_tensor_and_pipeline_parallel_split_the_model_states():
    n = 7.5e9
    base = training_memory(n)
    for t, p in ((2, 1), (1, 4), (8, 2)):
        split = training_memory(n, tensor_parallel=t, pipeline_parallel=p)
        assert split.total == pytest.approx(base.total / (t * p))
    # model parallelism first, ZeRO over the data-parallel copies of each slice
    z3 = training_memory(n, zero_stage=3, n_gpus=64, tensor_parallel=2, pipeline_parallel=2)
    assert z3.total == pytest.approx(16 * n / (64 * 2 * 2))
    z1 = training_memory(n, zero_stage=1, n_gpus=8, tensor_parallel=4)
    assert z1.total == pytest.approx((2 + 2) * n / 4 + 12 * n / (4 * 8))
    with pytest.raises(ValueError, match="tensor_parallel"):
        training_memory(n, tensor_parallel=0)
    with pytest.raises(ValueError, match="pipeline_parallel"):
        training_memory(n, pipeline_parallel=1.5)


def test_offload_moves_gradients_and_optimizer_to_cpu():
    # ZeRO-Offload (Ren et al. 2021): 13B parameters train on one 32 GB V100, because only the
    # 16-bit weights (2 bytes/param = 26 GB) stay on the GPU
    n = 13e9
    off = training_memory(n, offload_optimizer=True)
    assert off.weights == 2 * n and off.gradients == 0 and off.optimizer == 0
    assert off.total == pytest.approx(26e9) and off.total < 32e9 < training_memory(n).total
    assert off.cpu == pytest.approx((2 + 12) * n)
    assert training_memory(n).cpu == 0.0
    sharded = training_memory(n, zero_stage=2, n_gpus=4, offload_optimizer=True)
    assert sharded.cpu == pytest.approx(14 * n / 4)  # each process offloads its own partition
    with pytest.raises(TypeError, match="offload_optimizer"):
        training_memory(n, offload_optimizer="cpu")


def test_existing_signatures_still_work():
    assert training_memory(1e9, precision="fp32", optimizer="sgd", zero_stage=1, n_gpus=2,
                           activations=5.0).total == pytest.approx(4e9 + 4e9 + 2e9 + 5)
    est = MemoryEstimate(1.0, 2.0, 3.0, 4.0)
    assert est.total == 10.0 and est.cpu == 0.0


def test_activations_under_tensor_and_sequence_parallelism():
    c = GPTConfig.from_preset("gpt2")
    s, h, a, L, V, t = 1024, 768, 12, 12, c.vocab_size, 4
    assert activation_bytes(c, 1, tensor_parallel=1) == activation_bytes(c, 1)
    tp = activation_bytes(c, 1, tensor_parallel=t)
    assert tp == pytest.approx(L * s * h * (10 + 24 / t + 5 * a * s / (h * t)) + 4 * s * V / t)
    sp = activation_bytes(c, 1, tensor_parallel=t, sequence_parallel=True)
    assert sp == pytest.approx(activation_bytes(c, 1) / t)  # everything split t ways
    assert sp < tp < activation_bytes(c, 1)
    with pytest.raises(ValueError, match="sequence_parallel"):
        activation_bytes(c, 1, sequence_parallel=True)
    with pytest.raises(ValueError, match="tensor_parallel"):
        activation_bytes(c, 1, tensor_parallel=0)
