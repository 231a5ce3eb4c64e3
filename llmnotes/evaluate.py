"""Evaluating language models: perplexity, and multiple-choice scoring by log-likelihood.

* ``perplexity`` is exp(mean next-token cross-entropy) over a text, computed with a sliding
  window so texts longer than the context are scored with as much left context as possible (the
  same strided scheme as Hugging Face's perplexity guide).
* ``choice_logprobs`` scores each candidate continuation by the sum of its tokens'
  log-probabilities; ``multiple_choice_accuracy`` picks the best-scoring choice, optionally
  length-normalised (per token or per byte, as evaluation harnesses score MMLU- or
  HellaSwag-style tasks), with optional few-shot examples prepended.
"""

from __future__ import annotations

import json
import math
import random
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from llmnotes.utils import model_device

NORMALISATIONS = ("none", "token", "byte")


@dataclass(frozen=True)
class MCItem:
    """One multiple-choice question: a context, candidate continuations, the right one's index."""

    context: str
    choices: tuple[str, ...]
    answer: int

    def __post_init__(self) -> None:
        if not self.context:
            raise ValueError("context must be a non-empty string")
        if len(self.choices) < 2:
            raise ValueError(f"an item needs at least 2 choices, got {len(self.choices)}")
        if not 0 <= self.answer < len(self.choices):
            raise ValueError(f"answer index {self.answer} is out of range for {len(self.choices)} choices")


def load_mc_items(path: str | Path | None = None) -> list[MCItem]:
    """Read a JSON-lines file of {"context", "choices", "answer"}; default: the shipped story set."""
    if path is None:
        text = resources.files("llmnotes").joinpath("assets/eval/stories_mc.jsonl").read_text(encoding="utf-8")
        source = "stories_mc.jsonl"
    else:
        text, source = Path(path).read_text(encoding="utf-8"), str(path)
    items = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            items.append(MCItem(row["context"], tuple(row["choices"]), int(row["answer"])))
        except (KeyError, ValueError, TypeError) as err:
            raise ValueError(f"{source} line {n} is not a valid item ({err}): {line[:80]!r}") from err
    return items


@torch.no_grad()
def token_nll(model: torch.nn.Module, ids: Sequence[int], block_size: int | None = None,
              stride: int | None = None) -> torch.Tensor:
    """Negative log-likelihood of every token after the first, (len(ids) - 1,), sliding a window of
    ``block_size`` tokens by ``stride``; each token is scored once, with the most context available."""
    block_size = block_size or model.config.block_size
    stride = stride or block_size
    if not 0 < stride <= block_size:
        raise ValueError(f"stride must be in [1, block_size={block_size}], got {stride}")
    ids_t = torch.as_tensor(list(ids), dtype=torch.long, device=model_device(model))
    n = ids_t.numel()
    if n < 2:
        raise ValueError(f"need at least 2 tokens to measure next-token loss, got {n}")
    nll = torch.empty(n - 1, device=ids_t.device)
    scored = 0  # tokens 1..scored already have a loss
    start = 0
    while scored < n - 1:
        end = min(start + block_size, n)
        window = ids_t[start:end][None]
        logp = F.log_softmax(model(window[:, :-1]).float(), dim=-1)[0]  # (W-1, V)
        targets = window[0, 1:]
        losses = -logp.gather(1, targets[:, None])[:, 0]  # loss of token start+1+i
        new_from = scored - start  # skip tokens an earlier window already scored
        nll[scored:end - 1] = losses[new_from:]
        scored = end - 1
        start += stride
        if start + 1 > scored:  # never leave a gap between windows
            start = scored
    return nll


def perplexity(model: torch.nn.Module, text_or_ids: str | Sequence[int] | torch.Tensor, tokenizer=None,
               block_size: int | None = None, stride: int | None = None) -> float:
    """exp(mean next-token cross-entropy) of a text (needs ``tokenizer``) or of token ids.

    The package's one model-level perplexity (``llmnotes.quantize.perplexity`` is this function).
    Every token after the first is scored once, by :func:`token_nll`'s sliding window.

    Args:
        text_or_ids: a string, a sequence of ids or a 1-D ``LongTensor``.
        block_size: window length in tokens, the scored token included (default: the model's
            context, so each window feeds ``block_size - 1`` tokens, as Hugging Face's guide does).
        stride: how far the window moves (default ``block_size``: windows that do not overlap).
    """
    if isinstance(text_or_ids, str):
        if tokenizer is None:
            raise ValueError("perplexity of a string needs tokenizer=...; or pass token ids")
        if not text_or_ids:
            raise ValueError("cannot measure the perplexity of an empty text")
        ids = tokenizer.encode(text_or_ids, allowed_special="all")
    elif isinstance(text_or_ids, torch.Tensor):
        if text_or_ids.ndim != 1 or text_or_ids.is_floating_point() or text_or_ids.is_complex():
            raise ValueError(f"token ids must be a 1-D integer tensor, got shape {tuple(text_or_ids.shape)} "
                             f"of {text_or_ids.dtype}")
        ids = text_or_ids.tolist()
    else:
        ids = list(text_or_ids)
    was_training = model.training
    model.eval()
    try:
        return math.exp(token_nll(model, ids, block_size, stride).mean().item())
    finally:
        model.train(was_training)


@torch.no_grad()
def choice_logprobs(model: torch.nn.Module, tokenizer, context: str, choices: Sequence[str]) -> list[tuple[float, int]]:
    """(sum of log-probabilities, number of tokens) of each choice as a continuation of context.

    The context goes through the model once; its keys and values (the KV cache) are then
    copied to one row per choice, and the choices' tokens go through together, right-padded:
    attention is causal, so padding after a row's last token changes none of its positions.
    A context too long for the model keeps its last ``block_size - longest choice + 1`` tokens.
    """
    ctx = tokenizer.encode(context)
    conts = [tokenizer.encode(choice) for choice in choices]
    for choice, cont in zip(choices, conts):
        if not cont:
            raise ValueError(f"choice {choice!r} encodes to no tokens")
    longest = max(len(c) for c in conts)
    keep = model.config.block_size + 1 - longest
    if keep < 1:
        raise ValueError(f"a choice of {longest} tokens leaves no room for context in block_size "
                         f"{model.config.block_size}")
    if not ctx:
        raise ValueError("context encodes to no tokens: nothing would predict a choice's first token")
    ctx = ctx[-keep:]
    if not hasattr(model, "make_cache"):
        return _choice_logprobs_uncached(model, ctx, conts)
    device = model_device(model)
    cache = model.make_cache(1, len(ctx) + longest - 1)
    first = F.log_softmax(model(torch.tensor([ctx], device=device), cache=cache)[0, -1].float(), dim=-1)
    totals = [first[cont[0]].item() for cont in conts]  # the last context position predicts token 1
    if longest > 1:
        cache.reorder(torch.zeros(len(conts), dtype=torch.long, device=device))  # one row per choice
        x = torch.zeros(len(conts), longest - 1, dtype=torch.long)
        for r, cont in enumerate(conts):
            x[r, : len(cont) - 1] = torch.tensor(cont[:-1])
        logp = F.log_softmax(model(x.to(device), cache=cache).float(), dim=-1)  # (choices, longest - 1, V)
        for r, cont in enumerate(conts):
            totals[r] += sum(logp[r, p, cont[p + 1]].item() for p in range(len(cont) - 1))
    return [(total, len(cont)) for total, cont in zip(totals, conts)]


def _choice_logprobs_uncached(model, ctx: list[int], conts: list[list[int]]) -> list[tuple[float, int]]:
    """The same sums with one full forward pass per choice (models without a KV cache)."""
    out = []
    for cont in conts:
        ids = ctx + cont
        logp = F.log_softmax(model(torch.tensor([ids[:-1]], device=model_device(model))).float()[0], dim=-1)
        out.append((sum(logp[p, ids[p + 1]].item() for p in range(len(ctx) - 1, len(ids) - 1)), len(cont)))
    return out


def few_shot_context(item: MCItem, examples: Sequence[MCItem], separator: str = "\n\n") -> str:
    """Prepend solved examples ("context + right answer") to an item's context."""
    shots = [ex.context + ex.choices[ex.answer] for ex in examples]
    return separator.join([*shots, item.context])


def multiple_choice_accuracy(model: torch.nn.Module, tokenizer, items: Sequence[MCItem], shots: int = 0,
                             normalize: str = "none", seed: int = 0) -> float:
    """Fraction of items whose best-scoring choice is the right one.

    Args:
        shots: solved examples drawn (seeded) from the *other* items and prepended to each context.
        normalize: ``"none"`` (sum of log-probs: favours short answers), ``"token"`` (mean per
            token) or ``"byte"`` (per UTF-8 byte of the choice: independent of the tokenizer).
    """
    if not items:
        raise ValueError("items is empty: nothing to evaluate")
    if normalize not in NORMALISATIONS:
        raise ValueError(f"normalize must be one of {NORMALISATIONS}, got {normalize!r}")
    if not 0 <= shots < len(items):
        raise ValueError(f"shots must be in [0, {len(items) - 1}], got {shots}")
    rng = random.Random(seed)
    correct = 0
    was_training = model.training
    model.eval()
    try:
        for i, item in enumerate(items):
            pool = [x for j, x in enumerate(items) if j != i]
            context = few_shot_context(item, rng.sample(pool, shots)) if shots else item.context
            scores = []
            for choice, (logp, n_tok) in zip(item.choices, choice_logprobs(model, tokenizer, context, item.choices)):
                denom = {"none": 1, "token": n_tok, "byte": len(choice.encode("utf-8"))}[normalize]
                scores.append(logp / denom)
            correct += int(max(range(len(scores)), key=scores.__getitem__) == item.answer)
    finally:
        model.train(was_training)
    return correct / len(items)
