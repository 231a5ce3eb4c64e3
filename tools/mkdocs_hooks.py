"""MkDocs hooks: tell the package it is running inside a docs build, cache what each page's
``exec`` fences print (see ``tools/exec_cache.py``), and publish each page's code as a
downloadable script and notebook (see ``tools/page_code.py``)."""

import html
import logging
import os
import posixpath
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import exec_cache  # noqa: E402
import page_code  # noqa: E402

_LOG = logging.getLogger("mkdocs.hooks")
_BLOCKS: dict[str, list] = {}  # src_uri -> the page's Python blocks, filled per page
_SOURCE: dict[str, str] = {}  # src_uri -> the page's Markdown (for the notebook's text cells)


def on_config(config, **kwargs):
    # llmnotes.plotting.svg() emits full inline SVG only during a build (see its docstring).
    os.environ["LLMNOTES_DOCS_BUILD"] = "1"
    _install_exec_cache()
    return config


def _install_exec_cache() -> None:
    """Replay unchanged pages' exec output from the cache, unless LLMNOTES_EXEC_CACHE / CI say
    to execute everything."""
    from mkdocs.exceptions import PluginError

    try:
        mode = exec_cache.cache_mode()
    except ValueError as exc:
        raise PluginError(str(exc)) from exc
    if mode == "off":
        exec_cache.install(None)
        return
    cache = exec_cache.ExecCache(exec_cache.cache_dir(), exec_cache.environment_fingerprint(), mode)
    exec_cache.install(cache)
    _LOG.info("exec cache: %s (%s)", mode, cache.directory)


def on_post_build(config, **kwargs):
    cache = exec_cache.active()
    if cache is not None:
        s = cache.stats
        pages = cache.executed_pages
        # Name the executed pages when there are few: after an edit, the author sees that only
        # the edited page ran (the serve benchmark reads this line too).
        named = f" ({', '.join(pages)})" if 0 < len(pages) <= 5 else ""
        _LOG.info("exec cache: %d fences replayed, %d executed on %d pages%s, %d pages stored",
                  s["replayed"], s["executed"], len(pages), named, s["stored"])


def code_file_stem(page) -> str:
    """``transformers/attention/`` -> ``attention``; a section index -> the section's name."""
    parts = [p for p in page.url.strip("/").split("/") if p]
    stem = parts[-1] if parts else "home"
    return stem[:-5] if stem.endswith(".html") else stem


def on_page_markdown(markdown, page, **kwargs):
    cache = exec_cache.active()
    if cache is not None:
        cache.begin_page(page.file.src_uri, markdown)
    _BLOCKS[page.file.src_uri] = page_code.python_blocks(markdown)
    _SOURCE[page.file.src_uri] = markdown
    return markdown


def on_page_content(content, page, **kwargs):
    cache = exec_cache.active()
    if cache is not None:
        cache.end_page()
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
        stem = code_file_stem(page)
        out_dir = Path(config["site_dir"]) / posixpath.dirname(page.file.dest_uri)
        out_dir.mkdir(parents=True, exist_ok=True)
        url = "/" + page.url
        title = html.unescape(page.title or stem)
        exec_cache.atomic_write_text(out_dir / f"{stem}.py", page_code.to_script(blocks, page.file.src_uri, url))
        exec_cache.atomic_write_text(out_dir / f"{stem}.ipynb", page_code.to_notebook(
            blocks, title, url, _SOURCE.get(page.file.src_uri),
            link_base=(page.file.src_uri, config.get("site_url") or "/")))
    return output
