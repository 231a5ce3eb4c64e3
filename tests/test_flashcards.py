"""Q&A flashcards: at least ten per part, each a collapsible `??? question` whose answer links
to the section that explains it; every link and anchor resolves; every deck is in the nav."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports tests without it
from site_tools import DOCS, ROOT, check_doc_link, markdown_links  # noqa: E402

PARTS = ["introduction", "math", "pytorch", "classic", "transformers", "pretraining", "generation",
         "finetuning", "rag", "deployment"]
CARD = re.compile(r'^\?\?\? question "(?P<q>[^"\n]+)"\n\n(?P<a>(?:(?: {4}.*)?\n)+)', re.M)


def cards(part: str) -> list[tuple[str, str]]:
    text = (DOCS / part / "flashcards.md").read_text(encoding="utf-8")
    return [(m["q"], m["a"]) for m in CARD.finditer(text)]


@pytest.mark.parametrize("part", PARTS)
def test_deck(part):
    path = DOCS / part / "flashcards.md"
    deck = cards(part)
    raw = path.read_text(encoding="utf-8").count("??? question")
    assert raw == len(deck), f"{part}: {raw - len(deck)} card(s) malformed (blank line, 4-space indent?)"
    assert len(deck) >= 10, f"{part}: only {len(deck)} flashcards"
    assert len({q for q, _ in deck}) == len(deck), f"{part}: duplicate questions"
    broken = []
    for q, a in deck:
        assert q.rstrip().endswith(("?", ".")), f"{part}: {q!r} is not a question"
        assert len(a.split()) >= 12, f"{part}: the answer to {q!r} is too short"
        links = [t for _, t in markdown_links(a) if not t.startswith(("http://", "https://"))]
        assert links, f"{part}: the answer to {q!r} links to no section"
        broken += [f"{q}: {why}" for t in links if (why := check_doc_link(path, t))]
    assert not broken, f"{part}:\n" + "\n".join(broken)


def test_decks_are_in_the_nav():
    cfg = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    for part in PARTS:
        assert f"{part}/flashcards.md" in cfg, f"{part}/flashcards.md is not in mkdocs.yml's nav"


def test_parser_sees_a_bad_card(tmp_path):
    good = '??? question "Why?"\n\n    Because of [this](x.md#y), said in enough words to count as an answer here.\n'
    bad = '??? question "Why?"\n    no blank line after the title\n'
    assert len(CARD.findall(good)) == 1 and not CARD.findall(bad)
