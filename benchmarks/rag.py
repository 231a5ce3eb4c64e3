"""Retrieval benchmark: quality on the site's eval set, and BM25 speed vs rank_bm25 and bm25s.

    python benchmarks/rag.py [--docs 100000] [--queries 50] [--write]

1. Quality: BM25 vs dense (all-MiniLM-L6-v2) vs hybrid (RRF) vs hybrid + rerank on
   ``llmnotes/assets/rag_eval.jsonl`` over the shipped docs snapshot: recall@1/@5, MRR,
   nDCG@10, at page level.
2. Speed: a synthetic corpus of ``--docs`` documents whose words follow a Zipf law (word ``r``
   has probability proportional to ``1 / r**1.1`` over a 50,000-word vocabulary; lengths
   uniform in [20, 120)). The same pre-tokenised corpus and queries go to llmnotes' BM25,
   rank_bm25's BM25Okapi (with its idf re-derived as Lucene's so the scores are comparable)
   and bm25s (method="lucene"; its scores times ``k1 + 1`` equal ours). Reported: indexing
   time, and median latency of a full score vector per query. Scores are checked equal
   before any time is reported.

``--write`` replaces this benchmark's section of ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import math
import platform
import statistics
import time
from pathlib import Path

import numpy as np

from llmnotes.rag.bm25 import BM25
from llmnotes.utils import atomic_write_text

RESULTS = Path(__file__).parent / "RESULTS.md"
BEGIN, END = "<!-- rag-benchmark:begin -->", "<!-- rag-benchmark:end -->"


def zipf_corpus(n_docs: int, vocab: int = 50_000, a: float = 1.1, seed: int = 0):
    rng = np.random.default_rng(seed)
    p = 1.0 / np.arange(1, vocab + 1) ** a
    p /= p.sum()
    lengths = rng.integers(20, 120, size=n_docs)
    ids = rng.choice(vocab, size=int(lengths.sum()), p=p)
    words = np.array([f"w{i}" for i in range(vocab)])
    flat = words[ids].tolist()
    out, pos = [], 0
    for n in lengths:
        out.append(flat[pos:pos + n])
        pos += n
    queries = [words[rng.choice(vocab, size=rng.integers(2, 6), p=p)].tolist()
               for _ in range(200)]
    return out, queries


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def speed(n_docs: int, n_queries: int) -> str:
    import bm25s
    import rank_bm25

    class LuceneIdfOkapi(rank_bm25.BM25Okapi):
        def _calc_idf(self, nd):
            for word, n in nd.items():
                self.idf[word] = math.log(1 + (self.corpus_size - n + 0.5) / (n + 0.5))

    docs, queries = zipf_corpus(n_docs)
    queries = queries[:n_queries]
    ours, t_ours = timed(lambda: BM25(docs, k1=1.5, b=0.75))
    rank, t_rank = timed(lambda: LuceneIdfOkapi(docs, k1=1.5, b=0.75))

    def build_bm25s():
        m = bm25s.BM25(method="lucene", k1=1.5, b=0.75)
        m.index(docs, show_progress=False)
        return m
    fast, t_fast = timed(build_bm25s)

    # Equal scores first: a fast wrong answer is no answer.
    for q in queries[:10]:
        s = ours.scores(q)
        np.testing.assert_allclose(s, rank.get_scores(q), rtol=1e-9, atol=1e-9)
        known = [w for w in q if w in fast.vocab_dict]  # bm25s rejects unseen words
        if known:
            np.testing.assert_allclose(ours.scores(known), fast.get_scores(known) * 2.5,
                                       rtol=1e-4, atol=1e-4)
    # Interleave the three per query so machine noise hits all alike.
    lat = {"llmnotes BM25.scores": [], "llmnotes BM25.search (top 10)": [],
           "rank_bm25 get_scores": [], "bm25s get_scores": []}
    for q in queries:
        known = [w for w in q if w in fast.vocab_dict]
        lat["llmnotes BM25.scores"].append(timed(lambda: ours.scores(q))[1])
        lat["llmnotes BM25.search (top 10)"].append(timed(lambda: ours.search(q, 10))[1])
        lat["rank_bm25 get_scores"].append(timed(lambda: rank.get_scores(q))[1])
        if known:
            lat["bm25s get_scores"].append(timed(lambda: fast.get_scores(known))[1])
    med = {k: statistics.median(v) for k, v in lat.items()}
    base = med["llmnotes BM25.scores"]
    rows = [f"Synthetic corpus: {n_docs:,} documents, {sum(map(len, docs)):,} tokens, "
            f"Zipf(1.1) over 50,000 words; {len(queries)} queries of 2-5 words. Scores checked "
            "equal (rank_bm25 with Lucene idf: rtol 1e-9; bm25s x (k1+1): rtol 1e-4, float32).",
            "", "| implementation | index time (s) | median query latency (ms) | latency / llmnotes BM25.scores |",
            "|---|---:|---:|---:|"]
    index_t = {"llmnotes BM25.scores": t_ours, "llmnotes BM25.search (top 10)": t_ours,
               "rank_bm25 get_scores": t_rank, "bm25s get_scores": t_fast}
    for name, m in med.items():
        rows.append(f"| {name} | {index_t[name]:.1f} | {m * 1e3:.2f} | {m / base:.1f}x |")
    rows += ["", "Indexing is not where llmnotes wins: like rank_bm25 it hashes every token in a "
             "Python dict, then sorts the (term, doc) pairs into posting lists. The query side is "
             "the point: it touches only the query terms' postings, where rank_bm25 walks every "
             "document's dict for every term."]
    return "\n".join(rows)


def quality() -> str:
    from llmnotes.rag import compare_retrievers
    from llmnotes.rag.metrics import load_eval_set, results_table

    questions = load_eval_set()
    n, n_sec = len(questions), sum(bool(q.anchors) for q in questions)
    return (f"Eval set: {n} questions about the site (`llmnotes/assets/rag_eval.jsonl`) over "
            "the shipped docs snapshot. Page level (any chunk of the answering page counts):\n\n"
            + results_table(compare_retrievers()) + f"\n\nSection level ({n_sec} questions with "
            "an anchor; only a chunk under the answering heading counts):\n\n"
            + results_table(compare_retrievers(level="section")))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=100_000)
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = ap.parse_args()
    machine = f"{platform.machine()}, {__import__('os').cpu_count()} CPU cores, no GPU used"
    text = "\n".join([
        BEGIN, "## RAG: retrieval quality and BM25 speed (`benchmarks/rag.py`)", "",
        f"Command: `python benchmarks/rag.py --docs {args.docs} --queries {args.queries}`. "
        f"Measured {datetime.date.today()} on {machine} (latencies vary between runs, ratios less so).",
        "", "### Retrieval quality", "", quality(), "",
        "### BM25 speed", "", speed(args.docs, args.queries), END])
    print(text)
    if args.write:
        old = RESULTS.read_text(encoding="utf-8") if RESULTS.exists() else "# Benchmark results\n"
        if BEGIN in old and END in old:
            new = old[:old.index(BEGIN)] + text + old[old.index(END) + len(END):]
        else:
            new = old.rstrip("\n") + "\n\n" + text + "\n"
        atomic_write_text(RESULTS, new)


if __name__ == "__main__":
    main()
