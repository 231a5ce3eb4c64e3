"""Split Markdown pages into retrievable chunks that remember where they came from.

A retriever can only return what it indexed, and a citation is only useful if it points
somewhere a reader can go. So every :class:`Chunk` keeps the page path, the heading it sits
under, and that heading's HTML anchor, computed with the same rules MkDocs' ``toc`` extension
uses (lowercase, punctuation dropped, spaces to ``-``, ``_1``/``_2`` for repeats), so
``rag/bm25.md#worked-example`` links to the right place on the built site.

Chunking works section by section (a heading starts a section): a section's paragraphs are
packed greedily into chunks of at most ``max_len`` units (characters by default, or tokens with
``length=lambda s: len(tok.encode(s))``), a paragraph longer than that is cut at word
boundaries, and each chunk after the first repeats about ``overlap`` units of the previous one
so a sentence cut at a boundary is still whole in one of them. Code fences are kept by default
(questions often name a function); ``keep_code=False`` drops them.
"""

from __future__ import annotations

import fnmatch
import html
import json
import re
import unicodedata
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable

from llmnotes.utils import atomic_write_text

__all__ = ["Chunk", "slugify", "heading_anchor", "chunk_markdown", "chunk_docs",
           "build_docs_snapshot", "load_chunks"]


@dataclass(frozen=True)
class Chunk:
    """One retrievable piece of a page.

    Attributes:
        text: the chunk's content (Markdown, lightly cleaned).
        path: page path relative to the docs folder, e.g. ``"rag/bm25.md"``.
        anchor: HTML id of the section heading (``""`` before the first heading).
        title: the page title (its first ``#`` heading).
        heading: the section heading the chunk sits under.
    """

    text: str
    path: str
    anchor: str
    title: str
    heading: str

    @property
    def url(self) -> str:
        """``path#anchor``: where a citation points."""
        return f"{self.path}#{self.anchor}" if self.anchor else self.path

    @property
    def label(self) -> str:
        """``"Title / Heading"`` (just the title for the text under the page's own heading)."""
        return self.title if self.heading == self.title else f"{self.title} / {self.heading}"

    @property
    def search_text(self) -> str:
        """What retrievers index: the page title and heading carry much of a chunk's topic."""
        return f"{self.label}\n{self.text}"


# --- anchors: Python-Markdown's toc rules -------------------------------------------------

_ATTR_ID = re.compile(r"\s*\{[^}]*#([\w-]+)[^}]*\}\s*$")
_ATTR_ANY = re.compile(r"\s*\{:?[^}]*\}\s*$")
_LINK = re.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_MATH = re.compile(r"\$([^$]+)\$")


def slugify(text: str, sep: str = "-") -> str:
    """MkDocs' default heading slug (Python-Markdown ``toc.slugify``).

    >>> slugify("BM25, step by step!")
    'bm25-step-by-step'
    """
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    text = re.sub(r"[^\w\s-]", "", text).strip().lower()
    return re.sub(rf"[{sep}\s]+", sep, text)


def _heading_plain_text(md: str) -> str:
    """What a heading renders to, as text: links keep their words, markup characters go."""
    md = _LINK.sub(r"\1", md)
    md = _MATH.sub(r"\\(\1\\)", md)  # arithmatex (generic) renders $x$ as \(x\)
    md = re.sub(r"<[^>]+>", "", md)  # inline HTML tags
    md = md.replace("`", "")
    md = re.sub(r"\*+", "", md)
    md = re.sub(r"(?<!\w)_{1,2}(\S(?:.*?\S)?)_{1,2}(?!\w)", r"\1", md)  # _em_ / __strong__
    return html.unescape(md).strip()


def heading_anchor(heading_md: str, used: set[str] | None = None) -> tuple[str, str]:
    """Return ``(plain_text, anchor)`` for a heading's Markdown, de-duplicated against ``used``.

    A ``{#custom-id}`` attribute list wins over the slug, as in MkDocs. Repeats get ``_1``,
    ``_2``... appended, the toc extension's rule.
    """
    custom = _ATTR_ID.search(heading_md)
    heading_md = _ATTR_ANY.sub("", heading_md)
    heading_md = re.sub(r"\s#+\s*$", "", heading_md)  # closing hashes: "## Title ##"
    text = _heading_plain_text(heading_md)
    anchor = custom.group(1) if custom else slugify(text)
    if used is not None:
        while anchor in used or not anchor:
            m = re.match(r"^(.*)_([0-9]+)$", anchor)
            anchor = f"{m.group(1)}_{int(m.group(2)) + 1}" if m else f"{anchor}_1"
        used.add(anchor)
    return text, anchor


# --- splitting ----------------------------------------------------------------------------

_FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
_HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*$")
_ADMONITION = re.compile(r'^(\s*)(?:!!!|\?\?\?\+?|===\+?)\s*(?:[\w-]+)?\s*(?:"([^"]*)")?\s*$')


def _sections(text: str, keep_code: bool) -> Iterable[tuple[int, str, list[str]]]:
    """Yield ``(level, heading_markdown, blocks)``; a block is a paragraph or a code fence."""
    level, heading, blocks, para = 0, "", [], []
    fence: str | None = None
    code: list[str] = []

    def flush_para():
        if para:
            blocks.append("\n".join(para).strip())
            para.clear()

    lines = text.splitlines()
    if lines and lines[0].strip() == "---":  # YAML front matter
        end = next((i for i in range(1, len(lines)) if lines[i].strip() == "---"), None)
        if end is not None:
            lines = lines[end + 1:]
    for line in lines:
        m = _FENCE.match(line)
        if fence is not None:  # inside a code fence: only its closing line ends it
            if m and m.group(1)[0] == fence[0] and len(m.group(1)) >= len(fence) \
                    and line.strip() == m.group(1):
                fence = None
                if keep_code and any(c.strip() for c in code):
                    indent = min(len(c) - len(c.lstrip()) for c in code if c.strip())
                    blocks.append("\n".join(c[indent:] for c in code).strip("\n"))
                code = []
            else:
                code.append(line)
            continue
        if m:
            flush_para()
            fence = m.group(1)
            continue
        h = _HEADING.match(line)
        if h:
            flush_para()
            if heading or blocks:
                yield level, heading, blocks
            level, heading, blocks = len(h.group(1)), h.group(2), []
            continue
        if not line.strip():
            flush_para()
            continue
        a = _ADMONITION.match(line)
        if a:  # "!!! note "Title"" / "=== "Tab"": keep only the title as its own line
            flush_para()
            if a.group(2):
                para.append(a.group(2))
            continue
        para.append(line.strip())
    flush_para()
    if heading or blocks:
        yield level, heading, blocks


def _split_long(block: str, max_len: int, length: Callable[[str], int]) -> list[str]:
    """Cut an over-long block at word boundaries into pieces of at most ``max_len``."""
    pieces, cur = [], []
    for word in block.split(" "):
        if cur and length(" ".join(cur + [word])) > max_len:
            pieces.append(" ".join(cur))
            cur = []
        cur.append(word)  # a single word longer than max_len becomes its own piece
    if cur:
        pieces.append(" ".join(cur))
    return pieces


def _tail(text: str, overlap: int, length: Callable[[str], int]) -> str:
    """The last whole words of ``text`` whose length reaches about ``overlap``."""
    words = text.split(" ")
    out: list[str] = []
    for word in reversed(words):
        if length(" ".join(out)) >= overlap:
            break
        out.insert(0, word)
    return " ".join(out)


def chunk_markdown(text: str, path: str, *, max_len: int = 1000, overlap: int = 150,
                   keep_code: bool = True, length: Callable[[str], int] = len) -> list[Chunk]:
    """Split one Markdown page into :class:`Chunk` objects.

    Args:
        text: the page's Markdown.
        path: its path relative to the docs folder (kept on every chunk).
        max_len: largest chunk, measured by ``length`` (characters by default).
        overlap: how much of a chunk's end the next chunk of the same section repeats.
        keep_code: keep code fences' contents (without the fence lines).
        length: the measure of size: ``len`` for characters, or a token counter.

    Returns:
        Chunks in page order.
    """
    if not isinstance(text, str):
        raise TypeError(f"text must be a str, got {type(text).__name__}")
    if not isinstance(max_len, int) or max_len <= 0:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < max_len:
        raise ValueError(f"overlap must be an int in [0, max_len={max_len}), got {overlap!r}")
    used: set[str] = set()
    title = Path(path).stem.replace("-", " ").capitalize()
    chunks: list[Chunk] = []
    titled = False
    for level, heading_md, blocks in _sections(text, keep_code):
        heading, anchor = heading_anchor(heading_md, used) if heading_md else ("", "")
        if level == 1 and not titled:  # the first H1 is the page title
            title, titled = heading, True
        # Over-long blocks are cut a little short, so the overlap still fits in front.
        room = max(max_len - overlap - length(" \u2026 "), 1)
        pieces = [p for b in blocks for p in
                  (_split_long(b, room, length) if length(b) > max_len else [b])]
        cur = ""
        for piece in pieces:
            joined = f"{cur}\n\n{piece}" if cur else piece
            if not cur or length(joined) <= max_len:
                cur = joined
                continue
            chunks.append(Chunk(cur, path, anchor, title, heading or title))
            tail = _tail(cur, overlap, length) if overlap else ""
            cur = f"{tail} \u2026 {piece}" if tail and length(f"{tail} \u2026 {piece}") <= max_len \
                else piece
        if cur:
            chunks.append(Chunk(cur, path, anchor, title, heading or title))
    # Text above the H1 (rare) was chunked before the title was known.
    return [c if c.title == title else Chunk(c.text, c.path, c.anchor, title, c.heading)
            for c in chunks]


def chunk_docs(docs_dir: str | Path, exclude: Iterable[str] = (), **kwargs) -> list[Chunk]:
    """Chunk every ``*.md`` page under ``docs_dir`` (sorted by path, so the order is stable).

    Args:
        exclude: glob patterns of page paths (relative, ``/``-separated) to leave out, e.g.
            ``"*/flashcards.md"``.
        **kwargs: passed to :func:`chunk_markdown`.
    """
    docs_dir = Path(docs_dir)
    if not docs_dir.is_dir():
        raise FileNotFoundError(f"docs_dir {str(docs_dir)!r} is not a directory")
    exclude = [exclude] if isinstance(exclude, str) else list(exclude)
    chunks: list[Chunk] = []
    for page in sorted(docs_dir.rglob("*.md")):
        rel = page.relative_to(docs_dir).as_posix()
        if any(fnmatch.fnmatchcase(rel, pattern) for pattern in exclude):
            continue
        chunks.extend(chunk_markdown(page.read_text(encoding="utf-8"), rel, **kwargs))
    return chunks


def build_docs_snapshot(docs_dir: str | Path, out: str | Path, **kwargs) -> int:
    """Chunk the site's pages into a JSON-lines file (atomically); return the chunk count.

    The installed package has no ``docs/`` folder, so ``llmnotes ask`` reads this snapshot
    (shipped as ``llmnotes/assets/site_docs.jsonl``). Regenerate it with
    ``python -m llmnotes.rag build-index docs llmnotes/assets/site_docs.jsonl``.
    """
    chunks = chunk_docs(docs_dir, **kwargs)
    lines = [json.dumps(asdict(c), ensure_ascii=False, sort_keys=True) for c in chunks]
    atomic_write_text(out, "\n".join(lines) + "\n")
    return len(chunks)


def load_chunks(path: str | Path) -> list[Chunk]:
    """Read chunks written by :func:`build_docs_snapshot`."""
    path = Path(path)
    with path.open(encoding="utf-8") as f:
        return [Chunk(**json.loads(line)) for line in f if line.strip()]
