"""A scalar reverse-mode automatic differentiation engine, and a tiny MLP built on it.

Every arithmetic operation on a ``Value`` creates a new ``Value`` that remembers its inputs
(``parents``) and the *local* derivative of its output with respect to each input, computed
right away in the forward pass. ``backward()`` then walks the graph from the output back to
the leaves in reverse topological order and applies the chain rule:

    parent.grad += local_derivative * child.grad

That one line is all of backpropagation. PyTorch's autograd does the same on tensors.

Smallest pieces first: ``Value`` (the engine) -> ``Module`` / ``Neuron`` / ``Layer`` / ``MLP``
-> losses (``mse_loss``, ``bce_with_logits``) -> ``fit`` (full-batch gradient descent).
``tests/test_autograd.py`` checks every gradient against ``torch.autograd``.
"""

from __future__ import annotations

import math
import numbers
import random
from typing import Callable, Sequence, Union

Number = Union[int, float]


class Value:
    """A scalar that records how it was computed, so its gradient can be back-propagated.

    Attributes:
        data: the number itself (float).
        grad: d(output)/d(self) after ``output.backward()``; starts at 0.0.
        parents: the ``Value`` objects this one was computed from (empty for a leaf).
        local_grads: d(self)/d(parent) for each parent, same order as ``parents``.
        op: a short label of the operation, for printing graphs.

    Example:
        >>> a, b = Value(2.0), Value(-3.0)
        >>> y = a * b + a          # y = ab + a
        >>> y.backward()
        >>> a.grad, b.grad         # dy/da = b + 1, dy/db = a
        (-2.0, 2.0)
    """

    __slots__ = ("data", "grad", "parents", "local_grads", "op", "label")

    def __init__(self, data: Number, parents: tuple["Value", ...] = (),
                 local_grads: tuple[float, ...] = (), op: str = "", label: str = ""):
        if type(data) is not float:  # the fast path: every operation below passes a float
            if isinstance(data, Value):
                raise TypeError("data must be a number, got a Value; use the Value itself instead of wrapping it")
            if not isinstance(data, numbers.Real):  # int, float, NumPy scalars; not str/list/tensor
                raise TypeError(f"data must be a real number, got {type(data).__name__}: {data!r}")
            data = float(data)
        self.data = data
        self.grad = 0.0
        self.parents = parents
        self.local_grads = local_grads
        self.op = op
        self.label = label

    def __repr__(self) -> str:
        name = f"{self.label}=" if self.label else ""
        return f"Value({name}{self.data:.6g}, grad={self.grad:.6g})"

    # -- the primitive operations: each returns its output with the local derivatives ----------

    @staticmethod
    def _wrap(other: Union["Value", Number]) -> "Value":
        return other if isinstance(other, Value) else Value(other)

    def __add__(self, other: Union["Value", Number]) -> "Value":
        other = self._wrap(other)
        return Value(self.data + other.data, (self, other), (1.0, 1.0), "+")

    def __mul__(self, other: Union["Value", Number]) -> "Value":
        other = self._wrap(other)
        # d(ab)/da = b, d(ab)/db = a
        return Value(self.data * other.data, (self, other), (other.data, self.data), "*")

    def __pow__(self, k: Number) -> "Value":
        if isinstance(k, Value):
            raise TypeError("the exponent must be a number, not a Value; write (k * x.log()).exp() "
                            "for a variable exponent")
        if not isinstance(k, (int, float)):
            raise TypeError(f"the exponent must be an int or float, got {type(k).__name__}")
        if self.data == 0.0 and k < 1:
            raise ValueError(f"0 ** {k} has no finite derivative; keep the base away from 0")
        return Value(self.data ** k, (self,), (k * self.data ** (k - 1),), f"**{k}")

    def exp(self) -> "Value":
        e = math.exp(self.data)
        return Value(e, (self,), (e,), "exp")  # d(e^x)/dx = e^x

    def log(self) -> "Value":
        if self.data <= 0.0:
            raise ValueError(f"log needs a positive input, got {self.data}; "
                             f"add a small epsilon or work with logits instead of probabilities")
        return Value(math.log(self.data), (self,), (1.0 / self.data,), "log")

    def tanh(self) -> "Value":
        t = math.tanh(self.data)
        return Value(t, (self,), (1.0 - t * t,), "tanh")

    def relu(self) -> "Value":
        # derivative 0 at x == 0, as in PyTorch
        return Value(max(self.data, 0.0), (self,), (1.0 if self.data > 0 else 0.0,), "relu")

    def sigmoid(self) -> "Value":
        x = self.data
        # two algebraically equal forms; each only ever exponentiates a non-positive number
        if x >= 0:
            s = 1.0 / (1.0 + math.exp(-x))
        else:
            e = math.exp(x)
            s = e / (1.0 + e)
        return Value(s, (self,), (s * (1.0 - s),), "sigmoid")

    # -- everything else is built from the primitives ------------------------------------------

    def __neg__(self) -> "Value":
        return self * -1.0

    def __sub__(self, other: Union["Value", Number]) -> "Value":
        return self + (-self._wrap(other))

    def __truediv__(self, other: Union["Value", Number]) -> "Value":
        return self * self._wrap(other) ** -1

    def __radd__(self, other: Number) -> "Value":  # 2 + x
        return self + other

    def __rsub__(self, other: Number) -> "Value":  # 2 - x
        return self._wrap(other) - self

    def __rmul__(self, other: Number) -> "Value":  # 2 * x
        return self * other

    def __rtruediv__(self, other: Number) -> "Value":  # 2 / x
        return self._wrap(other) / self

    def __rpow__(self, base: Number) -> "Value":  # 2 ** x = exp(x ln 2)
        if base <= 0:
            raise ValueError(f"base ** x needs a positive base, got {base}")
        return (self * math.log(base)).exp()

    # -- backpropagation -----------------------------------------------------------------------

    def topological_order(self) -> list["Value"]:
        """Every node this one depends on, each listed after all of its parents (self last).

        Iterative depth-first search, so a long chain (thousands of ops) cannot overflow
        Python's recursion limit.
        """
        order: list[Value] = []
        visited = {self}  # Values hash by identity
        stack: list[tuple[Value, int]] = [(self, 0)]  # (node, index of the next parent to visit)
        while stack:
            node, i = stack[-1]
            if i < len(node.parents):
                stack[-1] = (node, i + 1)
                parent = node.parents[i]
                if parent not in visited:
                    visited.add(parent)
                    stack.append((parent, 0))
            else:  # all parents are in `order` already
                stack.pop()
                order.append(node)
        return order

    def backward(self) -> None:
        """Fill ``.grad`` of every node in the graph with d(self)/d(node).

        Gradients *accumulate* (``+=``), as in PyTorch: a node used twice gets both
        contributions, and you must zero leaf gradients before a second backward pass.
        Intermediate (non-leaf) nodes are reset here so that calling ``backward`` on a fresh
        output is always correct.
        """
        order = self.topological_order()
        for node in order:
            if node.parents:
                node.grad = 0.0
        self.grad = 1.0  # d(self)/d(self)
        for node in reversed(order):  # outputs before inputs
            for parent, local in zip(node.parents, node.local_grads):
                parent.grad += local * node.grad  # the chain rule


# ----------------------------------------------------------------------------------------------
# a tiny neural-network library on top of Value


class Module:
    """Something with parameters: gives ``parameters()`` and ``zero_grad()``."""

    def parameters(self) -> list[Value]:
        return []

    def zero_grad(self) -> None:
        for p in self.parameters():
            p.grad = 0.0


_ACTIVATIONS = ("tanh", "relu", "sigmoid", "linear")


def _activate(x: Value, activation: str) -> Value:
    if activation == "linear":
        return x
    return getattr(x, activation)()


class Neuron(Module):
    """``activation(w . x + b)`` for an input of ``nin`` numbers."""

    def __init__(self, nin: int, activation: str = "tanh", rng: random.Random | None = None):
        if not isinstance(nin, int) or nin < 1:
            raise ValueError(f"nin must be a positive int, got {nin!r}")
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {_ACTIVATIONS}, got {activation!r}")
        rng = rng or random.Random(0)
        bound = 1.0 / math.sqrt(nin)  # the same uniform init as torch.nn.Linear
        self.w = [Value(rng.uniform(-bound, bound)) for _ in range(nin)]
        self.b = Value(rng.uniform(-bound, bound))
        self.activation = activation

    def __call__(self, x: Sequence[Union[Value, Number]]) -> Value:
        if len(x) != len(self.w):
            raise ValueError(f"expected {len(self.w)} inputs, got {len(x)}")
        z = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return _activate(z, self.activation)

    def parameters(self) -> list[Value]:
        return self.w + [self.b]


class Layer(Module):
    """``nout`` neurons that all read the same input."""

    def __init__(self, nin: int, nout: int, activation: str = "tanh", rng: random.Random | None = None):
        if not isinstance(nout, int) or nout < 1:
            raise ValueError(f"nout must be a positive int, got {nout!r}")
        rng = rng or random.Random(0)
        self.neurons = [Neuron(nin, activation, rng) for _ in range(nout)]

    def __call__(self, x: Sequence[Union[Value, Number]]) -> list[Value]:
        return [n(x) for n in self.neurons]

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]


class MLP(Module):
    """A multi-layer perceptron: hidden layers use ``activation``, the last layer is linear.

    Args:
        nin: number of inputs.
        nouts: width of each layer, e.g. ``[8, 8, 1]``.
        activation: ``"tanh"``, ``"relu"`` or ``"sigmoid"`` for the hidden layers.
        seed: seed of the weight initialisation.

    Calling it on one example returns a single ``Value`` when the last layer has one neuron,
    else a list.
    """

    def __init__(self, nin: int, nouts: Sequence[int], activation: str = "tanh", seed: int = 0):
        if len(nouts) == 0:
            raise ValueError("nouts must list at least one layer width, e.g. [8, 1]")
        rng = random.Random(seed)
        sizes = [nin] + list(nouts)
        self.layers = [
            Layer(sizes[i], sizes[i + 1], activation if i < len(nouts) - 1 else "linear", rng)
            for i in range(len(nouts))
        ]

    def __call__(self, x: Sequence[Union[Value, Number]]) -> Union[Value, list[Value]]:
        out: list = list(x)
        for layer in self.layers:
            out = layer(out)
        return out[0] if len(out) == 1 else out

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]


# ----------------------------------------------------------------------------------------------
# losses and training


def mse_loss(preds: Sequence[Value], targets: Sequence[Number]) -> Value:
    """Mean squared error ``mean((p - y)^2)``."""
    if len(preds) != len(targets) or not preds:
        raise ValueError(f"preds and targets must be non-empty and the same length, "
                         f"got {len(preds)} and {len(targets)}")
    return sum(((p - y) ** 2 for p, y in zip(preds, targets)), Value(0.0)) / len(preds)


def bce_with_logits(logits: Sequence[Value], targets: Sequence[Number]) -> Value:
    """Binary cross-entropy on logits: ``mean(log(1 + e^z) - y z)`` with ``y`` in {0, 1}.

    ``log(1 + e^z)`` is evaluated as ``z + log(1 + e^-z)`` when ``z > 0`` so ``e^z`` never
    overflows (the same trick as ``torch.nn.functional.binary_cross_entropy_with_logits``).
    Its gradient with respect to ``z`` is ``sigmoid(z) - y``.
    """
    if len(logits) != len(targets) or not logits:
        raise ValueError(f"logits and targets must be non-empty and the same length, "
                         f"got {len(logits)} and {len(targets)}")
    terms = []
    for z, y in zip(logits, targets):
        if y not in (0, 1):
            raise ValueError(f"targets must be 0 or 1, got {y!r}")
        z = Value._wrap(z)
        softplus = z + (1 + (-z).exp()).log() if z.data > 0 else (1 + z.exp()).log()
        terms.append(softplus - y * z)
    return sum(terms, Value(0.0)) / len(terms)


_LOSSES: dict[str, Callable[[Sequence[Value], Sequence[Number]], Value]] = {
    "mse": mse_loss,
    "bce": bce_with_logits,
}


def fit(model: MLP, xs: Sequence[Sequence[Number]], ys: Sequence[Number], *, loss: str = "mse",
        steps: int = 100, lr: float = 0.1) -> list[float]:
    """Train ``model`` by full-batch gradient descent; return the loss before each step.

    Each step: forward every example, compute the loss, zero the gradients, ``backward()``,
    then ``p.data -= lr * p.grad`` for every parameter.
    """
    if loss not in _LOSSES:
        raise ValueError(f"loss must be one of {sorted(_LOSSES)}, got {loss!r}")
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    if len(xs) != len(ys) or not xs:
        raise ValueError(f"xs and ys must be non-empty and the same length, got {len(xs)} and {len(ys)}")
    loss_fn = _LOSSES[loss]
    params = model.parameters()
    history = []
    for _ in range(steps):
        preds = [model(x) for x in xs]
        value = loss_fn(preds, ys)
        model.zero_grad()
        value.backward()
        for p in params:
            p.data -= lr * p.grad
        history.append(value.data)
    return history


def draw_graph(root: Value) -> str:
    """A text picture of the graph behind ``root``: one line per node, inputs indented below."""
    lines: list[str] = []
    seen: set[int] = set()

    def visit(node: Value, depth: int) -> None:
        name = node.label or (node.op if node.parents else "leaf")
        again = " (shown above)" if id(node) in seen else ""
        lines.append(f"{'    ' * depth}{name}: data={node.data:.4g} grad={node.grad:.4g}{again}")
        if id(node) in seen:
            return
        seen.add(id(node))
        for p in node.parents:
            visit(p, depth + 1)

    visit(root, 0)
    return "\n".join(lines)

