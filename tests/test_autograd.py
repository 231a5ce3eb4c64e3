"""llmnotes.autograd.Value against torch.autograd."""

import math

import pytest
import torch

from llmnotes.autograd import MLP, Layer, Neuron, Value, bce_with_logits, draw_graph, fit, mse_loss


def _both(fn, *xs):
    """Run ``fn`` on Values and on float64 tensors; return (value, grads) for each."""
    vs = [Value(x) for x in xs]
    out = fn(*vs)
    out.backward()
    ts = [torch.tensor(x, dtype=torch.float64, requires_grad=True) for x in xs]
    tout = fn(*ts)
    tout.backward()
    return (out.data, [v.grad for v in vs]), (tout.item(), [t.grad.item() for t in ts])


def _exp(x):
    return x.exp()


def _log(x):
    return x.log()


EXPRESSIONS = [
    ("add-mul", lambda a, b: a * b + a, (2.0, -3.0)),
    ("sub-div", lambda a, b: (a - b) / (a + 2.5 * b), (1.5, 0.7)),
    ("reflected", lambda a, b: 2.0 - a + 3.0 / b + 4.0 * a - 1.0 / (2.0 + b), (0.3, 1.9)),
    ("pow", lambda a, b: a ** 3 + b ** -2 + a ** 0.5, (1.7, -0.8)),
    ("rpow", lambda a, b: 2.0 ** a * b, (0.9, 1.3)),
    ("exp-log", lambda a, b: (a * b).exp().log() + (a ** 2 + 1).log() * b.exp(), (0.4, -1.1)),
    ("tanh", lambda a, b: (a * b + 0.5).tanh() * a.tanh(), (0.8, -0.6)),
    ("relu", lambda a, b: (a - b).relu() + (b - a).relu() * 3 + (a * b).relu(), (1.2, -0.4)),
    ("sigmoid", lambda a, b: (a * b).sigmoid() + (-30 * a).sigmoid() + (50 * b).sigmoid(), (0.7, 0.2)),
    ("reuse", lambda a, b: a * a * a + a * b * a - b * b, (-1.3, 0.6)),
    ("deep", lambda a, b: ((((a * b).tanh() + a).sigmoid() * b - a) ** 2).exp() / (1 + a ** 2), (0.3, -0.9)),
]


@pytest.mark.parametrize("name,fn,xs", EXPRESSIONS, ids=[e[0] for e in EXPRESSIONS])
def test_expression_matches_torch(name, fn, xs):
    (v, g), (tv, tg) = _both(fn, *xs)
    assert v == pytest.approx(tv, rel=1e-12, abs=1e-12)
    assert g == pytest.approx(tg, rel=1e-10, abs=1e-12)


def test_sigmoid_extremes_are_finite():
    for x in (-800.0, 800.0):
        v = Value(x)
        s = v.sigmoid()
        s.backward()
        assert 0.0 <= s.data <= 1.0 and v.grad == 0.0


def test_relu_grad_at_zero_is_zero_like_torch():
    v = Value(0.0)
    v.relu().backward()
    t = torch.tensor(0.0, requires_grad=True)
    t.relu().backward()
    assert v.grad == t.grad.item() == 0.0


def test_grad_accumulates_and_backward_twice():
    a = Value(3.0)
    y = a * a
    y.backward()
    assert a.grad == 6.0
    y.backward()  # leaves accumulate, like torch without zero_grad
    assert a.grad == 12.0


def test_long_chain_does_not_hit_recursion_limit():
    x = Value(0.5)
    y = x
    for _ in range(5000):
        y = y * 1.0001
    y.backward()
    assert x.grad == pytest.approx(1.0001 ** 5000)


def test_mlp_gradients_match_torch():
    mlp = MLP(3, [4, 4, 1], activation="tanh", seed=1)
    xs = [[0.5, -1.0, 2.0], [1.5, 0.3, -0.7], [-0.2, 0.9, 0.1]]
    ys = [1.0, -1.0, 0.5]
    loss = mse_loss([mlp(x) for x in xs], ys)
    mlp.zero_grad()
    loss.backward()

    # the same network in torch, weights copied from the Value MLP
    tparams = []
    h = torch.tensor(xs, dtype=torch.float64)
    for i, layer in enumerate(mlp.layers):
        W = torch.tensor([[p.data for p in n.w] for n in layer.neurons], dtype=torch.float64, requires_grad=True)  # (out, in)
        b = torch.tensor([n.b.data for n in layer.neurons], dtype=torch.float64, requires_grad=True)
        tparams.append((W, b))
        h = h @ W.T + b
        if i < len(mlp.layers) - 1:
            h = torch.tanh(h)
    tloss = ((h.squeeze(1) - torch.tensor(ys, dtype=torch.float64)) ** 2).mean()
    tloss.backward()
    assert loss.data == pytest.approx(tloss.item(), rel=1e-12)
    for layer, (W, b) in zip(mlp.layers, tparams):
        for j, n in enumerate(layer.neurons):
            assert [p.grad for p in n.w] == pytest.approx(W.grad[j].tolist(), rel=1e-10, abs=1e-14)
            assert n.b.grad == pytest.approx(b.grad[j].item(), rel=1e-10, abs=1e-14)


def test_bce_with_logits_matches_torch():
    zs, ys = [2.0, -1.0, 40.0, -40.0, 0.0], [1, 0, 0, 1, 1]
    vals = [Value(z) for z in zs]
    loss = bce_with_logits(vals, ys)
    loss.backward()
    t = torch.tensor(zs, dtype=torch.float64, requires_grad=True)
    tl = torch.nn.functional.binary_cross_entropy_with_logits(t, torch.tensor(ys, dtype=torch.float64))
    tl.backward()
    assert loss.data == pytest.approx(tl.item(), rel=1e-12)
    assert [v.grad for v in vals] == pytest.approx(t.grad.tolist(), rel=1e-10, abs=1e-15)


def test_logistic_gradient_is_sigmoid_minus_y_times_x():
    x, y = [0.5, -1.5, 2.0], 1
    w = [Value(0.1), Value(-0.3), Value(0.2)]
    z = sum((wi * xi for wi, xi in zip(w, x)), Value(0.0))
    bce_with_logits([z], [y]).backward()
    s = 1 / (1 + math.exp(-z.data))
    assert [wi.grad for wi in w] == pytest.approx([(s - y) * xi for xi in x], rel=1e-12)


def test_fit_reduces_loss_xor():
    xs = [[0, 0], [0, 1], [1, 0], [1, 1]]
    ys = [-1.0, 1.0, 1.0, -1.0]
    mlp = MLP(2, [6, 1], seed=0)
    history = fit(mlp, xs, ys, steps=300, lr=0.2)
    assert history[-1] < 0.05 < history[0]
    preds = [mlp(x).data for x in xs]
    assert [p > 0 for p in preds] == [False, True, True, False]


def test_draw_graph_mentions_each_node():
    a, b = Value(2.0, label="a"), Value(3.0, label="b")
    c = a * b
    c.label = "c"
    c.backward()
    text = draw_graph(c)
    assert "c: data=6 grad=1" in text and "a: data=2 grad=3" in text and "b: data=3 grad=2" in text


def test_bad_inputs():
    with pytest.raises(TypeError, match="real number"):
        Value("3")
    with pytest.raises(TypeError, match="data must be a number"):
        Value(Value(1.0))
    with pytest.raises(ValueError, match="log needs a positive"):
        Value(0.0).log()
    with pytest.raises(TypeError, match="exponent"):
        Value(2.0) ** Value(2.0)
    with pytest.raises(ValueError, match="nin"):
        Neuron(0)
    with pytest.raises(ValueError, match="activation"):
        Neuron(2, activation="gelu")
    with pytest.raises(ValueError, match="nout"):
        Layer(2, 0)
    with pytest.raises(ValueError, match="expected 2 inputs"):
        Neuron(2)([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="loss must be"):
        fit(MLP(1, [1]), [[1.0]], [1.0], loss="hinge")
    with pytest.raises(ValueError, match="lr"):
        fit(MLP(1, [1]), [[1.0]], [1.0], lr=0)
    with pytest.raises(ValueError, match="targets must be 0 or 1"):
        bce_with_logits([Value(0.0)], [0.5])
    with pytest.raises(ValueError, match="same length"):
        mse_loss([Value(0.0)], [1.0, 2.0])
