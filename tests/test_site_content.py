"""What the reader sees on the built site: every executed block shows output, no page shows the
build machine, and links that name a topic land on the topic.

Runs against the one strict build (``site_tools.built_site``: ``$LLMNOTES_SITE_DIR`` in CI).
"""

from __future__ import annotations

import posixpath
import re
import sys
from html import unescape
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports tests without it
from site_tools import DOCS, ROOT, built_site  # noqa: E402

# An executed block prints into a code block; a block that printed nothing renders as an empty one.
# (with anchor_linenums each line starts with an empty <a id="__codelineno-..."></a>).
_EMPTY_CODE = re.compile(r"<pre[^>]*>(?:<span></span>)?<code[^>]*>(?:\s|<a [^>]*></a>)*</code></pre>")
_EXEC_FENCE = re.compile(r"^(\s*)```+\{[^}\n]*\bexec=\"(?:on|1|true)\"[^}\n]*\}\s*\n(.*?)^\1```", re.M | re.S)
_ARTICLE = re.compile(r"<article[^>]*>(.*?)</article>", re.S)
_ANCHOR = re.compile(r"<a\s[^>]*?href=\"([^\"]*)\"[^>]*>(.*?)</a>", re.S)
_TAG = re.compile(r"<[^>]+>")

# Absolute paths of whatever machine built the site, and notes about that machine's load.
_MACHINE_PATH = re.compile(r"(?<![\w.~-])(?:/tmp/[\w.-]+|/home/\w+|/root/|/work/|/Users/\w+|"
                           r"/var/folders/|[A-Z]:\\\\Users\\\\)")
_MACHINE_NOTE = re.compile(r"load average|\bload \d+\s*[-–]\s*\d+|shared \d-core|shared with other|"
                           r"other (?:engineers'|jobs)|busy with other|oversubscribed|stopped early for time|"
                           r"no GPU was (?:available|lent)|(?:available|lent) to this task|where these pages were built",
                           re.I)

# Links to a part's landing page are fine when their label names the part itself.
_PART_ALIASES = {"rag": {"retrieval-augmented generation", "retrieval augmented generation"},
                 "math": {"mathematics"}}


def _pages(site: Path) -> list[Path]:
    return sorted(p for p in site.rglob("*.html") if p.name != "404.html")


def _article(path: Path) -> str:
    m = _ARTICLE.search(path.read_text(encoding="utf-8"))
    return m.group(1) if m else ""


@pytest.fixture(scope="module")
def site() -> Path:
    return built_site()


def test_every_executed_block_shows_output(site):
    empty = []
    for page in _pages(site):
        n = len(_EMPTY_CODE.findall(_article(page)))
        if n:
            empty.append(f"{page.relative_to(site)}: {n} empty output box(es)")
    assert not empty, ("executed blocks that show nothing (a block that writes to sys.stdout directly, "
                       "e.g. llmnotes.cli.main, needs contextlib.redirect_stdout):\n" + "\n".join(empty))


def test_every_exec_fence_prints():
    """markdown-exec shows only what a block prints: an exec fence that never calls print() is an
    empty box (text) or nothing at all (html)."""
    silent = []
    for md in sorted(DOCS.rglob("*.md")):
        text = md.read_text(encoding="utf-8")
        for m in _EXEC_FENCE.finditer(text):
            if "print(" not in m.group(2):
                line = text[:m.start()].count("\n") + 1
                silent.append(f"{md.relative_to(ROOT)}:{line}")
    assert not silent, "exec fences that print nothing:\n" + "\n".join(silent)


def test_no_page_shows_the_build_machine(site):
    found = []
    for page in _pages(site):
        text = unescape(_TAG.sub("", _article(page)))
        for pattern in (_MACHINE_PATH, _MACHINE_NOTE):
            for m in pattern.finditer(text):
                context = text[max(0, m.start() - 60):m.end() + 60].replace("\n", " ")
                found.append(f"{page.relative_to(site)}: {m.group(0)!r} in ...{context}...")
    assert not found, "build-machine details on rendered pages:\n" + "\n".join(found[:40])


def _part_names() -> dict[str, set[str]]:
    """part folder -> labels that name the part (folder name, its index page's title, aliases)."""
    names = {}
    for index in DOCS.glob("*/index.md"):
        part = index.parent.name
        title = re.search(r"^# (.+)$", index.read_text(encoding="utf-8"), re.M)
        names[part] = {part.replace("-", " "), part, part.rstrip("s")} | _PART_ALIASES.get(part, set())
        if title:
            names[part].add(title.group(1).strip().lower())
    return names


def _normalise(label: str) -> str:
    label = unescape(_TAG.sub("", label)).strip().lower()
    label = re.sub(r"^(?:the|this|our)\s+", "", label)
    return re.sub(r"\s+(?:part|chapters?|section)$", "", label)


def test_topic_links_land_on_the_topic_not_a_landing_page(site):
    parts = _part_names()
    vague = []
    for page in _pages(site):
        rel = page.relative_to(site).as_posix()
        src = rel[:-len("/index.html")] + ".md" if rel.endswith("/index.html") else rel
        if rel == "index.html":
            continue
        for href, label in _ANCHOR.findall(_article(page)):
            url = urlsplit(href)
            if url.scheme or url.netloc or url.fragment or not url.path:
                continue
            target = posixpath.normpath(posixpath.join(posixpath.dirname(rel), unquote(url.path)))
            target = target[:-len("/index.html")] if target.endswith("/index.html") else target.rstrip("/")
            if target not in parts:
                continue
            name = _normalise(label)
            if name and name not in parts[target]:
                vague.append(f"{rel}: [{name}] -> {target}/ (link the page and #anchor that teach it)")
    assert not vague, "links naming a topic that land on a part's index page:\n" + "\n".join(vague)
