"""Extract a page's Python code blocks into a runnable script (and a notebook).

Used by the MkDocs build hook (``tools/mkdocs_hooks.py``) to publish, next to every page that
has code, ``<page>.py`` and ``<page>.ipynb`` plus a download link at the top of the page.

The fences are found the same way the test-suite finds them (root ``conftest.py``): a
CommonMark parser with the admonition plugin, content tabs and ``???`` blocks rewritten as
admonitions, so code indented under ``!!! note`` or ``=== "Tab"`` is included too.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass

PYTHON_LANGS = {"python", "py", "python3"}
_TAB_OR_DETAILS = re.compile(r"^(\s*)(===\+?|\?\?\?\+?) ", re.M)


@dataclass(frozen=True)
class Block:
    """One Python fence of a page."""

    code: str
    line: int  # 1-based line of the opening fence in the Markdown source
    notest: bool  # marked "cannot run here" (GPU, network): kept, but commented out
    end: int = 0  # 0-based line just after the closing fence


def _lang_and_options(info: str) -> tuple[str, set[str]]:
    """``python notest`` or ``{.python exec="on" notest}`` -> ("python", {"exec", "notest"})."""
    info = info.strip()
    if info.startswith("{") and info.endswith("}"):
        words = info[1:-1].split()
        lang = next((w[1:] for w in words if w.startswith(".")), "")
        opts = {w.split("=", 1)[0] for w in words if not w.startswith(".")}
        return lang, opts
    words = info.split()
    return (words[0] if words else ""), set(words[1:])


def python_blocks(markdown: str) -> list[Block]:
    """Every Python fence of a Markdown page, in order."""
    from markdown_it import MarkdownIt
    from mdit_py_plugins.admon import admon_plugin

    md = MarkdownIt("commonmark").use(admon_plugin)
    blocks = []
    for tok in md.parse(_TAB_OR_DETAILS.sub(r"\1!!! ", markdown)):
        if tok.type != "fence":
            continue
        lang, opts = _lang_and_options(tok.info)
        if lang in PYTHON_LANGS:
            start, end = tok.map if tok.map else (0, 0)
            blocks.append(Block(tok.content, start + 1, "notest" in opts, end))
    return blocks


_MD_LINK = re.compile(r"\]\((?![a-z][a-z0-9+.-]*:|#|/)([^)\s#]+\.md)(#[^)\s]*)?\)")


def absolutize_links(text: str, src_path: str, site_url: str) -> str:
    """Rewrite the page's relative ``.md`` links as absolute site URLs, so they still work in a
    downloaded notebook: ``../rag/index.md#x`` on ``transformers/gpt.md`` ->
    ``{site_url}rag/#x``."""

    def url(m: re.Match) -> str:
        path = posixpath.normpath(posixpath.join(posixpath.dirname(src_path), m.group(1)))
        path = path[:-3]  # drop .md
        path = path[:-5] if path.endswith("index") else path + "/"
        return f"]({site_url.rstrip('/')}/{path.lstrip('./')}{m.group(2) or ''})"

    return _MD_LINK.sub(url, text)


def to_script(blocks: list[Block], src_path: str, page_url: str) -> str:
    """One script that runs the page's blocks top to bottom, as the page does."""
    out = [
        f"# Code from the llmnotes page {page_url} (source: docs/{src_path}).",
        "# Every block runs in CI; run this file with `python` after `pip install -r requirements.txt`.",
        "",
    ]
    for i, b in enumerate(blocks, 1):
        out.append(f"# %% block {i} (docs/{src_path}, line {b.line})")
        if b.notest:
            out.append("# Not run in CI (the page says why); uncomment to run it where it can.")
            out.extend("# " + line if line else "#" for line in b.code.rstrip("\n").split("\n"))
        else:
            out.append(b.code.rstrip("\n"))
        out.append("")
    return "\n".join(out)


def to_notebook(blocks: list[Block], title: str, page_url: str, markdown: str | None = None,
                link_base: tuple[str, str] | None = None) -> str:
    """The page as a Jupyter notebook (nbformat 4, written with ``nbformat``): the prose between
    the code blocks as Markdown cells (when ``markdown`` is given; ``link_base=(src_path,
    site_url)`` makes their relative links absolute) and one code cell per block, no outputs."""
    import nbformat
    from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

    def md_cell(text: str):
        return new_markdown_cell(absolutize_links(text, *link_base) if link_base else text)

    src = markdown.split("\n") if markdown is not None else None
    cells = [md_cell(f"*The code of the llmnotes page `{page_url}`, with its text.*")]
    if src is None:
        cells[0] = md_cell(f"# {title}\n\nThe code of the llmnotes page `{page_url}`, block by block.")
    prev = 0
    for b in blocks:
        if src is not None:
            prose = "\n".join(src[prev:b.line - 1]).strip()
            if prose:
                cells.append(md_cell(prose))
            prev = b.end
        code = b.code if not b.notest else "".join(
            "# " + ln + "\n" for ln in b.code.rstrip("\n").split("\n"))
        cells.append(new_code_cell(code.rstrip("\n")))
    if src is not None:
        tail = "\n".join(src[prev:]).strip()
        if tail:
            cells.append(md_cell(tail))
    for i, cell in enumerate(cells):
        cell.id = f"cell-{i}"  # nbformat draws random ids; fixed ones keep two builds byte-identical
    nb = new_notebook(cells=cells, metadata={"kernelspec": {"display_name": "Python 3", "language": "python",
                                                           "name": "python3"},
                                             "language_info": {"name": "python"}})
    return nbformat.writes(nb) + "\n"
