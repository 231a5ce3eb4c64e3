"""The reading list: every entry cites, links to this site, and names real llmnotes code.

Each ``### Title {#id}`` entry of docs/reading-list/index.md must have a year, its arXiv link
(when it shows one) must point at the id it displays, every "On this site" link must resolve to
a page and anchor, and every name under "In llmnotes" must import.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports tests without it
from site_tools import DOCS, check_doc_link, heading_ids, markdown_links  # noqa: E402

PAGE = DOCS / "reading-list" / "index.md"
ENTRY = re.compile(r"^### (?P<title>.+?) \{#(?P<id>[a-z0-9-]+)\}\s*$", re.M)

# The papers the site promises (issue 10), by entry id.
REQUIRED = {
    "vaswani-2017", "radford-2019", "brown-2020", "kaplan-2020", "hoffmann-2022", "devlin-2019",
    "raffel-2020", "hu-2021", "dettmers-2023", "dettmers-2022", "frantar-2023", "dao-2022",
    "lewis-2020", "rafailov-2023", "ouyang-2022", "leviathan-2023", "chen-2023",
    "rajbhandari-2020", "su-2021", "ainslie-2023", "jiang-2024", "zhang-2019", "shazeer-2020",
    "touvron-2023", "robertson-2009", "reimers-2019", "karpukhin-2020", "eldan-2023",
    "sennrich-2016", "kingma-2015", "loshchilov-2019", "ba-2016", "hendrycks-2016",
    "holtzman-2020", "nguyen-2024", "meister-2023",
}


def entries() -> dict[str, str]:
    text = PAGE.read_text(encoding="utf-8")
    heads = list(ENTRY.finditer(text))
    out = {}
    for m, nxt in zip(heads, heads[1:] + [None]):
        end = nxt.start() if nxt else len(text)
        body = text[m.end():end].split("\n## ", 1)[0]  # stop at the next theme heading
        out[m.group("id")] = body
    return out


def resolve_name(dotted: str):
    """``llmnotes.a.b.c`` -> the object, importing the longest module prefix."""
    parts = dotted.split(".")
    for i in range(len(parts), 0, -1):
        try:
            obj = importlib.import_module(".".join(parts[:i]))
        except ModuleNotFoundError:
            continue
        for attr in parts[i:]:
            obj = getattr(obj, attr)
        return obj
    raise ImportError(dotted)


ENTRIES = entries()


def test_required_papers_are_listed():
    assert REQUIRED <= set(ENTRIES), f"missing: {sorted(REQUIRED - set(ENTRIES))}"
    assert len(ENTRIES) >= 36


def test_entry_ids_are_anchors():
    assert set(ENTRIES) <= heading_ids(PAGE)


@pytest.mark.parametrize("entry", sorted(ENTRIES))
def test_entry(entry):
    body = ENTRIES[entry]
    year = entry.rsplit("-", 1)[1]
    assert re.search(r"\((\d{4})\)", body), f"{entry}: no (year) in the citation"
    # The id's year is the year shown in the citation (the arXiv year may be earlier).
    assert f"({year})" in body, f"{entry}: citation does not show {year}"
    for shown, url_id in re.findall(r"\[arXiv:(\d{4}\.\d{4,5})\]\(https://arxiv\.org/abs/([^)]+)\)", body):
        assert shown == url_id, f"{entry}: shows arXiv:{shown} but links {url_id}"
    assert re.search(r"arxiv\.org/abs/|doi\.org/|\.pdf\)", body), f"{entry}: no link to the paper"

    site = re.search(r"^\*\*On this site:\*\*(.*)$", body, re.M)
    assert site, f"{entry}: no 'On this site' line"
    links = [t for _, t in markdown_links(site.group(1))]
    assert links, f"{entry}: 'On this site' has no link"
    broken = [why for t in links if (why := check_doc_link(PAGE, t))]
    assert not broken, f"{entry}: " + "; ".join(broken)

    code = re.search(r"^\*\*In llmnotes:\*\*(.*)$", body, re.M)
    assert code, f"{entry}: no 'In llmnotes' line"
    names = re.findall(r"`(llmnotes(?:\.\w+)*)`", code.group(1))
    assert names, f"{entry}: 'In llmnotes' names nothing"
    for name in names:
        try:
            resolve_name(name)
        except (ImportError, AttributeError) as e:
            pytest.fail(f"{entry}: {name} does not exist ({e})")

    summary = body.split("**On this site:**")[0]
    assert len(summary.split()) >= 45, f"{entry}: the summary is too short to say what it found"


def test_checker_can_fail():
    assert check_doc_link(PAGE, "../transformers/attention.md") is None
    assert check_doc_link(PAGE, "../transformers/no-such-page.md")
    assert check_doc_link(PAGE, "../transformers/attention.md#no-such-heading")
    with pytest.raises((ImportError, AttributeError)):
        resolve_name("llmnotes.model.NoSuchThing")
