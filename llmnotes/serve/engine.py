"""The serving engine: one request's decode loop, its caches, and text that streams cleanly.

What the HTTP layer (:mod:`llmnotes.serve`) needs from a model is a function that takes prompt
token ids and sampling parameters, and calls back once per piece of new text. Three things make
that harder than :func:`llmnotes.sampling.generate`:

* **Streaming text, not tokens.** A byte-level BPE token can end in the middle of a UTF-8
  character, and a stop sequence can be split across tokens. :class:`TextStream` holds back
  text until it is certain: no half characters, no half stop sequences reach the client.
* **The prefix cache.** In a chat, every turn re-sends the whole conversation. The engine keeps
  the key/value cache of the last request and, for the next one, crops it to the longest prefix
  both share (``KVCache.crop``) and runs the model only on the new tokens.
* **The response cache.** Greedy decoding (temperature 0) is deterministic, so an identical
  request can be answered from a bounded LRU table without running the model at all.

The loop itself is the usual cached decode loop (prefill the prompt, then one token per step),
with the logits rules and the sampler of :mod:`llmnotes.sampling` (``build_processors``,
``sample_next``). What differs from ``sampling.stream``: it starts from a reused cache, it can be
cancelled between tokens, and it emits text (with log-probs) rather than token ids.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from llmnotes.sampling import LogitsProcessorList, build_processors, sample_next
from llmnotes.serve.protocol import SamplingParams

# ---------------------------------------------------------------------------------------------
# Text that streams cleanly
# ---------------------------------------------------------------------------------------------


class TextStream:
    """Decode tokens one at a time into text deltas that never need to be taken back.

    ``push(token_id)`` returns ``(delta, stopped)``. The delta leaves out (for now) text that may
    still change: a trailing replacement character (a UTF-8 sequence cut by a token boundary) and
    a trailing piece that could be the start of a stop sequence. When a stop sequence appears, the
    text is cut just before it and ``stopped`` is True. ``flush()`` releases what was held back.

    Example (a byte tokenizer; ``"é"`` is two bytes)::

        s = TextStream(decode=lambda ids: bytes(ids).decode("utf-8", "replace"), stop=["\\n"])
        s.push(0xC3)  # ('', False): half a character
        s.push(0xA9)  # ('é', False)
        s.push(10)    # ('', True): the stop sequence, not shown
    """

    def __init__(self, decode: Callable[[list[int]], str], stop: list[str] | None = None) -> None:
        self.decode, self.stop = decode, list(stop or [])
        self.ids: list[int] = []
        self.text = ""      # the text so far, cut at the stop sequence once one is found
        self.emitted = 0    # characters of self.text already returned
        self.stopped = False

    def push(self, token_id: int) -> tuple[str, bool]:
        if self.stopped:
            raise RuntimeError("push() after a stop sequence was found")
        self.ids.append(token_id)
        # Re-decoding everything is O(n^2) in characters but n is at most the context length,
        # and it is the simplest way to be right about characters that span tokens.
        self.text = self.decode(self.ids)
        if self.text.endswith("\ufffd"):
            return "", False  # maybe an incomplete character: wait for the next token
        # A stop sequence can only begin where it could overlap the not-yet-emitted text.
        cut = None
        for s in self.stop:
            i = self.text.find(s, max(0, self.emitted - len(s) + 1))
            if i != -1 and (cut is None or i < cut):
                cut = i
        if cut is not None:
            self.text, self.stopped = self.text[:cut], True
            return self._take(cut), True
        hold = 0  # the longest tail that is the beginning of some stop sequence
        for s in self.stop:
            for k in range(min(len(s) - 1, len(self.text)), hold, -1):
                if self.text.endswith(s[:k]):
                    hold = k
                    break
        return self._take(len(self.text) - hold), False

    def flush(self) -> str:
        """Everything not yet returned (at the end of generation nothing can change any more)."""
        return self._take(len(self.text))

    def _take(self, end: int) -> str:
        end = max(end, self.emitted)
        delta, self.emitted = self.text[self.emitted:end], end
        return delta


# ---------------------------------------------------------------------------------------------
# Results and the response cache
# ---------------------------------------------------------------------------------------------


@dataclass
class TokenLogprob:
    token: str
    token_id: int
    logprob: float
    top: list[tuple[str, float]] = field(default_factory=list)  # the k most likely, best first


@dataclass
class Delta:
    """A piece of new text and the log-probs of the tokens that produced it."""

    text: str
    logprobs: list[TokenLogprob] = field(default_factory=list)


@dataclass
class Result:
    """A finished generation. ``finish_reason``: ``stop``, ``length``, ``cancelled`` or ``timeout``."""

    deltas: list[Delta]
    token_ids: list[int]
    finish_reason: str
    prompt_tokens: int
    prefix_hit: int = 0  # prompt tokens whose keys/values came from the prefix cache

    @property
    def text(self) -> str:
        return "".join(d.text for d in self.deltas)


class ResponseCache:
    """A thread-safe LRU table: key -> :class:`Result`, at most ``max_entries`` of them."""

    def __init__(self, max_entries: int) -> None:
        if not isinstance(max_entries, int) or max_entries < 0:
            raise ValueError(f"max_entries must be an integer >= 0 (0 disables the cache), got {max_entries!r}")
        self.max_entries = max_entries
        self._data: OrderedDict[Any, Result] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: Any) -> Result | None:
        with self._lock:
            result = self._data.get(key)
            if result is None:
                self.misses += 1
                return None
            self._data.move_to_end(key)  # most recently used goes last; eviction takes the first
            self.hits += 1
            return result

    def put(self, key: Any, result: Result) -> None:
        if self.max_entries == 0:
            return
        with self._lock:
            self._data[key] = result
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __len__(self) -> int:
        return len(self._data)


# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------


def common_prefix(a: list[int], b: list[int]) -> int:
    """Length of the longest common prefix of two token lists."""
    n = min(len(a), len(b))
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


class Engine:
    """Runs generations for the server: a decode loop with a prefix-reusing KV cache.

    Args:
        model: a :class:`llmnotes.model.GPT` (anything with ``make_cache`` and
            ``forward(idx, cache=...)``), already on its device and in eval mode.
        tokenizer: has ``encode(str) -> list[int]`` and ``decode(list[int]) -> str``.
        eos_id: the end-of-text token; generating it ends the reply (``finish_reason="stop"``).
        prefix_cache: keep the last request's KV cache and reuse its longest common prefix.

    ``generate`` is safe to call from several threads; only one of them at a time holds the
    prefix cache (the others build a fresh cache).
    """

    def __init__(self, model: torch.nn.Module, tokenizer: Any, eos_id: int | None = None,
                 prefix_cache: bool = True) -> None:
        self.model, self.tokenizer, self.eos_id = model, tokenizer, eos_id
        self.block_size = model.config.block_size
        self.vocab_size = model.config.vocab_size
        self.device = next(model.parameters()).device
        self.use_prefix_cache = prefix_cache
        self._prefix_lock = threading.Lock()
        self._prefix: tuple[Any, list[int]] | None = None  # (KVCache, the ids it holds)

    # -- the prefix cache ---------------------------------------------------------------------

    def _take_cache(self, prompt: list[int]) -> tuple[Any, int, bool]:
        """A cache for ``prompt``: (cache, positions already filled, whether we own the shared one)."""
        if self.use_prefix_cache and self._prefix_lock.acquire(blocking=False):
            if self._prefix is None:
                return self.model.make_cache(1), 0, True
            cache, ids = self._prefix
            # Keep at least one prompt token to run: its logits predict the first new token.
            keep = min(common_prefix(ids, prompt), len(prompt) - 1)
            cache.crop(keep)
            return cache, keep, True
        return self.model.make_cache(1), 0, False

    def _give_back(self, cache: Any, ids: list[int], owned: bool) -> None:
        if owned:
            # After an error half-way the cache may not match ``ids``: forget it rather than reuse it.
            self._prefix = (cache, ids) if cache.seq_len == len(ids) else None
            self._prefix_lock.release()

    # -- one step -----------------------------------------------------------------------------

    def _choose(self, logits: torch.Tensor, generated: torch.Tensor, processors: LogitsProcessorList,
                params: SamplingParams, generator: torch.Generator | None) -> tuple[int, TokenLogprob | None]:
        """Pick the next token from ``logits`` (1, V); ``generated`` (1, n) are the reply's ids."""
        scores = processors(generated, logits.float())
        token = int(sample_next(scores, params.greedy, generator)[0])
        info = None
        if params.logprobs is not None:
            # The model's own distribution (before penalties, temperature and top-p), as vLLM reports.
            logp = torch.log_softmax(logits.float(), dim=-1)[0]
            top = []
            if params.logprobs > 0:
                values, ids = torch.topk(logp, min(params.logprobs, logp.numel()))
                top = [(self.tokenizer.decode([int(i)]), float(v)) for v, i in zip(values, ids)]
            info = TokenLogprob(self.tokenizer.decode([token]), token, float(logp[token]), top)
        return token, info

    def processors_for(self, params: SamplingParams) -> LogitsProcessorList:
        """OpenAI's knobs as :mod:`llmnotes.sampling` processors. They see only the reply's ids
        (``prompt_length=0``), so the penalties count generated tokens, as OpenAI's API does."""
        return build_processors(temperature=params.temperature,
                                top_p=params.top_p if params.top_p < 1.0 else None,
                                frequency_penalty=params.frequency_penalty,
                                presence_penalty=params.presence_penalty, prompt_length=0)

    # -- the loop -----------------------------------------------------------------------------

    @torch.inference_mode()
    def generate(self, prompt: list[int], params: SamplingParams,
                 on_delta: Callable[[Delta], None] | None = None,
                 cancel: threading.Event | None = None, deadline: float | None = None) -> Result:
        """Generate a reply to ``prompt`` (token ids), calling ``on_delta`` with each new piece of text.

        Stops at ``params.max_tokens``, the end-of-text token, a stop sequence, when ``cancel``
        is set (the client went away) or at ``deadline`` (``time.monotonic()`` seconds).
        """
        if not prompt:
            raise ValueError("prompt must hold at least one token id")
        if len(prompt) + params.max_tokens > self.block_size:
            raise ValueError(f"prompt ({len(prompt)} tokens) + max_tokens ({params.max_tokens}) exceeds "
                             f"the context length {self.block_size}")
        processors = self.processors_for(params)
        generator = None
        if params.seed is not None and not params.greedy:
            generator = torch.Generator(device=self.device).manual_seed(params.seed % 2**63)
        stream = TextStream(self.tokenizer.decode, params.stop)
        deltas: list[Delta] = []
        pending: list[TokenLogprob] = []  # log-probs of tokens whose text is not out yet

        def emit(text: str, final: bool = False) -> None:
            if text or (final and pending):
                d = Delta(text, list(pending))
                pending.clear()
                deltas.append(d)
                if on_delta is not None:
                    on_delta(d)

        cache, start, owned = self._take_cache(prompt)
        in_cache = list(prompt[:start])
        out: list[int] = []
        finish = "length"
        try:
            x = torch.tensor([prompt[start:]], dtype=torch.long, device=self.device)  # (1, T_new)
            logits = self.model(x, cache=cache)[:, -1, :]  # (1, V): only the last position matters
            in_cache.extend(prompt[start:])
            for step in range(params.max_tokens):
                if cancel is not None and cancel.is_set():
                    finish = "cancelled"
                    break
                if deadline is not None and time.monotonic() > deadline:
                    finish = "timeout"
                    break
                generated = torch.tensor([out], dtype=torch.long, device=self.device).view(1, -1)
                token, info = self._choose(logits, generated, processors, params, generator)
                if token == self.eos_id:
                    finish = "stop"
                    break
                out.append(token)
                if info is not None:
                    pending.append(info)
                delta, stopped = stream.push(token)
                emit(delta)
                if stopped:
                    finish = "stop"
                    break
                if step + 1 < params.max_tokens:  # the last token needs no forward pass
                    logits = self.model(torch.tensor([[token]], device=self.device), cache=cache)[:, -1, :]
                    in_cache.append(token)
            if finish in ("length", "stop"):
                emit(stream.flush(), final=True)  # end of generation: held-back text is final now
        finally:
            self._give_back(cache, in_cache, owned)
        return Result(deltas, out, finish, len(prompt), start)
