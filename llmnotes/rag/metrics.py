"""Measuring retrieval: recall@k, MRR, nDCG@k, and the site's own evaluation set.

Every metric takes a batch: ``rankings`` is one ranked list of ids per query (best first) and
``relevant`` the matching collection of relevant ids per query (a dict ``id -> grade`` for
graded relevance in nDCG). Each returns the mean over queries.

- recall@k: the fraction of a query's relevant ids found in its top k.
- MRR (mean reciprocal rank; Voorhees, 1999, TREC-8 QA track): ``1 / rank`` of the first
  relevant id, 0 if none is retrieved.
- nDCG@k (Järvelin & Kekäläinen, 2002): gains discounted by ``log2(rank + 1)``, divided by
  the best possible ordering's value.

The evaluation set, ``llmnotes/assets/rag_eval.jsonl``, holds questions about this site's
pages with the page (and where useful the section) that answers each. Retrieval returns
chunks; :func:`pages_of` turns a ranked chunk list into a ranked page list (first occurrence
wins), and the metrics are computed over pages.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Collection, Mapping, Sequence

__all__ = ["recall_at_k", "mrr", "ndcg_at_k", "EvalQuestion", "load_eval_set", "pages_of",
           "sections_of", "evaluate", "results_table", "EVAL_SET"]

EVAL_SET = Path(__file__).resolve().parents[1] / "assets" / "rag_eval.jsonl"


def _check(rankings, relevant, k=None) -> None:
    if len(rankings) != len(relevant):
        raise ValueError(f"rankings has {len(rankings)} queries but relevant has "
                         f"{len(relevant)}; pass one relevant set per ranking")
    if len(rankings) == 0:
        raise ValueError("rankings is empty: pass at least one query's ranking")
    if k is not None and (isinstance(k, bool) or not isinstance(k, int) or k <= 0):
        raise ValueError(f"k must be a positive int, got {k!r}")


def recall_at_k(rankings: Sequence[Sequence], relevant: Sequence[Collection], k: int) -> float:
    """Mean over queries of ``|relevant ∩ top k| / |relevant|``.

    >>> recall_at_k([["a", "b", "c"]], [{"c", "z"}], k=3)
    0.5
    """
    _check(rankings, relevant, k)
    total = 0.0
    for ranked, rel in zip(rankings, relevant):
        if not rel:
            raise ValueError("a query has no relevant ids; recall is undefined for it")
        total += len(set(ranked[:k]) & set(rel)) / len(set(rel))
    return total / len(rankings)


def mrr(rankings: Sequence[Sequence], relevant: Sequence[Collection]) -> float:
    """Mean reciprocal rank of the first relevant id (0 for a query that finds none).

    >>> mrr([["a", "b"], ["x", "y"]], [{"b"}, {"q"}])
    0.25
    """
    _check(rankings, relevant)
    total = 0.0
    for ranked, rel in zip(rankings, relevant):
        rank = next((i for i, d in enumerate(ranked, start=1) if d in rel), None)
        total += 1.0 / rank if rank else 0.0
    return total / len(rankings)


def ndcg_at_k(rankings: Sequence[Sequence], relevant: Sequence[Collection | Mapping],
              k: int) -> float:
    """Mean normalised discounted cumulative gain at ``k``.

    ``DCG@k = sum_{i=1..k} gain(d_i) / log2(i + 1)``, gain 1 for a relevant id (or its grade
    when ``relevant`` holds dicts); nDCG divides by the DCG of the ideal ranking.
    """
    _check(rankings, relevant, k)
    total = 0.0
    for ranked, rel in zip(rankings, relevant):
        grades = dict(rel) if isinstance(rel, Mapping) else {d: 1.0 for d in rel}
        dcg = sum(grades.get(d, 0.0) / math.log2(i + 1)
                  for i, d in enumerate(ranked[:k], start=1))
        ideal = sorted(grades.values(), reverse=True)[:k]
        idcg = sum(g / math.log2(i + 1) for i, g in enumerate(ideal, start=1))
        total += dcg / idcg if idcg > 0 else 0.0
    return total / len(rankings)


@dataclass
class EvalQuestion:
    """A question and where on the site its answer is (``pages``; ``anchors`` optional)."""

    question: str
    pages: list[str]
    anchors: list[str] = field(default_factory=list)

    def __post_init__(self):
        if not self.question.strip():
            raise ValueError("question is empty")
        if not self.pages:
            raise ValueError(f"question {self.question!r} lists no answering page")


def load_eval_set(path: str | Path = EVAL_SET) -> list[EvalQuestion]:
    """Read the evaluation questions (JSON lines: question, pages, optional anchors)."""
    with Path(path).open(encoding="utf-8") as f:
        return [EvalQuestion(**json.loads(line)) for line in f if line.strip()]


def pages_of(hits, chunks) -> list[str]:
    """Ranked chunk hits -> ranked distinct page paths (a page ranks where its best chunk does)."""
    return list(dict.fromkeys(chunks[h.index].path for h in hits))


def sections_of(hits, chunks) -> list[str]:
    """Ranked chunk hits -> ranked distinct ``page#anchor`` sections."""
    return list(dict.fromkeys(f"{chunks[h.index].path}#{chunks[h.index].anchor}" for h in hits))


def evaluate(retriever, chunks, questions: Sequence[EvalQuestion], depth: int = 50,
             level: str = "page") -> dict:
    """Recall@1/@5, MRR and nDCG@10 of ``retriever`` (anything with ``.search(q, k)``).

    ``level="page"``: a question is answered by any chunk of its pages. ``level="section"``:
    only by a chunk under one of its anchors (questions without anchors are skipped).
    """
    if level == "page":
        rankings = [pages_of(retriever.search(q.question, depth), chunks) for q in questions]
        relevant = [set(q.pages) for q in questions]
    elif level == "section":
        questions = [q for q in questions if q.anchors]
        rankings = [sections_of(retriever.search(q.question, depth), chunks) for q in questions]
        relevant = [{f"{p}#{a}" for p in q.pages for a in q.anchors} for q in questions]
    else:
        raise ValueError(f"level must be 'page' or 'section', got {level!r}")
    return {"recall@1": recall_at_k(rankings, relevant, 1),
            "recall@5": recall_at_k(rankings, relevant, 5),
            "MRR": mrr(rankings, relevant),
            "nDCG@10": ndcg_at_k(rankings, relevant, 10)}


def results_table(results: Mapping[str, Mapping[str, float]]) -> str:
    """A Markdown table: one row per retriever, one column per metric."""
    metrics = list(next(iter(results.values())))
    lines = ["| retriever | " + " | ".join(metrics) + " |",
             "|---|" + "---:|" * len(metrics)]
    for name, row in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{row[m]:.3f}" for m in metrics) + " |")
    return "\n".join(lines)
