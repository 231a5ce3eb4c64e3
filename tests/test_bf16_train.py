"""bf16 training with float32 master weights (llmnotes.train.bf16) against float32 training.

Tolerance: over 30 steps of the shipped corpus, every bf16-master loss stays within 2% of the
float32 run's loss at the same step (bf16 rounds activations and gradients to 8 mantissa bits;
the masters keep the updates exact, so the runs do not drift apart). benchmarks/model.py
--roofline --curve runs the long (hundreds of steps) comparison.
"""

import pytest
import torch
import torch.nn as nn

from llmnotes import GPT, GPTConfig
from llmnotes.train import bf16 as bf16_mod
from llmnotes.train.bf16 import MasterWeights, choose_precision
from llmnotes.data import load_tokens
from llmnotes.train import Trainer, TrainConfig

LOSS_RTOL = 0.02


def small_gpt():
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=2048, block_size=64, n_layer=2, n_head=2, n_embd=64))


def run(dtype, steps=30, **kw):
    tokens = load_tokens("train")[:40_000]
    cfg = TrainConfig(max_steps=steps, batch_size=4, lr=3e-3, warmup_steps=5, dtype=dtype, device="cpu",
                      progress=False, log_interval=1, eval_interval=0, **kw)
    trainer = Trainer(small_gpt(), tokens, None, cfg)
    trainer.fit()
    return trainer, [r["loss"] for r in trainer.history if "loss" in r]


def test_bf16_master_losses_follow_fp32():
    t32, fp32 = run("fp32")
    tbf, bf = run("bf16-master")
    assert tbf.precision == "bf16-master" and t32.precision == "fp32"
    assert len(bf) == len(fp32) == 30
    for a, b in zip(fp32, bf):
        assert abs(a - b) <= LOSS_RTOL * a, (a, b)
    assert bf[-1] < bf[0] - 1.0  # it learns
    assert all(p.dtype == torch.float32 for p in tbf.raw_model.parameters())  # fp32 after fit()


def test_master_weights_keep_updates_bf16_would_lose():
    model = nn.Linear(4, 4, bias=False)
    nn.init.constant_(model.weight, 1.0)
    mw = MasterWeights(model)
    mw.to_bf16()
    assert model.weight.dtype == torch.bfloat16
    opt = torch.optim.SGD(mw.masters, lr=1.0)
    for _ in range(4):  # four updates of 1e-3: each alone is below bf16's resolution at 1.0
        model.weight.grad = torch.full((4, 4), 1e-3, dtype=torch.bfloat16)
        mw.grads_to_masters()
        opt.step()
        mw.masters_to_model()
    assert mw.masters[0].detach()[0, 0].item() == pytest.approx(1 - 4e-3, abs=1e-5)
    mw.to_float()
    assert model.weight.dtype == torch.float32 and model.weight[0, 0].item() == pytest.approx(0.996, abs=1e-5)


def favour(impl):
    return lambda *a, **k: {"sdpa": 1.0, "manual": 2.0} if impl == "sdpa" else {"sdpa": 2.0, "manual": 1.0}


def test_checkpoint_resume_is_exact(tmp_path, monkeypatch):
    monkeypatch.setattr(bf16_mod, "attention_step_ms", favour("manual"))
    _, straight = run("bf16-master", steps=6)
    run("bf16-master", steps=3, out_dir=str(tmp_path), save_interval=3)
    # the resumed process measures the other kernel faster, but continues on the checkpoint's
    monkeypatch.setattr(bf16_mod, "attention_step_ms", favour("sdpa"))
    resumed, tail = run("bf16-master", steps=6, out_dir=str(tmp_path), resume=True)
    assert resumed.master.attention_impl == "manual"
    assert tail == straight[3:]


def test_auto_precision_rules(monkeypatch):
    x = torch.randint(0, 2048, (1, 16))
    monkeypatch.setattr(bf16_mod, "native_bf16_cpu", lambda: False)
    assert choose_precision(small_gpt(), x)[0] == "fp32"
    monkeypatch.setattr(bf16_mod, "native_bf16_cpu", lambda: True)
    precision, why = choose_precision(small_gpt(), x)  # far below MIN_PARAMS
    assert precision == "fp32" and "too small" in why
    monkeypatch.setattr(bf16_mod, "MIN_PARAMS", 0)
    monkeypatch.setattr(bf16_mod, "MIN_SPEEDUP", 0.0)  # any measurement passes
    assert choose_precision(small_gpt(), x)[0] == "bf16-master"
    monkeypatch.setattr(bf16_mod, "MIN_SPEEDUP", 1e9)  # none does
    assert choose_precision(small_gpt(), x)[0] == "fp32"


def test_trainer_says_what_auto_chose(capsys, monkeypatch):
    trainer, _ = run("auto", steps=1)
    assert trainer.precision == "fp32" and trainer.precision_reason.startswith("auto: ")
    assert "dtype auto" not in capsys.readouterr().out  # no measurement, nothing printed
    monkeypatch.setattr(bf16_mod, "native_bf16_cpu", lambda: True)
    monkeypatch.setattr(bf16_mod, "MIN_PARAMS", 0)
    monkeypatch.setattr(bf16_mod, "MIN_SPEEDUP", 0.0)
    trainer, _ = run("auto", steps=1)
    assert trainer.precision == "bf16-master"
    assert "Trainer: dtype auto -> bf16-master (native bf16 CPU; one step measured" in capsys.readouterr().out


def test_unknown_dtype_is_rejected():
    with pytest.raises(ValueError, match="dtype must be one of"):
        TrainConfig(dtype="bf32")


@pytest.mark.parametrize("impl", ["sdpa", "manual"])
def test_either_attention_trains_like_fp32(impl):
    """Whichever attention kernel choose_attention measures faster, the bf16 gradients agree
    with float32 ones (bf16's own tolerance), and to_float() gives the model its own kernel back."""
    model = small_gpt()
    x = torch.randint(0, 2048, (2, 32))
    F32 = torch.nn.functional
    F32.cross_entropy(model(x).flatten(0, 1), x.flatten()).backward()
    ref = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad(set_to_none=True)
    mw = MasterWeights(model)
    chosen, why = mw.choose_attention(x, rounds=1)
    assert chosen in ("sdpa", "manual") and "fused" in why and "explicit" in why
    mw.attention_impl = impl  # force each one
    mw.to_bf16()
    assert {a.impl for a in bf16_mod._attention_layers(model)} == {impl}
    F32.cross_entropy(model(x).float().flatten(0, 1), x.flatten()).backward()
    for n, p in model.named_parameters():
        cos = F32.cosine_similarity(p.grad.float().flatten(), ref[n].flatten(), dim=0)
        assert cos > 0.99, (n, cos.item())
    mw.to_float()
    assert {a.impl for a in bf16_mod._attention_layers(model)} == {"sdpa"}


def test_explicit_attention_models_are_left_alone():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=256, block_size=16, n_layer=1, n_head=2, n_embd=32, attn_impl="manual"))
    mw = MasterWeights(model)
    assert mw.choose_attention(torch.randint(0, 256, (1, 8)))[0] is None
    mw.to_bf16()
    assert {a.impl for a in bf16_mod._attention_layers(model)} == {"manual"}
