"""Generation: from next-token logits to text, one token at a time, with the KV cache.

The loop every decoder runs::

    logits = model(prompt, cache=cache)[:, -1]           # prefill: the whole prompt at once
    repeat:
        scores = processors(tokens_so_far, logits)        # penalties, temperature, filters
        next = argmax(scores) or sample(softmax(scores))  # greedy or sampling
        logits = model(next[:, None], cache=cache)[:, -1] # decode: one new position

:func:`stream` is that loop as a Python generator (one ``(B,)`` tensor of new tokens per step);
:func:`generate` collects it. Rows of a batch that finish early (``eos_id`` or a ``stop`` string)
keep producing ``pad_id`` (default ``eos_id``) until every row is done, as Hugging Face does.

Beam search lives in :mod:`llmnotes.sampling.beam`, speculative decoding in
:mod:`llmnotes.sampling.speculative` and the logits processors in
:mod:`llmnotes.sampling.processors`; all are importable from :mod:`llmnotes.sampling`.
"""

from __future__ import annotations

from typing import Any, Iterator, Sequence

import torch

from llmnotes.sampling.processors import (BadWordsProcessor, FrequencyPresencePenaltyProcessor, LogitBiasProcessor,
                                          LogitsProcessorList, MinLengthProcessor, MinPWarper,
                                          NoRepeatNGramProcessor, RepetitionPenaltyProcessor, TemperatureWarper,
                                          TopKWarper, TopPWarper, TypicalWarper, top_k_filter)


# --------------------------------------------------------------------------- checks
def check_prompt(model, idx: torch.Tensor, max_new_tokens: int,
                 attention_mask: torch.Tensor | None = None) -> None:
    """Validate a prompt batch and the length budget before any work is done."""
    if not isinstance(idx, torch.Tensor):
        raise TypeError(f"idx must be a LongTensor of shape (B, T), got {type(idx).__name__}")
    if idx.ndim != 2 or idx.shape[1] == 0:
        raise ValueError(f"idx must have shape (B, T) with T >= 1, got shape {tuple(idx.shape)}; "
                         "add a batch dimension with idx[None]")
    if idx.is_floating_point():
        raise TypeError(f"idx must hold integer token ids (torch.long), got {idx.dtype}")
    if isinstance(max_new_tokens, bool) or not isinstance(max_new_tokens, int):
        raise TypeError(f"max_new_tokens must be an int, got {max_new_tokens!r}")
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    block = model.config.block_size
    if idx.shape[1] + max_new_tokens > block:
        raise ValueError(f"prompt length {idx.shape[1]} + max_new_tokens {max_new_tokens} = "
                         f"{idx.shape[1] + max_new_tokens} exceeds the model's block_size {block}; "
                         f"shorten the prompt or ask for at most {max(block - idx.shape[1], 0)} new tokens")
    if attention_mask is not None and tuple(attention_mask.shape) != tuple(idx.shape):
        raise ValueError(f"attention_mask must have the prompt's shape {tuple(idx.shape)}, "
                         f"got {tuple(attention_mask.shape)}")


def _check_optional(name: str, value, check) -> None:
    if value is not None:
        check(name, value)


def build_processors(*, temperature: float = 1.0, top_k: int | None = None, top_p: float | None = None,
                     min_p: float | None = None, typical_p: float | None = None,
                     repetition_penalty: float | None = None, frequency_penalty: float = 0.0,
                     presence_penalty: float = 0.0, no_repeat_ngram_size: int | None = None,
                     bad_words_ids: Sequence[Sequence[int]] | None = None,
                     logit_bias: dict[int, float] | None = None, min_new_tokens: int = 0,
                     eos_id: int | None = None, prompt_length: int = 0,
                     logits_processors: Sequence[Any] | None = None) -> LogitsProcessorList:
    """The processors ``generate`` applies, in Hugging Face's order: penalties and bans first,
    then (only when sampling, ``temperature > 0``) temperature, top-k, top-p, min-p, typical.

    Greedy decoding skips the warpers: temperature and the filters cannot change the argmax
    (typical could even remove it), so Hugging Face ignores them with ``do_sample=False`` too.
    """
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0 = greedy), got {temperature!r}")
    procs = LogitsProcessorList()
    if repetition_penalty is not None and repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyProcessor(repetition_penalty))
    if frequency_penalty or presence_penalty:
        procs.append(FrequencyPresencePenaltyProcessor(frequency_penalty, presence_penalty, prompt_length))
    if logit_bias:
        procs.append(LogitBiasProcessor(logit_bias))
    if no_repeat_ngram_size is not None:
        procs.append(NoRepeatNGramProcessor(no_repeat_ngram_size))
    if bad_words_ids is not None:
        procs.append(BadWordsProcessor(bad_words_ids, eos_id))
    if min_new_tokens:
        if eos_id is None:
            raise ValueError("min_new_tokens needs eos_id (the token it forbids); pass eos_id=...")
        procs.append(MinLengthProcessor(prompt_length + min_new_tokens, eos_id))
    procs.extend(logits_processors or [])
    # Warpers are validated even when greedy ignores them, so a bad value never passes silently.
    warpers = [TemperatureWarper(temperature)] if temperature not in (0, 1) else []
    if top_k is not None:
        warpers.append(TopKWarper(top_k))
    if top_p is not None:
        warpers.append(TopPWarper(top_p))
    if min_p is not None:
        warpers.append(MinPWarper(min_p))
    if typical_p is not None:
        warpers.append(TypicalWarper(typical_p))
    if temperature > 0:
        procs.extend(warpers)
    return procs


def sample_next(scores: torch.Tensor, greedy: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Pick one token per row from processed scores (B, V): argmax, or a draw from softmax."""
    if greedy:
        return scores.argmax(dim=-1)
    probs = scores.float().softmax(dim=-1)
    return torch.multinomial(probs, num_samples=1, generator=generator).squeeze(-1)


class StopStrings:
    """Stop a row once its generated text contains one of ``stop`` (needs the tokenizer to decode).

    Only the last few tokens are decoded each step: a stop string of ``L`` characters spans at
    most ``4 L`` bytes, so at most ``4 L + 1`` byte-level tokens.
    """

    def __init__(self, stop: str | Sequence[str], tokenizer):
        stop = [stop] if isinstance(stop, str) else list(stop)
        if not stop or any(not isinstance(s, str) or not s for s in stop):
            raise ValueError(f"stop must be a non-empty string or list of non-empty strings, got {stop!r}")
        if tokenizer is None:
            raise ValueError("stop strings need tokenizer=... to decode the generated tokens")
        self.stop, self.tokenizer = stop, tokenizer
        self.window = 4 * max(len(s) for s in stop) + 1

    def __call__(self, generated: list[list[int]]) -> list[bool]:
        hits = []
        for row in generated:
            text = self.tokenizer.decode(row[-self.window:])
            hits.append(any(s in text for s in self.stop))
        return hits


def truncate_at_stop(text: str, stop: str | Sequence[str] | None) -> str:
    """Cut ``text`` before the first occurrence of any stop string (what an API returns)."""
    if not stop:
        return text
    cut = len(text)
    for s in [stop] if isinstance(stop, str) else stop:
        i = text.find(s)
        if i != -1:
            cut = min(cut, i)
    return text[:cut]


# --------------------------------------------------------------------------- the decode loop
@torch.no_grad()
def stream(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
           top_k: int | None = None, top_p: float | None = None, min_p: float | None = None,
           typical_p: float | None = None, repetition_penalty: float | None = None,
           frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
           no_repeat_ngram_size: int | None = None, bad_words_ids: Sequence[Sequence[int]] | None = None,
           logit_bias: dict[int, float] | None = None, min_new_tokens: int = 0,
           eos_id: int | None = None, pad_id: int | None = None, stop: str | Sequence[str] | None = None,
           tokenizer=None, attention_mask: torch.Tensor | None = None,
           generator: torch.Generator | None = None, logits_processors: Sequence[Any] | None = None,
           compile: bool | str = False) -> Iterator[torch.Tensor]:
    """Yield the next token of every row, a LongTensor (B,), as soon as it is chosen.

    Arguments are :func:`generate`'s. The generator stops after ``max_new_tokens`` steps or
    once every row has finished; finished rows yield ``pad_id`` (default ``eos_id``).
    """
    check_prompt(model, idx, max_new_tokens, attention_mask)
    B, T = idx.shape
    procs = build_processors(
        temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
        repetition_penalty=repetition_penalty, frequency_penalty=frequency_penalty,
        presence_penalty=presence_penalty, no_repeat_ngram_size=no_repeat_ngram_size,
        bad_words_ids=bad_words_ids, logit_bias=logit_bias, min_new_tokens=min_new_tokens,
        eos_id=eos_id, prompt_length=T, logits_processors=logits_processors)
    stopper = StopStrings(stop, tokenizer) if stop else None
    pad = pad_id if pad_id is not None else eos_id
    if pad is None and stopper is not None:
        raise ValueError("stop strings need eos_id or pad_id to fill the rows that have stopped")
    if max_new_tokens == 0:
        return
    greedy = temperature == 0
    device = model.device
    idx = idx.to(device)
    step = DecodeStep(model, B, T + max_new_tokens, attention_mask, compile=compile)
    logits = step.prefill(idx)  # (B, V) scores for the first new token
    tokens = idx  # (B, T + generated) the context the processors see
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    generated: list[list[int]] = [[] for _ in range(B)]
    for i in range(max_new_tokens):
        scores = procs(tokens, logits.float())
        nxt = sample_next(scores, greedy, generator)  # (B,)
        if pad is not None:
            nxt = torch.where(finished, torch.full_like(nxt, pad), nxt)
        tokens = torch.cat([tokens, nxt[:, None]], dim=1)
        if eos_id is not None:
            finished |= nxt == eos_id
        if stopper is not None:
            for b, t in enumerate(nxt.tolist()):
                generated[b].append(t)
            live = (~finished).nonzero().flatten().tolist()
            for b, hit in zip(live, stopper([generated[b] for b in live])):
                finished[b] |= hit
        yield nxt
        if bool(finished.all()) or i == max_new_tokens - 1:
            return
        logits = step(nxt)


CACHE_BUCKET = 256  # compiled decoding sizes its cache in multiples of this (masked slots cost little)


class DecodeStep:
    """One model call per generated token, on a pre-allocated KV cache.

    Eager mode grows the attention mask (left padding only) by one column a step. With
    ``compile=True`` the cache is *fixed-shape* (attention always spans ``max_len`` slots,
    unused ones masked, and the fill level is a device tensor) and the mask is a fixed
    ``(B, max_len)`` buffer, so every decode call has identical shapes and reads no changing
    Python number: one compiled graph serves every step, and the buffers keep their addresses,
    as CUDA graphs need (see :func:`_compiled_forward`).
    """

    def __init__(self, model, batch_size: int, max_len: int, attention_mask: torch.Tensor | None,
                 compile: bool | str = False):
        self.model, self.compiled = model, bool(compile)
        if self.compiled:  # round the cache up, so generations of similar length share one graph
            max_len = min(model.config.block_size, -(-max_len // CACHE_BUCKET) * CACHE_BUCKET)
        self.cache = model.make_cache(batch_size, max_len, fixed_shape=self.compiled)
        self.mask = None if attention_mask is None else attention_mask.to(model.device).long()
        self.forward = model
        if compile:
            width = max_len
            buf = torch.zeros(batch_size, width, dtype=torch.long, device=model.device)
            prompt = self.mask if self.mask is not None else torch.ones(
                batch_size, 0, dtype=torch.long, device=model.device)
            buf[:, : prompt.shape[1]] = prompt
            self.mask_buf = buf
            for t in [*self.cache.k, *self.cache.v, self.cache.position, self.mask_buf]:
                torch._dynamo.mark_static_address(t)  # updated in place: CUDA graphs may keep them
            self.forward = _compiled_forward(model, compile if isinstance(compile, str) else "inductor")

    def prefill(self, idx: torch.Tensor) -> torch.Tensor:
        T = idx.shape[1]
        if self.compiled:
            self.mask_buf[:, :T] = self.mask if self.mask is not None else 1
            return self.model(idx, cache=self.cache, attention_mask=self.mask_buf[:, :T])[:, -1]
        return self.model(idx, cache=self.cache, attention_mask=self.mask)[:, -1]

    def __call__(self, nxt: torch.Tensor) -> torch.Tensor:
        if self.compiled:
            self.mask_buf.index_fill_(1, self.cache.position.view(1), 1)  # (no read back to Python)
            return self.forward(nxt[:, None], cache=self.cache, attention_mask=self.mask_buf)[:, -1]
        if self.mask is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        return self.model(nxt[:, None], cache=self.cache, attention_mask=self.mask)[:, -1]


_COMPILED: dict[tuple[int, str], Any] = {}
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _compiled_forward(model, how: str = "inductor"):
    """``torch.compile(model)``, built once per model object and setting (compiling is slow).

    ``how`` is a ``torch.compile`` mode (``"reduce-overhead"`` captures CUDA graphs on a GPU)
    or a backend name (``"inductor"``, ``"aot_eager"``). The fixed-shape cache keeps its fill
    level as a tensor, so one graph serves every decode step of a given cache size.
    """
    key = (id(model), how)
    if key not in _COMPILED or _COMPILED[key][0] is not model:
        options = {"mode": how} if how in COMPILE_MODES else {"backend": how}
        _COMPILED[key] = (model, torch.compile(model, **options))
    return _COMPILED[key][1]


@torch.no_grad()
def generate(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, min_p: float | None = None,
             typical_p: float | None = None, repetition_penalty: float | None = None,
             frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
             no_repeat_ngram_size: int | None = None, bad_words_ids: Sequence[Sequence[int]] | None = None,
             logit_bias: dict[int, float] | None = None, min_new_tokens: int = 0,
             eos_id: int | None = None, pad_id: int | None = None, stop: str | Sequence[str] | None = None,
             tokenizer=None, attention_mask: torch.Tensor | None = None,
             generator: torch.Generator | None = None, logits_processors: Sequence[Any] | None = None,
             compile: bool | str = False) -> torch.Tensor:
    """Continue every row of ``idx`` (B, T) by up to ``max_new_tokens`` tokens.

    Args:
        model: a :class:`llmnotes.GPT` (anything with ``config.block_size``, ``make_cache`` and
            ``model(idx, cache=..., attention_mask=...)``).
        idx: (B, T) prompt ids; left-pad rows of different lengths and pass ``attention_mask``.
        max_new_tokens: tokens to add; ``T + max_new_tokens`` must fit in ``block_size``.
        temperature: ``0`` is greedy (argmax, no division); otherwise logits are divided by it.
        top_k, top_p, min_p, typical_p: sampling filters (see :mod:`llmnotes.sampling.processors`).
        repetition_penalty: CTRL's penalty on every token already in the row (1.0 = off).
        frequency_penalty, presence_penalty: OpenAI's penalties on the *generated* tokens.
        no_repeat_ngram_size: forbid repeating any n-gram of this size.
        bad_words_ids: token sequences that must never be produced.
        logit_bias: ``{token_id: bias}`` added to the logits, OpenAI style.
        min_new_tokens: forbid ``eos_id`` before this many tokens are generated.
        eos_id: a row finishes when it produces this token.
        pad_id: what finished rows produce afterwards (default ``eos_id``).
        stop: string(s) that finish a row once they appear in its generated text (needs ``tokenizer``).
        attention_mask: (B, T) 1 for tokens, 0 for left padding.
        generator: a ``torch.Generator`` for reproducible sampling.
        logits_processors: extra callables ``(input_ids, scores) -> scores``, applied after the
            built-in penalties and before temperature and the filters.
        compile: run the decode step under ``torch.compile`` with a fixed-shape cache. ``True``
            means the inductor backend; a string is a ``torch.compile`` mode
            (``"reduce-overhead"``: CUDA graphs on a GPU) or a backend (``"aot_eager"`` traces
            without generating kernels, for quick checks).

    Returns:
        (B, T + n) LongTensor, prompt included; ``n <= max_new_tokens`` (smaller only when every
        row finished early).

    Example:
        >>> model = GPT(GPTConfig.from_preset("nano"))
        >>> generate(model, torch.zeros(2, 3, dtype=torch.long), 5, temperature=0).shape
        torch.Size([2, 8])
    """
    new = list(stream(model, idx, max_new_tokens, temperature, top_k, top_p, min_p, typical_p,
                      repetition_penalty, frequency_penalty, presence_penalty, no_repeat_ngram_size,
                      bad_words_ids, logit_bias, min_new_tokens, eos_id, pad_id, stop, tokenizer,
                      attention_mask, generator, logits_processors, compile))
    idx = idx.to(model.device)
    if not new:
        return idx.clone()
    return torch.cat([idx, torch.stack(new, dim=1)], dim=1)


@torch.no_grad()
def generate_reference(model, idx: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
                       top_k: int | None = None, generator: torch.Generator | None = None) -> torch.Tensor:
    """The readable version without a cache (nanoGPT's loop): re-run the whole sequence each step.

    Quadratic work per token, kept to test the cached path against (same tokens) and to teach.
    """
    check_prompt(model, idx, max_new_tokens)
    for _ in range(max_new_tokens):
        logits = model(idx)[:, -1, :].float()  # (B, V) the last position predicts the next token
        if temperature == 0:
            nxt = logits.argmax(dim=-1, keepdim=True)
        else:
            logits = logits / temperature
            if top_k is not None:
                logits = top_k_filter(logits, top_k)
            nxt = torch.multinomial(logits.softmax(dim=-1), 1, generator=generator)
        idx = torch.cat([idx, nxt], dim=1)
    return idx
