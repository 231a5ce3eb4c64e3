"""Tests for llmnotes.rag's retrieval half: chunking, analyzer, BM25, fusion, metrics, prompts.

Oracles: hand-computed BM25 on a toy corpus; rank_bm25 and bm25s (see the notes on how their
variants relate); Python-Markdown's toc extension for anchors; scikit-learn's ndcg_score.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from llmnotes.rag.bm25 import BM25, Analyzer, Hit, s_stem, top_k
from llmnotes.rag.chunking import Chunk, chunk_markdown, heading_anchor, load_chunks, slugify
from llmnotes.rag.dense import reciprocal_rank_fusion
from llmnotes.rag import SITE_DOCS, SNAPSHOT_OPTIONS, build_prompt, chunk_docs
from llmnotes.rag.metrics import (EVAL_SET, load_eval_set, mrr, ndcg_at_k, pages_of,
                                     recall_at_k)

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"

# ---------------------------------------------------------------------------- analyzer


def test_analyzer_lowercases_drops_stop_words_and_folds_plurals():
    assert Analyzer()("The Queries of the Tokens!") == ["query", "token"]
    assert Analyzer(stop_words=None, stem=False)("The Queries") == ["the", "queries"]
    assert s_stem("class") == "class" and s_stem("bus") == "bus"


def test_analyzer_rejects_non_text():
    with pytest.raises(TypeError, match="text must be a str"):
        Analyzer()(123)


# ---------------------------------------------------------------------------- BM25

TOY = [["cat", "sat", "mat"], ["dog", "sat"], ["cat", "cat", "dog", "ran", "far", "away"]]


def test_bm25_matches_hand_computed_formula():
    # N=3, avgdl=(3+2+6)/3=11/3. "cat" is in 2 docs: idf = ln(1 + (3-2+0.5)/(2+0.5)) = ln(1.6).
    bm = BM25(TOY, k1=1.5, b=0.75)
    idf = math.log(1.6)
    avgdl = 11 / 3
    doc0 = idf * 1 * 2.5 / (1 + 1.5 * (0.25 + 0.75 * 3 / avgdl))
    doc2 = idf * 2 * 2.5 / (2 + 1.5 * (0.25 + 0.75 * 6 / avgdl))
    np.testing.assert_allclose(bm.scores(["cat"]), [doc0, 0.0, doc2], rtol=1e-12)
    assert math.isclose(doc0, 0.5119, abs_tol=5e-5) and math.isclose(doc2, 0.5574, abs_tol=5e-5)


def test_bm25_k1_zero_is_pure_idf_and_b_zero_ignores_length():
    bm = BM25(TOY, k1=0.0)
    np.testing.assert_allclose(bm.scores(["cat"]), [math.log(1.6), 0, math.log(1.6)])
    s = BM25([["a", "x"], ["a", "y", "z", "w", "v"]], b=0.0).scores(["a"])
    assert s[0] == s[1]


def _zipf_corpus(n_docs=300, vocab=80, seed=0):
    rng = np.random.default_rng(seed)
    words = [f"w{i}" for i in range(vocab)]
    p = 1 / np.arange(1, vocab + 1)
    p /= p.sum()
    return [list(rng.choice(words, size=rng.integers(1, 40), p=p)) for _ in range(n_docs)]


def test_bm25_fast_path_equals_reference_path():
    docs = _zipf_corpus()
    bm = BM25(docs, k1=1.2, b=0.6)
    for q in (["w0"], ["w1", "w7", "w7", "w60"], ["w79", "nope"]):
        np.testing.assert_allclose(bm.scores(q), bm.scores_reference(q), rtol=1e-12, atol=0)


def test_bm25_equals_rank_bm25_with_lucene_idf():
    # rank_bm25.BM25Okapi uses idf = ln((N - n + 0.5) / (n + 0.5)) and floors negative idfs at
    # epsilon * mean idf; its tf part is ours. Re-deriving its idf as Lucene's makes the two
    # formulas identical, so the scores must agree to rounding.
    rank_bm25 = pytest.importorskip("rank_bm25")

    class LuceneIdfOkapi(rank_bm25.BM25Okapi):
        def _calc_idf(self, nd):
            for word, n in nd.items():
                self.idf[word] = math.log(1 + (self.corpus_size - n + 0.5) / (n + 0.5))

    docs = _zipf_corpus(seed=1)
    ours, theirs = BM25(docs), LuceneIdfOkapi(docs, k1=1.5, b=0.75)
    for q in (["w0", "w2"], ["w3", "w3", "w50"], ["w11", "absent"]):
        np.testing.assert_allclose(ours.scores(q), theirs.get_scores(q), rtol=1e-10, atol=1e-12)


def test_bm25_equals_bm25s_lucene_up_to_the_k1_plus_1_factor():
    # bm25s' "lucene" method is Lucene's modern formula, which drops the constant (k1 + 1)
    # from the numerator; it changes no ranking. bm25s computes in float32.
    bm25s = pytest.importorskip("bm25s")
    docs = _zipf_corpus(seed=2)
    ours = BM25(docs, k1=1.2, b=0.75)
    theirs = bm25s.BM25(method="lucene", k1=1.2, b=0.75)
    theirs.index(docs, show_progress=False)
    for q in (["w0", "w5"], ["w9", "w9", "w40"]):
        np.testing.assert_allclose(ours.scores(q), theirs.get_scores(q) * 2.2, rtol=1e-5, atol=1e-6)


def test_bm25_search_orders_by_score_then_index_and_skips_non_matches():
    bm = BM25(["apple pie", "apple tart", "banana", "apple pie"])
    hits = bm.search("apple pie", k=10)
    assert [h.index for h in hits] == [0, 3, 1]  # docs 0 and 3 tie: lower index first
    assert hits[0].score == hits[1].score > hits[2].score > 0
    assert bm.search("cherry", k=3) == []
    assert bm.search("the", k=3) == []  # only a stop word: nothing to match


def test_top_k_agrees_with_full_sort():
    rng = np.random.default_rng(0)
    s = rng.integers(0, 20, size=500).astype(float)  # many ties
    expect = sorted(range(500), key=lambda i: (-s[i], i))[:17]
    assert [h.index for h in top_k(s, 17)] == expect


def test_bm25_indexes_chunks_with_title_and_heading():
    c = Chunk("all about the formula", "rag/bm25.md", "idf", "BM25", "Inverse document frequency")
    bm = BM25([c, Chunk("other", "x.md", "", "X", "X")])
    assert bm.search("inverse frequency", 1)[0].index == 0


@pytest.mark.parametrize("bad, err, msg", [
    (dict(docs=[]), ValueError, "docs is empty"),
    (dict(docs="a string"), TypeError, "docs must be a list"),
    (dict(docs=["a"], k1=-1), ValueError, "k1 must be"),
    (dict(docs=["a"], b=1.5), ValueError, "b must be in"),
    (dict(docs=[3.0]), TypeError, "documents must be"),
])
def test_bm25_bad_construction(bad, err, msg):
    with pytest.raises(err, match=msg):
        BM25(**bad)


@pytest.mark.parametrize("query, k, msg", [("", 3, "query is empty"), ("  ", 3, "query is empty"),
                                           ("cat", 0, "k must be a positive int"),
                                           ("cat", -2, "k must be a positive int"),
                                           ("cat", 2.5, "k must be a positive int")])
def test_bm25_bad_search(query, k, msg):
    with pytest.raises(ValueError, match=msg):
        BM25(["the cat"]).search(query, k)


# ---------------------------------------------------------------------------- fusion


def test_rrf_hand_computed():
    hits = reciprocal_rank_fusion([[7, 3, 5], [3, 9]], k=60)
    score = {h.index: h.score for h in hits}
    assert math.isclose(score[3], 1 / 62 + 1 / 61)
    assert math.isclose(score[7], 1 / 61) and math.isclose(score[9], 1 / 62)
    assert [h.index for h in hits] == [3, 7, 9, 5]  # 9 and 5 are both 1/62 and 1/63
    weighted = reciprocal_rank_fusion([[1], [2]], weights=[1.0, 2.0])
    assert [h.index for h in weighted] == [2, 1]
    with pytest.raises(ValueError, match="weights has 1 entries"):
        reciprocal_rank_fusion([[1], [2]], weights=[1.0])
    with pytest.raises(ValueError, match="k must be a number"):
        reciprocal_rank_fusion([[1]], k=-1)


# ---------------------------------------------------------------------------- metrics


def test_metrics_hand_computed():
    rankings = [["a", "b", "c", "d"], ["x", "y", "z"], ["p", "q"]]
    relevant = [{"b", "d"}, {"x"}, {"r"}]
    assert recall_at_k(rankings, relevant, 1) == pytest.approx((0 + 1 + 0) / 3)
    assert recall_at_k(rankings, relevant, 2) == pytest.approx((0.5 + 1 + 0) / 3)
    assert recall_at_k(rankings, relevant, 4) == pytest.approx((1 + 1 + 0) / 3)
    assert mrr(rankings, relevant) == pytest.approx((1 / 2 + 1 + 0) / 3)
    # query 1: DCG = 1/log2(3) + 1/log2(5); IDCG = 1 + 1/log2(3)
    q1 = (1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(rankings, relevant, 10) == pytest.approx((q1 + 1 + 0) / 3)


def test_ndcg_matches_sklearn_graded():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(3)
    for _ in range(20):
        n = 12
        grades = rng.integers(0, 4, size=n).astype(float)
        if grades.sum() == 0:
            grades[0] = 1
        scores = rng.permutation(n).astype(float)  # distinct: no tie handling differences
        ranked = list(np.argsort(-scores))
        rel = {i: grades[i] for i in range(n) if grades[i] > 0}
        for k in (1, 3, 10):
            ours = ndcg_at_k([ranked], [rel], k)
            theirs = sklearn_metrics.ndcg_score([grades], [scores], k=k)
            assert ours == pytest.approx(theirs, abs=1e-12)


def test_metrics_bad_input():
    with pytest.raises(ValueError, match="rankings has 1 queries but relevant has 2"):
        mrr([["a"]], [{"a"}, {"b"}])
    with pytest.raises(ValueError, match="rankings is empty"):
        recall_at_k([], [], 1)
    with pytest.raises(ValueError, match="k must be a positive int"):
        ndcg_at_k([["a"]], [{"a"}], 0)


# ---------------------------------------------------------------------------- chunking

PAGE = """---
title: ignored front matter
---
# Retrieval, step by step

Intro paragraph about `BM25`.

## Why *words* matter {#why}

Words.

## The `idf` term: $\\log$ & friends

""" + ("Long sentence about inverse document frequency. " * 40) + """

```python
# ## not a heading
x = 1
```

## Why words matter

Again.
"""


def test_slugify_matches_python_markdown():
    from markdown.extensions.toc import slugify as md_slugify
    for s in ["BM25, step by step!", "Top-p (nucleus) sampling", "Ünïcode — dash", "a  b_c"]:
        assert slugify(s) == md_slugify(s, "-")


def _rendered_ids(text: str) -> list[str]:
    import markdown
    if text.startswith("---\n") and "\n---\n" in text[4:]:  # MkDocs strips front matter
        text = text[4:].split("\n---\n", 1)[1]
    md = markdown.Markdown(extensions=["toc", "attr_list", "pymdownx.arithmatex",
                                       "pymdownx.superfences", "admonition", "md_in_html"],
                           extension_configs={"pymdownx.arithmatex": {"generic": True}})
    md.convert(text)

    def walk(tokens):
        for t in tokens:
            yield t["id"]
            yield from walk(t["children"])
    return list(walk(md.toc_tokens))


def test_chunk_anchors_equal_python_markdown_toc_ids():
    chunks = chunk_markdown(PAGE, "rag/x.md", max_len=400, overlap=60)
    anchors = list(dict.fromkeys(c.anchor for c in chunks))
    assert anchors == _rendered_ids(PAGE)
    assert anchors == ["retrieval-step-by-step", "why", "the-idf-term-log-friends",
                       "why-words-matter"]


def test_chunk_sizes_overlap_titles_and_code():
    chunks = chunk_markdown(PAGE, "rag/x.md", max_len=400, overlap=60)
    assert all(len(c.text) <= 400 for c in chunks)
    assert {c.title for c in chunks} == {"Retrieval, step by step"}
    idf = [c for c in chunks if c.anchor == "the-idf-term-log-friends"]
    assert len(idf) >= 5
    assert idf[1].text.split(" \u2026 ")[0] in idf[0].text  # overlap repeats the previous end
    assert any("x = 1" in c.text for c in idf)
    assert not any("x = 1" in c.text for c in
                   chunk_markdown(PAGE, "rag/x.md", max_len=400, overlap=60, keep_code=False))
    assert "front matter" not in " ".join(c.text for c in chunks)
    assert chunks[0].url == "rag/x.md#retrieval-step-by-step"


def test_chunk_markdown_bad_input():
    with pytest.raises(ValueError, match="overlap must be"):
        chunk_markdown("x", "a.md", max_len=10, overlap=10)
    with pytest.raises(ValueError, match="max_len must be"):
        chunk_markdown("x", "a.md", max_len=0)
    with pytest.raises(TypeError, match="text must be a str"):
        chunk_markdown(b"x", "a.md")


def test_heading_anchor_dedup():
    used: set[str] = set()
    assert [heading_anchor("Setup", used)[1] for _ in range(3)] == ["setup", "setup_1", "setup_2"]


def test_every_site_anchor_exists_on_the_rendered_page():
    for page in sorted(DOCS.rglob("*.md")):
        text = page.read_text(encoding="utf-8")
        ids = set(_rendered_ids(text))
        for c in chunk_markdown(text, page.name):
            assert c.anchor == "" or c.anchor in ids, (page, c.anchor)


def test_shipped_snapshot_is_up_to_date_with_docs():
    fresh = chunk_docs(DOCS, **SNAPSHOT_OPTIONS)
    shipped = load_chunks(SITE_DOCS)
    assert shipped == fresh, ("llmnotes/assets/site_docs.jsonl is stale: run "
                              "'python -m llmnotes.rag build-index docs'")


# ---------------------------------------------------------------------------- eval set


def test_eval_set_is_large_and_every_page_exists():
    questions = load_eval_set(EVAL_SET)
    assert len(questions) >= 60
    assert len({q.question for q in questions}) == len(questions)
    for q in questions:
        for p in q.pages:
            assert (DOCS / p).is_file(), f"{q.question!r} cites missing page {p}"
    parts = {p.split("/")[0] for q in questions for p in q.pages}
    assert len(parts) >= 5


def test_eval_set_anchors_exist():
    for q in load_eval_set(EVAL_SET):
        ids = set().union(*(_rendered_ids((DOCS / p).read_text(encoding="utf-8"))
                            for p in q.pages))
        for a in q.anchors:
            assert a in ids, f"{q.question!r}: anchor #{a} not on {q.pages}"


def test_pages_of_dedupes_in_rank_order():
    chunks = [Chunk("t", "a.md", "", "A", "A"), Chunk("t", "b.md", "", "B", "B"),
              Chunk("t", "a.md", "x", "A", "X")]
    assert pages_of([Hit(2, 3.0), Hit(1, 2.0), Hit(0, 1.0)], chunks) == ["a.md", "b.md"]


# ---------------------------------------------------------------------------- prompts


def _count(s: str) -> int:
    return len(s.split())


def _chunks(n, words=50):
    return [Chunk(" ".join(f"c{i}w{j}" for j in range(words)), f"p{i}.md", f"a{i}", f"T{i}",
                  f"H{i}") for i in range(n)]


def test_prompt_numbers_sources_in_rank_order():
    p = build_prompt("what is x?", _chunks(3), _count, max_tokens=10_000)
    assert p.dropped == 0 and [c.path for c in p.sources] == ["p0.md", "p1.md", "p2.md"]
    assert "[1] T0 / H0 (p0.md#a0)" in p.text and "[3] T2 / H2 (p2.md#a2)" in p.text
    assert p.text.endswith("Question: what is x?\nAnswer:")
    assert p.n_tokens == _count(p.text)


def test_prompt_budget_drops_lowest_ranked_first_and_cuts_the_boundary_chunk():
    full = build_prompt("q?", _chunks(3), _count, max_tokens=10_000).n_tokens
    for budget in (full - 1, full - 30, full - 80, full - 130):
        p = build_prompt("q?", _chunks(3), _count, max_tokens=budget)
        assert p.n_tokens <= budget
        assert [c.path for c in p.sources] == [f"p{i}.md" for i in range(len(p.sources))]
        assert p.dropped >= 1
    p = build_prompt("q?", _chunks(3), _count, max_tokens=full - 20)
    assert len(p.sources) == 3 and p.text.count("\u2026") == 1  # third chunk cut to fit


def test_prompt_bad_input():
    with pytest.raises(ValueError, match="question must be a non-empty str"):
        build_prompt("  ", _chunks(1), _count)
    with pytest.raises(ValueError, match="alone take"):
        build_prompt("q?", _chunks(1), _count, max_tokens=5)
    with pytest.raises(ValueError, match="max_tokens must be a positive int"):
        build_prompt("q?", _chunks(1), _count, max_tokens=0)


def test_snapshot_roundtrip(tmp_path):
    from llmnotes.rag import build_docs_snapshot
    (tmp_path / "d" / "part").mkdir(parents=True)
    (tmp_path / "d" / "part" / "p.md").write_text("# P\n\nhello\n\n## S\n\nworld\n",
                                                 encoding="utf-8")
    n = build_docs_snapshot(tmp_path / "d", tmp_path / "out.jsonl")
    rows = [json.loads(x) for x in (tmp_path / "out.jsonl").read_text(encoding="utf-8").split("\n")
            if x]
    assert n == 2 == len(rows) and rows[1]["anchor"] == "s" and rows[1]["path"] == "part/p.md"
    assert load_chunks(tmp_path / "out.jsonl")[1] == Chunk("world", "part/p.md", "s", "P", "S")
    (tmp_path / "d" / "part" / "flashcards.md").write_text("# F\n\ncard\n", encoding="utf-8")
    assert len(chunk_docs(tmp_path / "d")) == 3
    assert len(chunk_docs(tmp_path / "d", exclude=["*/flashcards.md"])) == 2


def test_evaluate_and_table_on_a_toy_site():
    from llmnotes.rag import ask, build_retriever
    from llmnotes.rag.metrics import EvalQuestion, evaluate, results_table
    chunks = [Chunk("bm25 ranks by shared words and idf", "rag/bm25.md", "a", "BM25", "BM25"),
              Chunk("embeddings map text to vectors", "rag/dense.md", "b", "Dense", "Dense"),
              Chunk("more about idf and term frequency", "rag/bm25.md", "c", "BM25", "Idf")]
    qs = [EvalQuestion("what is idf", ["rag/bm25.md"]),
          EvalQuestion("vectors for text", ["rag/dense.md"]),
          EvalQuestion("unrelated words only", ["rag/dense.md"])]
    m = evaluate(build_retriever(chunks, "bm25"), chunks, qs)
    assert m["recall@1"] == pytest.approx(2 / 3) and m["MRR"] == pytest.approx(2 / 3)
    qs_sec = [EvalQuestion("term frequency", ["rag/bm25.md"], ["c"]), qs[1]]  # qs[1]: no anchor
    sec = evaluate(build_retriever(chunks, "bm25"), chunks, qs_sec, level="section")
    assert sec["recall@1"] == 1.0  # only the anchored question counts, and chunk "c" is first
    with pytest.raises(ValueError, match="level must be"):
        evaluate(build_retriever(chunks, "bm25"), chunks, qs, level="chunk")
    table = results_table({"BM25": m})
    assert table.splitlines()[0] == "| retriever | recall@1 | recall@5 | MRR | nDCG@10 |"
    assert "| BM25 | 0.667 |" in table
    with pytest.raises(ValueError, match="retriever kind must be one of"):
        build_retriever(chunks, "tfidf")
    with pytest.raises(ValueError, match="k must be a positive int"):
        ask("what is idf", build_retriever(chunks, "bm25"), chunks, k=0, count_tokens=len)
    with pytest.raises(ValueError, match="lists no answering page"):
        EvalQuestion("q?", [])
    a = ask("what is idf", build_retriever(chunks, "bm25"), chunks, k=2, count_tokens=_count,
            generate_fn=lambda p: f"{p.count(chr(10) + '[')} sources")
    assert a.text == "2 sources" and a.prompt.sources[0].anchor in {"a", "c"}


@pytest.mark.parametrize("module", ["llmnotes.rag.bm25", "llmnotes.rag.chunking", "llmnotes.rag.metrics",
                                    "llmnotes.rag.knowledge_graph"])
def test_docstring_examples_run(module):
    import doctest
    import importlib
    result = doctest.testmod(importlib.import_module(module))
    assert result.attempted > 0 and result.failed == 0
