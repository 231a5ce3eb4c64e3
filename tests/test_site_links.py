"""Every internal link and asset reference of the built site resolves.

Walks every HTML file of the built site (see ``site_tools.built_site``), resolves each
``href``/``src`` against the page's URL, and checks that the target file exists and, for
``#anchor`` links, that the target page has an element with that id. External links are
listed in ``out/external-links.txt``, not fetched (CI has no network).
"""

from __future__ import annotations

import posixpath
import sys
from collections import defaultdict
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote, urlsplit

sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports tests without it
from site_tools import ROOT, built_site, site_url_path  # noqa: E402

from llmnotes.utils import atomic_write_text  # noqa: E402


class _Refs(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.refs: list[str] = []
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        for key in ("id", "name") if tag == "a" else ("id",):
            if a.get(key):
                self.ids.add(a[key])
        for key in ("href", "src"):
            if a.get(key) is not None and not (tag == "link" and a.get("rel") in ("canonical",)):
                self.refs.append(a[key])


def parse(path: Path) -> _Refs:
    p = _Refs()
    p.feed(path.read_text(encoding="utf-8"))
    return p


def resolve(site: Path, page_rel: str, ref: str, prefix: str) -> tuple[Path | None, str]:
    """The file a reference on ``page_rel`` points to (None if external) and its fragment."""
    parts = urlsplit(ref)
    if parts.scheme or parts.netloc:
        return None, ""
    path = unquote(parts.path)
    if path.startswith("/"):
        # Absolute paths (only the 404 page uses them) are rooted at site_url's path.
        rel = (path[len(prefix):] if path.startswith(prefix) else path).lstrip("/")
    else:
        rel = posixpath.normpath(posixpath.join(posixpath.dirname(page_rel), path)) if path else page_rel
    target = site / rel
    if rel in ("", ".") or path.endswith("/") or target.is_dir():
        target = target / "index.html"
    return target, parts.fragment


def test_internal_links_and_anchors_resolve():
    site = built_site()
    prefix = site_url_path()
    pages = sorted(site.rglob("*.html"))
    assert len(pages) > 20, f"only {len(pages)} HTML files in {site}: is the build complete?"
    parsed = {p: parse(p) for p in pages}
    broken, external = [], defaultdict(set)
    checked = 0
    for page, refs in parsed.items():
        page_rel = page.relative_to(site).as_posix()
        for ref in refs.refs:
            if ref.startswith(("mailto:", "javascript:", "data:")):
                continue
            target, frag = resolve(site, page_rel, ref, prefix)
            if target is None:
                external[ref].add(page_rel)
                continue
            checked += 1
            if not target.exists():
                broken.append(f"{page_rel}: {ref} -> missing {target.relative_to(site)}")
            elif frag and target.suffix == ".html":
                ids = (parsed.get(target) or parse(target)).ids
                if unquote(frag) not in ids:
                    broken.append(f"{page_rel}: {ref} -> no id #{frag} in {target.relative_to(site)}")
    report = ROOT / "out" / "external-links.txt"
    report.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(report, "".join(f"{url}\t{' '.join(sorted(on))}\n" for url, on in sorted(external.items())))
    assert checked > 1000, f"only {checked} internal references checked: is the parser broken?"
    assert not broken, f"{len(broken)} broken internal links:\n" + "\n".join(broken[:50])


def test_resolver_catches_a_broken_link(tmp_path):
    """The check must be able to fail: a missing page and a missing anchor are both reported."""
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "index.html").write_text('<h2 id="here">x</h2>', encoding="utf-8")
    target, frag = resolve(tmp_path, "index.html", "a/#here", "/llmnotes/")
    assert target == tmp_path / "a" / "index.html" and frag == "here"
    assert "here" in parse(target).ids
    missing, _ = resolve(tmp_path, "a/index.html", "../b/", "/llmnotes/")
    assert not missing.exists()
    absolute, _ = resolve(tmp_path, "404.html", "/llmnotes/a/", "/llmnotes/")
    assert absolute == tmp_path / "a" / "index.html"
    assert resolve(tmp_path, "index.html", "https://example.org/x", "/")[0] is None


def test_404_page_is_the_custom_one():
    text = (built_site() / "404.html").read_text(encoding="utf-8")
    assert "Page not found" in text and "/reading-list/" in text


def test_pages_with_code_offer_a_download():
    site = built_site()
    page = site / "transformers" / "attention" / "index.html"
    html = page.read_text(encoding="utf-8")
    assert 'class="llmnotes-download"' in html and 'href="attention.py"' in html
    script = (page.parent / "attention.py").read_text(encoding="utf-8")
    assert "# %% block 1" in script
    compile(script, "attention.py", "exec")  # valid Python
    import json

    nb = json.loads((page.parent / "attention.ipynb").read_text(encoding="utf-8"))
    assert nb["nbformat"] == 4 and any(c["cell_type"] == "code" for c in nb["cells"])
    # The injected line stays out of the search index (it would lead every search snippet).
    index = (site / "search" / "search_index.json").read_text(encoding="utf-8")
    assert "Download this page's code (" not in index


def test_downloaded_home_script_runs(tmp_path):
    """The published script of a page runs as-is with plain `python` (the home page's: cheap)."""
    import subprocess

    script = built_site() / "home.py"
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "'Once', ' upon'" in proc.stdout
