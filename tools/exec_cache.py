"""Execution cache for markdown-exec: re-run a page's ``exec`` fences only when they, or the
code they run, change.

markdown-exec (1.14) has no cache of its own (its issue #4 asks for one), so this module
wraps the one function every executing formatter goes through, ``base_format``, and hands
it a ``run`` that either executes the fence and records what it printed, or replays what an
earlier build recorded. Only the *execution* is cached: the recorded text still goes through
markdown-exec's normal rendering (Markdown conversion, table of contents, tabs), so a
replayed page renders byte-identically to the build that recorded it.

A page is cached as a whole, because its fences share state through ``session="..."``. The
key of a page is

* every ``exec`` fence of the page (its opening line and its code),
* a hash of the ``llmnotes/`` package source, ``llmnotes/assets/`` included, and of the
  ``benchmarks/`` folder: pages quote measured numbers through ``llmnotes.recorded`` from
  ``RESULTS.md`` (``$LLMNOTES_RESULTS`` when that names another file) and from the run records
  in ``results/`` and ``finetune_runs/``,
* the Python, torch and markdown-exec versions.

One JSON file per page lives under ``.cache/llmnotes-exec/`` (git-ignored), so a changed
page overwrites its own entry and the folder never grows beyond one entry per page.

``LLMNOTES_EXEC_CACHE`` selects the mode: ``1`` (the default) reads and writes the cache,
``refresh`` executes every page and rewrites its entry, ``0`` neither reads nor writes. When
the variable is unset and ``CI`` is set, the cache is off: CI always executes every fence.
A page whose execution logged a warning or an error is never stored, so a warm build fails
``--strict`` exactly where a fresh build would.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Mapping

ROOT = Path(__file__).resolve().parents[1]
MODE_ENV = "LLMNOTES_EXEC_CACHE"
DIR_ENV = "LLMNOTES_EXEC_CACHE_DIR"
DEFAULT_DIR = ROOT / ".cache" / "llmnotes-exec"
FORMAT = 1  # bump when the entry layout changes: old entries then miss instead of misreading
_OFF = {"0", "off", "no", "false"}
_ON = {"", "1", "on", "yes", "true"}
_EXEC_LOGGER = "mkdocs.plugins.markdown_exec"  # where markdown-exec reports failed fences

log = logging.getLogger("mkdocs.hooks.exec_cache")


def cache_mode(environ: Mapping[str, str] = os.environ) -> str:
    """``"on"``, ``"refresh"`` or ``"off"`` from ``LLMNOTES_EXEC_CACHE`` (and ``CI``).

    An explicit ``LLMNOTES_EXEC_CACHE`` wins; unset, the cache is off under CI (``CI`` set
    to anything but ``0``/``false``) and on elsewhere.
    """
    raw = environ.get(MODE_ENV)
    if raw is None:
        ci = environ.get("CI", "").strip().lower()
        return "off" if ci not in ("", "0", "false", "no") else "on"
    value = raw.strip().lower()
    if value in _OFF:
        return "off"
    if value in _ON:
        return "on"
    if value == "refresh":
        return "refresh"
    raise ValueError(f"{MODE_ENV}={raw!r} is not a cache mode: use 1 (read and write the cache), "
                     "refresh (execute every page and rewrite the cache) or 0 (no cache)")


def cache_dir(environ: Mapping[str, str] = os.environ) -> Path:
    """The cache folder: ``$LLMNOTES_EXEC_CACHE_DIR`` or ``.cache/llmnotes-exec``."""
    given = environ.get(DIR_ENV)
    return Path(given) if given else DEFAULT_DIR


def _version(dist: str) -> str:
    # metadata, not import: importing torch only to read its version costs seconds per build.
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "absent"


def tree_hash(folder: Path) -> str:
    """SHA-256 over every file under ``folder`` (relative path and bytes), caches skipped."""
    digest = hashlib.sha256()
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if "__pycache__" in rel.split("/") or rel.endswith((".pyc", ".pyo")):
            continue
        digest.update(rel.encode("utf-8") + b"\0")
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()


BENCHMARKS = ROOT / "benchmarks"  # RESULTS.md and the JSON run records pages read


def results_file(environ: Mapping[str, str] = os.environ) -> Path:
    """The recorded benchmark results pages read (the same rule as ``llmnotes.recorded``)."""
    given = environ.get("LLMNOTES_RESULTS")
    return Path(given) if given else ROOT / "benchmarks" / "RESULTS.md"


def _file_hash(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else "absent"


def environment_fingerprint(package: Path = ROOT / "llmnotes", results: Path | None = None) -> str:
    """What every page's output depends on besides its own fences: the package source and
    assets, the recorded benchmark results, and the interpreter and library versions."""
    parts = {
        "format": FORMAT,
        "package": tree_hash(package),
        "results": _file_hash(results or results_file()),
        "benchmarks": tree_hash(BENCHMARKS) if BENCHMARKS.is_dir() else "absent",  # the run records
        "python": sys.version,
        "implementation": platform.python_implementation(),
        "torch": _version("torch"),
        "markdown-exec": _version("markdown-exec"),
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()


def exec_fences(markdown: str) -> list[str]:
    """The fenced blocks of a page whose opening line has an ``exec`` option, each as its
    opening line plus its code (indented fences under tabs and admonitions included)."""
    fences: list[str] = []
    lines = markdown.splitlines(keepends=True)
    i = 0
    while i < len(lines):
        opener = _fence_opener(lines[i])
        if opener is None:
            i += 1
            continue
        indent, marker = opener
        j = i + 1
        while j < len(lines) and not _closes(lines[j], indent, marker):
            j += 1
        if "exec=" in lines[i]:
            fences.append("".join(lines[i:j + 1]))
        i = j + 1
    return fences


def _fence_opener(line: str) -> tuple[str, str] | None:
    stripped = line.lstrip(" \t")
    for char in "`~":
        if stripped.startswith(char * 3):
            marker = char * (len(stripped) - len(stripped.lstrip(char)))
            return line[:len(line) - len(stripped)], marker
    return None


def _closes(line: str, indent: str, marker: str) -> bool:
    stripped = line.strip()
    return (stripped.startswith(marker) and set(stripped) == {marker[0]}
            and len(line) - len(line.lstrip(" \t")) <= len(indent) + 3)


def page_key(fences: list[str], fingerprint: str) -> str:
    """The cache key of a page: its exec fences and the environment fingerprint."""
    digest = hashlib.sha256(fingerprint.encode("utf-8"))
    for fence in fences:
        digest.update(b"\0fence\0" + fence.encode("utf-8"))
    return digest.hexdigest()


def atomic_write_text(path: Path, text: str) -> None:
    """Write ``text`` to ``path`` as UTF-8 through a temp file and a rename, so a reader (or a
    build killed half-way) never sees a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _code_sha(code: str) -> str:
    return hashlib.sha256(code.encode("utf-8")).hexdigest()


class _WarningCounter(logging.Handler):
    """Counts warnings markdown-exec logs (a failed fence) while a page renders."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += 1


@dataclass
class _Page:
    """The cache's view of the page being rendered."""

    src_uri: str
    key: str
    replay: list[dict] | None  # recorded runs to hand back, or None to execute
    recorded: list[dict] = field(default_factory=list)


class ExecCache:
    """Per-page record/replay of markdown-exec executions (see the module docstring)."""

    def __init__(self, directory: Path, fingerprint: str, mode: str) -> None:
        self.directory = directory
        self.fingerprint = fingerprint
        self.mode = mode
        self.page: _Page | None = None
        self.stats = {"replayed": 0, "executed": 0, "stored": 0}
        self.executed_pages: list[str] = []  # pages that ran code this build, in build order
        self._warnings = _WarningCounter()

    def entry_path(self, src_uri: str) -> Path:
        """Where a page's entry lives: ``<cache>/<page path>.json``."""
        return self.directory / f"{src_uri}.json"

    def begin_page(self, src_uri: str, markdown: str) -> None:
        """Called before a page renders: look its entry up (unless refreshing)."""
        self.end_page(store=False)
        fences = exec_fences(markdown)
        if not fences:
            return
        key = page_key(fences, self.fingerprint)
        replay = self._load(src_uri, key) if self.mode == "on" else None
        self.page = _Page(src_uri, key, replay)
        self._warnings.count = 0
        logging.getLogger(_EXEC_LOGGER).addHandler(self._warnings)

    def _load(self, src_uri: str, key: str) -> list[dict] | None:
        path = self.entry_path(src_uri)
        try:
            entry = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:  # a damaged entry is a miss, not a failed build
            log.info("exec cache: ignoring unreadable %s (%s)", path, exc)
            return None
        if entry.get("key") != key or not isinstance(entry.get("runs"), list):
            return None
        return list(entry["runs"])

    def wrap(self, run: Callable[..., str]) -> Callable[..., str]:
        """``run`` as markdown-exec calls it, replaying or recording for the current page."""

        def cached_run(code: str, *args: Any, **kwargs: Any) -> str:
            page = self.page
            if page is None:  # a page without exec fences in its own source (e.g. a snippet)
                return run(code, *args, **kwargs)
            if page.replay is not None:
                return self._replay(page, code)
            if self.executed_pages[-1:] != [page.src_uri]:
                self.executed_pages.append(page.src_uri)
            output = run(code, *args, **kwargs)  # ExecutionError propagates: nothing recorded
            page.recorded.append({"code": _code_sha(code), "output": output})
            self.stats["executed"] += 1
            return output

        cached_run.__wrapped__ = run  # type: ignore[attr-defined]
        return cached_run

    def _replay(self, page: _Page, code: str) -> str:
        from mkdocs.exceptions import PluginError

        if not page.replay or page.replay[0].get("code") != _code_sha(code):
            # The key matched but the fences markdown-exec runs differ from the ones recorded
            # (an exec fence pulled in from another file): refuse rather than show stale output.
            raise PluginError(
                f"exec cache: the cached runs of {page.src_uri} do not match its fences; delete "
                f"{self.entry_path(page.src_uri)} or build with {MODE_ENV}=refresh")
        self.stats["replayed"] += 1
        return page.replay.pop(0)["output"]

    def end_page(self, store: bool = True) -> None:
        """Called after a page rendered: store what it executed if every fence succeeded."""
        page, self.page = self.page, None
        logging.getLogger(_EXEC_LOGGER).removeHandler(self._warnings)
        if page is None or not store or page.replay is not None or self.mode == "off":
            return
        if self._warnings.count:
            log.info("exec cache: %s logged execution warnings, not cached", page.src_uri)
            return
        entry = {"format": FORMAT, "key": page.key, "page": page.src_uri, "runs": page.recorded}
        atomic_write_text(self.entry_path(page.src_uri), json.dumps(entry, ensure_ascii=False))
        self.stats["stored"] += 1


_ACTIVE: ExecCache | None = None


def install(cache: ExecCache | None) -> None:
    """Make ``cache`` the one markdown-exec's formatters use (None: execute everything).

    Patches ``base_format`` in each markdown-exec formatter module once per process; the
    patched function looks the active cache up at call time, so ``mkdocs serve`` rebuilds
    (which re-run ``on_config``) switch cache objects without patching twice.
    """
    global _ACTIVE
    _ACTIVE = cache
    if cache is not None:
        _patch_markdown_exec()


def _patch_markdown_exec() -> None:
    import importlib
    import pkgutil

    from markdown_exec._internal import formatters
    from markdown_exec._internal.formatters import base

    original = base.base_format
    for info in pkgutil.iter_modules(formatters.__path__):
        module = importlib.import_module(f"{formatters.__name__}.{info.name}")
        current = getattr(module, "base_format", None)
        if current is original:
            module.base_format = _caching_base_format(original)
    # ``base`` itself keeps the original: only the formatters' calls go through the cache.


def _caching_base_format(original: Callable[..., Any]) -> Callable[..., Any]:
    def base_format(*, run: Callable[..., str], **kwargs: Any) -> Any:
        cache = _ACTIVE
        return original(run=cache.wrap(run) if cache is not None else run, **kwargs)

    base_format.__wrapped__ = original  # type: ignore[attr-defined]
    return base_format


def active() -> ExecCache | None:
    """The cache installed for the current build, or None when every fence executes."""
    return _ACTIVE
