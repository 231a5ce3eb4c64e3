"""llmnotes.optim against torch.optim: same hyper-parameters, same gradients, same parameters."""

import copy

import pytest
import torch

from llmnotes import optim

SHAPES = [(), (7,), (4, 5), (2, 3, 4)]

CASES = [
    ("SGD", dict(lr=0.1)),
    ("SGD", dict(lr=0.05, momentum=0.9)),
    ("SGD", dict(lr=0.05, momentum=0.9, dampening=0.3, weight_decay=0.01)),
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=0.1)),
    ("RMSprop", dict(lr=0.01)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, eps=1e-6, weight_decay=0.05)),
    ("RMSprop", dict(lr=0.01, momentum=0.8, centered=True)),
    ("RMSprop", dict(lr=0.003, momentum=0.5, centered=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)),
    ("Adam", dict(lr=0.02, amsgrad=True, weight_decay=0.01)),
    ("AdamW", dict(lr=0.01)),
    ("AdamW", dict(lr=0.01, betas=(0.5, 0.9), weight_decay=0.3)),
    ("AdamW", dict(lr=0.02, amsgrad=True, weight_decay=0.1)),
]


def _params(seed, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    return [torch.randn(s, generator=g, dtype=dtype).requires_grad_() for s in SHAPES]


def _run(opt_cls, kwargs, params, steps, seed=0):
    """Drive `opt_cls` with the same sequence of random gradients; return the trajectory."""
    opt = opt_cls(params, **kwargs)
    g = torch.Generator().manual_seed(seed)
    history = []
    for _ in range(steps):
        for p in params:
            # gradient depends on the parameter (like a real loss) plus noise
            p.grad = (torch.sin(p.detach()) + 0.5 * torch.randn(p.shape, generator=g, dtype=p.dtype))
        opt.step()
        history.append([p.detach().clone() for p in params])
    return history


@pytest.mark.parametrize("name,kwargs", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_equal_to_torch_step_for_step(name, kwargs):
    ours = _run(getattr(optim, name), kwargs, _params(1), steps=25)
    ref = _run(getattr(torch.optim, name), kwargs, _params(1), steps=25)
    moved = 0.0
    for step, (a_list, b_list) in enumerate(zip(ours, ref)):
        for a, b in zip(a_list, b_list):
            assert (a - b).abs().max().item() <= 1e-6, f"{name} {kwargs} differs at step {step}"
    for a, b in zip(ours[-1], _params(1)):
        moved = max(moved, (a - b).abs().max().item())
    assert moved > 1e-3  # the parameters really moved, so equality means something


@pytest.mark.parametrize("name", ["SGD", "RMSprop", "Adam", "AdamW"])
def test_float64_and_param_groups(name):
    def groups(params):
        return [{"params": params[:2]}, {"params": params[2:], "lr": 0.003, "weight_decay": 0.2}]

    kw = dict(lr=0.01, momentum=0.9) if name == "SGD" else dict(lr=0.01)
    a, b = _params(3, torch.float64), _params(3, torch.float64)
    opt_a = getattr(optim, name)(groups(a), **kw)
    opt_b = getattr(torch.optim, name)(groups(b), **kw)
    for _ in range(10):
        for pa, pb in zip(a, b):
            grad = torch.cos(pa.detach()) * 0.3
            pa.grad, pb.grad = grad.clone(), grad.clone()
        opt_a.step()
        opt_b.step()
    for pa, pb in zip(a, b):
        torch.testing.assert_close(pa, pb, rtol=0, atol=1e-12)
        assert pa.dtype == torch.float64


def test_skips_params_without_grad_and_closure_returns_loss():
    w = torch.ones(3, requires_grad=True)
    frozen = torch.ones(3, requires_grad=True)
    opt = optim.Adam([w, frozen], lr=0.1)
    loss = opt.step(lambda: (w**2).sum().backward() or (w**2).sum().detach())
    assert loss.item() == pytest.approx(3.0)
    assert torch.all(w < 1) and torch.equal(frozen, torch.ones(3))
    assert frozen not in opt.state


def test_state_dict_resume_is_bit_identical():
    """Stop after 5 steps, save optimizer + params, reload into fresh objects, continue."""
    full = _params(5)
    _run(optim.AdamW, dict(lr=0.01), full, steps=10)

    first = _params(5)
    opt = optim.AdamW(first, lr=0.01)
    g = torch.Generator().manual_seed(0)

    def one_step(params, opt):
        for p in params:
            p.grad = torch.sin(p.detach()) + 0.5 * torch.randn(p.shape, generator=g)
        opt.step()

    for _ in range(5):
        one_step(first, opt)
    saved_opt = copy.deepcopy(opt.state_dict())
    second = [p.detach().clone().requires_grad_() for p in first]
    opt2 = optim.AdamW(second, lr=0.01)
    opt2.load_state_dict(saved_opt)
    for _ in range(5):
        one_step(second, opt2)
    for a, b in zip(full, second):
        assert torch.equal(a, b)


def test_adam_bias_correction_first_step_is_lr_times_sign():
    # With bias correction, Adam's first step is lr * g / (|g| + eps) ~ lr * sign(g) for any scale.
    for scale in (1e-4, 1.0, 1e4):
        p = torch.zeros(3, requires_grad=True)
        p.grad = torch.tensor([1.0, -2.0, 3.0]) * scale
        optim.Adam([p], lr=0.1).step()
        torch.testing.assert_close(p.detach(), -0.1 * torch.sign(p.grad), rtol=1e-3, atol=0)


def test_adamw_decay_is_decoupled():
    # zero gradient: Adam's L2 decay goes through the adaptive step (a full lr-sized step),
    # AdamW's shrinks the weight by exactly (1 - lr * wd).
    w_adam = torch.full((1,), 2.0, requires_grad=True)
    w_adamw = torch.full((1,), 2.0, requires_grad=True)
    w_adam.grad = torch.zeros(1)
    w_adamw.grad = torch.zeros(1)
    optim.Adam([w_adam], lr=0.1, weight_decay=0.01).step()
    optim.AdamW([w_adamw], lr=0.1, weight_decay=0.01).step()
    assert w_adamw.item() == pytest.approx(2.0 * (1 - 0.1 * 0.01))
    assert w_adam.item() == pytest.approx(2.0 - 0.1, rel=1e-5)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda p: optim.SGD(p, lr=-0.1), "lr must be >= 0"),
        (lambda p: optim.SGD(p, lr="0.1"), "lr must be a real number"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=-1), "momentum"),
        (lambda p: optim.SGD(p, lr=0.1, nesterov=True), "nesterov=True needs momentum > 0"),
        (lambda p: optim.SGD(p, lr=0.1, momentum=0.9, dampening=0.1, nesterov=True), "dampening"),
        (lambda p: optim.RMSprop(p, alpha=1.0), r"alpha must be in \[0.0, 1.0\)"),
        (lambda p: optim.RMSprop(p, eps=-1e-8), "eps must be >= 0"),
        (lambda p: optim.Adam(p, betas=(0.9, 1.0)), r"betas\[1\] must be in \[0.0, 1.0\)"),
        (lambda p: optim.Adam(p, betas=(-0.1, 0.9)), r"betas\[0\] must be >= 0"),
        (lambda p: optim.Adam(p, betas=0.9), "betas must be a pair"),
        (lambda p: optim.Adam(p, eps=-1.0), "eps must be >= 0"),
        (lambda p: optim.AdamW(p, weight_decay=-0.01), "weight_decay must be >= 0"),
        (lambda p: optim.AdamW(p, lr=float("nan")), "lr must be >= 0"),
    ],
)
def test_bad_arguments_raise(make, match):
    params = [torch.zeros(2, requires_grad=True)]
    with pytest.raises((ValueError, TypeError), match=match):
        make(params)


def test_type_errors_are_type_errors():
    with pytest.raises(TypeError, match="lr must be a real number"):
        optim.Adam([torch.zeros(1, requires_grad=True)], lr=None)


@pytest.mark.parametrize("name,kwargs", [
    ("SGD", dict(lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-4)),
    ("RMSprop", dict(lr=0.01, alpha=0.9, momentum=0.5, centered=True, weight_decay=0.01)),
    ("Adam", dict(lr=0.01, betas=(0.9, 0.95), weight_decay=0.01, amsgrad=True)),
    ("AdamW", dict(lr=0.01, betas=(0.9, 0.95), weight_decay=0.1)),
])
def test_training_an_mlp_is_bit_identical_to_torch_single_tensor_path(name, kwargs):
    """Real training (gradients depend on the weights, so differences would compound)."""
    import torch.nn.functional as F
    from torch import nn

    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(1))
    y = torch.arange(64) % 3

    def train(opt_class, **extra):
        torch.manual_seed(0)
        model = nn.Sequential(nn.Linear(8, 16), nn.Tanh(), nn.Linear(16, 3))
        opt = opt_class(model.parameters(), **kwargs, **extra)
        for _ in range(40):
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        return [p.detach() for p in model.parameters()]

    ours = train(getattr(optim, name))
    ref = train(getattr(torch.optim, name), foreach=False)  # the for-loop implementation
    for a, b in zip(ours, ref):
        assert torch.equal(a, b)


@pytest.mark.parametrize("name", ["SGD", "RMSprop", "Adam", "AdamW"])
def test_zero_lr_leaves_parameters_unchanged(name):
    p = torch.randn(4, 3, generator=torch.Generator().manual_seed(0)).requires_grad_()
    before = p.detach().clone()
    opt = getattr(optim, name)([p], lr=0.0, weight_decay=0.1)
    for _ in range(3):
        p.grad = torch.randn(4, 3)
        opt.step()
    assert torch.equal(p.detach(), before)


def test_exports():
    from llmnotes.optim import OneCycle, StepDecay, WarmupCosine  # re-exported schedules
    assert issubclass(optim.AdamW, torch.optim.Optimizer) and issubclass(optim.AdamW, optim.Adam)
    assert {StepDecay, WarmupCosine, OneCycle}
