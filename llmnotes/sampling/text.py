"""Text in, text out: :func:`complete`, the common case of the decode loop.

``generate`` works on token ids; most callers have a string and want a string back. The steps in
between are always the same: encode (special-token strings in the prompt stay plain text),
left-pad a batch and mask the padding, decode only the new tokens, cut at the end-of-sequence
token and at the first stop string. Instruction replies (:func:`llmnotes.finetune.respond`) and
RAG's local answers (:func:`llmnotes.rag.generate_local`) are this function with their settings.
"""

from __future__ import annotations

from typing import Sequence

import torch

from llmnotes.sampling.config import GenerationConfig
from llmnotes.sampling.decode import generate, truncate_at_stop
from llmnotes.tokenizer import encode_text, eos_id_of
from llmnotes.utils import model_device


def pad_left(seqs: Sequence[Sequence[int]], value: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-pad id lists for batched generation: ``(ids (B, L), attention_mask (B, L))``.

    Left, so that every row's last real token sits in the last column, where the next token is
    predicted; the mask's 0s keep the padding out of attention.
    """
    length = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), length), value, dtype=torch.long)
    mask = torch.zeros((len(seqs), length), dtype=torch.long)
    for i, s in enumerate(seqs):
        if len(s):
            ids[i, length - len(s):] = torch.as_tensor(list(s), dtype=torch.long)
            mask[i, length - len(s):] = 1
    return ids, mask


def encode_prompts(tokenizer, prompts: Sequence[str], eos_id: int | None, pad_id: int | None = None,
                   ) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(idx, attention_mask)`` for a batch of texts: left-padded (B, T) ids and a (B, T) mask,
    or ``None`` for the mask when every row has the same length (nothing to mask).

    An empty prompt starts from ``eos_id`` (the token that begins a document in a packed corpus).
    """
    rows = [encode_text(tokenizer, p) for p in prompts]
    if any(not r for r in rows):
        if eos_id is None:
            raise ValueError("an empty prompt needs an end-of-sequence token to start from; "
                             "the tokenizer has none, so pass eos_id=...")
        rows = [r or [eos_id] for r in rows]
    idx, mask = pad_left(rows, next(p for p in (pad_id, eos_id, 0) if p is not None))
    return idx, None if bool(mask.all()) else mask


def complete(model, tokenizer, prompt: str | Sequence[str], config: GenerationConfig | None = None,
             *, generator: torch.Generator | None = None, **settings) -> str | list[str]:
    """Continue ``prompt`` (a string, or a list of strings decoded as one batch); return only the new text.

    Args:
        model: a :class:`llmnotes.GPT`, used as it is (see :mod:`llmnotes.sampling.decode` on
            ``prepare_for_decode``).
        tokenizer: encodes the prompts (a ``"<|endoftext|>"`` typed inside one stays plain text)
            and decodes the replies.
        prompt: one text or a list of texts.
        config: a :class:`GenerationConfig`; ``settings`` (its field names) override it. ``eos_id``
            defaults to the tokenizer's end-of-sequence token.
        generator: a ``torch.Generator`` for the draws (or set ``seed``).

    Returns:
        The continuation (a list of them for a list of prompts), cut before the end-of-sequence
        token and before the first ``stop`` string.

    Example:
        >>> model, tok = load_pretrained("tiny")
        >>> complete(model, tok, "Once upon a time", max_new_tokens=8, temperature=0)  # doctest: +SKIP
    """
    single = isinstance(prompt, str)
    prompts = [prompt] if single else list(prompt) if isinstance(prompt, (list, tuple)) else None
    if not prompts or not all(isinstance(p, str) for p in prompts):
        raise TypeError(f"prompt must be a string or a non-empty list of strings, got {prompt!r}")
    config = GenerationConfig.make(config, None, "complete()", "generator", **settings)
    if config.eos_id is None and eos_id_of(tokenizer) is not None:
        config = config.replace(eos_id=eos_id_of(tokenizer))
    idx, mask = encode_prompts(tokenizer, prompts, config.eos_id, config.pad_id)
    device = model_device(model)
    out = generate(model, idx.to(device), config=config, tokenizer=tokenizer, generator=generator,
                   attention_mask=None if mask is None else mask.to(device))
    texts = []
    for row in out[:, idx.shape[1]:].tolist():
        if config.eos_id is not None and config.eos_id in row:
            row = row[: row.index(config.eos_id)]
        texts.append(truncate_at_stop(tokenizer.decode(row), config.stop))
    return texts[0] if single else texts
