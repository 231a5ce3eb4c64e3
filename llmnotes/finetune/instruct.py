"""Instruction finetuning: prompt formats, loss masking, padding, and a small evaluation.

Supervised instruction finetuning (SFT) is ordinary next-token training on
``prompt + response + <|endoftext|>`` with one twist: the loss counts only the *response*
tokens (and the end marker). The prompt's targets are set to ``-100``, the ``ignore_index`` of
``F.cross_entropy``, so the model is taught to answer, not to reproduce questions.

Two prompt formats:

* Alpaca (Taori et al., 2023, *Stanford Alpaca*, github.com/tatsu-lab/stanford_alpaca):
  a fixed preamble, then ``### Instruction:`` / ``### Input:`` / ``### Response:`` sections.
* chat: the transcript template of ``llmnotes serve`` (``User: ...`` / ``Assistant: ...``,
  :class:`llmnotes.prompting.ChatTemplate`), so a model finetuned on it answers
  ``/v1/chat/completions`` requests as it was trained; the reply ends with ``<|endoftext|>``,
  the tokenizer's end-of-text token, which is also where the server stops.

Datasets are JSON lines read by :func:`llmnotes.finetune.data.load_instructions`.
"""

from __future__ import annotations

import re
from typing import Sequence

import torch
import torch.nn.functional as F

from llmnotes.finetune.data import PairDataset
from llmnotes.prompting import ChatTemplate
from llmnotes.tokenizer import eos_id_of

IGNORE_INDEX = -100

ALPACA_PROMPT = ("Below is an instruction that describes a task, paired with an input that provides further "
                 "context. Write a response that appropriately completes the request.\n\n"
                 "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n")
ALPACA_PROMPT_NO_INPUT = ("Below is an instruction that describes a task. Write a response that "
                          "appropriately completes the request.\n\n"
                          "### Instruction:\n{instruction}\n\n### Response:\n")
STYLES = ("alpaca", "chat")


def format_alpaca(instruction: str, input: str = "") -> str:
    """The Alpaca prompt; the response follows it directly."""
    if not isinstance(instruction, str) or not instruction.strip():
        raise ValueError(f"instruction must be a non-empty string, got {instruction!r}")
    if input:
        return ALPACA_PROMPT.format(instruction=instruction, input=input)
    return ALPACA_PROMPT_NO_INPUT.format(instruction=instruction)


def format_chat(messages: Sequence[dict[str, str]], template: ChatTemplate | None = None) -> str:
    """Render ``[{"role": "user", "content": ...}, ...]`` with the server's chat template; the
    text ends with ``"Assistant:"`` so the model's continuation is the reply."""
    template = template or ChatTemplate()
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or m.get("role") not in template.prefixes or not isinstance(m.get("content"), str):
            raise ValueError(f"messages[{i}] must be {{'role': one of {sorted(template.prefixes)}, "
                             f"'content': str}}, got {m!r}")
    return template.render(list(messages))


def format_prompt(instruction: str, input: str = "", style: str = "alpaca") -> str:
    """The prompt for one example in ``style`` ``"alpaca"`` or ``"chat"``."""
    if style == "alpaca":
        return format_alpaca(instruction, input)
    if style == "chat":
        content = instruction if not input else f"{instruction}\n\n{input}"
        return format_chat([{"role": "user", "content": content}])
    raise ValueError(f"style must be one of {STYLES}, got {style!r}")


def response_text(output: str, style: str = "alpaca") -> str:
    """What follows the prompt: chat replies start after ``"Assistant:"`` with a space."""
    return " " + output if style == "chat" else output


def encode_example(tokenizer, prompt: str, response: str, max_len: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Token ids ``x`` and masked targets ``y`` for ``prompt + response + <|endoftext|>``.

    ``y[t]`` is the token after ``x[t]``, or ``-100`` where that token still belongs to the
    prompt. Prompt and response are encoded separately, exactly as the prompt will be encoded
    alone at inference time. Text never becomes special tokens (``allowed_special="none"``).

    Returns:
        ``(x, y)``, two LongTensors of shape (L,), ``L = len(prompt ids) + len(response ids)``.
    """
    eos = eos_id_of(tokenizer)
    if eos is None:
        raise ValueError("the tokenizer has no <|endoftext|> token to end responses with")
    p = tokenizer.encode(prompt, allowed_special="none")
    r = tokenizer.encode(response, allowed_special="none") + [eos]
    ids = p + r
    if max_len is not None and len(ids) - 1 > max_len:
        raise ValueError(f"prompt + response is {len(ids) - 1} tokens, longer than max_len={max_len}; "
                         "shorten the example or use a model with a longer context")
    x = torch.tensor(ids[:-1], dtype=torch.long)
    y = torch.tensor(ids[1:], dtype=torch.long)
    y[: len(p) - 1] = IGNORE_INDEX  # targets that are still prompt tokens
    return x, y


def pad_right(seqs: Sequence[torch.Tensor], value: int, length: int | None = None) -> torch.Tensor:
    """Stack 1-D tensors into (B, L), filling the end of short rows with ``value``."""
    length = max(len(s) for s in seqs) if length is None else length
    out = torch.full((len(seqs), length), value, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, : len(s)] = s
    return out


class InstructionDataset(PairDataset):
    """``(x, y)`` pairs from instruction rows, right-padded to one length so they stack.

    Padding positions hold ``pad_id`` in ``x`` and ``-100`` in ``y``: they add nothing to the loss,
    and with causal attention a padded position at the *end* cannot change earlier ones.
    """

    def __init__(self, rows: Sequence[dict], tokenizer, style: str = "alpaca", max_len: int | None = None) -> None:
        if style not in STYLES:
            raise ValueError(f"style must be one of {STYLES}, got {style!r}")
        if not rows:
            raise ValueError("rows is empty; load some with load_instructions()")
        pairs = [encode_example(tokenizer, format_prompt(r["instruction"], r.get("input", ""), style),
                                response_text(r["output"], style), max_len) for r in rows]
        super().__init__(pad_right([p[0] for p in pairs], eos_id_of(tokenizer)),
                         pad_right([p[1] for p in pairs], IGNORE_INDEX))


def trim_padding(x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Drop trailing columns where no row has a target (the batch's shared padding)."""
    cols = (y != IGNORE_INDEX).reshape(-1, y.shape[-1]).any(0).nonzero()
    keep = int(cols.max()) + 1 if len(cols) else 1
    return x[..., :keep], y[..., :keep]


def logits_at_targets(model, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Logits ``(N, V)`` at the N positions whose target is not -100, and that mask ``(B, L)``.

    On an llmnotes ``GPT`` the output head runs only at those positions: the prompt and the
    padding, most of each row, need no logits (about 20% of a training step saved). Any other
    model (wrapped, compiled, a subclass with its own forward) runs ``model(x)`` in full.
    """
    from llmnotes.model import GPT

    keep = y != IGNORE_INDEX
    if type(model).forward is GPT.forward:
        return model.lm_head(model.hidden_states(x)[keep]), keep
    return model(x)[keep], keep


def sft_loss(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Mean cross-entropy over response tokens only: ``(B, L)`` ids and masked targets
    (the output head only where needed, :func:`logits_at_targets`; :func:`sft_loss_reference`
    is the same loss the plain way)."""
    x, y = trim_padding(x, y)
    logits, keep = logits_at_targets(model, x, y)
    return F.cross_entropy(logits.float(), y[keep])


def sft_loss_reference(model, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """:func:`sft_loss` the plain way: logits at every position, then the masked mean."""
    from llmnotes.model import lm_loss

    x, y = trim_padding(x, y)
    return lm_loss(model(x), y, ignore_index=IGNORE_INDEX)


# --------------------------------------------------------------------------------------------
# Generation and evaluation
# --------------------------------------------------------------------------------------------


@torch.no_grad()
def respond(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 24) -> list[str]:
    """Greedy replies to a batch of already formatted prompts, cut at the end-of-text token
    (:func:`llmnotes.sampling.complete`, with the model in eval mode for the call)."""
    from llmnotes.sampling import complete

    was_training = model.training
    model.eval()
    try:
        replies = complete(model, tokenizer, list(prompts), max_new_tokens=max_new_tokens, temperature=0)
    finally:
        model.train(was_training)
    return [r.strip() for r in replies]


def normalize(text: str) -> str:
    """Lower case, single spaces, no final full stop: what exact match compares."""
    return re.sub(r"\s+", " ", text.strip().lower()).rstrip(".").strip()


def score_response(row: dict, reply: str) -> float:
    """1.0 or 0.0. Questions with one answer: exact match after :func:`normalize`. Open
    ``"sentence"`` requests ("Write a sentence about a happy dog."): a rubric, the reply must name
    the adjective and the animal, be one sentence of 4 to 20 words ending in a full stop, and use
    no word more than twice (no degenerate repetition)."""
    if row.get("kind") == "sentence":
        m = re.search(r"about an? (\w+) (\w+)\.", row["instruction"])
        words = re.findall(r"[a-z']+", reply.lower())
        ok = (m is not None and m.group(1) in words and m.group(2) in words and 4 <= len(words) <= 20
              and reply.strip().endswith(".") and reply.count(".") == 1
              and max(words.count(w) for w in words) <= 2)
        return float(ok)
    return float(normalize(reply) == normalize(row["output"]))


def evaluate_instructions(model, tokenizer, rows: Sequence[dict], style: str = "alpaca",
                          max_new_tokens: int = 24, batch_size: int = 32) -> dict:
    """Score greedy replies on ``rows``: overall and per ``kind``.

    Returns:
        ``{"score": mean, "n": len(rows), "by_kind": {kind: mean}, "replies": [str, ...]}``.
    """
    replies: list[str] = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i:i + batch_size]
        prompts = [format_prompt(r["instruction"], r.get("input", ""), style) for r in chunk]
        replies += respond(model, tokenizer, prompts, max_new_tokens)
    scores = [score_response(r, a) for r, a in zip(rows, replies)]
    by_kind: dict[str, list[float]] = {}
    for r, s in zip(rows, scores):
        by_kind.setdefault(r.get("kind", "all"), []).append(s)
    return {"score": sum(scores) / max(1, len(scores)), "n": len(scores),
            "by_kind": {k: sum(v) / len(v) for k, v in sorted(by_kind.items())}, "replies": replies}
