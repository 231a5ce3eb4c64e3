"""Pruning against torch.nn.utils.prune, structured pruning invariants, distillation loss formula."""

import pytest
import torch
import torch.nn.functional as F
import torch.nn.utils.prune as tprune

from llmnotes import GPT, GPTConfig
from llmnotes.compress import (distill, distillation_loss, head_importance, magnitude_prune, prunable_linears,
                               prune_heads, prune_mlp_channels, shrink_mlp, sparsity_of)


def nano(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig.from_preset("nano", **kw)).eval()


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.9])
def test_layer_pruning_matches_torch_prune(sparsity):
    ours, ref = nano(), nano()
    magnitude_prune(ours, sparsity, scope="layer")
    for (name, a), (_, b) in zip(prunable_linears(ours), prunable_linears(ref)):
        tprune.l1_unstructured(b, "weight", amount=sparsity)
        assert torch.equal(a.weight, b.weight), name


def test_global_pruning_matches_torch_prune():
    ours, ref = nano(), nano()
    magnitude_prune(ours, 0.5, scope="global")
    params = [(m, "weight") for _, m in prunable_linears(ref)]
    tprune.global_unstructured(params, pruning_method=tprune.L1Unstructured, amount=0.5)
    for (_, a), (m, _) in zip(prunable_linears(ours), params):
        assert torch.equal(a.weight, m.weight)
    assert sparsity_of(ours) == pytest.approx(0.5, abs=1e-3)


def test_bad_sparsity():
    with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
        magnitude_prune(nano(), 1.0)
    with pytest.raises(ValueError, match="scope"):
        magnitude_prune(nano(), 0.5, scope="row")


def test_pruned_head_has_no_influence():
    model = nano()
    prune_heads(model, {0: [1]})
    idx = torch.randint(0, 512, (2, 16))
    before = model(idx)
    with torch.no_grad():  # scramble the pruned head's keys/values: nothing may change
        hs = model.config.head_dim
        c = model.config.n_embd
        model.transformer.h[0].attn.c_attn.weight[c + hs:c + 2 * hs] += 1.0
        model.transformer.h[0].attn.c_attn.weight[2 * c + hs:2 * c + 2 * hs] += 1.0
    torch.testing.assert_close(model(idx), before)
    with pytest.raises(ValueError, match="head 5 out of range"):
        prune_heads(model, {0: [5]})


def test_head_importance_shape_and_restores_weights():
    model = nano()
    state = {k: v.clone() for k, v in model.state_dict().items()}
    scores = head_importance(model, torch.randint(0, 512, (2, 33)))
    assert scores.shape == (2, 2)
    for k, v in model.state_dict().items():
        assert torch.equal(v, state[k]), k


def test_mlp_channel_pruning_and_physical_shrink():
    model = nano()
    idx = torch.randint(0, 512, (2, 32))
    prune_mlp_channels(model, 0.5, idx)
    small = shrink_mlp(model)
    assert small.config.n_inner == 64 and small.num_params() < model.num_params()
    with torch.no_grad():
        torch.testing.assert_close(small(idx), model(idx), atol=1e-5, rtol=1e-5)


def test_distillation_loss_formula():
    torch.manual_seed(0)
    s, t = torch.randn(2, 3, 7), torch.randn(2, 3, 7)
    y = torch.tensor([[1, 2, -100], [0, 6, 3]])
    T, a = 3.0, 0.7
    keep = y != -100
    ps, pt = F.softmax(s[keep] / T, -1), F.softmax(t[keep] / T, -1)
    kl = (pt * (pt.log() - ps.log())).sum(-1).mean() * T * T
    ce = F.cross_entropy(s[keep], y[keep])
    torch.testing.assert_close(distillation_loss(s, t, y, T, a), a * kl + (1 - a) * ce)
    torch.testing.assert_close(distillation_loss(s, t, y, T, 0.0), ce)
    assert distillation_loss(t, t, y, T, 1.0).abs() < 1e-6  # matching the teacher costs nothing
    with pytest.raises(ValueError, match="temperature"):
        distillation_loss(s, t, y, 0.0)
    with pytest.raises(ValueError, match="alpha"):
        distillation_loss(s, t, y, 1.0, 1.5)


def test_distill_lowers_student_loss():
    from llmnotes.train import TrainConfig

    teacher = nano(1)
    student = nano(2, n_embd=16)
    data = torch.randint(0, 64, (64 * 40,))  # a small vocabulary slice: easy to fit
    cfg = TrainConfig(max_steps=30, batch_size=8, lr=3e-3, warmup_steps=2, eval_interval=0,
                      log_interval=1, device="cpu", progress=False)
    trainer = distill(teacher, student, data, config=cfg)
    losses = [r["loss"] for r in trainer.history if "loss" in r]
    assert losses[-1] < losses[0]
