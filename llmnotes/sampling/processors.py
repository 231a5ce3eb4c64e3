"""Logits processors: the rules that reshape next-token scores before a token is chosen.

Every rule comes twice. A *function* on logits ``(B, V)`` (``top_k_filter(logits, k)``) that
returns a new tensor with the removed entries set to ``-inf``; and a small *callable class*
(``TopKWarper(k)``) with the Hugging Face ``LogitsProcessor`` signature
``(input_ids (B, T), scores (B, V)) -> scores (B, V)`` that checks its arguments once, in
``__init__``. Nothing here changes its inputs in place, and every rule works row by row on a batch.

The filters follow the ``transformers`` warpers exactly (same masks, same values, ties
included), which the tests check on random logits:

========================  ===============================================  ==========================
rule                      keeps                                            paper
========================  ===============================================  ==========================
temperature ``t``         all, logits divided by ``t``                     —
top-k ``k``               the ``k`` highest logits (and ties of the k-th)  Fan et al. 2018, 1805.04833
top-p ``p`` (nucleus)     the smallest set whose probability is ``>= p``   Holtzman et al. 2020, 1904.09751
min-p ``p``               tokens with ``prob >= p * max prob``             Nguyen et al. 2024, 2407.01082
typical ``mass``          tokens whose surprise is closest to the entropy  Meister et al. 2023, 2202.00666
========================  ===============================================  ==========================

The penalties: repetition (Keskar et al. 2019, arXiv:1909.05858, divides a seen token's positive
logit by ``penalty`` and multiplies a negative one), OpenAI's frequency and presence penalties
(``logit - count * frequency - (count > 0) * presence``), no-repeat-n-gram, bad words, logit bias,
a minimum length, and forced first/last tokens.

Over 400 lines because each of the eleven rules is a function and its processor class, kept
side by side so a reader compares them; splitting the pairs apart would hide that they agree.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

NEG_INF = float("-inf")


# --------------------------------------------------------------------------- argument checks
def _check_logits(logits: torch.Tensor, name: str = "logits") -> None:
    if not isinstance(logits, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, V), got {type(logits).__name__}")
    if logits.ndim != 2:
        raise ValueError(f"{name} must have shape (B, V), got shape {tuple(logits.shape)}; "
                         f"use logits[:, -1, :] to take the last position of (B, T, V) model output")
    if not logits.is_floating_point():
        raise TypeError(f"{name} must be a floating-point tensor, got dtype {logits.dtype}")


def _check_ids(input_ids: torch.Tensor, batch: int) -> None:
    if not isinstance(input_ids, torch.Tensor) or input_ids.ndim != 2:
        raise ValueError("input_ids must be a LongTensor of shape (B, T), got "
                         f"{getattr(input_ids, 'shape', type(input_ids).__name__)}")
    if input_ids.is_floating_point():
        raise TypeError(f"input_ids must be an integer tensor, got dtype {input_ids.dtype}")
    if input_ids.shape[0] != batch:
        raise ValueError(f"input_ids has batch size {input_ids.shape[0]} but logits has {batch}; "
                         "pass the token ids of the same rows")


def _check_int(name: str, value, low: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {low}, got {value!r}")
    if value < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    return value


def _check_prob(name: str, value, *, low_open: bool = True, high_open: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be a float, got {value!r}")
    value = float(value)
    lo, hi = ("(" if low_open else "["), (")" if high_open else "]")
    ok_lo = value > 0 if low_open else value >= 0
    ok_hi = value < 1 if high_open else value <= 1
    if not (ok_lo and ok_hi):
        raise ValueError(f"{name} must be in {lo}0, 1{hi}, got {value}")
    return value


# --------------------------------------------------------------------------- filters (functions)
def temperature_scale(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """Divide ``logits`` (B, V) by ``temperature > 0``: below 1 sharpens, above 1 flattens.

    ``temperature = 0`` is not a division: :func:`llmnotes.sampling.generate` treats it as greedy.
    """
    _check_logits(logits)
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}; use greedy decoding "
                         "(generate(..., temperature=0)) for the limit temperature -> 0")
    return logits / float(temperature)


def top_k_filter(logits: torch.Tensor, k: int, min_keep: int = 1) -> torch.Tensor:
    """Keep the ``max(k, min_keep)`` highest logits of each row of ``logits`` (B, V); ``-inf`` the rest.

    A token tied with the k-th largest logit is kept too (so a row may keep more than ``k``),
    as Hugging Face's ``TopKLogitsWarper`` does.
    """
    _check_logits(logits)
    k = _check_int("top_k", k, 1)
    _check_int("min_keep", min_keep, 1)
    k = min(max(k, min_keep), logits.shape[-1])
    kth = torch.topk(logits, k, dim=-1).values[:, -1:]  # (B, 1) the k-th largest value
    return logits.masked_fill(logits < kth, NEG_INF)


def top_p_filter(logits: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probabilities sum to ``>= p``.

    Sorting ascending, a token is dropped while the probability mass *up to and including it* is
    ``<= 1 - p``: what is dropped has mass at most ``1 - p``, so what is kept has at least ``p``.
    The ``min_keep`` most likely tokens always stay.
    """
    _check_logits(logits)
    p = _check_prob("top_p", p)
    _check_int("min_keep", min_keep, 1)
    sorted_logits, order = torch.sort(logits, dim=-1, descending=False)  # (B, V) least likely first
    mass_below = sorted_logits.softmax(dim=-1).cumsum(dim=-1)
    drop_sorted = mass_below <= 1 - p
    drop_sorted[:, -min_keep:] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)  # back to vocabulary order
    return logits.masked_fill(drop, NEG_INF)


def min_p_filter(logits: torch.Tensor, p: float, min_keep: int = 1) -> torch.Tensor:
    """Keep tokens whose probability is at least ``p`` times the top token's probability.

    The cut-off scales with the model's confidence: a peaked distribution keeps few tokens, a flat
    one keeps many. ``p = 0`` keeps everything.
    """
    _check_logits(logits)
    p = _check_prob("min_p", p, low_open=False)
    _check_int("min_keep", min_keep, 1)
    probs = logits.softmax(dim=-1)
    drop = probs < p * probs.amax(dim=-1, keepdim=True)
    keep_idx = torch.topk(probs, min(min_keep, probs.shape[-1]), dim=-1).indices
    drop = drop.scatter(-1, keep_idx, False)
    return logits.masked_fill(drop, NEG_INF)


def typical_filter(logits: torch.Tensor, mass: float, min_keep: int = 1) -> torch.Tensor:
    """Locally typical sampling: keep the tokens whose surprise ``-log p`` is closest to the entropy.

    Tokens are ranked by ``| -log p(x) - H |`` and kept, closest first, until their probability
    reaches ``mass``; the token that crosses ``mass`` is kept, and so is any tie with it.
    """
    _check_logits(logits)
    mass = _check_prob("typical_p", mass, high_open=True)
    _check_int("min_keep", min_keep, 1)
    logp = logits.log_softmax(dim=-1)
    entropy = -(logp * logp.exp()).nansum(dim=-1, keepdim=True)  # (B, 1); nansum: 0 * -inf = nan
    distance = (-logp - entropy).abs()
    sorted_dist, order = torch.sort(distance, dim=-1)
    cum = logits.gather(-1, order).softmax(dim=-1).cumsum(dim=-1)
    last = (cum < mass).sum(dim=-1, keepdim=True).clamp(max=logits.shape[-1] - 1)  # first index reaching mass
    drop_sorted = sorted_dist > sorted_dist.gather(-1, last)
    drop_sorted[:, :min_keep] = False
    drop = drop_sorted.scatter(-1, order, drop_sorted)
    return logits.masked_fill(drop, NEG_INF)


# --------------------------------------------------------------------------- penalties (functions)
def repetition_penalty(logits: torch.Tensor, input_ids: torch.Tensor, penalty: float) -> torch.Tensor:
    """Penalise every token that occurs in ``input_ids`` (B, T), once however often it occurs.

    A positive logit is divided by ``penalty`` and a negative one multiplied, so ``penalty > 1``
    always makes a seen token less likely (Keskar et al. 2019, arXiv:1909.05858, CTRL).
    """
    _check_logits(logits)
    _check_ids(input_ids, logits.shape[0])
    if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not penalty > 0:
        raise ValueError(f"repetition_penalty must be > 0 (1.0 = no penalty), got {penalty!r}")
    seen = logits.gather(-1, input_ids)
    seen = torch.where(seen < 0, seen * penalty, seen / penalty)
    return logits.scatter(-1, input_ids, seen)


def token_counts(input_ids: torch.Tensor, vocab_size: int) -> torch.Tensor:
    """How often each token id occurs in each row: (B, T) ids -> (B, V) float counts."""
    counts = torch.zeros(input_ids.shape[0], vocab_size, device=input_ids.device)
    return counts.scatter_add(-1, input_ids, torch.ones_like(input_ids, dtype=counts.dtype))


def frequency_presence_penalty(logits: torch.Tensor, input_ids: torch.Tensor,
                               frequency: float = 0.0, presence: float = 0.0) -> torch.Tensor:
    """OpenAI's penalties: ``logit[j] - count[j] * frequency - (count[j] > 0) * presence``.

    ``count[j]`` is how many times token ``j`` occurs in ``input_ids`` (B, T); pass only the
    generated part to leave the prompt unpenalised, as OpenAI's API does. Both in ``[-2, 2]``.
    """
    _check_logits(logits)
    _check_ids(input_ids, logits.shape[0])
    for name, value in (("frequency_penalty", frequency), ("presence_penalty", presence)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not -2.0 <= value <= 2.0:
            raise ValueError(f"{name} must be a float in [-2, 2] (OpenAI's range), got {value!r}")
    counts = token_counts(input_ids, logits.shape[-1]).to(logits.dtype)
    return logits - counts * frequency - (counts > 0).to(logits.dtype) * presence


def banned_ngram_tokens(input_ids: torch.Tensor, n: int) -> torch.Tensor:
    """(B, T) ids -> (B, V_max) bool: which next tokens would repeat an n-gram already in the row.

    The last ``n - 1`` tokens form a prefix; every earlier place where the same prefix occurred
    bans the token that followed it there. Returns a mask over ids ``0..max_id``.
    """
    B, T = input_ids.shape
    width = int(input_ids.max().item()) + 1 if input_ids.numel() else 1
    banned = torch.zeros(B, width, dtype=torch.bool, device=input_ids.device)
    if T < n:
        return banned
    windows = input_ids.unfold(1, n, 1)  # (B, T - n + 1, n) every n-gram
    prefix = input_ids[:, T - n + 1:]  # (B, n - 1) the n-gram the next token would complete
    hit = (windows[:, :, :-1] == prefix[:, None, :]).all(dim=-1)  # (B, T - n + 1)
    rows, cols = hit.nonzero(as_tuple=True)
    banned[rows, windows[rows, cols, -1]] = True
    return banned


# --------------------------------------------------------------------------- processor classes
class LogitsProcessor:
    """Base class: ``processor(input_ids (B, T), scores (B, V)) -> new scores (B, V)``."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:  # pragma: no cover
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({args})"


class LogitsProcessorList(list):
    """Apply processors in order: ``LogitsProcessorList([RepetitionPenalty(1.2), TopKWarper(50)])``."""

    def __call__(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        for processor in self:
            scores = processor(input_ids, scores)
        return scores


class TemperatureWarper(LogitsProcessor):
    """Divide the scores by ``temperature`` (> 0)."""

    def __init__(self, temperature: float):
        if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature!r}; for greedy decoding "
                             "use generate(..., temperature=0) instead of a TemperatureWarper")
        self.temperature = float(temperature)

    def __call__(self, input_ids, scores):
        return temperature_scale(scores, self.temperature)


class TopKWarper(LogitsProcessor):
    """Keep the ``top_k`` most likely tokens (see :func:`top_k_filter`)."""

    def __init__(self, top_k: int, min_keep: int = 1):
        self.top_k = _check_int("top_k", top_k, 1)
        self.min_keep = _check_int("min_keep", min_keep, 1)

    def __call__(self, input_ids, scores):
        return top_k_filter(scores, self.top_k, self.min_keep)


class TopPWarper(LogitsProcessor):
    """Nucleus sampling's filter (see :func:`top_p_filter`)."""

    def __init__(self, top_p: float, min_keep: int = 1):
        self.top_p = _check_prob("top_p", top_p)
        self.min_keep = _check_int("min_keep", min_keep, 1)

    def __call__(self, input_ids, scores):
        return top_p_filter(scores, self.top_p, self.min_keep)


class MinPWarper(LogitsProcessor):
    """Keep tokens with probability ``>= min_p * max probability`` (see :func:`min_p_filter`)."""

    def __init__(self, min_p: float, min_keep: int = 1):
        self.min_p = _check_prob("min_p", min_p, low_open=False)
        self.min_keep = _check_int("min_keep", min_keep, 1)

    def __call__(self, input_ids, scores):
        return min_p_filter(scores, self.min_p, self.min_keep)


class TypicalWarper(LogitsProcessor):
    """Locally typical sampling's filter (see :func:`typical_filter`)."""

    def __init__(self, mass: float = 0.9, min_keep: int = 1):
        self.mass = _check_prob("typical_p", mass, high_open=True)
        self.min_keep = _check_int("min_keep", min_keep, 1)

    def __call__(self, input_ids, scores):
        return typical_filter(scores, self.mass, self.min_keep)


class RepetitionPenaltyProcessor(LogitsProcessor):
    """CTRL's repetition penalty over the whole context (see :func:`repetition_penalty`)."""

    def __init__(self, penalty: float):
        if isinstance(penalty, bool) or not isinstance(penalty, (int, float)) or not penalty > 0:
            raise ValueError(f"repetition_penalty must be > 0 (1.0 = no penalty), got {penalty!r}")
        self.penalty = float(penalty)

    def __call__(self, input_ids, scores):
        return repetition_penalty(scores, input_ids, self.penalty)


class FrequencyPresencePenaltyProcessor(LogitsProcessor):
    """OpenAI's frequency and presence penalties on the tokens after the first ``prompt_length``.

    ``prompt_length`` is the (padded) prompt width: OpenAI counts only the generated tokens.
    """

    def __init__(self, frequency: float = 0.0, presence: float = 0.0, prompt_length: int = 0):
        for name, value in (("frequency_penalty", frequency), ("presence_penalty", presence)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not -2.0 <= value <= 2.0:
                raise ValueError(f"{name} must be a float in [-2, 2] (OpenAI's range), got {value!r}")
        self.frequency, self.presence = float(frequency), float(presence)
        self.prompt_length = _check_int("prompt_length", prompt_length, 0)

    def __call__(self, input_ids, scores):
        return frequency_presence_penalty(scores, input_ids[:, self.prompt_length:], self.frequency, self.presence)


class NoRepeatNGramProcessor(LogitsProcessor):
    """Forbid any token that would complete an n-gram already present in the row."""

    def __init__(self, ngram_size: int):
        self.ngram_size = _check_int("no_repeat_ngram_size", ngram_size, 1)

    def __call__(self, input_ids, scores):
        _check_logits(scores, "scores")
        _check_ids(input_ids, scores.shape[0])
        banned = banned_ngram_tokens(input_ids, self.ngram_size)[:, : scores.shape[-1]]
        mask = torch.zeros_like(scores, dtype=torch.bool)
        mask[:, : banned.shape[1]] = banned
        return scores.masked_fill(mask, NEG_INF)


class LogitBiasProcessor(LogitsProcessor):
    """Add a fixed bias to chosen tokens, OpenAI's ``logit_bias``: ``{token_id: bias}``, bias in [-100, 100]."""

    def __init__(self, bias: dict[int, float]):
        if not isinstance(bias, dict) or not bias:
            raise ValueError(f"logit_bias must be a non-empty dict {{token_id: bias}}, got {bias!r}")
        for tok, value in bias.items():
            if isinstance(tok, bool) or not isinstance(tok, int) or tok < 0:
                raise ValueError(f"logit_bias keys must be token ids (ints >= 0), got {tok!r}")
            if not isinstance(value, (int, float)) or not -100 <= value <= 100:
                raise ValueError(f"logit_bias values must be in [-100, 100], got {value!r} for token {tok}")
        self.bias = {int(t): float(b) for t, b in bias.items()}

    def __call__(self, input_ids, scores):
        _check_logits(scores, "scores")
        ids = torch.tensor(list(self.bias), device=scores.device)
        if int(ids.max()) >= scores.shape[-1]:
            raise ValueError(f"logit_bias names token {int(ids.max())} but the vocabulary has {scores.shape[-1]}")
        add = torch.zeros(scores.shape[-1], dtype=scores.dtype, device=scores.device)
        add[ids] = torch.tensor(list(self.bias.values()), dtype=scores.dtype, device=scores.device)
        return scores + add


class BadWordsProcessor(LogitsProcessor):
    """Never produce any of the token sequences in ``bad_words_ids``.

    A one-token bad word is always banned; a longer one bans its last token only right after its
    other tokens have been produced. A lone ``eos_id`` in the list is ignored (it would make the
    model unable to stop), as Hugging Face does.
    """

    def __init__(self, bad_words_ids: Sequence[Sequence[int]], eos_id: int | Iterable[int] | None = None):
        if not isinstance(bad_words_ids, (list, tuple)) or not bad_words_ids:
            raise ValueError(f"bad_words_ids must be a non-empty list of lists of token ids, got {bad_words_ids!r}")
        for word in bad_words_ids:
            if (not isinstance(word, (list, tuple)) or not word
                    or any(isinstance(t, bool) or not isinstance(t, int) or t < 0 for t in word)):
                raise ValueError(f"each entry of bad_words_ids must be a non-empty list of token ids >= 0, got {word!r}")
        eos = set() if eos_id is None else ({eos_id} if isinstance(eos_id, int) else set(eos_id))
        self.bad_words_ids = [list(w) for w in bad_words_ids if not (len(w) == 1 and w[0] in eos)]

    def __call__(self, input_ids, scores):
        _check_logits(scores, "scores")
        _check_ids(input_ids, scores.shape[0])
        mask = torch.zeros_like(scores, dtype=torch.bool)
        for word in self.bad_words_ids:
            if word[-1] >= scores.shape[-1]:
                raise ValueError(f"bad_words_ids names token {word[-1]} but the vocabulary has {scores.shape[-1]}")
            *prefix, last = word
            if len(prefix) > input_ids.shape[1]:
                continue
            if prefix:
                match = (input_ids[:, -len(prefix):] == torch.tensor(prefix, device=input_ids.device)).all(-1)
            else:
                match = torch.ones(scores.shape[0], dtype=torch.bool, device=scores.device)
            mask[:, last] |= match
        return scores.masked_fill(mask, NEG_INF)


class MinLengthProcessor(LogitsProcessor):
    """Forbid ``eos_id`` while the row (prompt included) is shorter than ``min_length``."""

    def __init__(self, min_length: int, eos_id: int):
        self.min_length = _check_int("min_length", min_length, 0)
        self.eos_id = _check_int("eos_id", eos_id, 0)

    def __call__(self, input_ids, scores):
        if input_ids.shape[-1] >= self.min_length:
            return scores.clone()
        return scores.index_fill(-1, torch.tensor([self.eos_id], device=scores.device), NEG_INF)


def _force(scores: torch.Tensor, token: int) -> torch.Tensor:
    forced = torch.full_like(scores, NEG_INF)
    forced[:, token] = 0.0
    return forced


class ForcedBOSProcessor(LogitsProcessor):
    """Make ``bos_id`` the first generated token (when the prompt is one token long, as in HF)."""

    def __init__(self, bos_id: int):
        self.bos_id = _check_int("bos_id", bos_id, 0)

    def __call__(self, input_ids, scores):
        return _force(scores, self.bos_id) if input_ids.shape[-1] == 1 else scores


class ForcedEOSProcessor(LogitsProcessor):
    """Make ``eos_id`` the last token when the row reaches ``max_length`` (prompt included)."""

    def __init__(self, max_length: int, eos_id: int):
        self.max_length = _check_int("max_length", max_length, 1)
        self.eos_id = _check_int("eos_id", eos_id, 0)

    def __call__(self, input_ids, scores):
        return _force(scores, self.eos_id) if input_ids.shape[-1] == self.max_length - 1 else scores


def entropy(logits: torch.Tensor) -> torch.Tensor:
    """Entropy in nats of each row's softmax: (B, V) -> (B,). ``-inf`` entries contribute 0."""
    logp = logits.float().log_softmax(dim=-1)
    return -(logp.exp() * logp).nansum(dim=-1)


def kept_count(logits: torch.Tensor) -> torch.Tensor:
    """How many tokens of each row survived a filter: (B, V) -> (B,) int."""
    return torch.isfinite(logits).sum(dim=-1)

