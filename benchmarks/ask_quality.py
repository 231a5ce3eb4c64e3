"""Quality of `llmnotes ask`'s offline (extractive) answers on the site's RAG evaluation set.

    python benchmarks/ask_quality.py [--write]

For each of the questions in ``llmnotes/assets/rag_eval.jsonl`` (each names the page, and for
most the section, that answers it), ``ask`` retrieves five sections and quotes the three
sentences that best match the question. An answer **hits** when at least one quoted sentence
comes from a gold section (from a gold page, for questions that name no section).

Why this criterion: the evaluation set was written by marking, for every question, the section
whose text answers it. A quoted sentence from that section puts the answer's own words in front
of the reader, with a citation to where the rest is; a sentence from elsewhere may be related
but is not what the question was written against. It is strict (a right answer quoted from a
second section that also explains the topic counts as a miss) and cannot be gamed by quoting
more: the number of quoted sentences is fixed at three.

``--write`` stores the numbers in ``benchmarks/results/ask_quality.json`` (read by the RAG
evaluation page) and prints the Markdown table for ``benchmarks/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
from pathlib import Path

from llmnotes.rag.dense import default_embedder, embeddings_available
from llmnotes.rag.extractive import extract_answer
from llmnotes.rag import build_retriever, load_site_chunks
from llmnotes.rag.metrics import load_eval_set
from llmnotes.utils import atomic_write_text

OUT = Path(__file__).parent / "results" / "ask_quality.json"


def is_gold(chunk, question) -> bool:
    if chunk.path not in question.pages:
        return False
    return not question.anchors or chunk.anchor in question.anchors


def evaluate(k: int = 5, n: int = 3, retriever_kind: str = "auto") -> dict:
    chunks = load_site_chunks()
    retriever = build_retriever(chunks, retriever_kind)
    embed = default_embedder() if embeddings_available() else None
    questions = load_eval_set()
    hits, retrieved, examples = 0, 0, []
    for q in questions:
        found = [chunks[h.index] for h in retriever.search(q.question, k)]
        quotes = extract_answer(q.question, found, n=n, embed=embed)
        hit = any(is_gold(found[x.source - 1], q) for x in quotes)
        hits += hit
        retrieved += any(is_gold(c, q) for c in found)
        if len(examples) < 3 and hit:
            examples.append({"question": q.question, "quote": quotes[0].text,
                             "source": found[quotes[0].source - 1].url})
    return {"questions": len(questions), "k": k, "sentences": n,
            "retriever": retriever_kind if retriever_kind != "auto" else
            ("hybrid+rerank" if embed is not None else "bm25"),
            "scorer": "MiniLM cosine" if embed is not None else "BM25",
            "answer_hit_rate": hits / len(questions),
            "gold_section_retrieved": retrieved / len(questions),
            "examples": examples,
            "date": datetime.date.today().isoformat(), "python": platform.python_version()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--write", action="store_true")
    args = p.parse_args()
    r = evaluate()
    print(f"{r['questions']} questions, retriever {r['retriever']}, sentence scorer {r['scorer']}")
    print(f"gold section among the 5 retrieved: {r['gold_section_retrieved']:.1%}")
    print(f"answers quoting a gold sentence:    {r['answer_hit_rate']:.1%}")
    if args.write:
        OUT.parent.mkdir(exist_ok=True)
        atomic_write_text(OUT, json.dumps(r, indent=1) + "\n")
        print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
