"""Trainer tests: the schedule against Hugging Face's, the Trainer against a hand-written loop,
gradient accumulation, exact resume in a new process, DDP/FSDP under torchrun, bad input."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn as nn

from llmnotes.train import checkpoint as ckpt
from llmnotes.model import GPT, GPTConfig
from llmnotes.data import TokenDataset
from llmnotes.train import (EpochSampler, Trainer, TrainConfig, TrainingDiverged, lr_at,
                            param_groups, plot_history)

ROOT = Path(__file__).resolve().parents[1]


def tokens(n=6000, vocab=512, seed=1):
    """A learnable stream: a fixed random 'text' of 97 tokens repeated."""
    g = torch.Generator().manual_seed(seed)
    base = torch.randint(0, vocab, (97,), generator=g)
    return base.repeat(n // 97 + 1)[:n]


def nano(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(GPTConfig.from_preset("nano", **kw))


def cfg(**kw):
    base = dict(max_steps=4, batch_size=4, warmup_steps=1, log_interval=1, eval_steps=2,
                eval_interval=0, progress=False, device="cpu")
    return TrainConfig(**{**base, **kw})


# ---- configuration ------------------------------------------------------------------------


@pytest.mark.parametrize("kw, match", [
    (dict(lr=0.0), "lr must be"), (dict(lr=float("nan")), "lr must be"),
    (dict(batch_size=0), "batch_size"), (dict(max_steps=-1), "max_steps"),
    (dict(grad_accum_steps=0), "grad_accum_steps"), (dict(dtype="fp8"), "dtype"),
    (dict(lr=1e-3, min_lr=1e-2), "min_lr"), (dict(resume=True), "out_dir"),
    (dict(betas=(0.9, 1.0)), "betas"), (dict(grad_clip=-1.0), "grad_clip"),
    (dict(weight_decay=-0.1), "weight_decay"), (dict(warmup_steps=-1), "warmup_steps"),
])
def test_config_rejects_bad_values(kw, match):
    with pytest.raises(ValueError, match=match):
        TrainConfig(**kw)


def test_config_defaults_and_round_trip():
    c = TrainConfig(lr=1e-3, max_steps=50)
    assert c.min_lr == pytest.approx(1e-4) and c.lr_decay_steps == 100  # warmup_steps > max_steps
    assert TrainConfig(max_steps=500, warmup_steps=10).lr_decay_steps == 500
    assert TrainConfig.from_dict(json.loads(json.dumps(c.to_dict()))) == c


# ---- schedule -----------------------------------------------------------------------------


def test_schedule_matches_hugging_face_cosine_with_min_lr():
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    lr, warm, total = 1e-3, 10, 100
    opt = torch.optim.SGD([nn.Parameter(torch.zeros(1))], lr=lr)
    hf = get_cosine_with_min_lr_schedule_with_warmup(opt, warm, total, min_lr_rate=0.1)
    hf_lrs = []
    for _ in range(total + 5):
        hf_lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        hf.step()
    ours = [lr_at(s, lr, lr / 10, warm, total) for s in range(total + 5)]
    # HF's warmup starts at 0 (step/warmup); ours at lr/warmup ((step+1)/warmup), so step s of
    # ours is step s+1 of HF's during warmup; afterwards they are the same cosine.
    np.testing.assert_allclose(ours[:warm], hf_lrs[1:warm + 1], rtol=1e-12)
    np.testing.assert_allclose(ours[warm:total], hf_lrs[warm:total], rtol=1e-12)
    assert ours[total:] == [lr / 10] * 5
    assert max(ours) == pytest.approx(lr)


def test_trainer_applies_the_schedule():
    tr = Trainer(nano(), tokens(), None, cfg(max_steps=6, warmup_steps=2, lr=1e-3))
    hist = tr.fit()
    assert [r["lr"] for r in hist] == pytest.approx([lr_at(s, 1e-3, 1e-4, 2, 6) for s in range(6)])


# ---- optimizer groups, data order -----------------------------------------------------------


def test_weight_decay_only_on_linear_weights():
    model = nano()
    decay, no_decay = param_groups(model, 0.1)
    names = {id(p): n for n, p in model.named_parameters()}
    decayed = sorted(names[id(p)] for p in decay["params"])
    assert decayed and all(n.endswith(("c_attn.weight", "c_proj.weight", "c_fc.weight")) for n in decayed)
    kept = {names[id(p)] for p in no_decay["params"]}
    assert "transformer.wte.weight" in kept and "transformer.wpe.weight" in kept  # tied head too
    assert len(decayed) + len(kept) == len(list(model.parameters()))
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0


def test_epoch_sampler_visits_every_window_once_per_epoch_and_resumes():
    s = EpochSampler(10, seed=3)
    first = s.take(7) + s.take(3)
    assert sorted(first) == list(range(10))
    s.take(4)
    state = s.state_dict()
    rest = s.take(9)
    t = EpochSampler(10, seed=3)
    t.load_state_dict(state)
    assert t.take(9) == rest
    with pytest.raises(ValueError, match="same data and seed"):
        EpochSampler(11, seed=3).load_state_dict(state)


# ---- the Trainer equals the hand-written loop -----------------------------------------------


def test_trainer_matches_a_hand_written_loop():
    """The readable reference path: the loop from the module docstring, line by line."""
    data, c = tokens(), cfg(max_steps=5, batch_size=3, grad_accum_steps=2, lr=3e-3, warmup_steps=2,
                            grad_clip=0.5, weight_decay=0.1)
    trainer = Trainer(nano(), data, None, c)
    losses = [r["loss"] for r in trainer.fit()]

    model = nano()
    windows = TokenDataset(data, model.config.block_size)
    sampler = EpochSampler(len(windows), c.seed)
    opt = torch.optim.AdamW(param_groups(model, c.weight_decay), lr=c.lr, betas=c.betas, eps=c.eps)
    ref_losses = []
    for step in range(c.max_steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, c.lr, c.min_lr, c.warmup_steps, c.max_steps)
        idx = sampler.take(c.batch_size * c.grad_accum_steps)
        total = 0.0
        for m in range(c.grad_accum_steps):
            x, y = map(torch.stack, zip(*(windows[i] for i in idx[m * c.batch_size:(m + 1) * c.batch_size])))
            logits = model(x)
            loss = nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten()) / c.grad_accum_steps
            loss.backward()
            total += loss.item()
        torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip)
        opt.step()
        opt.zero_grad()
        ref_losses.append(total)
    np.testing.assert_allclose(losses, ref_losses, rtol=1e-6)
    for (n, p), q in zip(trainer.raw_model.named_parameters(), model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=n)


def test_gradient_accumulation_equals_the_bigger_batch():
    data = tokens()
    a = Trainer(nano(), data, None, cfg(batch_size=4, grad_accum_steps=1))
    b = Trainer(nano(), data, None, cfg(batch_size=2, grad_accum_steps=2))
    la, lb = [r["loss"] for r in a.fit()], [r["loss"] for r in b.fit()]
    np.testing.assert_allclose(la, lb, rtol=1e-5)
    for p, q in zip(a.raw_model.parameters(), b.raw_model.parameters()):
        torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-6)


def test_training_learns_and_evaluates(tmp_path):
    data = tokens(8000)
    tr = Trainer(nano(), data[:7000], data[7000:], cfg(max_steps=40, lr=1e-2, warmup_steps=4,
                                                         eval_interval=20, out_dir=str(tmp_path)))
    hist = tr.fit()
    losses = [r["loss"] for r in hist if "loss" in r]
    vals = [r for r in hist if "val_loss" in r]
    assert losses[-1] < losses[0] - 1.5  # a repeated sequence is easy to learn
    assert [r["step"] for r in vals] == [20, 40]
    assert vals[-1]["val_ppl"] == pytest.approx(math.exp(vals[-1]["val_loss"]))
    assert vals[-1]["val_loss"] == pytest.approx(tr.evaluate())  # the same fixed windows
    lines = (tmp_path / "metrics.jsonl").read_text(encoding="utf-8").splitlines()
    assert [json.loads(x) for x in lines] == hist
    fig = plot_history(hist)
    assert len(fig.axes) == 1 and len(fig.axes[0].lines) == 2


def test_bf16_and_fp16_autocast_on_cpu():
    for dtype in ("bf16", "fp16"):
        hist = Trainer(nano(), tokens(), None, cfg(max_steps=2, dtype=dtype)).fit()
        assert all(math.isfinite(r["loss"]) for r in hist)


# ---- checkpoints ----------------------------------------------------------------------------

RESUME_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, {tests!r})
    from test_train import tokens, nano, cfg
    from llmnotes.train import Trainer
    out, max_steps, resume = sys.argv[1], int(sys.argv[2]), sys.argv[3] == "1"
    data = tokens(4000)
    c = cfg(max_steps=6, save_interval=3, out_dir=out, resume=resume, lr=3e-3, grad_accum_steps=2)
    model = nano(dropout=0.1)  # dropout: the RNG state must be restored too
    tr = Trainer(model, data[:3500], data[3500:], c)
    while tr.step < max_steps:
        tr.train_step()
    tr.save_checkpoint()
    torch.save({{k: v for k, v in tr.raw_model.state_dict().items()}}, out + "/final.pt")
""")


def _run(script: Path, *args: str) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), *args], check=True, env=env, cwd=ROOT, timeout=120)


def test_resume_in_a_new_process_is_bit_identical(tmp_path):
    script = tmp_path / "run.py"
    script.write_text(RESUME_SCRIPT.format(tests=str(ROOT / "tests")), encoding="utf-8")
    straight, halves = tmp_path / "straight", tmp_path / "halves"
    _run(script, str(straight), "6", "0")
    _run(script, str(halves), "3", "0")
    _run(script, str(halves), "6", "1")  # a new process: everything comes from the checkpoint
    a = torch.load(straight / "final.pt", weights_only=True)
    b = torch.load(halves / "final.pt", weights_only=True)
    for k in a:
        assert torch.equal(a[k], b[k]), k
    wa, sa = ckpt.load(ckpt.latest_checkpoint(straight))
    wb, sb = ckpt.load(ckpt.latest_checkpoint(halves))
    assert sa["step"] == sb["step"] == 6 and sa["sampler"] == sb["sampler"]
    for k in sa["optimizer"]["state"]:
        for name in ("exp_avg", "exp_avg_sq"):
            assert torch.equal(sa["optimizer"]["state"][k][name], sb["optimizer"]["state"][k][name])


def test_resume_reproduces_losses_and_metrics(tmp_path):
    data = tokens(4000)
    c = dict(max_steps=6, save_interval=3, lr=3e-3, eval_interval=3)
    straight = Trainer(nano(dropout=0.1), data[:3500], data[3500:], cfg(**c, out_dir=str(tmp_path / "a")))
    full = straight.fit()
    first = Trainer(nano(dropout=0.1), data[:3500], data[3500:], cfg(**c, out_dir=str(tmp_path / "b")))
    first.config.max_steps = 3
    first.fit()
    metrics = tmp_path / "b" / "metrics.jsonl"
    with open(metrics, "a", encoding="utf-8") as f:  # what a run that crashed after step 3 logged
        f.write(json.dumps({"step": 4, "loss": 123.0}) + "\n")
    second = Trainer(nano(seed=5, dropout=0.1), data[:3500], data[3500:],
                     cfg(**c, out_dir=str(tmp_path / "b"), resume=True))
    assert second.step == 3
    second.fit()
    lines = [json.loads(x) for x in metrics.read_text(encoding="utf-8").splitlines()]
    def strip(records):  # throughput differs from run to run; everything else must not
        return [{k: v for k, v in r.items() if k != "tok_per_s"} for r in records]

    assert strip(lines) == strip(full)  # records after the checkpoint were dropped, then redone


def test_corrupt_checkpoint_is_a_clear_error_and_nothing_is_overwritten(tmp_path):
    data = tokens()
    Trainer(nano(), data, None, cfg(max_steps=2, out_dir=str(tmp_path))).fit()
    path = ckpt.latest_checkpoint(tmp_path)
    (path / "model.safetensors").write_bytes(b"not a safetensors file")
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    with pytest.raises(ValueError, match="corrupt"):
        Trainer(nano(), data, None, cfg(max_steps=4, out_dir=str(tmp_path), resume=True))
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    (path / "state.pt").unlink()
    with pytest.raises(ValueError, match="incomplete"):
        Trainer(nano(), data, None, cfg(max_steps=4, out_dir=str(tmp_path), resume=True))


def test_existing_checkpoint_needs_resume(tmp_path):
    Trainer(nano(), tokens(), None, cfg(max_steps=1, out_dir=str(tmp_path))).fit()
    with pytest.raises(ValueError, match="already holds a checkpoint"):
        Trainer(nano(), tokens(), None, cfg(out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match="holds no checkpoint"):
        Trainer(nano(), tokens(), None, cfg(out_dir=str(tmp_path / "empty"), resume=True))


def test_unwritable_out_dir(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("x", encoding="utf-8")
    with pytest.raises(ValueError, match="out_dir"):
        Trainer(nano(), tokens(), None, cfg(out_dir=str(blocker)))
    with pytest.raises(ValueError, match="not writable"):
        Trainer(nano(), tokens(), None, cfg(out_dir=str(blocker / "sub")))


def test_dataset_shorter_than_one_batch():
    with pytest.raises(ValueError, match="train_data has 3 windows"):
        Trainer(nano(), tokens(3 * 64 + 1), None, cfg(batch_size=4))
    with pytest.raises(ValueError, match="val_data"):
        Trainer(nano(), tokens(), tokens(100), cfg())
    with pytest.raises(TypeError, match="data must be"):
        Trainer(nano(), 123, None, cfg())
    with pytest.raises(TypeError, match="config must be"):
        Trainer(nano(), tokens(), None, {"lr": 1e-3})


class NaNAfter(nn.Module):
    """A model whose logits turn to NaN once ``poison`` is set."""

    def __init__(self):
        super().__init__()
        self.inner, self.poison = nano(), False
        self.config = self.inner.config

    def forward(self, x):
        out = self.inner(x)
        return out * float("nan") if self.poison else out


def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path):
    model = NaNAfter()
    tr = Trainer(model, tokens(), None, cfg(max_steps=6, save_interval=2, out_dir=str(tmp_path)))
    tr.config.max_steps = 2
    tr.fit()
    good = ckpt.latest_checkpoint(tmp_path)
    before = {p.name: p.read_bytes() for p in good.iterdir()}
    params = [p.detach().clone() for p in model.parameters()]
    model.poison, tr.config.max_steps = True, 6
    with pytest.raises(TrainingDiverged, match="loss is nan at step 2"):
        tr.fit()
    assert ckpt.latest_checkpoint(tmp_path) == good
    assert {p.name: p.read_bytes() for p in good.iterdir()} == before
    assert all(torch.equal(a, b) for a, b in zip(params, model.parameters()))  # no NaN update


# ---- distributed ----------------------------------------------------------------------------

DIST_SCRIPT = textwrap.dedent("""
    import json, sys, torch
    sys.path.insert(0, {tests!r})
    from test_train import tokens, nano, cfg
    from llmnotes.train import Trainer
    root = sys.argv[2]
    for mode in sys.argv[1].split(","):  # one launch runs every mode: the process group is reused
        out = root + "/" + mode
        tr = Trainer(nano(), tokens(4000), tokens(1000, seed=2),
                     cfg(max_steps=4, batch_size=4 if mode == "single" else 2, lr=3e-3, eval_interval=4,
                         fsdp=mode == "fsdp", out_dir=out))
        hist = tr.fit()
        if tr.is_main:
            with open(out + "/losses.json", "w", encoding="utf-8") as f:
                json.dump([r.get("loss", r.get("val_loss")) for r in hist], f)
""")


@pytest.fixture(scope="module")
def distributed_runs(tmp_path_factory):
    """A one-process reference run, then one torchrun launch of two processes that trains with
    DDP and then with FSDP (each Python start costs seconds, so they are shared)."""
    root = tmp_path_factory.mktemp("dist")
    script = root / "dist.py"
    script.write_text(DIST_SCRIPT.format(tests=str(ROOT / "tests")), encoding="utf-8")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, str(script), "single", str(root)], check=True, env=env, cwd=ROOT, timeout=120)
    subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                    str(script), "ddp,fsdp", str(root)], check=True, env=env, cwd=ROOT, timeout=240)
    return root


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_torchrun_two_processes_match_one(mode, distributed_runs):
    one_dir, two_dir = distributed_runs / "single", distributed_runs / mode
    one = json.loads((one_dir / "losses.json").read_text(encoding="utf-8"))
    two = json.loads((two_dir / "losses.json").read_text(encoding="utf-8"))
    assert len(one) == len(two) == 5  # 4 train losses + 1 validation loss
    np.testing.assert_allclose(two, one, rtol=1e-5)
    # rank 0 wrote one checkpoint, and its weights equal the single-process run's
    w1, _ = ckpt.load(ckpt.latest_checkpoint(one_dir))
    w2, _ = ckpt.load(ckpt.latest_checkpoint(two_dir))
    for k in w1:
        torch.testing.assert_close(w1[k], w2[k], rtol=1e-4, atol=1e-5)
