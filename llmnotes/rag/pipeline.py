"""The RAG pipeline: retrieve chunks of the site, cite them, answer from them.

The retrieval pieces (chunking, BM25, dense and hybrid retrievers, metrics) are the other modules
of :mod:`llmnotes.rag`. This module adds the generation half: :func:`build_prompt` numbers the retrieved chunks
``[1]``, ``[2]``... under a token budget (lowest-ranked chunks dropped first), and
:func:`generate_local` / :func:`generate_endpoint` produce the answer from the shipped tiny
model or any OpenAI-compatible server. The commands ``llmnotes ask`` and ``llmnotes build-index``
(also ``python -m llmnotes.rag build-index DOCS_DIR [OUT]``) are in ``llmnotes/cli/``.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

from llmnotes.rag.bm25 import BM25, Hit
from llmnotes.rag.chunking import Chunk, chunk_docs, load_chunks
from llmnotes.rag.dense import DenseRetriever, HybridRetriever, embeddings_available
# Retrieved text is untrusted: a page that contains ``<|endoftext|>`` (the tokenization page does)
# must not become the real end-of-text token in a prompt, so it is encoded as plain text.
from llmnotes.tokenizer import encode_text as encode_plain
from llmnotes.tokenizer import load_tokenizer


SITE_DOCS = Path(__file__).resolve().parents[1] / "assets" / "site_docs.jsonl"
#: How the shipped snapshot is chunked (characters), and which pages it leaves out: the
#: glossary, flashcards and reading list restate other pages in summary and link to them, so
#: a question should retrieve (and cite) the section that explains, not the summary.
SNAPSHOT_OPTIONS = {"max_len": 1000, "overlap": 150, "keep_code": True,
                    "exclude": ("glossary.md", "*/flashcards.md", "reading-list/*")}

INSTRUCTIONS = ("Answer the question using only the numbered sources below. Cite the sources "
                "you use like [1]. If they do not contain the answer, say you do not know.")


def load_site_chunks(docs_dir: str | Path | None = None) -> list[Chunk]:
    """The site's chunks: from ``docs_dir`` if given, else the snapshot shipped in the package."""
    if docs_dir is not None:
        return chunk_docs(docs_dir, **SNAPSHOT_OPTIONS)
    if not SITE_DOCS.exists():
        raise FileNotFoundError(f"{SITE_DOCS} is missing; build it with "
                                "'python -m llmnotes.rag build-index docs'")
    return load_chunks(SITE_DOCS)


def build_retriever(chunks: Sequence[Chunk], kind: str = "auto"):
    """``"bm25"``, ``"dense"``, ``"hybrid"``, ``"hybrid+rerank"`` or ``"auto"``: hybrid with
    the rerank stage when the embedding packages are installed (the best section-level
    retriever on the site's evaluation set, see ``benchmarks/RESULTS.md``), else BM25."""
    kinds = ("auto", "bm25", "dense", "hybrid", "hybrid+rerank")
    if kind not in kinds:
        raise ValueError(f"retriever kind must be one of {kinds}, got {kind!r}")
    if kind == "auto":
        kind = "hybrid+rerank" if embeddings_available() else "bm25"
    if kind == "bm25":
        return BM25(chunks)
    dense = DenseRetriever(chunks)
    if kind == "dense":
        return dense
    return HybridRetriever(BM25(chunks), dense, rerank=kind == "hybrid+rerank")


def compare_retrievers(chunks: Sequence[Chunk] | None = None, questions=None,
                       depth: int = 50, level: str = "page") -> dict[str, dict[str, float]]:
    """Evaluate BM25, dense, hybrid and hybrid + rerank on the site's evaluation set.

    Returns ``{retriever: {"recall@1", "recall@5", "MRR", "nDCG@10"}}`` at ``level``
    ``"page"`` or ``"section"`` (see :func:`llmnotes.rag.metrics.evaluate`). Dense vectors
    come from the on-disk cache after the first run.
    """
    from llmnotes.rag.metrics import evaluate, load_eval_set

    chunks = list(chunks) if chunks is not None else load_site_chunks()
    questions = questions if questions is not None else load_eval_set()
    bm25, dense = BM25(chunks), DenseRetriever(chunks)
    dense.embed([q.question for q in questions])  # one batch instead of one call per query
    retrievers = {"BM25": bm25, "dense (MiniLM)": dense,
                  "hybrid (RRF)": HybridRetriever(bm25, dense),
                  "hybrid + rerank": HybridRetriever(bm25, dense, rerank=True)}
    return {name: evaluate(r, chunks, questions, depth, level) for name, r in retrievers.items()}


# --- prompt assembly ----------------------------------------------------------------------

def token_counter(tokenizer) -> Callable[[str], int]:
    """``text -> number of tokens``, for :func:`build_prompt`'s budget (see :func:`encode_plain`)."""
    return lambda text: len(encode_plain(tokenizer, text))


@dataclass
class Prompt:
    """An assembled prompt.

    Attributes:
        text: the prompt.
        sources: the chunks it cites, ``sources[i]`` is ``[i + 1]``.
        n_tokens: its length by the counting tokenizer.
        dropped: retrieved chunks left out (or cut short) to fit the budget.
    """

    text: str
    sources: list[Chunk]
    n_tokens: int
    dropped: int


def _render(question: str, blocks: list[tuple[Chunk, str]], instructions: str) -> str:
    parts = [instructions, ""]
    for i, (chunk, text) in enumerate(blocks, start=1):
        parts += [f"[{i}] {chunk.label} ({chunk.url})", text, ""]
    parts += [f"Question: {question}", "Answer:"]
    return "\n".join(parts)


def build_prompt(question: str, chunks: Sequence[Chunk], count_tokens: Callable[[str], int],
                 max_tokens: int = 1024, instructions: str = INSTRUCTIONS,
                 min_chunk_tokens: int = 24) -> Prompt:
    """Put ``chunks`` (best first) into a prompt of at most ``max_tokens`` tokens.

    Chunks are added in rank order while the whole prompt still fits. The first one that
    does not fit is cut (at a word boundary) to the space left, if at least
    ``min_chunk_tokens`` remain; it and everything ranked below it are otherwise dropped.
    Lengths are measured on the rendered prompt, since token counts do not add up across
    joins exactly.

    Args:
        question: the user's question.
        chunks: retrieved chunks, best first.
        count_tokens: ``str -> int``, e.g. ``token_counter(tokenizer)``.
        max_tokens: the budget for the whole prompt.
    """
    if not isinstance(question, str) or not question.strip():
        raise ValueError(f"question must be a non-empty str, got {question!r}")
    if not isinstance(max_tokens, int) or max_tokens <= 0:
        raise ValueError(f"max_tokens must be a positive int, got {max_tokens!r}")
    base = count_tokens(_render(question, [], instructions))
    if base > max_tokens:
        raise ValueError(f"the question and instructions alone take {base} tokens, over "
                         f"max_tokens={max_tokens}; raise max_tokens or shorten the question")
    kept: list[tuple[Chunk, str]] = []
    for chunk in chunks:
        trial = kept + [(chunk, chunk.text)]
        if count_tokens(_render(question, trial, instructions)) <= max_tokens:
            kept = trial
            continue
        # Cut this chunk to fit: binary search for the most words that still fit.
        words = chunk.text.split(" ")
        lo, hi = 0, len(words)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            text = " ".join(words[:mid]) + " \u2026"
            if count_tokens(_render(question, kept + [(chunk, text)], instructions)) <= max_tokens:
                lo = mid
            else:
                hi = mid - 1
        text = " ".join(words[:lo]) + " \u2026"
        if lo and count_tokens(text) >= min_chunk_tokens:
            kept.append((chunk, text))
        break
    text = _render(question, kept, instructions)
    n_full = sum(1 for c, t in kept if t == c.text)
    return Prompt(text, [c for c, _ in kept], count_tokens(text), len(chunks) - n_full)


# --- generation ---------------------------------------------------------------------------

def generate_local(prompt: str, model, tokenizer, max_new_tokens: int = 64,
                   temperature: float = 0.0) -> str:
    """Continue ``prompt`` with a local GPT (greedy by default); return only the new text.

    The answer stops at the first blank line (a base model does not know it should stop) or at
    the end-of-text token: :func:`llmnotes.sampling.complete` with ``stop="\\n\\n"``.
    """
    from llmnotes.sampling import complete

    n_prompt = len(encode_plain(tokenizer, prompt))
    block = model.config.block_size
    if n_prompt + max_new_tokens > block:
        raise ValueError(f"prompt ({n_prompt} tokens) + max_new_tokens ({max_new_tokens}) "
                         f"exceeds the model's block_size {block}; build the prompt with "
                         f"max_tokens={block - max_new_tokens}")
    model.eval()
    return complete(model, tokenizer, prompt, max_new_tokens=max_new_tokens, temperature=temperature,
                    stop="\n\n").strip()


def generate_endpoint(prompt: str, base_url: str, model: str = "llmnotes-tiny",
                      api_key: str | None = None, max_tokens: int = 256,
                      timeout: float = 120.0) -> str:
    """Answer with any OpenAI-compatible server (``POST {base_url}/chat/completions``).

    ``base_url`` is the API root, e.g. ``http://127.0.0.1:8000/v1`` (``/v1`` is added if
    missing). Uses only ``urllib``: no client library needed. Sampling is greedy.
    """
    if not isinstance(base_url, str) or not base_url.startswith(("http://", "https://")):
        raise ValueError(f"base_url must start with http:// or https://, got {base_url!r}")
    url = base_url.rstrip("/")
    if not url.endswith("/v1"):
        url += "/v1"
    body = {"model": model, "messages": [{"role": "user", "content": prompt}],
            "max_tokens": max_tokens, "temperature": 0}
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    req = urllib.request.Request(f"{url}/chat/completions", json.dumps(body).encode("utf-8"),
                                 headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            data = json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as err:
        detail = err.read().decode("utf-8", "replace")[:300]
        raise ValueError(f"endpoint {url} answered HTTP {err.code}: {detail}") from err
    except urllib.error.URLError as err:
        raise ValueError(f"cannot reach endpoint {url}: {err.reason}") from err
    return data["choices"][0]["message"]["content"].strip()


@dataclass
class Answer:
    """What :func:`ask` returns: the answer, the prompt it came from, the retrieval hits."""

    question: str
    text: str | None
    prompt: Prompt
    hits: list[Hit]


def ask(question: str, retriever, chunks: Sequence[Chunk], *, k: int = 5,
        count_tokens: Callable[[str], int], max_prompt_tokens: int = 1024,
        generate_fn: Callable[[str], str] | None = None) -> Answer:
    """Retrieve ``k`` chunks, assemble the cited prompt, and (if ``generate_fn``) answer."""
    if isinstance(k, bool) or not isinstance(k, int) or k <= 0:
        raise ValueError(f"k must be a positive int (chunks to retrieve), got {k!r}")
    hits = retriever.search(question, k)
    prompt = build_prompt(question, [chunks[h.index] for h in hits], count_tokens,
                          max_prompt_tokens)
    text = generate_fn(prompt.text) if generate_fn is not None else None
    return Answer(question, text, prompt, hits)


# --- command line -------------------------------------------------------------------------

def shipped_tokenizer():
    """The package's BPE tokenizer (the tiny model's): counts prompt tokens."""
    return load_tokenizer()
