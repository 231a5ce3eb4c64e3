"""llmnotes.schedules against torch's schedulers, Hugging Face's cosine schedule and the formulas."""

import math

import pytest
import torch

from llmnotes.schedules import OneCycle, StepDecay, WarmupCosine, cosine_anneal


def _torch_lrs(make_sched, steps, lr, momentum=0.0):
    """lr (and momentum) used at each of `steps` optimizer steps under a torch scheduler."""
    p = torch.zeros(1, requires_grad=True)
    opt = torch.optim.SGD([p], lr=lr, momentum=momentum)
    sched = make_sched(opt)
    lrs, moms = [], []
    for _ in range(steps):
        lrs.append(opt.param_groups[0]["lr"])
        moms.append(opt.param_groups[0]["momentum"])
        p.grad = torch.zeros(1)
        opt.step()
        sched.step()
    return lrs, moms


def test_step_decay_equals_steplr():
    s = StepDecay(base_lr=0.3, step_size=7, gamma=0.5)
    ref, _ = _torch_lrs(lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=7, gamma=0.5), 40, 0.3)
    assert s.curve(40) == pytest.approx(ref, rel=1e-12, abs=0)
    assert s.lr_at(13) == 0.3 * 0.5 and s.lr_at(14) == 0.3 * 0.25


@pytest.mark.parametrize("warmup,total,min_lr", [(10, 100, 6e-5), (0, 50, 0.0), (1, 2, 1e-4), (25, 60, 6e-4)])
def test_warmup_cosine_equals_hugging_face(warmup, total, min_lr):
    from transformers import get_cosine_with_min_lr_schedule_with_warmup

    max_lr = 6e-4
    s = WarmupCosine(max_lr=max_lr, warmup_steps=warmup, total_steps=total, min_lr=min_lr)
    ref, _ = _torch_lrs(lambda o: get_cosine_with_min_lr_schedule_with_warmup(
        o, num_warmup_steps=warmup, num_training_steps=total, min_lr=min_lr), total + 1, max_lr)
    assert s.curve(total + 1) == pytest.approx(ref, rel=1e-12, abs=1e-18)


def test_warmup_cosine_equals_torch_linear_then_cosine():
    # torch pieces: the warmup is LinearLR from 0 (start_factor ~ 0) over W steps and the decay is
    # CosineAnnealingLR(T_max = S - W, eta_min = min_lr), whose closed form is the same half cosine.
    W, S, max_lr, min_lr = 8, 40, 1.0, 0.1
    s = WarmupCosine(max_lr=max_lr, warmup_steps=W, total_steps=S, min_lr=min_lr)
    warm, _ = _torch_lrs(lambda o: torch.optim.lr_scheduler.LinearLR(
        o, start_factor=1e-12, end_factor=1.0, total_iters=W), W, max_lr)
    assert s.curve(W) == pytest.approx(warm, abs=1e-9)
    cos, _ = _torch_lrs(lambda o: torch.optim.lr_scheduler.CosineAnnealingLR(
        o, T_max=S - W, eta_min=min_lr), S - W + 1, max_lr)
    assert [s.lr_at(W + i) for i in range(S - W + 1)] == pytest.approx(cos, abs=1e-12)


def test_warmup_cosine_formula_points():
    s = WarmupCosine(max_lr=1.0, warmup_steps=10, total_steps=110, min_lr=0.1)
    assert s.lr_at(0) == 0.0
    assert s.lr_at(5) == pytest.approx(0.5)
    assert s.lr_at(10) == 1.0                          # peak right after warmup
    assert s.lr_at(60) == pytest.approx(0.55)          # half-way: mean of max and min
    assert s.lr_at(110) == pytest.approx(0.1)
    assert s.lr_at(10_000) == 0.1                      # stays at the floor past the end
    curve = s.curve(111)
    assert all(a <= b for a, b in zip(curve[:10], curve[1:11]))       # rises in warmup
    assert all(a >= b for a, b in zip(curve[10:], curve[11:]))        # never rises after


def test_lambda_lr_factory_drives_an_optimizer_along_the_curve():
    s = WarmupCosine(max_lr=3e-3, warmup_steps=5, total_steps=30, min_lr=3e-4)
    lrs, _ = _torch_lrs(s.lambda_lr, 35, s.max_lr)
    assert lrs == pytest.approx(s.curve(35), rel=1e-12, abs=0)
    assert s.multiplier(5) == 1.0
    with pytest.raises(TypeError, match="optimizer must be a torch.optim.Optimizer"):
        s.lambda_lr("adam")


@pytest.mark.parametrize("total,pct,div,final_div", [(100, 0.3, 25.0, 1e4), (37, 0.25, 10.0, 100.0), (10, 0.5, 5.0, 1e3)])
def test_one_cycle_equals_torch(total, pct, div, final_div):
    s = OneCycle(max_lr=0.2, total_steps=total, pct_start=pct, div_factor=div, final_div_factor=final_div)
    ref_lr, ref_mom = _torch_lrs(lambda o: torch.optim.lr_scheduler.OneCycleLR(
        o, max_lr=0.2, total_steps=total, pct_start=pct, div_factor=div, final_div_factor=final_div,
        anneal_strategy="cos", cycle_momentum=True, base_momentum=0.85, max_momentum=0.95),
        total, 0.2, momentum=0.9)
    assert s.curve(total) == pytest.approx(ref_lr, rel=1e-12, abs=1e-15)
    assert [s.momentum_at(i) for i in range(total)] == pytest.approx(ref_mom, rel=1e-12)
    assert max(s.curve(total)) == pytest.approx(0.2, rel=0.02)
    assert s.lr_at(total - 1) == pytest.approx(0.2 / div / final_div)
    assert s.lr_at(total + 5) == pytest.approx(0.2 / div / final_div)  # torch raises here


def test_cosine_anneal_endpoints():
    assert cosine_anneal(1.0, 0.0, 0.0) == 1.0
    assert cosine_anneal(1.0, 0.0, 1.0) == pytest.approx(0.0)
    assert cosine_anneal(1.0, 0.0, 0.5) == pytest.approx(0.5)
    assert cosine_anneal(2.0, 1.0, 0.25) == pytest.approx(1.0 + 0.5 * (1 + math.cos(math.pi / 4)))


@pytest.mark.parametrize(
    "make,exc,match",
    [
        (lambda: StepDecay(base_lr=-1.0, step_size=3), ValueError, "base_lr must be > 0"),
        (lambda: StepDecay(base_lr=0.1, step_size=2.5), TypeError, "step_size must be an int"),
        (lambda: WarmupCosine(max_lr=1e-3, warmup_steps=100, total_steps=100), ValueError, "total_steps must be > warmup_steps"),
        (lambda: WarmupCosine(max_lr=1e-3, warmup_steps=1, total_steps=10, min_lr=1e-2), ValueError, "min_lr must be <= max_lr"),
        (lambda: WarmupCosine(max_lr=1e-3, warmup_steps=-1, total_steps=10), ValueError, "warmup_steps must be >= 0"),
        (lambda: OneCycle(max_lr=0.1, total_steps=100, pct_start=1.5), ValueError, "pct_start must be in"),
        (lambda: OneCycle(max_lr=0.1, total_steps=2, pct_start=0.3), ValueError, "pct_start \\* total_steps"),
        (lambda: OneCycle(max_lr=0.1, total_steps=100, base_momentum=0.99), ValueError, "base_momentum must be <="),
        (lambda: StepDecay(0.1, 3).lr_at(-1), ValueError, "step must be >= 0"),
        (lambda: StepDecay(0.1, 3).lr_at(1.0), TypeError, "step must be an int"),
    ],
)
def test_bad_arguments_raise(make, exc, match):
    with pytest.raises(exc, match=match):
        make()


# ---------------------------------------------------------------- properties (hypothesis)
from hypothesis import given, settings
from hypothesis import strategies as st


@settings(max_examples=60, deadline=None)
@given(max_lr=st.floats(1e-6, 10.0), warmup=st.integers(0, 50), extra=st.integers(1, 500),
       min_frac=st.floats(0.0, 1.0), step=st.integers(0, 1000))
def test_warmup_cosine_stays_in_range_and_never_rises_after_warmup(max_lr, warmup, extra, min_frac, step):
    s = WarmupCosine(max_lr=max_lr, warmup_steps=warmup, total_steps=warmup + extra, min_lr=max_lr * min_frac)
    lr = s.lr_at(step)
    assert 0.0 <= lr <= max_lr * (1 + 1e-12)
    if step >= warmup:
        assert s.min_lr * (1 - 1e-12) <= lr
        assert s.lr_at(step + 1) <= lr * (1 + 1e-12)
    else:
        assert s.lr_at(step + 1) >= lr


@settings(max_examples=60, deadline=None)
@given(total=st.integers(10, 2000), pct=st.floats(0.05, 0.95), step=st.integers(0, 2100))
def test_one_cycle_between_final_and_peak(total, pct, step):
    if pct * total - 1 <= 0:
        return
    s = OneCycle(max_lr=1.0, total_steps=total, pct_start=pct)
    lr = s.lr_at(step)
    assert s.final_lr * (1 - 1e-9) <= lr <= 1.0 + 1e-12
    assert s.base_momentum - 1e-12 <= s.momentum_at(step) <= s.max_momentum + 1e-12


def test_start_above_zero_is_the_trainers_warmup():
    """One WarmupCosine: the Trainer's schedule (nanoGPT's warmup) is this class shifted by a step."""
    from llmnotes.train import lr_at

    s = WarmupCosine(max_lr=1.0, warmup_steps=10, total_steps=100, min_lr=0.1, start_above_zero=True)
    assert s.lr_at(0) == pytest.approx(0.1) and s.lr_at(9) == 1.0  # peak on the last warmup step
    assert [s.lr_at(i) for i in range(120)] == [lr_at(i, 1.0, 0.1, 10, 100) for i in range(120)]
    plain = WarmupCosine(max_lr=1.0, warmup_steps=10, total_steps=100, min_lr=0.1)
    assert [s.lr_at(i) for i in range(10, 120)] == [plain.lr_at(i) for i in range(10, 120)]  # same cosine
    # a warmup as long as the decay is allowed only when the peak is reached on step W - 1
    assert WarmupCosine(max_lr=1.0, warmup_steps=5, total_steps=5, start_above_zero=True).lr_at(5) == 0.0
    with pytest.raises(ValueError, match="total_steps must be > warmup_steps"):
        WarmupCosine(max_lr=1.0, warmup_steps=5, total_steps=5)


def test_lambda_lr_state_dict_saves_and_restores_the_schedule():
    s = WarmupCosine(max_lr=0.5, warmup_steps=3, total_steps=20, min_lr=0.05)
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched = s.lambda_lr(opt)
    for _ in range(7):
        opt.step()
        sched.step()
    state = sched.state_dict()
    assert state["lr_lambdas"][0]["total_steps"] == 20  # the schedule's fields, not an empty dict
    opt2 = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.5)
    sched2 = WarmupCosine(max_lr=0.5, warmup_steps=3, total_steps=20, min_lr=0.05).lambda_lr(opt2)
    sched2.load_state_dict(state)
    opt2.step()
    sched2.step()
    opt.step()
    sched.step()
    assert opt2.param_groups[0]["lr"] == opt.param_groups[0]["lr"] == pytest.approx(s.lr_at(8))
