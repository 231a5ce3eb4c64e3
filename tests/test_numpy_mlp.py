"""llmnotes.numpy_mlp: hand-written backprop against finite differences and torch.autograd."""

import numpy as np
import pytest
import torch

from llmnotes.numpy_mlp import (MLPConfig, NumpyMLP, grad_check, make_moons, make_spirals, numerical_grad,
                                rel_error, train)


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_backward_matches_finite_differences(activation):
    X, y = make_spirals(5, 3, seed=1)
    model = NumpyMLP(MLPConfig(2, 7, 3, activation), seed=2)
    errors = grad_check(model, X, y)
    assert set(errors) == {"W1", "b1", "W2", "b2"}
    assert max(errors.values()) < 1e-6, errors


def test_grad_check_catches_a_wrong_backward():
    X, y = make_moons(12, seed=0)
    model = NumpyMLP(MLPConfig(2, 5, 2), seed=0)

    good = model.backward

    def buggy(cache, y):  # forgets the 1/N of the mean
        grads = good(cache, y)
        grads["W1"] = grads["W1"] * len(y)
        return grads

    model.backward = buggy
    assert grad_check(model, X, y)["W1"] > 0.5


@pytest.mark.parametrize("activation", ["tanh", "relu"])
def test_backward_matches_torch(activation):
    X, y = make_spirals(10, 3, seed=3)
    model = NumpyMLP(MLPConfig(2, 16, 3, activation), seed=4)
    loss, grads = model.loss_and_grads(X, y)

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in model.params.items()}
    Xt = torch.tensor(X)
    Z1 = Xt @ tp["W1"] + tp["b1"]
    H = torch.tanh(Z1) if activation == "tanh" else torch.relu(Z1)
    tloss = torch.nn.functional.cross_entropy(H @ tp["W2"] + tp["b2"], torch.tensor(y))
    tloss.backward()
    assert loss == pytest.approx(tloss.item(), rel=1e-12)
    for k in grads:
        np.testing.assert_allclose(grads[k], tp[k].grad.numpy(), rtol=1e-10, atol=1e-14)


def test_numerical_grad_of_known_function():
    x = np.array([1.0, -2.0, 0.5])
    g = numerical_grad(lambda: float(np.sum(x ** 3)), x)
    np.testing.assert_allclose(g, 3 * x ** 2, rtol=1e-8)
    np.testing.assert_array_equal(x, [1.0, -2.0, 0.5])  # restored


def test_training_learns_moons():
    X, y = make_moons(200, noise=0.1, seed=0)
    model = NumpyMLP(MLPConfig(2, 16, 2), seed=0)
    history = train(model, X, y, steps=1500, lr=0.5)
    assert history[-1] < 0.1 < history[0]
    assert model.accuracy(X, y) > 0.97


def test_datasets_shapes():
    X, y = make_moons(51, seed=1)
    assert X.shape == (51, 2) and sorted(set(y.tolist())) == [0, 1]
    X, y = make_spirals(20, 4)
    assert X.shape == (80, 2) and np.bincount(y).tolist() == [20] * 4


def test_bad_inputs():
    with pytest.raises(ValueError, match="n_hidden"):
        MLPConfig(2, 0, 2)
    with pytest.raises(ValueError, match="activation"):
        MLPConfig(2, 3, 2, activation="gelu")
    model = NumpyMLP(MLPConfig(2, 3, 2))
    with pytest.raises(ValueError, match=r"X must have shape \(N, 2\)"):
        model.forward(np.zeros((4, 3)))
    with pytest.raises(ValueError, match="class ids in"):
        model.loss(np.zeros((2, 2)), np.array([0, 2]))
    with pytest.raises(TypeError, match="float64"):
        numerical_grad(lambda: 0.0, np.zeros(3, dtype=np.float32))
    with pytest.raises(ValueError, match="lr"):
        train(model, np.zeros((2, 2)), np.array([0, 1]), lr=-1)
    assert rel_error([1.0], [1.0]) == 0.0
