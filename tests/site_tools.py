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


# What a site build reads: its output is a function of these files (and the versions below).
SITE_INPUTS = ("mkdocs.yml", "docs", "tools", "overrides", "includes", "llmnotes",
               "benchmarks")  # pages quote recorded numbers and runs (llmnotes.recorded)
SITE_CACHE = ROOT / ".cache" / "llmnotes-site"  # git-ignored; one folder per source-tree hash
_KEEP_BUILDS = 3  # older builds of other trees are pruned, newest first kept


def source_tree_hash() -> str:
    """SHA-256 over every file a site build reads (``SITE_INPUTS``) plus the Python and
    MkDocs-side versions: two checkouts with the same hash build the same site."""
    import hashlib
    from importlib import metadata

    digest = hashlib.sha256(sys.version.encode("utf-8"))
    for dist in ("mkdocs", "mkdocs-material", "markdown-exec", "pymdown-extensions", "torch"):
        try:
            digest.update(f"\0{dist}={metadata.version(dist)}".encode("utf-8"))
        except metadata.PackageNotFoundError:
            digest.update(f"\0{dist}=absent".encode("utf-8"))
    for name in SITE_INPUTS:
        top = ROOT / name
        files = [top] if top.is_file() else sorted(p for p in top.rglob("*") if p.is_file())
        for path in files:
            rel = path.relative_to(ROOT).as_posix()
            if "__pycache__" in rel.split("/") or rel.endswith(".pyc"):
                continue
            digest.update(b"\0" + rel.encode("utf-8") + b"\0" + hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


@functools.lru_cache(maxsize=1)
def built_site() -> Path:
    """A built site: ``$LLMNOTES_SITE_DIR`` if set, otherwise one strict build per source tree.

    Without the variable, the first process that asks (under pytest-xdist, the first worker
    that runs a site test) builds the site into ``.cache/llmnotes-site/<tree hash>`` while
    holding a file lock named after that hash; the other workers wait on the lock and reuse
    the finished build, so a test run builds the site once. A later run of an unchanged tree
    reuses it too. The build itself uses the exec cache (``tools/exec_cache.py``) unless
    ``LLMNOTES_EXEC_CACHE=0`` or ``CI`` says otherwise.
    """
    given = os.environ.get(SITE_ENV)
    if given:
        site = Path(given)
        if not (site / "index.html").is_file():
            raise FileNotFoundError(f"{SITE_ENV}={given} has no index.html: build the site first "
                                    "(mkdocs build --strict --site-dir DIR) or unset it")
        return site
    return shared_build(source_tree_hash())


def shared_build(key: str, cache: Path = SITE_CACHE, build=None) -> Path:
    """The strict build for tree hash ``key``: built once under a lock, then reused.

    ``build(site)`` makes the site (default: ``mkdocs build --strict`` of this checkout) and
    raises ``RuntimeError`` with the build's log when it fails."""
    from filelock import FileLock  # a dependency of torch, so always installed

    cache.mkdir(parents=True, exist_ok=True)
    site = cache / key
    failed = cache / f"{key}.failed"
    run_id = os.environ.get("PYTEST_XDIST_TESTRUNUID", str(os.getpid()))
    with FileLock(str(cache / f"{key}.lock")):
        if (site / "index.html").is_file():
            return site
        if failed.is_file():
            # Another worker of this same run already failed to build this tree: report its
            # error instead of paying for the same failing build once per worker.
            owner, _, log = failed.read_text(encoding="utf-8").partition("\n")
            if owner == run_id:
                raise RuntimeError("mkdocs build --strict failed (built by another worker):\n" + log)
        try:
            (build or _build_into)(site)
        except RuntimeError as exc:
            failed.write_text(f"{run_id}\n{exc}", encoding="utf-8")
            raise
        failed.unlink(missing_ok=True)
    _prune(cache, keep=site)
    return site


def _build_into(site: Path, config: Path | None = None) -> None:
    """``mkdocs build --strict`` into a temp folder beside ``site``, renamed into place only
    when it succeeded: a killed build never leaves a half site that looks finished."""
    import shutil

    tmp = Path(tempfile.mkdtemp(prefix=f"{site.name}.building-", dir=site.parent))
    env = dict(os.environ, NO_MKDOCS_2_WARNING="1")
    cmd = [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp)]
    cmd += ["--config-file", str(config)] if config else []
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, encoding="utf-8")
    if proc.returncode != 0:
        shutil.rmtree(tmp, ignore_errors=True)
        raise RuntimeError("mkdocs build --strict failed:\n" + proc.stdout[-4000:] + proc.stderr[-4000:])
    os.replace(tmp, site)


def _prune(cache: Path, keep: Path) -> None:
    """Remove all but the newest few builds (other trees' builds an hour old or more)."""
    import shutil
    import time

    builds = sorted((p for p in cache.iterdir() if p.is_dir() and p != keep),
                    key=lambda p: p.stat().st_mtime, reverse=True)
    for old in builds[_KEEP_BUILDS - 1:]:
        if time.time() - old.stat().st_mtime > 3600:
            shutil.rmtree(old, ignore_errors=True)
