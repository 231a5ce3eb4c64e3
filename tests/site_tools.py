"""Helpers for the site tests: heading anchors of Markdown pages, link resolution, and one
built copy of the site shared by every test that needs it.

Anchors are computed by rendering each page with Python-Markdown and the site's own ``toc``
settings, so they are the ids MkDocs will give the headings.
"""

from __future__ import annotations

import functools
import os
import posixpath
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
SITE_ENV = "LLMNOTES_SITE_DIR"  # points at an existing build (.ci/run builds once, before pytest)

_ID = re.compile(r'\sid="([^"]+)"')
_LINK = re.compile(r"(?<!!)\[([^\]]*)\]\(([^)\s]+)\)")


@functools.lru_cache(maxsize=None)
def heading_ids(md_path: Path) -> frozenset[str]:
    """The element ids MkDocs gives a page (headings and explicit ``{#id}`` attributes)."""
    import markdown

    text = md_path.read_text(encoding="utf-8")
    md = markdown.Markdown(extensions=["toc", "attr_list", "md_in_html", "admonition", "tables",
                                       "def_list", "footnotes", "pymdownx.details",
                                       "pymdownx.superfences", "pymdownx.tabbed", "pymdownx.arithmatex"],
                           extension_configs={"pymdownx.tabbed": {"alternate_style": True},
                                              "pymdownx.arithmatex": {"generic": True}})
    return frozenset(_ID.findall(md.convert(text)))


def markdown_links(text: str) -> list[tuple[str, str]]:
    """``[label](target)`` pairs of a Markdown text (images excluded)."""
    return _LINK.findall(text)


def check_doc_link(page: Path, target: str) -> str | None:
    """Why the link ``target`` on ``page`` (a file under docs/) is broken, or None if it resolves."""
    if re.match(r"^[a-z][a-z0-9+.-]*:", target):
        return None  # external: listed, not fetched
    path, _, anchor = target.partition("#")
    dest = (page.parent / path).resolve() if path else page
    if not dest.is_file():
        return f"{target}: no file {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest}"
    if anchor and dest.suffix == ".md" and anchor not in heading_ids(dest):
        return f"{target}: no heading with id #{anchor} in {dest.relative_to(ROOT)}"
    return None


def site_url_path() -> str:
    """The path part of ``site_url`` in mkdocs.yml (e.g. ``/llmnotes/``): absolute links on the
    404 page start with it."""
    m = re.search(r"^site_url:\s*(\S+)", (ROOT / "mkdocs.yml").read_text(encoding="utf-8"), re.M)
    if not m:
        return "/"
    path = re.sub(r"^[a-z]+://[^/]+", "", m.group(1))
    return posixpath.join(path or "/", "")


@functools.lru_cache(maxsize=1)
def built_site() -> Path:
    """A built site: ``$LLMNOTES_SITE_DIR`` if set, otherwise one strict build into a temp dir
    (done once per test session)."""
    given = os.environ.get(SITE_ENV)
    if given:
        site = Path(given)
        if not (site / "index.html").is_file():
            raise FileNotFoundError(f"{SITE_ENV}={given} has no index.html: build the site first "
                                    "(mkdocs build --strict --site-dir DIR) or unset it")
        return site
    out = Path(tempfile.mkdtemp(prefix="llmnotes-site-"))
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=ROOT, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError("mkdocs build --strict failed:\n" + proc.stdout[-4000:] + proc.stderr[-4000:])
    return out
