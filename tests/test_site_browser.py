"""The built site in a real browser: Playwright driving the system Chromium.

Serves the built site (``site_tools.built_site``: ``$LLMNOTES_SITE_DIR`` or a fresh strict
build) on 127.0.0.1 and checks that the home page and one page per part load with no console
errors and no failed requests, that math is typeset by KaTeX, that search finds "attention",
and that the edit and code-download links are there. Screenshots go to ``out/screenshots/``.
"""

from __future__ import annotations

import functools
import http.server
import shutil
import sys
import threading
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports tests without it
from site_tools import ROOT, built_site, site_url_path  # noqa: E402

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run"]
SHOTS = ROOT / "out" / "screenshots"

# One page per part (a content page where the part has one, else its landing page).
PAGES = {
    "home": "",
    "introduction": "introduction/what-is-an-llm/",
    "math": "math/probability/",
    "pytorch": "pytorch/tensors/",
    "transformers": "transformers/attention/",
    "pretraining": "pretraining/data/",
    "generation": "generation/temperature/",
    "finetuning": "finetuning/lora/",
    "rag": "rag/bm25/",
    "deployment": "deployment/gguf/",
    "reading-list": "reading-list/",
    "glossary": "glossary/",
}

sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")
pytestmark = pytest.mark.skipif(not Path(CHROMIUM).exists(),
                                reason="no Chromium at /usr/bin/chromium (apt-get install chromium)")


PREFIX = site_url_path()  # "/llmnotes/": served where GitHub Pages serves it, so the 404 page's
                          # absolute links work as they will when deployed


class _PagesLikeHandler(http.server.SimpleHTTPRequestHandler):
    """Serve the site under ``PREFIX`` and answer unknown paths with 404.html, as GitHub Pages does."""

    def log_message(self, *args):
        pass

    def translate_path(self, path):
        path = path.split("?", 1)[0].split("#", 1)[0]
        inner = "/" + path[len(PREFIX):] if path.startswith(PREFIX) else "/__outside_the_site__"
        return super().translate_path(inner)

    def send_error(self, code, message=None, explain=None):
        page = Path(self.directory) / "404.html"
        if code != 404 or not page.is_file():
            return super().send_error(code, message, explain)
        body = page.read_bytes()
        self.send_response(404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


@pytest.fixture(scope="module")
def site_url():
    site = built_site()
    handler = functools.partial(_PagesLikeHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}{PREFIX}", site
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        try:
            yield b
        finally:
            b.close()


# The only request a page may make outside the site: Material's repository facts (stars, forks)
# from the GitHub API, shown beside the repository link. Tests have no network: those requests
# are aborted on purpose, recorded, and not counted as failures.
ALLOWED_OUTSIDE = ("https://api.github.com/repos/llmnotes/llmnotes",)


def open_page(browser, url: str):
    """Open ``url`` and collect console errors, uncaught exceptions, failed requests and any
    request that leaves the site (other than ``ALLOWED_OUTSIDE``)."""
    page = browser.new_page(viewport={"width": 1280, "height": 900})
    problems: list[str] = []
    aborted: set[str] = set()
    origin = url.split("/", 3)[:3]
    origin = "/".join(origin) + "/"

    def outside(route):
        req_url = route.request.url
        aborted.add(req_url)
        if not req_url.startswith(ALLOWED_OUTSIDE):
            problems.append(f"request outside the site: {req_url}")
        route.abort()

    page.route(lambda u: not u.startswith(origin) and not u.startswith("data:"), outside)

    def console(m):
        if m.type == "error" and (m.location or {}).get("url") not in aborted:
            problems.append(f"console {m.type}: {m.text} at {m.location}")

    page.on("console", console)
    page.on("pageerror", lambda e: problems.append(f"page error: {e}"))
    page.on("requestfailed", lambda r: problems.append(f"request failed: {r.url} ({r.failure})")
            if r.url not in aborted else None)
    page.on("response", lambda r: problems.append(f"HTTP {r.status}: {r.url}") if r.status >= 400 else None)
    page.goto(url, wait_until="load")
    return page, problems


def page_for(site: Path, part: str) -> str:
    rel = PAGES[part]
    if not (site / rel / "index.html").is_file():  # a part still being written: its landing page
        rel = PAGES[part].split("/")[0] + "/"
    assert (site / rel / "index.html").is_file(), f"no page for {part} in the built site"
    return rel


@pytest.mark.parametrize("part", list(PAGES))
def test_page_loads_cleanly(site_url, browser, part):
    base, site = site_url
    rel = page_for(site, part) if part != "home" else ""
    page, problems = open_page(browser, base + rel)
    try:
        assert page.locator("article h1").count() >= 1, "no page title rendered"
        # Math typeset on every page that has any: no raw \( ... \) left over.
        n_math = page.locator(".arithmatex").count()
        if n_math:
            page.wait_for_function("n => document.querySelectorAll('.arithmatex .katex').length >= n",
                                   arg=n_math, timeout=10_000)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{part}.png"))
        assert not problems, "\n".join(problems)
    finally:
        page.close()


def test_math_is_rendered_by_katex(site_url, browser):
    base, _ = site_url
    page, problems = open_page(browser, base + "math/probability/")
    try:
        page.wait_for_selector(".katex", timeout=10_000)
        assert page.locator(".katex-display").count() >= 1  # display math ($$...$$)
        assert page.locator(".katex .katex-html").count() >= 5
        assert not page.locator(".katex-error").count(), "KaTeX reported a parse error"
        assert not problems, "\n".join(problems)
    finally:
        page.close()


def test_search_finds_attention(site_url, browser):
    base, _ = site_url
    page, problems = open_page(browser, base)
    try:
        box = page.locator("input.md-search__input")
        box.click()
        box.type("attention")
        page.wait_for_selector(".md-search-result__item", timeout=15_000)
        hits = page.locator(".md-search-result__item a").evaluate_all("els => els.map(e => e.href)")
        assert any("/transformers/attention/" in h for h in hits), hits[:10]
        page.screenshot(path=str(SHOTS / "search-attention.png"))
        assert not problems, "\n".join(problems)
    finally:
        page.close()


def test_edit_and_download_links(site_url, browser):
    base, _ = site_url
    page, problems = open_page(browser, base + "transformers/attention/")
    try:
        edit = page.locator("a.md-content__button[href*='/edit/main/docs/transformers/attention.md']")
        assert edit.count() == 1, "no edit-on-GitHub button"
        link = page.locator(".llmnotes-download a[href='attention.py']")
        assert link.count() == 1
        resp = page.request.get(base + "transformers/attention/attention.py")
        assert resp.ok and "# %% block 1" in resp.text()
        assert not problems, "\n".join(problems)
    finally:
        page.close()


def test_abbreviations_show_tooltips(site_url, browser):
    """Terms from includes/abbreviations.md are <abbr> elements; hovering one shows its text."""
    base, _ = site_url
    page, problems = open_page(browser, base + "transformers/modern/")
    try:
        abbr = page.locator("article abbr[title]").first
        assert abbr.count() == 1, "no abbreviation on a page that uses RoPE, RMSNorm, GQA"
        abbr.scroll_into_view_if_needed()
        abbr.hover()
        # content.tooltips turns the title into Material's own tooltip element.
        page.wait_for_selector(".md-tooltip2--active, .md-tooltip--active", timeout=5_000)
        page.screenshot(path=str(SHOTS / "abbreviation-tooltip.png"))
        assert not problems, "\n".join(problems)
    finally:
        page.close()


def test_unknown_address_shows_the_custom_404(site_url, browser):
    """A mistyped address gets the site's own 404 page, fully styled (its CSS and scripts load)."""
    base, _ = site_url
    page, problems = open_page(browser, base + "transformers/no-such-page/")
    try:
        assert page.locator("h1#page-not-found").count() == 1
        assert page.locator("a[href$='/reading-list/']").count() >= 1
        page.screenshot(path=str(SHOTS / "404.png"))
        # The document itself answers 404 (as it should); nothing else may fail.
        others = [p for p in problems if "no-such-page" not in p and "404 (File not found)" not in p]
        assert not others, "\n".join(others)
        styled = page.evaluate("getComputedStyle(document.querySelector('.md-header')).position")
        assert styled in ("sticky", "fixed"), "the 404 page's stylesheet did not load"
    finally:
        page.close()
