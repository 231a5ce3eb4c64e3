"""Generation: from next-token logits to text, one token at a time, with the KV cache.

The loop every decoder runs::

    logits = model(prompt, cache=cache)[:, -1]           # prefill: the whole prompt at once
    repeat:
        scores = processors(tokens_so_far, logits)        # penalties, temperature, filters
        next = argmax(scores) or sample(softmax(scores))  # greedy or sampling
        logits = model(next[:, None], cache=cache)[:, -1] # decode: one new position

:func:`stream` is that loop, the only one: a Python generator yielding one ``(B,)`` tensor of
new tokens per step. :func:`generate` collects it; :func:`llmnotes.sampling.complete` wraps it
text in, text out; the server's engine, instruction replies, RAG's local answers and
``llmnotes sample`` all run it. What to sample is one validated :class:`GenerationConfig`
(``config=``, or its fields as keywords). Rows of a batch that finish early (``eos_id`` or a
``stop`` string) keep producing ``pad_id`` (default ``eos_id``) until every row is done, as
Hugging Face does. ``should_stop`` (a ``threading.Event`` or a callable) cancels between tokens.

Speed: the loop runs the model as it is given; it never changes it. On a CPU,
``model.prepare_for_decode()`` gives each linear layer the layout measured fastest for
matrix-vector products (same tokens; :mod:`llmnotes.fast_linear`). ``load_pretrained(name,
for_decode=True)`` does that at load time, and it is what ``llmnotes sample`` and ``llmnotes
serve`` use, so the Python route written that way and the command line decode at the same speed.
It is opt-in because it changes the model in place (its layers' classes and strides), which a
page that trains or inspects the model should not get by surprise.

Beam search lives in :mod:`llmnotes.sampling.beam`, speculative decoding in
:mod:`llmnotes.sampling.speculative` and the logits processors in
:mod:`llmnotes.sampling.processors`; all are importable from :mod:`llmnotes.sampling`.

About 400 lines because the loop, the checks it runs before any work, the stop-string
bookkeeping and the cached decode step (eager and compiled) are one path a reader follows
top to bottom; split, each piece would only make sense beside the others.
"""

from __future__ import annotations

from typing import Any, Callable, Iterator, Sequence

import torch

from llmnotes.model import GPT
from llmnotes.sampling.config import GenerationConfig
from llmnotes.sampling.processors import (BadWordsProcessor, FrequencyPresencePenaltyProcessor, LogitBiasProcessor,
                                          LogitsProcessorList, MinLengthProcessor, MinPWarper,
                                          NoRepeatNGramProcessor, RepetitionPenaltyProcessor, TemperatureWarper,
                                          TopKWarper, TopPWarper, TypicalWarper, top_k_filter)
from llmnotes.utils import model_device


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


def build_processors(config: GenerationConfig | None = None, *, prompt_length: int = 0,
                     logits_processors: Sequence[Any] | None = None, **settings) -> LogitsProcessorList:
    """The processors a :class:`GenerationConfig` asks for, in Hugging Face's order: penalties and
    bans first, then ``logits_processors``, then (only when sampling, ``temperature > 0``)
    temperature, top-k, top-p, min-p, typical.

    ``settings`` are :class:`GenerationConfig` fields (``build_processors(temperature=0, top_k=3)``),
    applied on top of ``config``. ``prompt_length`` is the prompt's width: the frequency and
    presence penalties count only the tokens after it, as OpenAI's do.

    Greedy decoding skips the warpers: temperature and the filters cannot change the argmax
    (typical could even remove it), so Hugging Face ignores them with ``do_sample=False`` too.
    """
    c = GenerationConfig.make(config, None, "build_processors()", "prompt_length, logits_processors", **settings)
    procs = LogitsProcessorList()
    if c.repetition_penalty is not None and c.repetition_penalty != 1.0:
        procs.append(RepetitionPenaltyProcessor(c.repetition_penalty))
    if c.frequency_penalty or c.presence_penalty:
        procs.append(FrequencyPresencePenaltyProcessor(c.frequency_penalty, c.presence_penalty, prompt_length))
    if c.logit_bias:
        procs.append(LogitBiasProcessor(c.logit_bias))
    if c.no_repeat_ngram_size is not None:
        procs.append(NoRepeatNGramProcessor(c.no_repeat_ngram_size))
    if c.bad_words_ids is not None:
        procs.append(BadWordsProcessor(c.bad_words_ids, c.eos_id))
    if c.min_new_tokens:
        if c.eos_id is None:
            raise ValueError("min_new_tokens needs eos_id (the token it forbids); pass eos_id=...")
        procs.append(MinLengthProcessor(prompt_length + c.min_new_tokens, c.eos_id))
    procs.extend(logits_processors or [])
    if c.greedy:
        return procs
    if c.temperature != 1:
        procs.append(TemperatureWarper(c.temperature))
    if c.top_k is not None:
        procs.append(TopKWarper(c.top_k))
    if c.top_p is not None:
        procs.append(TopPWarper(c.top_p))
    if c.min_p is not None:
        procs.append(MinPWarper(c.min_p))
    if c.typical_p is not None:
        procs.append(TypicalWarper(c.typical_p))
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
def _sampling_generator(seed: int | None, generator: torch.Generator | None, device) -> torch.Generator | None:
    """The random generator of the draws: ``generator``, or a fresh one seeded with ``seed``."""
    if seed is None:
        return generator
    if generator is not None:
        raise ValueError("pass seed (in the config) or generator=..., not both")
    return torch.Generator(device=device).manual_seed(seed % 2**63)  # any int: manual_seed takes < 2**63


def _stop_signal(should_stop) -> Callable[[], bool]:
    """``should_stop`` as a function: a ``threading.Event`` (set = stop), a callable, or None."""
    if should_stop is None:
        return lambda: False
    if hasattr(should_stop, "is_set"):
        return should_stop.is_set
    if not callable(should_stop):
        raise TypeError(f"should_stop must be a threading.Event or a callable () -> bool, got {should_stop!r}")
    return should_stop


def _check_cache(cache, batch: int, prompt_len: int, needed: int, compile) -> None:
    """A reused cache must hold a strict prefix of the prompt, fit the request, and not be compiled."""
    if compile:
        raise ValueError("compile=... builds its own fixed-shape cache; it cannot start from cache=...")
    if cache.fixed_shape or cache.batch_size != batch:
        raise ValueError(f"cache must be a dynamic cache for {batch} row(s) (model.make_cache({batch})), "
                         f"got one for {cache.batch_size} (fixed_shape={cache.fixed_shape})")
    if not 0 <= cache.seq_len < prompt_len:
        raise ValueError(f"cache holds {cache.seq_len} positions but the prompt has {prompt_len}: it must hold "
                         "fewer (at least one prompt token is run, its logits give the first new token); "
                         "crop it with cache.crop(n)")
    if needed > cache.max_len:
        raise ValueError(f"cache has room for {cache.max_len} positions, the request needs {needed}")


_INPUTS = "tokenizer, attention_mask, generator, logits_processors, cache, should_stop, on_logits"


@torch.no_grad()
def stream(model, idx: torch.Tensor, max_new_tokens: int | None = None, config: GenerationConfig | None = None,
           *, tokenizer=None, attention_mask: torch.Tensor | None = None,
           generator: torch.Generator | None = None, logits_processors: Sequence[Any] | None = None,
           cache=None, should_stop=None, on_logits: Callable[[torch.Tensor], None] | None = None,
           **settings) -> Iterator[torch.Tensor]:
    """The decode loop: yield the next token of every row, a LongTensor (B,), as soon as it is chosen.

    How tokens are picked is a :class:`GenerationConfig`: pass ``config=``, or its fields as
    keywords (``stream(model, idx, 20, temperature=0)``), or both (keywords override the config).
    The generator stops after ``max_new_tokens`` steps, once every row has finished (``eos_id``
    or ``stop``; finished rows yield ``pad_id``, default ``eos_id``), or when ``should_stop`` says so.

    Args:
        model: a :class:`llmnotes.GPT` (anything with ``config.block_size``, ``make_cache`` and
            ``model(idx, cache=..., attention_mask=...)``).
        idx: (B, T) prompt ids; left-pad rows of different lengths and pass ``attention_mask``.
        max_new_tokens: overrides ``config.max_new_tokens``.
        config: the sampling settings (default: ``GenerationConfig()``).
        tokenizer: decodes the generated tokens for ``stop`` strings.
        attention_mask: (B, T) 1 for tokens, 0 for left padding.
        generator: a ``torch.Generator`` for the draws (or set ``seed`` in the config).
        logits_processors: extra callables ``(input_ids, scores) -> scores``, applied after the
            built-in penalties and before temperature and the filters.
        cache: a KV cache (``model.make_cache(B)``) already holding the keys and values of the
            first ``cache.seq_len`` prompt tokens: only the rest of the prompt is run (the
            server's prefix cache). It is filled in place; the caller vouches that it matches.
        should_stop: a ``threading.Event`` or a callable ``() -> bool``, checked before each step
            (before any model call): once it is set the generator returns (a cancel signal).
        on_logits: called with each step's raw logits (B, V), before the processors (what
            log-probs are reported from).
        **settings: :class:`GenerationConfig` fields; an unknown name raises ``TypeError``.
    """
    config = GenerationConfig.make(config, max_new_tokens, "stream()/generate()", _INPUTS, **settings)
    n = config.max_new_tokens
    check_prompt(model, idx, n, attention_mask)
    B, T = idx.shape
    procs = build_processors(config, prompt_length=T, logits_processors=logits_processors)
    stopper = StopStrings(config.stop, tokenizer) if config.stop else None
    eos_id = config.eos_id
    pad = config.pad_id if config.pad_id is not None else eos_id
    if pad is None and stopper is not None:
        raise ValueError("stop strings need eos_id or pad_id to fill the rows that have stopped")
    device = model_device(model)
    generator = _sampling_generator(config.seed, generator, device)
    stopped = _stop_signal(should_stop)
    if cache is not None:
        _check_cache(cache, B, T, T + n, config.compile)
    if n == 0:
        return
    idx = idx.to(device)
    step = DecodeStep(model, B, T + n, attention_mask, compile=config.compile, cache=cache)
    tokens = idx  # (B, T + generated) the context the processors see
    finished = torch.zeros(B, dtype=torch.bool, device=device)
    generated: list[list[int]] = [[] for _ in range(B)]
    nxt = None
    for _ in range(n):
        if stopped():
            return
        logits = step.prefill(idx) if nxt is None else step(nxt)  # (B, V) scores for the next token
        if on_logits is not None:
            on_logits(logits)
        scores = procs(tokens, logits.float())
        nxt = sample_next(scores, config.greedy, generator)  # (B,)
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
        if bool(finished.all()):
            return


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
                 compile: bool | str = False, cache=None):
        self.model, self.compiled = model, bool(compile)
        if self.compiled:  # round the cache up, so generations of similar length share one graph
            max_len = min(model.config.block_size, -(-max_len // CACHE_BUCKET) * CACHE_BUCKET)
        # A given (eager) cache may already hold the prompt's first positions: prefill runs the rest.
        self.cache = cache if cache is not None else model.make_cache(batch_size, max_len, fixed_shape=self.compiled)
        self.mask = None if attention_mask is None else attention_mask.to(model_device(model)).long()
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
        # An llmnotes GPT computes the output layer for the last prompt position only.
        last = {"logits_to_keep": 1} if isinstance(self.model, GPT) else {}
        if self.compiled:
            self.mask_buf[:, :T] = self.mask if self.mask is not None else 1
            return self.model(idx, cache=self.cache, attention_mask=self.mask_buf[:, :T], **last)[:, -1]
        return self._eager(idx[:, self.cache.seq_len:], **last)

    def __call__(self, nxt: torch.Tensor) -> torch.Tensor:
        if self.compiled:
            self.mask_buf.index_fill_(1, self.cache.position.view(1), 1)  # (no read back to Python)
            return self.forward(nxt[:, None], cache=self.cache, attention_mask=self.mask_buf)[:, -1]
        if self.mask is not None:
            self.mask = torch.cat([self.mask, self.mask.new_ones(self.mask.shape[0], 1)], dim=1)
        return self._eager(nxt[:, None])

    def _eager(self, x: torch.Tensor, **extra) -> torch.Tensor:
        # No mask, no keyword: any model with forward(idx, cache=...) decodes (the server's contract).
        if self.mask is None:
            return self.model(x, cache=self.cache, **extra)[:, -1]
        return self.model(x, cache=self.cache, attention_mask=self.mask, **extra)[:, -1]


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
def generate(model, idx: torch.Tensor, max_new_tokens: int | None = None, config: GenerationConfig | None = None,
             **kwargs) -> torch.Tensor:
    """Continue every row of ``idx`` (B, T) by up to ``max_new_tokens`` tokens: :func:`stream`, collected.

    Takes exactly :func:`stream`'s arguments: the settings as a :class:`GenerationConfig`
    (``config=``) or as its field names (``temperature=0, top_k=40, eos_id=...``), plus the
    inputs ``tokenizer``, ``attention_mask``, ``generator``, ``logits_processors``, ``cache``,
    ``should_stop`` and ``on_logits``.

    Returns:
        (B, T + n) LongTensor, prompt included; ``n <= max_new_tokens`` (smaller only when every
        row finished early or ``should_stop`` fired).

    Example:
        >>> model = GPT(GPTConfig.from_preset("nano"))
        >>> generate(model, torch.zeros(2, 3, dtype=torch.long), 5, temperature=0).shape
        torch.Size([2, 8])
        >>> cfg = GenerationConfig(max_new_tokens=5, temperature=0)
        >>> torch.equal(generate(model, torch.zeros(2, 3, dtype=torch.long), config=cfg),
        ...             generate(model, torch.zeros(2, 3, dtype=torch.long), 5, temperature=0))
        True
    """
    new = list(stream(model, idx, max_new_tokens, config, **kwargs))
    idx = idx.to(model_device(model))
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
