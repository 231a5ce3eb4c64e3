"""Loss landscapes: the loss along random directions around trained weights.

Li et al. (2018, arXiv:1712.09913) plot L(θ + αδ + βη) for two random directions δ, η. Raw
Gaussian directions are misleading because networks are scale-invariant in places (a layer's
weights can grow while a following normalisation undoes it), so each direction is
**filter-normalised**: every row (output unit) of every weight matrix is rescaled to the norm of
the matching row of θ. One-dimensional parameters (biases, norm gains) get zero direction, as
in the paper.
"""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


def filter_normalized_direction(model: nn.Module, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
    """A random direction with every weight row scaled to the norm of the model's row."""
    direction = {}
    for name, p in model.named_parameters():
        if p.dim() <= 1:
            direction[name] = torch.zeros_like(p)
            continue
        d = torch.randn(p.shape, generator=generator, dtype=p.dtype).to(p.device)
        rows_d, rows_p = d.flatten(1), p.detach().flatten(1)
        d = (rows_d * (rows_p.norm(dim=1, keepdim=True) / (rows_d.norm(dim=1, keepdim=True) + 1e-10))).view_as(p)
        direction[name] = d
    return direction


@torch.no_grad()
def loss_surface(model: nn.Module, idx: torch.Tensor, span: float = 1.0, steps: int = 15,
                 seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Next-token loss on ``idx`` (B, T+1) over a ``steps`` × ``steps`` grid of
    θ + αδ + βη, α, β in [−span, span]. Returns (alphas, betas, losses (steps, steps)).
    The model's weights are restored afterwards."""
    if steps < 2:
        raise ValueError(f"steps must be at least 2, got {steps}")
    if span <= 0:
        raise ValueError(f"span must be positive, got {span}")
    g = torch.Generator().manual_seed(seed)
    delta, eta = filter_normalized_direction(model, g), filter_normalized_direction(model, g)
    # Only weight matrices move (biases and gains have zero direction), and they are written in
    # place: no temporary tensors of the model's size per grid point.
    moving = [(p, p.detach().clone(), delta[k], eta[k]) for k, p in model.named_parameters() if p.dim() > 1]
    alphas = torch.linspace(-span, span, steps)
    losses = torch.empty(steps, steps)
    was_training = model.training
    model.eval()
    try:
        for i, a in enumerate(alphas.tolist()):
            for j, b in enumerate(alphas.tolist()):
                for p, origin, d, e in moving:
                    torch.add(origin, d, alpha=a, out=p).add_(e, alpha=b)
                logits = model(idx[:, :-1])
                losses[i, j] = F.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten())
    finally:
        for p, origin, _, _ in moving:
            p.copy_(origin)
        model.train(was_training)
    return alphas, alphas.clone(), losses
