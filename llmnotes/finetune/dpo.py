"""Direct Preference Optimization (Rafailov et al., 2023, arXiv:2305.18290).

RLHF (Ouyang et al., 2022, arXiv:2203.02155) fits a reward model to human preferences and then
maximises it with PPO under a KL penalty that keeps the policy near a reference model. DPO
shows that the optimum of that KL-regularised objective can be written in closed form, which
turns preference learning into a classification loss on pairs — no reward model, no sampling::

    loss = -log σ( β · [ (log π(y_w|x) - log π_ref(y_w|x)) - (log π(y_l|x) - log π_ref(y_l|x)) ] )

``y_w`` is the chosen (preferred) completion, ``y_l`` the rejected one, ``log π(y|x)`` the summed
log-probability of the completion's tokens given the prompt, and ``β`` how far the policy may
move from the reference. ``β · (log π - log π_ref)`` is the *implicit reward* of a completion.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from llmnotes.finetune.data import PairDataset
from llmnotes.finetune.instruct import (IGNORE_INDEX, encode_example, format_prompt, logits_at_targets, pad_right,
                                       response_text, trim_padding)
from llmnotes.tokenizer import eos_id_of


def dpo_loss(policy_chosen_logps: torch.Tensor, policy_rejected_logps: torch.Tensor,
             ref_chosen_logps: torch.Tensor, ref_rejected_logps: torch.Tensor, beta: float = 0.1) -> torch.Tensor:
    """Mean DPO loss over a batch of pairs; every argument is (B,) summed log-probabilities."""
    if not (isinstance(beta, (int, float)) and beta > 0):
        raise ValueError(f"beta must be a positive number, got {beta!r}")
    shapes = {t.shape for t in (policy_chosen_logps, policy_rejected_logps, ref_chosen_logps, ref_rejected_logps)}
    if len(shapes) != 1:
        raise ValueError(f"the four log-probability tensors must have one shape (B,), got {sorted(map(tuple, shapes))}")
    chosen = policy_chosen_logps - ref_chosen_logps  # log π/π_ref of the preferred answer
    rejected = policy_rejected_logps - ref_rejected_logps
    return -F.logsigmoid(beta * (chosen - rejected)).mean()


def token_logprobs(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Summed ``log p(y[t] | x[..t])`` over positions whose target is not -100: (B, L) -> (B,).

    The output head runs only at those positions (:func:`logits_at_targets`);
    :func:`token_logprobs_reference` is the same sum from every position's logits."""
    x, y = trim_padding(x, y)
    logits, keep = logits_at_targets(model, x, y)  # (N, V), (B, L)
    picked = F.log_softmax(logits.float(), dim=-1).gather(-1, y[keep][:, None])[:, 0]  # (N,)
    # back into (B, L), row-major as boolean indexing took them, zeros elsewhere
    return torch.zeros(keep.shape, dtype=picked.dtype, device=picked.device).masked_scatter(keep, picked).sum(-1)


def token_logprobs_reference(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:func:`token_logprobs` the plain way: log-softmax at every position, then a masked sum."""
    x, y = trim_padding(x, y)
    logp = F.log_softmax(model(x).float(), dim=-1)  # (B, L, V)
    mask = y != IGNORE_INDEX
    picked = logp.gather(-1, y.clamp(min=0)[..., None])[..., 0]  # (B, L)
    return (picked * mask).sum(-1)


def sequence_logprob(model, prompt_ids: Sequence[int] | torch.Tensor,
                     completion_ids: Sequence[int] | torch.Tensor) -> torch.Tensor:
    """``log p(completion | prompt) = Σ_t log p(c_t | prompt, c_<t)`` as a 0-dim tensor (with grad).

    Args:
        prompt_ids: 1-D ids, at least one.
        completion_ids: 1-D ids, at least one.
    """
    p = torch.as_tensor(prompt_ids, dtype=torch.long).flatten()
    c = torch.as_tensor(completion_ids, dtype=torch.long).flatten()
    if p.numel() == 0 or c.numel() == 0:
        raise ValueError(f"prompt_ids and completion_ids need at least one token each, got "
                         f"{p.numel()} and {c.numel()}")
    ids = torch.cat([p, c]).to(model.device)
    x, y = ids[:-1].clone(), ids[1:].clone()
    y[: p.numel() - 1] = IGNORE_INDEX
    return token_logprobs(model, x[None], y[None])[0]


class PreferenceDataset(PairDataset):
    """Each item: ``x`` (2, L) = [chosen, rejected] ids and ``y`` (2, L) completion-only targets."""

    def __init__(self, rows: Sequence[dict], tokenizer, style: str = "alpaca", max_len: int | None = None) -> None:
        if not rows:
            raise ValueError("rows is empty; load some with load_preferences()")
        xs, ys = [], []
        for r in rows:
            prompt = format_prompt(r["prompt"], r.get("input", ""), style)
            for answer in (r["chosen"], r["rejected"]):
                x, y = encode_example(tokenizer, prompt, response_text(answer, style), max_len)
                xs.append(x)
                ys.append(y)
        super().__init__(pad_right(xs, eos_id_of(tokenizer)).view(len(rows), 2, -1),
                         pad_right(ys, IGNORE_INDEX).view(len(rows), 2, -1))


def pair_logprobs(model, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(chosen, rejected) summed completion log-probs, each (B,), for a (B, 2, L) batch."""
    B = x.shape[0]
    lp = token_logprobs(model, x.flatten(0, 1), y.flatten(0, 1)).view(B, 2)
    return lp[:, 0], lp[:, 1]


class DPOLoss:
    """``loss_fn(model, x, y)`` for the Trainer: DPO against a frozen reference.

    Args:
        reference: the reference model, or ``None`` when ``model`` carries LoRA adapters: then the
            reference is the same network with its adapters switched off (``disable_lora``) —
            no second copy of the weights.
        beta: the DPO temperature.
    """

    def __init__(self, reference=None, beta: float = 0.1) -> None:
        if not (isinstance(beta, (int, float)) and beta > 0):
            raise ValueError(f"beta must be a positive number, got {beta!r}")
        self.reference, self.beta = reference, beta
        if reference is not None:
            reference.eval().requires_grad_(False)

    @torch.no_grad()
    def reference_logprobs(self, model, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if self.reference is not None:
            return pair_logprobs(self.reference, x, y)
        from llmnotes.finetune.lora import disable_lora, lora_layers

        if not lora_layers(model):
            raise ValueError("DPOLoss(reference=None) needs a model with LoRA adapters (the reference is "
                             "the model without them); pass reference=copy.deepcopy(model) for full finetuning")
        with disable_lora(model):
            return pair_logprobs(model, x, y)

    def __call__(self, model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        ref_c, ref_r = self.reference_logprobs(model, x, y)
        pol_c, pol_r = pair_logprobs(model, x, y)
        return dpo_loss(pol_c, pol_r, ref_c, ref_r, self.beta)


@torch.no_grad()
def pair_margins(model, dataset: PreferenceDataset, batch_size: int = 32) -> torch.Tensor:
    """``log π(chosen) - log π(rejected)`` for every pair of a dataset, shape (len(dataset),)."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    margins = []
    for i in range(0, len(dataset), batch_size):
        x, y = dataset.x[i:i + batch_size].to(device), dataset.y[i:i + batch_size].to(device)
        c, r = pair_logprobs(model, x, y)
        margins.append((c - r).float().cpu())
    model.train(was_training)
    return torch.cat(margins)


def preference_margin(model, dataset: PreferenceDataset, batch_size: int = 32) -> float:
    """Mean ``log π(chosen) - log π(rejected)`` over a dataset: rises as DPO trains."""
    return pair_margins(model, dataset, batch_size).mean().item()


def preference_accuracy(model, dataset: PreferenceDataset, batch_size: int = 32) -> float:
    """The preferred-response rate: the fraction of pairs whose chosen completion the model finds
    more likely than the rejected one (``log π(chosen) > log π(rejected)``)."""
    return (pair_margins(model, dataset, batch_size) > 0).float().mean().item()
