"""BM25: ranking documents by the words they share with a query.

Okapi BM25 (Robertson & Zaragoza, 2009, "The Probabilistic Relevance Framework: BM25 and
Beyond") scores a document ``d`` for a query ``q`` as

    score(q, d) = sum over terms t in q of  idf(t) * tf(t, d) * (k1 + 1)
                                            / (tf(t, d) + k1 * (1 - b + b * |d| / avgdl))

with Lucene's idf, ``idf(t) = log(1 + (N - n_t + 0.5) / (n_t + 0.5))``, which never goes
negative (the original ``log((N - n + 0.5) / (n + 0.5))`` does, for words in over half the
documents). ``k1`` caps how much repeating a word helps (term-frequency saturation); ``b``
sets how much a long document is penalised for being long.

Two ways to compute it live here, tested to agree:

- :meth:`BM25.scores_reference` loops over every document and applies the formula: slow, but
  you can read it against the equation.
- :meth:`BM25.scores` uses an inverted index. Everything in the formula except ``idf`` times
  the per-term weight depends only on the document, so it is computed once at indexing time;
  a query then only visits the postings (documents containing the word) of its own terms and
  adds their precomputed weights into a score vector with NumPy.
"""

from __future__ import annotations

import itertools
import math
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

__all__ = ["STOP_WORDS", "s_stem", "Analyzer", "Hit", "BM25"]

# A small English stop list (closed-class words). Short on purpose: "not" and "how" stay in,
# because a question is often about exactly them.
STOP_WORDS = frozenset("""
a an and are as at be but by for from has have if in into is it its of on or so such that the
their then there these they this to was were which will with what when where who whom why do
does did can could should would i you we he she them our your my me us than too very also just
""".split())

_WORD = re.compile(r"\w+", re.UNICODE)


def s_stem(word: str) -> str:
    """Harman's (1991) "S" stemmer: fold English plurals only, which rarely does harm.

    Its three rules, first match wins: ``-ies`` -> ``-y`` (not ``-eies``/``-aies``); ``-es`` ->
    ``-e`` (not ``-aes``/``-ees``/``-oes``); ``-s`` -> ``""`` (not ``-us``/``-ss``). Words of
    three letters or fewer are left alone here, so "is" and "gas" survive.

    >>> [s_stem(w) for w in ["queries", "tokens", "classes", "is", "embeddings", "loss"]]
    ['query', 'token', 'classe', 'is', 'embedding', 'loss']
    """
    if len(word) <= 3:
        return word
    if word.endswith("ies") and not word.endswith(("eies", "aies")):
        return word[:-3] + "y"
    if word.endswith("es") and not word.endswith(("aes", "ees", "oes")):
        return word[:-1]
    if word.endswith("s") and not word.endswith(("us", "ss")):
        return word[:-1]
    return word


@dataclass
class Analyzer:
    """Turn text into index terms: lowercase, split into ``\\w+`` words, drop stop words, stem.

    Args:
        lowercase: fold case so "Attention" matches "attention".
        stop_words: words to drop (``None`` keeps every word).
        stem: apply :func:`s_stem` (plural folding).
    """

    lowercase: bool = True
    stop_words: frozenset[str] | None = field(default=STOP_WORDS)
    stem: bool = True

    def __call__(self, text: str) -> list[str]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        words = _WORD.findall(text.lower() if self.lowercase else text)
        if self.stop_words:
            words = [w for w in words if w not in self.stop_words]
        if self.stem:
            words = [s_stem(w) for w in words]
        return words


@dataclass(frozen=True)
class Hit:
    """One search result: the document's position in the corpus and its score."""

    index: int
    score: float


def _check_k(k: int) -> None:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k <= 0:
        raise ValueError(f"k must be a positive int (how many results to return), got {k!r}")


def _text_of(doc) -> str:
    """Documents may be strings or chunks (anything with ``search_text``)."""
    text = getattr(doc, "search_text", doc)
    if not isinstance(text, str):
        raise TypeError(f"documents must be str, token lists or Chunk objects, got "
                        f"{type(doc).__name__}")
    return text


def top_k(scores: np.ndarray, k: int, candidates: np.ndarray | None = None) -> list[Hit]:
    """The ``k`` best ``(index, score)`` among ``candidates`` (default: all), ties by index.

    Only a partial sort: find the k-th largest score, keep what reaches it, sort that.
    """
    _check_k(k)
    idx = np.arange(len(scores)) if candidates is None else candidates
    if len(idx) == 0:
        return []
    vals = scores[idx]
    if len(idx) > k:
        kth = np.partition(vals, len(vals) - k)[len(vals) - k]
        keep = vals >= kth
        idx, vals = idx[keep], vals[keep]
    order = np.lexsort((idx, -vals))[:k]
    return [Hit(int(idx[i]), float(vals[i])) for i in order]


class BM25:
    """Okapi BM25 with Lucene's idf over an inverted index.

    Args:
        docs: the corpus: strings (analysed with ``analyzer``), pre-tokenised lists of terms,
            or :class:`~llmnotes.rag.chunking.Chunk` objects (their ``search_text`` is indexed).
        k1: term-frequency saturation, ``>= 0`` (0 ignores repeats entirely).
        b: length normalisation in ``[0, 1]`` (0: none, 1: full).
        analyzer: text -> terms; default :class:`Analyzer()`.

    Example:
        >>> bm25 = BM25(["the cat sat", "the dog sat on the cat", "a bird"])
        >>> [h.index for h in bm25.search("cat", k=2)]
        [0, 1]
    """

    def __init__(self, docs: Sequence, k1: float = 1.5, b: float = 0.75,
                 analyzer: Analyzer | None = None):
        if isinstance(docs, (str, bytes)) or not hasattr(docs, "__len__"):
            raise TypeError(f"docs must be a list of documents, got {type(docs).__name__}")
        if len(docs) == 0:
            raise ValueError("docs is empty: BM25 needs at least one document to index")
        if not isinstance(k1, (int, float)) or not math.isfinite(k1) or k1 < 0:
            raise ValueError(f"k1 must be a finite number >= 0 (typical 1.2 to 2.0), got {k1!r}")
        if not isinstance(b, (int, float)) or not 0 <= b <= 1:
            raise ValueError(f"b must be in [0, 1] (typical 0.75), got {b!r}")
        self.k1, self.b = float(k1), float(b)
        self.analyzer = analyzer if analyzer is not None else Analyzer()
        self.doc_tokens = [self._tokens(d) for d in docs]
        self._build()

    def _tokens(self, doc) -> list[str]:
        if isinstance(doc, (list, tuple)):
            return list(doc)
        return self.analyzer(_text_of(doc))

    def _build(self) -> None:
        # Every token -> a term id (first come, first numbered), and the document it is in.
        # (map/chain/dict.fromkeys keep the per-token work in C: a Python loop is 10x slower.)
        flat = list(itertools.chain.from_iterable(self.doc_tokens))
        self.vocab: dict[str, int] = {t: i for i, t in enumerate(dict.fromkeys(flat))}
        term = np.fromiter(map(self.vocab.__getitem__, flat), dtype=np.int64,
                           count=len(flat))  # (total tokens,)
        lengths = np.fromiter(map(len, self.doc_tokens), dtype=np.int64, count=len(self.doc_tokens))
        doc = np.repeat(np.arange(len(self.doc_tokens), dtype=np.int64), lengths)
        # One sort does the indexing: unique (term, doc) keys come out grouped by term with
        # documents ascending, which is exactly the posting lists; their counts are the tfs.
        keys, tf = np.unique(term * len(self.doc_tokens) + doc, return_counts=True)
        self.post_docs = keys % len(self.doc_tokens)  # (nnz,) doc id of each posting
        tf = tf.astype(np.float64)  # (nnz,)
        counts_per_term = np.bincount(keys // len(self.doc_tokens), minlength=len(self.vocab))
        self.indptr = np.concatenate([[0], np.cumsum(counts_per_term)])  # (V + 1,)

        self.n_docs = len(self.doc_tokens)
        self.doc_len = np.array([len(x) for x in self.doc_tokens], dtype=np.float64)  # (N,)
        self.avgdl = float(self.doc_len.mean()) or 1.0  # all-empty corpus: avoid 0/0
        self.df = counts_per_term  # (V,) documents containing each term
        self.idf = np.log1p((self.n_docs - self.df + 0.5) / (self.df + 0.5))  # (V,)
        # Everything but the query: idf(t) * tf (k1 + 1) / (tf + k1 (1 - b + b |d| / avgdl)).
        norm = self.k1 * (1 - self.b + self.b * self.doc_len / self.avgdl)  # (N,)
        term_of_posting = np.repeat(np.arange(len(self.vocab)), counts_per_term)
        self.weights = self.idf[term_of_posting] * tf * (self.k1 + 1) / (tf + norm[self.post_docs])

    def __len__(self) -> int:
        return self.n_docs

    def _query_terms(self, query) -> list[str]:
        if isinstance(query, (list, tuple)):
            terms = list(query)
        elif isinstance(query, str):
            terms = self.analyzer(query)
        else:
            raise TypeError(f"query must be a str or a list of terms, got {type(query).__name__}")
        if not (query.strip() if isinstance(query, str) else terms):
            raise ValueError("query is empty: pass the words to search for")
        return terms

    def scores(self, query: str | Sequence[str]) -> np.ndarray:
        """BM25 score of every document for ``query``: ``FloatTensor``-like ``(N,)`` array.

        A term repeated in the query counts once per occurrence, as in Lucene and rank_bm25.
        """
        scores = np.zeros(self.n_docs)
        for term in self._query_terms(query):
            tid = self.vocab.get(term)
            if tid is None:  # a word no document contains adds nothing
                continue
            lo, hi = self.indptr[tid], self.indptr[tid + 1]
            scores[self.post_docs[lo:hi]] += self.weights[lo:hi]  # doc ids unique within a list
        return scores

    def scores_reference(self, query: str | Sequence[str]) -> np.ndarray:
        """The same scores, straight from the formula, one document at a time (slow)."""
        terms = self._query_terms(query)
        out = np.zeros(self.n_docs)
        for d, toks in enumerate(self.doc_tokens):
            tf_d = Counter(toks)
            for term in terms:
                if term not in self.vocab:
                    continue
                n = self.df[self.vocab[term]]
                idf = math.log(1 + (self.n_docs - n + 0.5) / (n + 0.5))
                tf = tf_d[term]
                out[d] += idf * tf * (self.k1 + 1) / (
                    tf + self.k1 * (1 - self.b + self.b * len(toks) / self.avgdl))
        return out

    def search(self, query: str | Sequence[str], k: int = 10) -> list[Hit]:
        """The ``k`` best documents, best first; only documents sharing a term with the query."""
        _check_k(k)
        scores = self.scores(query)
        return top_k(scores, k, np.flatnonzero(scores > 0))
