"""Extractive answers: quote the retrieved sentences that best answer a question.

A small model that was never taught the site's subject cannot *write* a good answer about it,
but it does not need to: the retrieved sections already contain the answer, in the site's own
words. An extractive answer splits those sections into sentences, scores every sentence
against the question, and quotes the best few, each with the number of the source it came
from. It can miss, but it cannot invent: every word it shows is on the cited page.

Scoring, in order of preference:

- **dense**: cosine similarity of sentence and question embeddings (all-MiniLM-L6-v2, the
  retriever's embedder), which matches paraphrases ("make the model smaller" ~ "quantize");
- **BM25** over the sentences, when the embedding packages are not installed.

Either score gets a small bonus for the retrieval rank of the sentence's section, so that two
equally good sentences are taken from the section the retriever trusted more.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from llmnotes.rag.chunking import Chunk

_DISPLAY_MATH = re.compile(r"\$\$.*?\$\$", re.S)
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_SKIP_LINE = re.compile(r"^\s*(\||#|!!!|\?\?\?|===|<|\[\^|-{3,}|\*{3,})")
_SENTENCE_END = re.compile(r"(?<=[.!?])[\"')\]]*\s+(?=[A-Z`$*(\"'\[])")
_FOOTNOTE = re.compile(r"\[\^[^\]]*\]")
_INLINE = re.compile(r"\$[^$]*\$|`[^`]*`")
_CODE_LINE = re.compile(r"^\s*(from|import|for|if|elif|else|def|class|with|return|print|assert|try|except)\b"
                        r"|^\s{4}|^\s*#|\w\s*[-+*/]?=\s*\S|[{}]|\)\s*$|^\s*\w+\(|>>>")


def _drop_code(markdown: str) -> str:
    """Remove code lines. The shipped snapshot keeps code without its fences, so a line is
    judged by its look: a statement keyword first, an assignment, brackets or a call at the
    end, after inline math and inline code (which prose may contain) are blanked out."""
    kept, inside = [], False
    for ln in markdown.replace(" \u2026 ", "\n").splitlines():
        if re.match(r"^\s*(```|~~~)", ln):
            inside = not inside
        elif not inside and not _CODE_LINE.search(_INLINE.sub("x", ln)):
            kept.append(ln)
    return "\n".join(kept)


@dataclass(frozen=True)
class Quote:
    """A sentence of the answer and where it came from.

    Attributes:
        text: the sentence, as written on the page (Markdown link targets removed).
        source: 1-based number of the source (the order of ``chunks`` given to the extractor).
        score: how well it matches the question (higher is better).
    """

    text: str
    source: int
    score: float


def sentences(markdown: str, min_words: int = 5, max_words: int = 80) -> list[str]:
    """The prose sentences of a Markdown text: code blocks, display math, tables, headings and
    admonition markers are dropped; link syntax is reduced to its label.

    Example:
        >>> sentences("Intro text here is fine. See [the page](x.md) now, it helps.\\n```\\ncode()\\n```")
        ['Intro text here is fine.', 'See the page now, it helps.']
    """
    text = _drop_code(_FOOTNOTE.sub("", _LINK.sub(r"\1", _DISPLAY_MATH.sub(" ", markdown))))
    lines = [ln for ln in text.splitlines() if not _SKIP_LINE.match(ln)]
    prose = " ".join(ln.strip(" -*>") for ln in lines).replace("**", "")
    prose = re.sub(r"\s+", " ", prose).strip()
    out = []
    for s in _SENTENCE_END.split(prose):
        s = s.strip()
        if min_words <= len(s.split()) <= max_words and s[-1:] in ".!?":
            out.append(s)
    return out


def _bm25_scores(question: str, texts: list[str]) -> np.ndarray:
    from llmnotes.rag.bm25 import BM25

    return BM25(texts).scores(question)


def extract_answer(question: str, chunks: Sequence[Chunk], *, n: int = 3,
                   embed: Callable[[list[str]], np.ndarray] | None = None,
                   rank_bonus: float = 0.05) -> list[Quote]:
    """The ``n`` sentences of ``chunks`` that best answer ``question``, best first.

    Args:
        question: what was asked.
        chunks: the retrieved sections, best first (their order gives the source numbers).
        n: how many sentences to quote.
        embed: ``list[str] -> (m, d)`` unit-norm sentence embeddings; ``None`` scores with BM25.
        rank_bonus: added to a sentence's score for coming from source 1, falling linearly to 0
            for the last source: a tie-breaker in favour of the retriever's ranking.

    Returns:
        Up to ``n`` :class:`Quote` s (fewer if the sections hold fewer sentences), best first.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be a non-empty string, got {question!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n <= 0:
        raise ValueError(f"n must be a positive int (sentences to quote), got {n!r}")
    found = [(i, s) for i, c in enumerate(chunks) for s in sentences(c.text)]
    if not found:
        return []
    texts = [s for _, s in found]
    if embed is not None:
        vectors = np.asarray(embed([question] + texts), dtype=np.float32)
        scores = vectors[1:] @ vectors[0]
    else:
        raw = _bm25_scores(question, texts)
        scores = raw / raw.max() if raw.max() > 0 else raw
    k = max(1, len(chunks) - 1)
    scores = scores + np.array([rank_bonus * (1 - i / k) for i, _ in found])
    best, seen = [], set()
    for j in np.argsort(-scores, kind="stable"):
        if texts[j] in seen:  # overlapping chunks repeat sentences
            continue
        seen.add(texts[j])
        best.append(Quote(texts[j], found[j][0] + 1, float(scores[j])))
        if len(best) == n:
            break
    return best


def format_quotes(quotes: Sequence[Quote]) -> str:
    """One quoted sentence a line, each followed by its source number: ``"..." [2]``."""
    return "\n".join(f"\u201c{q.text}\u201d [{q.source}]" for q in quotes)
