"""Beam search: keep the ``num_beams`` best partial sequences instead of one.

Greedy decoding commits to the most likely token at every step; a sequence whose first token is
slightly less likely but whose continuation is much more likely is never seen. Beam search keeps
``K = num_beams`` running hypotheses, scores each by its summed log-probability, and at every
step expands all of them by every token, keeping the ``K`` best of the ``K * V`` candidates.

A hypothesis that produces ``eos_id`` is *finished* and leaves the running set. Its score is
normalised by length, ``sum log p / (generated length) ** length_penalty``, so longer
hypotheses are not punished merely for being longer (``length_penalty > 0`` favours long ones,
``< 0`` short ones). The search stops when no running beam can beat the worst of ``K`` finished
ones, or at ``max_new_tokens``.

The bookkeeping follows Hugging Face ``generate(num_beams=K, do_sample=False)`` exactly (tested
token for token): the top ``2 K`` candidates are gathered each step so that ``K`` unfinished ones
remain even if ``K`` of them end in EOS; only candidates ranked in the top ``K`` may be stored as
finished; and with ``early_stopping=False`` the "can a running beam still win?" check uses the
current length (the heuristic ``transformers`` uses by default).
"""

from __future__ import annotations

import torch

from llmnotes.sampling.decode import check_prompt

_NEG = -1.0e9  # "impossible" without -inf arithmetic (as transformers does)


def _take(x: torch.Tensor, index: torch.Tensor) -> torch.Tensor:
    """Pick along dim 1 of ``x`` (B, N, ...) with ``index`` (B, M) -> (B, M, ...)."""
    while index.ndim < x.ndim:
        index = index.unsqueeze(-1)
    return torch.take_along_dim(x, index, dim=1)


@torch.no_grad()
def beam_search(model, idx: torch.Tensor, num_beams: int, max_new_tokens: int,
                length_penalty: float = 1.0, eos_id: int | None = None,
                early_stopping: bool = False, attention_mask: torch.Tensor | None = None,
                return_scores: bool = False):
    """The best sequence of a beam search of width ``num_beams`` for each prompt row.

    Args:
        model: a :class:`llmnotes.GPT`.
        idx: (B, T) prompts; left-pad rows of different lengths and pass ``attention_mask``.
        num_beams: beam width ``K >= 1`` (``1`` is greedy decoding).
        max_new_tokens: the most tokens to add.
        length_penalty: exponent of the length normalisation of finished hypotheses.
        eos_id: token that finishes a hypothesis.
        early_stopping: stop a row as soon as it has ``K`` finished hypotheses.
        attention_mask: (B, T) 1 for tokens, 0 for left padding (as in :func:`generate`).
        return_scores: also return each row's best normalised score (B,).

    Returns:
        (B, T + n) LongTensor, finished rows padded with ``eos_id``; with ``return_scores`` a pair
        ``(sequences, scores)``.
    """
    check_prompt(model, idx, max_new_tokens, attention_mask)
    if isinstance(num_beams, bool) or not isinstance(num_beams, int) or num_beams < 1:
        raise ValueError(f"num_beams must be an int >= 1, got {num_beams!r}")
    if 2 * num_beams > model.config.vocab_size:
        raise ValueError(f"num_beams ({num_beams}) must be at most half the vocabulary "
                         f"({model.config.vocab_size}): each step gathers 2 * num_beams candidates")
    if not isinstance(length_penalty, (int, float)):
        raise TypeError(f"length_penalty must be a float, got {length_penalty!r}")
    device = model.device
    idx = idx.to(device)
    B, T = idx.shape
    K, L = num_beams, T + max_new_tokens
    if max_new_tokens == 0:
        return (idx.clone(), torch.zeros(B, device=device)) if return_scores else idx.clone()
    n_cand = 2 * K  # candidates gathered per step: enough that K survive even if K end in EOS
    fill = eos_id if eos_id is not None else 0
    batch = torch.arange(B, device=device)

    # Prefill once per prompt, then copy the cache K times (cheaper than K identical prefills).
    cache = model.make_cache(B, L)
    mask = None if attention_mask is None else attention_mask.to(device).long()
    logits = model(idx, cache=cache, attention_mask=mask)[:, -1]  # (B, V)
    cache.reorder(batch.repeat_interleave(K))
    logits = logits.repeat_interleave(K, dim=0)  # (B*K, V)
    if mask is not None:  # every beam of a row shares its prompt's padding, so reordering keeps it
        mask = mask.repeat_interleave(K, dim=0)

    running = torch.full((B, K, L), fill, dtype=torch.long, device=device)
    running[:, :, :T] = idx[:, None, :]
    run_scores = torch.zeros(B, K, device=device)
    run_scores[:, 1:] = _NEG  # all beams start identical: expand only the first at step one
    done = running.clone()  # finished hypotheses, best first
    done_scores = torch.full((B, K), _NEG, device=device)
    done_len = torch.zeros(B, K, dtype=torch.long, device=device)  # generated tokens of each
    done_flag = torch.zeros(B, K, dtype=torch.bool, device=device)
    improvable = torch.ones(B, 1, dtype=torch.bool, device=device)  # may a running beam still win?
    in_top_k = torch.arange(n_cand, device=device) < K

    for cur in range(T, L):
        V = logits.shape[-1]
        logp = logits.float().log_softmax(dim=-1).view(B, K, V) + run_scores[:, :, None]
        cand_scores, flat = logp.view(B, K * V).topk(n_cand, dim=-1)  # (B, 2K)
        parent, token = flat // V, flat % V
        cand = _take(running, parent)  # (B, 2K, L)
        cand[:, :, cur] = token
        ends = token == eos_id if eos_id is not None else torch.zeros_like(token, dtype=torch.bool)
        if cur + 1 >= L:
            ends = torch.ones_like(ends)  # the length limit ends every candidate

        # The K best candidates that did not end continue running.
        alive = cand_scores + ends.float() * _NEG
        keep = alive.topk(K, dim=-1).indices
        running, run_scores, run_parent = _take(cand, keep), _take(alive, keep), _take(parent, keep)

        # Ended candidates ranked in the top K compete, length-normalised, for the K finished slots.
        gen_len = cur + 1 - T
        normed = cand_scores / gen_len ** length_penalty
        allowed = ends & in_top_k & improvable
        if early_stopping:
            allowed &= ~done_flag.all(dim=-1, keepdim=True)
        normed = normed + (~allowed).float() * _NEG
        pool_scores = torch.cat([done_scores, normed], dim=1)
        best = pool_scores.topk(K, dim=-1).indices
        done = _take(torch.cat([done, cand], dim=1), best)
        done_scores = _take(pool_scores, best)
        done_len = _take(torch.cat([done_len, torch.full_like(token, gen_len)], dim=1), best)
        done_flag = _take(torch.cat([done_flag, ends & in_top_k], dim=1), best)

        # Can the best running beam (at its current length) still beat the worst finished one?
        worst_done = torch.where(done_flag, done_scores.min(dim=-1, keepdim=True).values, _NEG)
        improvable &= (run_scores[:, :1] / gen_len ** length_penalty > worst_done).any(dim=-1, keepdim=True)
        if not improvable.any() or bool(ends.all()) or (early_stopping and bool(done_flag.all())):
            break
        cache.reorder((batch[:, None] * K + run_parent).flatten())
        if mask is not None:
            mask = torch.cat([mask, mask.new_ones(B * K, 1)], dim=1)
        logits = model(running[:, :, cur].reshape(B * K, 1), cache=cache, attention_mask=mask)[:, -1]

    out_len = T + int(done_len[:, 0].max())
    out = done[:, 0, :out_len]
    return (out, done_scores[:, 0]) if return_scores else out
