"""GenerationConfig: every knob of the decode loop in one validated dataclass.

:func:`~llmnotes.sampling.generate`, :func:`~llmnotes.sampling.stream`,
:func:`~llmnotes.sampling.complete`, the server's engine and ``llmnotes sample`` all read the same
fields, so a setting means the same thing everywhere, is checked in one place, and each field
becomes one ``llmnotes sample`` flag (its help text is the field's entry under ``Attributes:``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any


def _bad(name: str, value: Any, accepted: str) -> ValueError:
    return ValueError(f"{name} must be {accepted}, got {value!r}")


def _check_int(name: str, value: Any, low: int, optional: bool = False, note: str = "") -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise _bad(name, value, f">= {low} (an int{'; None = off' if optional else ''}{note})")


def _check_real(name: str, value: Any, low: float, high: float = math.inf, *, low_open: bool = False,
                high_open: bool = False, optional: bool = False, note: str = "") -> None:
    if value is None and optional:
        return
    ok = not isinstance(value, bool) and isinstance(value, (int, float)) and math.isfinite(value)
    ok = ok and (low < value if low_open else low <= value) and (value < high if high_open else value <= high)
    if not ok:
        if high == math.inf:
            accepted = f"{'>' if low_open else '>='} {low:g} and finite"
        else:
            accepted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise _bad(name, value, accepted + (f" ({note})" if note else ""))


def _check_token_lists(name: str, value: Any) -> None:
    ok = isinstance(value, (list, tuple)) and len(value) > 0 and all(
        isinstance(w, (list, tuple)) and len(w) > 0
        and all(isinstance(t, int) and not isinstance(t, bool) and t >= 0 for t in w) for w in value)
    if not ok:
        raise _bad(name, value, "a non-empty list of non-empty lists of token ids >= 0 (or None)")


def _check_bias(name: str, value: Any) -> None:
    ok = isinstance(value, dict) and len(value) > 0 and all(
        isinstance(t, int) and not isinstance(t, bool) and t >= 0
        and not isinstance(b, bool) and isinstance(b, (int, float)) and -100 <= b <= 100
        for t, b in value.items())
    if not ok:
        raise _bad(name, value, "a non-empty dict {token_id >= 0: bias in [-100, 100]} (or None)")


def _check_stop(name: str, value: Any) -> None:
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, (list, tuple)) or not items or not all(isinstance(s, str) and s for s in items):
        raise _bad(name, value, "a non-empty string or a list of non-empty strings (or None)")


@dataclass
class GenerationConfig:
    """How the decode loop picks tokens and when it stops.

    Every field is checked when the config is made: a bad value raises ``ValueError`` naming the
    field, the value and what is accepted. ``dataclasses.replace(config, top_k=50)`` (or
    :meth:`replace`) makes a checked copy. The processors follow Hugging Face's order: penalties
    and bans first, then, only when sampling, temperature and the filters (greedy ignores them,
    but they are still checked).

    Attributes:
        max_new_tokens: tokens to add at most (an int >= 0); the prompt plus this must fit in the
            model's block_size.
        temperature: divide the logits by this before sampling; 0 means greedy (argmax, no
            division). A number >= 0.
        top_k: sample only from the k most likely tokens (an int >= 1; None = off).
        top_p: nucleus sampling: the smallest set of tokens whose probability reaches p
            (in (0, 1]; None = off).
        min_p: drop tokens less likely than min_p times the most likely one (in [0, 1];
            None = off).
        typical_p: locally typical sampling: keep the tokens closest to the expected
            surprise until their mass reaches this (in (0, 1); None = off).
        repetition_penalty: CTRL's penalty on every token already in the row, prompt included
            (> 0; 1.0 or None = off).
        frequency_penalty: OpenAI's penalty per earlier occurrence of a token in the generated
            text (in [-2, 2]).
        presence_penalty: OpenAI's penalty on any token already in the generated text (in [-2, 2]).
        no_repeat_ngram_size: never repeat an n-gram of this many tokens (an int >= 1; None = off).
        bad_words_ids: token sequences that must never be produced (a list of lists of ids).
        logit_bias: ``{token_id: bias}`` added to the logits, OpenAI style (biases in [-100, 100]).
        min_new_tokens: forbid eos_id until this many tokens are generated (an int >= 0; needs
            eos_id).
        eos_id: the end-of-sequence token: a row that produces it is finished (an int >= 0;
            None = never; complete() and llmnotes sample default to the tokenizer's).
        pad_id: what finished rows produce until every row is done (an int >= 0; default eos_id).
        stop: string(s) that finish a row once they appear in its generated text (needs the
            tokenizer).
        seed: seed of the sampling random generator, for reproducible draws (an int; None = torch's
            global generator).
        compile: run the decode step under torch.compile with a fixed-shape cache: True (the
            inductor backend), a torch.compile mode (reduce-overhead = CUDA graphs) or a backend
            name (aot_eager).
    """

    max_new_tokens: int = 32
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    repetition_penalty: float | None = None
    frequency_penalty: float = 0.0
    presence_penalty: float = 0.0
    no_repeat_ngram_size: int | None = None
    bad_words_ids: list[list[int]] | None = None
    logit_bias: dict[int, float] | None = None
    min_new_tokens: int = 0
    eos_id: int | None = None
    pad_id: int | None = None
    stop: str | list[str] | None = None
    seed: int | None = None
    compile: bool | str = False

    def __post_init__(self) -> None:
        _check_int("max_new_tokens", self.max_new_tokens, 0)
        _check_real("temperature", self.temperature, 0, note="0 = greedy")
        _check_int("top_k", self.top_k, 1, optional=True)
        _check_real("top_p", self.top_p, 0, 1, low_open=True, optional=True)
        _check_real("min_p", self.min_p, 0, 1, optional=True)
        _check_real("typical_p", self.typical_p, 0, 1, low_open=True, high_open=True, optional=True)
        _check_real("repetition_penalty", self.repetition_penalty, 0, low_open=True, optional=True,
                    note="1.0 = no penalty")
        _check_real("frequency_penalty", self.frequency_penalty, -2, 2, note="OpenAI's range")
        _check_real("presence_penalty", self.presence_penalty, -2, 2, note="OpenAI's range")
        _check_int("no_repeat_ngram_size", self.no_repeat_ngram_size, 1, optional=True)
        if self.bad_words_ids is not None:
            _check_token_lists("bad_words_ids", self.bad_words_ids)
        if self.logit_bias is not None:
            _check_bias("logit_bias", self.logit_bias)
        _check_int("min_new_tokens", self.min_new_tokens, 0)
        _check_int("eos_id", self.eos_id, 0, optional=True)
        _check_int("pad_id", self.pad_id, 0, optional=True)
        if self.stop is not None:
            _check_stop("stop", self.stop)
        if self.seed is not None and (isinstance(self.seed, bool) or not isinstance(self.seed, int)):
            raise _bad("seed", self.seed, "an int (or None)")
        if not (isinstance(self.compile, bool) or (isinstance(self.compile, str) and self.compile)):
            raise _bad("compile", self.compile, "True/False, a torch.compile mode or a backend name")

    @property
    def greedy(self) -> bool:
        """True when decoding takes the argmax (``temperature == 0``)."""
        return self.temperature == 0

    def replace(self, **changes: Any) -> "GenerationConfig":
        """A checked copy with ``changes``; an unknown name raises ``TypeError`` listing the fields."""
        check_fields(changes, "GenerationConfig.replace()")
        return dataclasses.replace(self, **changes)

    @classmethod
    def make(cls, config: "GenerationConfig | None" = None, max_new_tokens: int | None = None,
             caller: str = "GenerationConfig.make()", inputs: str = "", /, **overrides: Any) -> "GenerationConfig":
        """``config`` (default: the defaults) with ``max_new_tokens`` and ``overrides`` applied:
        how ``generate(model, idx, 20, temperature=0)`` and ``generate(model, idx,
        config=cfg)`` become one config. A ``max_new_tokens`` given positionally wins over both.
        The arguments before ``overrides`` are positional only, so any field name can be an override."""
        if config is not None and not isinstance(config, cls):
            raise TypeError(f"{caller}: config must be a GenerationConfig, got {type(config).__name__}; "
                            "pass sampling settings by keyword (temperature=..., top_k=...)")
        check_fields(overrides, caller, inputs)
        if max_new_tokens is not None:
            overrides["max_new_tokens"] = max_new_tokens
        if config is None:
            return cls(**overrides)
        return dataclasses.replace(config, **overrides) if overrides else config


FIELDS = tuple(f.name for f in dataclasses.fields(GenerationConfig))


def check_fields(names, caller: str, inputs: str = "") -> None:
    """Raise ``TypeError`` for any name that is not a :class:`GenerationConfig` field (``inputs``:
    the caller's other keywords, named in the message)."""
    unknown = [n for n in names if n not in FIELDS]
    if unknown:
        raise TypeError(f"{caller} got an unexpected keyword argument {unknown[0]!r}; the sampling "
                        f"settings are {', '.join(FIELDS)}" + (f"; other keywords: {inputs}" if inputs else ""))
