"""The glossary: every entry links to the page that explains it, every link resolves, and every
abbreviation (includes/abbreviations.md, a tooltip on every page) has a glossary entry."""

from __future__ import annotations

import re
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports tests without it
from site_tools import DOCS, ROOT, check_doc_link, heading_ids, markdown_links  # noqa: E402

GLOSSARY = DOCS / "glossary.md"
ABBREVIATIONS = ROOT / "includes" / "abbreviations.md"
ABBR = re.compile(r"^\*\[(?P<term>[^\]]+)\]:\s*(?P<text>.+)$", re.M)


def glossary_entries() -> dict[str, str]:
    text = GLOSSARY.read_text(encoding="utf-8")
    parts = re.split(r"^## (.+)$", text, flags=re.M)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def abbreviations() -> dict[str, str]:
    return {m["term"]: m["text"] for m in ABBR.finditer(ABBREVIATIONS.read_text(encoding="utf-8"))}


def test_glossary_covers_the_promised_terms():
    terms = {t.lower() for t in glossary_entries()}
    for must in ["temperature", "top-p", "top-k", "min-p", "qkv", "attention", "embeddings",
                 "tokenizer", "bpe", "reranker", "bm25", "perplexity", "cross-entropy", "kv cache",
                 "lora", "qlora", "quantization", "gptq", "gguf", "rope", "rmsnorm", "gqa", "moe",
                 "logits", "softmax", "context window", "dpo", "rlhf"]:
        assert must in terms, f"glossary has no entry for {must!r}"


def test_terms_are_sorted_and_unique():
    terms = list(glossary_entries())
    assert len(terms) == len(set(terms))
    assert terms == sorted(terms, key=str.lower), "keep the glossary alphabetical"


def test_every_entry_links_to_an_explanation_that_exists():
    broken = []
    for term, body in glossary_entries().items():
        links = [t for _, t in markdown_links(body) if not t.startswith(("http://", "https://"))]
        assert links, f"glossary entry {term!r} links to no page"
        broken += [f"{term}: {why}" for t in links if (why := check_doc_link(GLOSSARY, t))]
    assert not broken, "\n".join(broken)


def test_every_abbreviation_has_a_glossary_entry():
    ids = heading_ids(GLOSSARY)
    entries = {t.lower() for t in glossary_entries()}
    abbr = abbreviations()
    assert len(abbr) >= 20
    missing = [t for t in abbr if t.lower() not in entries]
    assert not missing, f"abbreviations without a glossary entry: {missing}"
    assert all(len(text) > 10 for text in abbr.values())
    assert {"bpe", "kv-cache", "lora"} <= ids  # entries are linkable: glossary.md#kv-cache


def test_abbreviations_are_appended_to_every_page():
    cfg = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert re.search(r"auto_append:\s*\[?\s*includes/abbreviations\.md", cfg)
