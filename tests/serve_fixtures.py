"""Shared set-up for the server tests: a nano GPT, a small BPE tokenizer, a running server.

Not a test module (no ``test_`` prefix): the ``test_serve*.py`` / ``test_load.py`` files import it.
"""

from __future__ import annotations

import functools
import time
from pathlib import Path

import torch

import llmnotes
from llmnotes import GPT, BPETokenizer, GPTConfig

MODEL_NAME = "nano"


@functools.lru_cache(maxsize=None)
def tokenizer() -> BPETokenizer:
    """300 ids: 256 bytes, 43 merges learned on the shipped corpus, ``<|endoftext|>`` = 299."""
    text = (Path(llmnotes.__file__).parent / "assets" / "corpus" / "train.txt").read_text(encoding="utf-8")
    return BPETokenizer.train(text[:20_000], 300, special_tokens=["<|endoftext|>"])


def nano_model(block_size: int = 128, seed: int = 0) -> GPT:
    torch.manual_seed(seed)
    return GPT(GPTConfig.from_preset("nano", vocab_size=300, block_size=block_size)).eval()


class SlowModel(torch.nn.Module):
    """A model that sleeps ``delay`` seconds per forward pass: makes timing-dependent behaviour
    (queues filling up, a client leaving mid-stream) happen reliably in a test."""

    def __init__(self, model: GPT, delay: float) -> None:
        super().__init__()
        self.inner, self.delay, self.config = model, delay, model.config
        self.forward_calls = 0

    def make_cache(self, *args, **kwargs):
        return self.inner.make_cache(*args, **kwargs)

    def forward(self, idx, cache=None):
        self.forward_calls += 1
        time.sleep(self.delay)
        return self.inner(idx, cache=cache)


@torch.no_grad()
def reference_greedy(model: GPT, tok: BPETokenizer, prompt: str, max_tokens: int) -> str:
    """The oracle: full-sequence forward passes (no KV cache), argmax, stop at <|endoftext|>."""
    ids = tok.encode(prompt, allowed_special="none")
    out: list[int] = []
    for _ in range(max_tokens):
        logits = model(torch.tensor([ids + out]))[0, -1]
        nxt = int(logits.argmax())
        if nxt == tok.eot_id:
            break
        out.append(nxt)
    return tok.decode(out)
