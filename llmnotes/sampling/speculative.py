"""Speculative decoding: a small draft model guesses, the big target model checks in one pass.

Decoding is slow because each token needs a full forward pass of the big model, and a pass over
one token costs about as much wall-clock time as a pass over a few (the weights must be read
either way). So let a cheap *draft* model propose ``k`` tokens ``d_1..d_k`` one by one, then run
the *target* once over all of them, which yields the target's distributions ``p_1..p_{k+1}`` at
every proposed position at once.

Each draft token is accepted with probability ``min(1, p_i(d_i) / q_i(d_i))`` (``q_i`` is the
draft's distribution it was drawn from). At the first rejection, a replacement is drawn from the
residual ``norm(max(0, p_i - q_i))`` and the round ends; if all ``k`` are accepted, a bonus token
is drawn from ``p_{k+1}``. Every round therefore yields between 1 and ``k + 1`` tokens for one
target pass, and each token is distributed *exactly* as if the target had sampled it alone:

    P(emit x) = q(x) min(1, p(x)/q(x)) + P(reject) * max(0, p(x) - q(x)) / Z
              = min(q(x), p(x)) + max(0, p(x) - q(x)) = p(x)

because ``P(reject) = 1 - sum_x min(p, q) = sum_x max(0, p - q) = Z``. (Leviathan, Kalman and
Matias 2023, arXiv:2211.17192; Chen et al. 2023, arXiv:2302.01318.) With ``temperature=0``
both models are greedy, a draft token is accepted iff it is the target's argmax, and the output
equals the target's greedy output token for token.

Rejected positions are removed from both KV caches with ``cache.crop`` (the caches always hold
every emitted token except the newest, which is fed at the start of the next round).
"""

from __future__ import annotations

import copy
import dataclasses
from dataclasses import dataclass

import torch

from llmnotes.sampling.decode import check_prompt
from llmnotes.sampling.processors import min_p_filter, top_k_filter, top_p_filter


@dataclass
class SpeculativeStats:
    """What a speculative run did: rounds (= target forward passes after the prefill), draft
    tokens proposed and accepted, tokens emitted."""

    rounds: int = 0
    proposed: int = 0
    accepted: int = 0
    emitted: int = 0

    @property
    def acceptance_rate(self) -> float:
        return self.accepted / max(self.proposed, 1)

    @property
    def tokens_per_round(self) -> float:
        return self.emitted / max(self.rounds, 1)


def early_exit_draft(target, n_layers: int):
    """A draft that *is* the target, cut short: its first ``n_layers`` blocks, then its final
    LayerNorm and LM head (the drafting idea of LayerSkip, Elhoushi et al. 2024, arXiv:2404.16710).

    The weights are shared, not copied, so the draft costs no memory; it needs no training and
    always shares the target's tokenizer. It agrees with the target wherever the first layers
    already "know" the next token.
    """
    if isinstance(n_layers, bool) or not isinstance(n_layers, int) or not 1 <= n_layers <= target.config.n_layer:
        raise ValueError(f"n_layers must be an int in [1, {target.config.n_layer}], got {n_layers!r}")
    draft = copy.copy(target)  # shallow: the same parameter tensors
    draft._modules = dict(target._modules)  # its own module table, so the swap below spares the target
    draft.transformer = torch.nn.ModuleDict({
        name: torch.nn.ModuleList(list(module)[:n_layers]) if name == "h" else module
        for name, module in target.transformer.items()})
    draft.config = dataclasses.replace(target.config, n_layer=n_layers)
    return draft


def _probs(logits: torch.Tensor, temperature: float, top_k, top_p, min_p) -> torch.Tensor:
    """Logits (N, V) -> the distribution sampling draws from (N, V) (one-hot argmax when greedy)."""
    logits = logits.float()
    if temperature == 0:
        return torch.nn.functional.one_hot(logits.argmax(-1), logits.shape[-1]).float()
    logits = logits / temperature
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    if min_p is not None:
        logits = min_p_filter(logits, min_p)
    return logits.softmax(dim=-1)


def verify(p: torch.Tensor, q: torch.Tensor, draft: torch.Tensor,
           generator: torch.Generator | None = None) -> tuple[int, int]:
    """The acceptance rule for one round.

    Args:
        p: (k + 1, V) target probabilities at the k draft positions and the one after.
        q: (k, V) draft probabilities the draft tokens were drawn from.
        draft: (k,) the proposed tokens.

    Returns:
        ``(n_accepted, next_token)``: the first ``n_accepted`` draft tokens stand, followed by
        ``next_token`` (the residual draw at the first rejection, or the bonus draw from ``p[k]``).
    """
    k = draft.shape[0]
    for i in range(k):
        d = int(draft[i])
        accept_prob = torch.clamp(p[i, d] / q[i, d], max=1.0)  # q[i, d] > 0: d was drawn from q
        u = torch.rand((), generator=generator, device=p.device)
        if u < accept_prob:
            continue
        residual = (p[i] - q[i]).clamp(min=0)
        if float(residual.sum()) <= 0:  # p == q up to rounding: nothing to correct, draw from p
            residual = p[i]
        return i, int(torch.multinomial(residual / residual.sum(), 1, generator=generator))
    return k, int(torch.multinomial(p[k], 1, generator=generator))


@torch.no_grad()
def speculative_generate(target, draft, idx: torch.Tensor, max_new_tokens: int, num_draft: int = 4,
                         temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                         min_p: float | None = None, eos_id: int | None = None,
                         generator: torch.Generator | None = None, return_stats: bool = False):
    """Sample from ``target`` with ``draft`` proposing ``num_draft`` tokens per target pass.

    The output has the same distribution as ``generate(target, idx, ...)`` with the same
    temperature and filters (and, at ``temperature=0``, the very same tokens).

    Args:
        target: the model whose distribution is sampled.
        draft: a smaller model with the same tokenizer (same vocabulary size).
        idx: (1, T) prompt; speculative decoding here runs one sequence at a time.
        max_new_tokens: tokens to add (fewer if ``eos_id`` is produced).
        num_draft: draft tokens proposed per round (``k``).
        temperature, top_k, top_p, min_p: applied identically to both models' logits.
        eos_id: stop after this token.
        generator: for reproducible sampling.
        return_stats: also return a :class:`SpeculativeStats`.

    Returns:
        (1, T + n) LongTensor, and the stats if asked.
    """
    check_prompt(target, idx, max_new_tokens)
    check_prompt(draft, idx, max_new_tokens)
    if idx.shape[0] != 1:
        raise ValueError(f"speculative_generate decodes one sequence at a time: idx must be (1, T), "
                         f"got batch {idx.shape[0]}; loop over the rows")
    if target.config.vocab_size != draft.config.vocab_size:
        raise ValueError(f"target and draft must share a vocabulary: {target.config.vocab_size} "
                         f"vs {draft.config.vocab_size} token ids")
    if isinstance(num_draft, bool) or not isinstance(num_draft, int) or num_draft < 1:
        raise ValueError(f"num_draft must be an int >= 1, got {num_draft!r}")
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}")
    stats = SpeculativeStats()
    device = target.device
    tokens = idx[0].to(device).tolist()
    T = len(tokens)
    if max_new_tokens == 0:
        out = idx.to(device).clone()
        return (out, stats) if return_stats else out
    sample_args = (temperature, top_k, top_p, min_p)
    t_cache = target.make_cache(1, T + max_new_tokens)
    d_cache = draft.make_cache(1, T + max_new_tokens)
    # Both caches hold every token but the last, which each round feeds first.
    if T > 1:
        prompt_head = torch.tensor([tokens[:-1]], device=device)
        target(prompt_head, cache=t_cache)
        draft(prompt_head.to(draft.device), cache=d_cache)

    while len(tokens) - T < max_new_tokens:
        remaining = max_new_tokens - (len(tokens) - T)
        k = min(num_draft, remaining - 1)  # a round emits up to k + 1 tokens: never overshoot
        # 1. Draft k tokens autoregressively (feeding whatever the draft cache has not seen).
        proposed, q_rows = [], []
        feed = tokens[d_cache.seq_len:]
        for _ in range(k):
            logits = draft(torch.tensor([feed], device=draft.device), cache=d_cache)[0, -1:]
            q = _probs(logits.to(device), *sample_args)  # (1, V)
            tok = int(torch.multinomial(q[0], 1, generator=generator)) if temperature > 0 else int(q[0].argmax())
            proposed.append(tok)
            q_rows.append(q)
            feed = [tok]
        # 2. One target pass over the last emitted token and the k proposals: k + 1 distributions.
        new = tokens[t_cache.seq_len:] + proposed
        p = _probs(target(torch.tensor([new], device=device), cache=t_cache)[0, -(k + 1):], *sample_args)
        # 3. Accept a prefix, then one corrected or bonus token.
        if k:
            n_ok, nxt = verify(p, torch.cat(q_rows), torch.tensor(proposed, device=device), generator)
        else:
            n_ok, nxt = 0, (int(torch.multinomial(p[0], 1, generator=generator)) if temperature > 0
                            else int(p[0].argmax()))
        emitted = proposed[:n_ok] + [nxt]
        if eos_id is not None and eos_id in emitted:
            emitted = emitted[: emitted.index(eos_id) + 1]
        tokens += emitted
        stats.rounds += 1
        stats.proposed += k
        stats.accepted += n_ok
        stats.emitted += len(emitted)
        # 4. Roll back: keep cached positions of accepted tokens only (all but the newest token).
        t_cache.crop(len(tokens) - 1)
        d_cache.crop(min(d_cache.seq_len, len(tokens) - 1))
        if eos_id is not None and tokens[-1] == eos_id:
            break
    out = torch.tensor([tokens], dtype=torch.long, device=device)
    return (out, stats) if return_stats else out
