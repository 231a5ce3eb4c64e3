"""Retrieval-augmented generation: retrieve chunks of the site, cite them, answer from them.

* :mod:`~llmnotes.rag.chunking` -- Markdown pages -> ``Chunk`` (page, heading anchor, title);
* :mod:`~llmnotes.rag.bm25` -- ``Analyzer``, ``BM25`` (Lucene idf, inverted index);
* :mod:`~llmnotes.rag.dense` -- ``DenseRetriever`` (MiniLM, cosine), ``reciprocal_rank_fusion``,
  ``HybridRetriever``;
* :mod:`~llmnotes.rag.metrics` -- ``recall_at_k``, ``mrr``, ``ndcg_at_k`` and the evaluation set;
* :mod:`~llmnotes.rag.extractive` -- an offline answer quoted from the sources;
* :mod:`~llmnotes.rag.knowledge_graph` -- a knowledge graph of the site's pages;
* :mod:`~llmnotes.rag.pipeline` -- prompts under a token budget, local or remote generation, ``ask``.

Every public name is importable from here. The commands ``llmnotes ask`` and ``llmnotes
build-index`` are in ``llmnotes/cli/`` (``python -m llmnotes.rag build-index`` runs the latter).
"""

from llmnotes.rag.chunking import (Chunk, build_docs_snapshot, chunk_docs, chunk_markdown, heading_anchor,
                                   load_chunks, slugify)
from llmnotes.rag.bm25 import (Analyzer, BM25, Hit, STOP_WORDS, s_stem, top_k)
from llmnotes.rag.dense import (DenseRetriever, EmbeddingCache, HybridRetriever, SITE_EMBEDDINGS,
                                SentenceTransformerEmbedder, default_cache_dir, default_embedder,
                                embeddings_available, reciprocal_rank_fusion)
from llmnotes.rag.metrics import (EVAL_SET, EvalQuestion, evaluate, load_eval_set, mrr, ndcg_at_k, pages_of,
                                  recall_at_k, results_table, sections_of)
from llmnotes.rag.extractive import (Quote, extract_answer, format_quotes, sentences)
from llmnotes.rag.knowledge_graph import (ENTITY, KnowledgeGraph, NOT_ENTITIES, extract_entities,
                                          split_sentences)
from llmnotes.rag.pipeline import (Answer, INSTRUCTIONS, Prompt, SITE_DOCS, SNAPSHOT_OPTIONS, ask,
                                   build_prompt, build_retriever, compare_retrievers, encode_plain,
                                   generate_endpoint, generate_local, load_site_chunks, shipped_tokenizer,
                                   token_counter)

__all__ = [
    "Chunk", "slugify", "heading_anchor", "chunk_markdown", "chunk_docs", "build_docs_snapshot",
    "load_chunks", "STOP_WORDS", "s_stem", "Analyzer", "Hit", "top_k", "BM25", "SITE_EMBEDDINGS",
    "default_cache_dir", "EmbeddingCache", "embeddings_available", "SentenceTransformerEmbedder",
    "default_embedder", "DenseRetriever", "reciprocal_rank_fusion", "HybridRetriever", "EVAL_SET",
    "recall_at_k", "mrr", "ndcg_at_k", "EvalQuestion", "load_eval_set", "pages_of", "sections_of",
    "evaluate", "results_table", "Quote", "sentences", "extract_answer", "format_quotes", "ENTITY",
    "NOT_ENTITIES", "extract_entities", "split_sentences", "KnowledgeGraph", "SITE_DOCS",
    "SNAPSHOT_OPTIONS", "INSTRUCTIONS", "load_site_chunks", "build_retriever", "compare_retrievers",
    "token_counter", "Prompt", "build_prompt", "generate_local", "generate_endpoint", "Answer", "ask",
    "shipped_tokenizer", "encode_plain"
]
