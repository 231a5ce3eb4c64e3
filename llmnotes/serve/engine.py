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

The loop itself is :func:`llmnotes.sampling.stream`, the package's one decode loop, with the
request's settings as a :class:`~llmnotes.sampling.GenerationConfig`
(:meth:`SamplingParams.to_config`). The engine gives it the reused cache (``cache=``), a cancel
signal checked between tokens (``should_stop=``: the client left, or the deadline passed) and a
hook that sees each step's raw logits (``on_logits=``, for log-probs); it turns the tokens into
text. Stop sequences are matched on that text (:class:`TextStream`), not by the loop, so that
no part of one ever reaches the client.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from llmnotes.sampling import stream
from llmnotes.serve.protocol import SamplingParams
from llmnotes.utils import model_device

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
        self.device = model_device(model)
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

    def _give_back(self, cache: Any, ids: list[int] | None, owned: bool) -> None:
        if owned:
            # After an error half-way (ids None) the cache may not match: forget it rather than reuse it.
            self._prefix = (cache, ids) if ids is not None and cache.seq_len == len(ids) else None
            self._prefix_lock.release()

    # -- log-probs ----------------------------------------------------------------------------

    def _logprob(self, logits: torch.Tensor, token: int, k: int) -> TokenLogprob:
        """The chosen token's log-prob and the ``k`` most likely, from the model's own distribution
        (``logits`` (1, V) before penalties, temperature and top-p, as vLLM reports)."""
        logp = torch.log_softmax(logits.float(), dim=-1)[0]
        top = []
        if k > 0:
            values, ids = torch.topk(logp, min(k, logp.numel()))
            top = [(self.tokenizer.decode([int(i)]), float(v)) for v, i in zip(values, ids)]
        return TokenLogprob(self.tokenizer.decode([token]), token, float(logp[token]), top)

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
        config = params.to_config(self.eos_id)
        text = TextStream(self.tokenizer.decode, params.stop)
        deltas: list[Delta] = []
        pending: list[TokenLogprob] = []  # log-probs of tokens whose text is not out yet
        step_logits: list[torch.Tensor] = []  # the last step's raw logits, for log-probs
        finish = "length"

        def emit(piece: str, final: bool = False) -> None:
            if piece or (final and pending):
                d = Delta(piece, list(pending))
                pending.clear()
                deltas.append(d)
                if on_delta is not None:
                    on_delta(d)

        def should_stop() -> bool:  # checked by the loop before each token
            nonlocal finish
            if cancel is not None and cancel.is_set():
                finish = "cancelled"
            elif deadline is not None and time.monotonic() > deadline:
                finish = "timeout"
            return finish != "length"

        cache, start, owned = self._take_cache(prompt)
        out: list[int] = []
        held = None  # the ids the cache holds, once the loop ended cleanly
        try:
            idx = torch.tensor([prompt], dtype=torch.long, device=self.device)  # (1, T)
            on_logits = step_logits.append if params.logprobs is not None else None
            for tok in stream(self.model, idx, config=config, cache=cache, should_stop=should_stop,
                              on_logits=on_logits):
                token = int(tok[0])
                if token == self.eos_id:
                    finish = "stop"
                    break
                out.append(token)
                if params.logprobs is not None:
                    pending.append(self._logprob(step_logits.pop(), token, params.logprobs))
                delta, stopped = text.push(token)
                emit(delta)
                if stopped:
                    finish = "stop"
                    break
            if finish in ("length", "stop"):
                emit(text.flush(), final=True)  # end of generation: held-back text is final now
            held = (list(prompt) + out)[: cache.seq_len]  # the last token chosen was never fed
        finally:
            self._give_back(cache, held, owned)
        return Result(deltas, out, finish, len(prompt), start)
