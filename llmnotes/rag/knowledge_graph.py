"""A small knowledge graph extracted from text with patterns, and query expansion with it.

Entities are found by their *shape*: acronyms and mixed-case technical names (``BM25``,
``LoRA``, ``GPT-2``, ``LLM.int8``), which is how this site writes its concepts. Two relations:

- ``co-occurs``: two entities in the same sentence; the edge weight counts such sentences.
  Neighbours are ranked by ``w(a, b) / sqrt(n_a * n_b)`` (``n``: sentences mentioning the
  entity), a cosine that keeps hubs such as "PyTorch" from being everyone's neighbour.
- ``is-a``: "*Entity* is a/an/the *phrase*", a typed edge from an entity to a description.

Cheap and transparent, and measured on the docs' evaluation set (docs/rag/knowledge-graph.md):
naive expansion with graph neighbours tends to drift queries as often as it helps them.
"""

from __future__ import annotations

import math
import re
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Iterable

__all__ = ["ENTITY", "NOT_ENTITIES", "extract_entities", "split_sentences", "KnowledgeGraph"]

#: Acronyms (``KV``, ``GPTQ``, ``NF4``) and mixed-case names (``LoRA``, ``PyTorch``), with
#: optional ``.``/``-`` parts (``GPT-2``, ``LLM.int8``).
ENTITY = re.compile(r"\b(?:[A-Z][a-z]*[A-Z0-9]\w*|[A-Z]{2,}[a-z]?)(?:[.-]\w+)*")
#: Things of that shape that are not concepts of the subject: units and generic acronyms.
NOT_ENTITIES = frozenset({"CPU", "CPUs", "GPU", "GPUs", "API", "CI", "OK", "GB", "MB", "KB",
                          "KiB", "MiB", "GiB", "TB", "ID", "IDs", "URL", "HTTP", "JSON", "PR"})
_IS_A = re.compile(r"(" + ENTITY.pattern + r") (?:is|are) (?:a|an|the) ([a-z][a-z -]{3,40}?)[,.;:(]")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def extract_entities(text: str) -> set[str]:
    """Entity names in ``text``.

    >>> sorted(extract_entities("QLoRA stores the base model in NF4 on a GPU."))
    ['NF4', 'QLoRA']
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    return {m.group(0) for m in ENTITY.finditer(text)} - NOT_ENTITIES


def split_sentences(text: str) -> list[str]:
    """Split after ``.``, ``!`` or ``?`` followed by whitespace (good enough for prose)."""
    return [s for s in _SENTENCE_END.split(text) if s.strip()]


@dataclass
class KnowledgeGraph:
    """Entities, weighted co-occurrence edges and is-a facts.

    Build with :meth:`from_texts` (or :meth:`from_chunks`); query with :meth:`neighbours`,
    :meth:`expand_query`; hand to networkx with :meth:`to_networkx`.
    """

    mentions: Counter = field(default_factory=Counter)  # entity -> sentences mentioning it
    adj: dict = field(default_factory=lambda: defaultdict(Counter))  # a -> {b: weight}
    is_a: list = field(default_factory=list)  # (entity, description, source)

    @classmethod
    def from_texts(cls, texts: Iterable[str], sources: Iterable[str] | None = None
                   ) -> "KnowledgeGraph":
        """Extract the graph from ``texts`` (``sources`` label is-a facts, e.g. chunk URLs)."""
        texts = list(texts)
        sources = list(sources) if sources is not None else [""] * len(texts)
        if len(sources) != len(texts):
            raise ValueError(f"sources has {len(sources)} entries for {len(texts)} texts")
        g = cls()
        for text, source in zip(texts, sources):
            for sentence in split_sentences(text):
                ents = sorted(extract_entities(sentence))
                g.mentions.update(ents)
                for i, a in enumerate(ents):
                    for b in ents[i + 1:]:
                        g.adj[a][b] += 1
                        g.adj[b][a] += 1
                for m in _IS_A.finditer(sentence):
                    if m.group(1) not in NOT_ENTITIES:
                        g.is_a.append((m.group(1), m.group(2), source))
        return g

    @classmethod
    def from_chunks(cls, chunks) -> "KnowledgeGraph":
        """The graph of :class:`~llmnotes.rag.chunking.Chunk` texts; is-a facts cite chunk URLs."""
        return cls.from_texts([c.text for c in chunks], [c.url for c in chunks])

    def __contains__(self, entity: str) -> bool:
        return entity in self.mentions

    @property
    def n_edges(self) -> int:
        return sum(len(v) for v in self.adj.values()) // 2

    def neighbours(self, entity: str, n: int = 3, min_weight: int = 2) -> list[tuple[str, float]]:
        """The ``n`` entities most associated with ``entity``: ``(name, cosine)``, best first.

        Edges seen in fewer than ``min_weight`` sentences are ignored (one sentence is noise).
        """
        if n <= 0:
            raise ValueError(f"n must be a positive int, got {n!r}")
        scored = [(other, w / math.sqrt(self.mentions[entity] * self.mentions[other]))
                  for other, w in self.adj.get(entity, {}).items() if w >= min_weight]
        return sorted(scored, key=lambda x: (-x[1], x[0]))[:n]

    def expand_query(self, query: str, n: int = 2, min_weight: int = 2) -> str:
        """``query`` plus the top ``n`` neighbours of each entity it mentions (not already in it)."""
        if not isinstance(query, str) or not query.strip():
            raise ValueError(f"query must be a non-empty str, got {query!r}")
        extra: list[str] = []
        for entity in sorted(extract_entities(query)):
            if entity in self:
                extra += [o for o, _ in self.neighbours(entity, n, min_weight)
                          if o not in query and o not in extra]
        return f"{query} {' '.join(extra)}" if extra else query

    def to_networkx(self):
        """A ``networkx.Graph`` with ``weight`` on co-occurrence edges (networkx imported lazily)."""
        import networkx as nx

        g = nx.Graph()
        g.add_nodes_from((e, {"mentions": c}) for e, c in self.mentions.items())
        for a, nbrs in self.adj.items():
            for b, w in nbrs.items():
                if a < b:
                    g.add_edge(a, b, weight=w)
        return g
