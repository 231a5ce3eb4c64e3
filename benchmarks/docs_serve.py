"""How long an author waits: ``mkdocs serve`` to the first page, cold and with a warm exec
cache, and from saving a one-page edit to the page showing it.

Runs on a copy of ``docs/`` (the edit never touches the checkout) with a config that inherits
``mkdocs.yml``. The exec cache lives in a fresh folder: the cold run fills it, the warm runs
read it. Each serve is a real ``mkdocs serve`` process on a free port, polled over HTTP.

    python benchmarks/docs_serve.py                 # prints a Markdown table
    python benchmarks/docs_serve.py --page transformers/attention.md
    git archive HEAD | tar -x -C /tmp/snap && python benchmarks/docs_serve.py --root /tmp/snap

``--root`` measures another tree (its ``llmnotes/`` is imported, via PYTHONPATH): a snapshot of
a commit keeps the cache key still while others edit the package in the checkout.

The edit adds a paragraph and a comment line to the first exec fence of ``--page``, so the
page's cache entry misses and that page alone executes again; the line the hooks log after
each build ("exec cache: ... executed on N pages (...)") shows which pages ran.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
_EXEC_LINE = re.compile(r"exec cache: (\d+) fences replayed, (\d+) executed on (\d+) pages(?: \(([^)]*)\))?")


def free_port() -> int:
    """A TCP port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def make_project(tmp: Path, root: Path) -> Path:
    """A config inheriting ``root``'s, over a copy of its docs/; returns the config path."""
    shutil.copytree(root / "docs", tmp / "docs")
    config = tmp / "mkdocs.yml"
    config.write_text(
        f"INHERIT: {root / 'mkdocs.yml'}\n"
        "docs_dir: docs\n"
        f"hooks: [{root / 'tools' / 'mkdocs_hooks.py'}]\n"
        f"theme: {{custom_dir: {root / 'overrides'}}}\n", encoding="utf-8")
    return config


class Serve:
    """One ``mkdocs serve`` process; its output goes to a log file we can search."""

    def __init__(self, config: Path, cache: Path, log: Path, dirty: bool, root: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/llmnotes/"
        env = dict(os.environ, LLMNOTES_EXEC_CACHE="1", LLMNOTES_EXEC_CACHE_DIR=str(cache),
                   NO_MKDOCS_2_WARNING="1", PYTHONPATH=str(root))
        env.pop("CI", None)
        cmd = [sys.executable, "-m", "mkdocs", "serve", "-f", str(config), "-a", f"127.0.0.1:{self.port}"]
        # --dirty always logs a warning ("dirty build"), which strict mode turns into an abort.
        cmd += ["--dirty", "--no-strict"] if dirty else []
        self.log = log
        self._out = open(log, "w", encoding="utf-8")
        # cwd=root: pymdownx.snippets finds includes/ relative to the working directory.
        self.proc = subprocess.Popen(cmd, cwd=root, env=env, stdout=self._out, stderr=subprocess.STDOUT)
        self.started = time.perf_counter()

    def wait_for(self, path: str, needle: str | None, timeout: float) -> float:
        """Seconds from start until ``path`` answers 200 (and contains ``needle``)."""
        deadline = time.perf_counter() + timeout
        while time.perf_counter() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"mkdocs serve exited with {self.proc.returncode}; see {self.log}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=5) as r:
                    body = r.read().decode("utf-8", "replace")
                if r.status == 200 and (needle is None or needle in body):
                    return time.perf_counter()
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.25)
        raise TimeoutError(f"{self.url + path} did not show {needle!r} within {timeout:.0f}s; see {self.log}")

    def cpu_seconds(self) -> float | None:
        """CPU time (user + system) the server process used so far: unlike wall time, it
        does not grow when other jobs share the CPU (Linux /proc only; None elsewhere)."""
        try:
            fields = Path(f"/proc/{self.proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def exec_lines(self) -> list[tuple[int, int, int, str]]:
        """(replayed, executed, pages, names) for every build this server ran so far."""
        text = self.log.read_text(encoding="utf-8", errors="replace")
        return [(int(a), int(b), int(c), d or "") for a, b, c, d in _EXEC_LINE.findall(text)]

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._out.close()


def edit_page(page: Path, token: str) -> None:
    """Append a paragraph and put a comment line at the top of the first exec fence."""
    text = page.read_text(encoding="utf-8")
    m = re.search(r"^([ \t]*)```+\{[^}\n]*exec=[^\n]*\n", text, re.M)
    if m is None:
        raise SystemExit(f"{page} has no exec fence to edit")
    edited = text[:m.end()] + f"{m.group(1)}# {token}\n" + text[m.end():] + f"\n\n{token}\n"
    page.write_text(edited, encoding="utf-8")


def run_serve(config: Path, cache: Path, log: Path, *, dirty: bool, edit: Path | None,
              page_url: str, timeout: float, root: Path) -> dict:
    """Start a server, time the first page, optionally time an edit, stop it."""
    server = Serve(config, cache, log, dirty, root)
    try:
        first = server.wait_for("", None, timeout) - server.started
        result = {"first_page_s": first, "first_cpu_s": server.cpu_seconds(),
                  "first_build": server.exec_lines()[-1:]}
        if edit is not None:
            time.sleep(1.0)  # the watcher compares mtimes: keep the edit clearly after the build
            token = f"benchmark-edit-{time.time_ns()}"
            cpu0, t0 = server.cpu_seconds(), time.perf_counter()
            edit_page(edit, token)
            result["edit_s"] = server.wait_for(page_url, token, timeout) - t0
            cpu1 = server.cpu_seconds()
            result["edit_cpu_s"] = None if cpu0 is None or cpu1 is None else cpu1 - cpu0
            result["edit_build"] = server.exec_lines()[-1:]
        return result
    finally:
        server.stop()


def cpu_line() -> str:
    """``lscpu`` model name, core count and the bf16/AMX flags, for RESULTS.md."""
    model = "unknown"
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True).stdout
        model = re.search(r"Model name:\s*(.+)", out).group(1).strip()
    except (OSError, AttributeError):
        pass
    flags = Path("/proc/cpuinfo").read_text(encoding="utf-8") if Path("/proc/cpuinfo").exists() else ""
    has = lambda f: "yes" if re.search(rf"\b{f}\b", flags) else "no"  # noqa: E731
    return (f"{model}, {os.cpu_count()} cores, avx512_bf16 {has('avx512_bf16')}, "
            f"amx {has('amx_tile')}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--page", default="transformers/attention.md", help="page to edit (under docs/)")
    ap.add_argument("--timeout", type=float, default=3600, help="seconds to wait for any one page")
    ap.add_argument("--cache", type=Path, help="exec cache folder to use (default: a fresh temp dir, "
                    "so the first run is cold)")
    ap.add_argument("--root", type=Path, default=ROOT, help="the tree to serve (default: this checkout)")
    ap.add_argument("--skip-cold", action="store_true", help="start from --cache as it is")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="llmnotes-serve-bench-"))
    root = args.root.resolve()
    config = make_project(tmp, root)
    cache = args.cache or tmp / "exec-cache"
    page = tmp / "docs" / args.page
    stem = args.page.removesuffix(".md")
    page_url = stem.removesuffix("index") if stem.endswith("index") else stem + "/"
    if args.skip_cold and args.cache is None:
        ap.error("--skip-cold needs --cache (a folder a previous run filled)")
    rows = []
    if not args.skip_cold:
        r = run_serve(config, cache, tmp / "cold.log", dirty=False, edit=None, page_url=page_url,
                      timeout=args.timeout, root=root)
        rows.append(("cold cache: `mkdocs serve`, first page", r["first_page_s"], r["first_cpu_s"],
                     r["first_build"]))
    for dirty in (False, True):
        flag = " --dirty --no-strict" if dirty else ""
        for attempt in range(3):
            r = run_serve(config, cache, tmp / f"warm{flag.strip()}-{attempt}.log", dirty=dirty, edit=page,
                          page_url=page_url, timeout=args.timeout, root=root)
            if r["first_build"] and r["first_build"][0][1] == 0:
                break
            # llmnotes/ or RESULTS.md changed since the cache was filled: every page missed
            # (as it should) and this run refilled the cache; measure again on the refilled one.
            print(f"warm{flag}: the cache was invalidated before this run; measuring again",
                  file=sys.stderr)
        rows.append((f"warm cache: `mkdocs serve{flag}`, first page", r["first_page_s"], r["first_cpu_s"],
                     r["first_build"]))
        rows.append((f"warm cache: `mkdocs serve{flag}`, edit `{args.page}` until it shows", r["edit_s"],
                     r["edit_cpu_s"], r["edit_build"]))
    print(f"CPU: {cpu_line()}; Python {sys.version.split()[0]}; {time.strftime('%Y-%m-%d')}")
    print("| what | wall s | server CPU s | pages executed (fences replayed / executed) |")
    print("|---|---:|---:|---|")
    for what, seconds, cpu, build in rows:
        replayed, executed, pages, names = build[0] if build else (0, 0, 0, "")
        detail = f"{pages}{' (' + names + ')' if names else ''} ({replayed} / {executed})"
        cpu_text = "n/a" if cpu is None else f"{cpu:.1f}"
        print(f"| {what} | {seconds:.1f} | {cpu_text} | {detail} |")
    shutil.rmtree(tmp / "docs", ignore_errors=True)


if __name__ == "__main__":
    main()
