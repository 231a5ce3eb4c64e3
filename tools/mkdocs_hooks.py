"""MkDocs hooks: tell the package it is running inside a docs build, and publish each page's
code as a downloadable script and notebook (see ``tools/page_code.py``)."""

import html
import os
import posixpath
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import page_code  # noqa: E402

_BLOCKS: dict[str, list] = {}  # src_uri -> the page's Python blocks, filled per page
_SOURCE: dict[str, str] = {}  # src_uri -> the page's Markdown (for the notebook's text cells)


def on_config(config, **kwargs):
    # llmnotes.plotting.svg() emits full inline SVG only during a build (see its docstring).
    os.environ["LLMNOTES_DOCS_BUILD"] = "1"
    return config


def code_file_stem(page) -> str:
    """``transformers/attention/`` -> ``attention``; a section index -> the section's name."""
    parts = [p for p in page.url.strip("/").split("/") if p]
    stem = parts[-1] if parts else "home"
    return stem[:-5] if stem.endswith(".html") else stem


def on_page_markdown(markdown, page, **kwargs):
    _BLOCKS[page.file.src_uri] = page_code.python_blocks(markdown)
    _SOURCE[page.file.src_uri] = markdown
    return markdown


def on_page_content(content, page, **kwargs):
    blocks = _BLOCKS.get(page.file.src_uri)
    if not blocks:
        return content
    stem = code_file_stem(page)
    n = len(blocks)
    link = (f'<p class="llmnotes-download" data-search-exclude>Download this page\'s code ({n} block'
            f'{"s" if n != 1 else ""}): <a href="{stem}.py" download>{stem}.py</a> · '
            f'<a href="{stem}.ipynb" download>{stem}.ipynb</a></p>')
    head, sep, rest = content.partition("</h1>")
    return head + sep + link + rest if sep else link + content


def on_post_page(output, page, config, **kwargs):
    blocks = _BLOCKS.get(page.file.src_uri)
    if blocks:
        from llmnotes.utils import atomic_write_text

        stem = code_file_stem(page)
        out_dir = Path(config["site_dir"]) / posixpath.dirname(page.file.dest_uri)
        out_dir.mkdir(parents=True, exist_ok=True)
        url = "/" + page.url
        title = html.unescape(page.title or stem)
        atomic_write_text(out_dir / f"{stem}.py", page_code.to_script(blocks, page.file.src_uri, url))
        atomic_write_text(out_dir / f"{stem}.ipynb", page_code.to_notebook(
            blocks, title, url, _SOURCE.get(page.file.src_uri),
            link_base=(page.file.src_uri, config.get("site_url") or "/")))
    return output
