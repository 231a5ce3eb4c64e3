"""The exec cache (``tools/exec_cache.py``) and the shared site build (``site_tools.shared_build``).

The build tests run real ``mkdocs build --strict`` processes on a three-page site that inherits
the project's ``mkdocs.yml`` (theme, extensions, hooks), so what they check is what authors get.
Each executed fence appends its page's name to a marker file: the marker says which pages ran.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
from site_tools import ROOT, shared_build  # noqa: E402

sys.path.insert(0, str(ROOT / "tools"))
import exec_cache  # noqa: E402

_RUN = 'open(os.environ["EXEC_MARKER"], "a", encoding="utf-8").write("{page}\\n")'

PAGE_A = f'''\
# Page A

Prose that is not part of the cache key.

```{{.python exec="on" session="a" result="text" source="above"}}
import os
{_RUN.format(page="a")}
x = 21
print(x * 2)
```

=== "A tab"

    ```{{.python exec="on" session="a"}}
    {_RUN.format(page="a")}
    print("## A heading made by code\\n\\nx is **", x, "**")
    ```

```{{.python exec="on" html="on"}}
import os
{_RUN.format(page="a")}
print("<svg width='4' height='4'><circle r='2'/></svg>")
```

```{{.pycon exec="on"}}
>>> import os
>>> _ = {_RUN.format(page="a")}
>>> sorted({{3, 1, 2}})
```
'''

PAGE_B = f'''\
# Page B

```{{.python exec="on"}}
import os
{_RUN.format(page="b")}
print("b says MESSAGE")
```
'''


def _site(tmp: Path, pages: dict[str, str]) -> Path:
    """A site under ``tmp`` with ``pages``, inheriting the project's config; returns mkdocs.yml."""
    docs = tmp / "docs"
    docs.mkdir(parents=True, exist_ok=True)
    for name, text in pages.items():
        (docs / name).write_text(text, encoding="utf-8")
    config = tmp / "mkdocs.yml"
    nav = ", ".join(pages)
    config.write_text(textwrap.dedent(f"""\
        INHERIT: {ROOT / 'mkdocs.yml'}
        docs_dir: docs
        hooks: [{ROOT / 'tools' / 'mkdocs_hooks.py'}]
        theme: {{custom_dir: {ROOT / 'overrides'}}}
        nav: [{nav}]
        """), encoding="utf-8")
    return config


def _build(config: Path, out: str, mode: str | None, cache: Path, marker: Path,
           ci: bool = False) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("CI", exec_cache.MODE_ENV)}
    env.update(NO_MKDOCS_2_WARNING="1", EXEC_MARKER=str(marker), **{exec_cache.DIR_ENV: str(cache)})
    if mode is not None:
        env[exec_cache.MODE_ENV] = mode
    if ci:
        env["CI"] = "true"
    # cwd=ROOT: pymdownx.snippets reads includes/ relative to the working directory.
    return subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-f", str(config),
                           "-d", str(config.parent / out)],
                          cwd=ROOT, env=env, capture_output=True, text=True, encoding="utf-8")


def _ok(proc: subprocess.CompletedProcess) -> subprocess.CompletedProcess:
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc


def _runs(marker: Path) -> list[str]:
    """Pages whose fences ran since the last call (and reset the marker)."""
    if not marker.exists():
        return []
    runs = marker.read_text(encoding="utf-8").split()
    marker.unlink()
    return runs


def _files(site: Path) -> dict[str, bytes]:
    return {p.relative_to(site).as_posix(): p.read_bytes() for p in sorted(site.rglob("*")) if p.is_file()}


def _retry_if_inputs_change(scenario):
    """Run ``scenario(tmp)``; if llmnotes/ or RESULTS.md changed meanwhile (an edit in the
    checkout invalidates every cache entry, as it should), run it again in a new folder."""
    def run(tmp_path):
        for attempt in range(3):
            before = exec_cache.environment_fingerprint()
            try:
                return scenario(tmp_path / f"try{attempt}")
            except AssertionError:
                if exec_cache.environment_fingerprint() == before:
                    raise
        raise AssertionError("llmnotes/ kept changing while the test ran")
    run.__name__, run.__doc__ = scenario.__name__, scenario.__doc__
    return run


@_retry_if_inputs_change
def test_cached_build_is_byte_identical_and_reruns_only_changed_pages(tmp_path):
    config = _site(tmp_path, {"index.md": "# Home\n\n[A](a.md) and [B](b.md).\n",
                              "a.md": PAGE_A, "b.md": PAGE_B})
    cache, marker = tmp_path / "cache", tmp_path / "marker"

    _ok(_build(config, "fresh", "0", cache, marker))
    assert sorted(_runs(marker)) == ["a"] * 4 + ["b"] and not cache.exists()

    _ok(_build(config, "cold", None, cache, marker))  # cache on by default outside CI
    assert sorted(_runs(marker)) == ["a"] * 4 + ["b"]
    assert sorted(p.name for p in cache.iterdir()) == ["a.md.json", "b.md.json"]

    warm = _ok(_build(config, "warm", "1", cache, marker))
    assert _runs(marker) == [], "a warm build executed fences"
    assert "5 fences replayed, 0 executed" in warm.stderr

    fresh, cold, warm_files = (_files(tmp_path / d) for d in ("fresh", "cold", "warm"))
    assert fresh.keys() == warm_files.keys()
    differ = [name for name in fresh if not fresh[name] == cold[name] == warm_files[name]]
    assert differ == [], f"cached pages differ from the fresh build: {differ}"
    assert b"A heading made by code" in warm_files["a/index.html"]  # replayed Markdown output
    assert b"-a-heading-made-by-code\" class=\"md-nav__link" in warm_files["a/index.html"]  # in the toc

    # Editing one page's fence re-runs that page only; prose edits run nothing.
    (tmp_path / "docs" / "b.md").write_text(PAGE_B.replace("MESSAGE", "CHANGED"), encoding="utf-8")
    (tmp_path / "docs" / "a.md").write_text(PAGE_A.replace("Prose that", "Edited prose that"),
                                            encoding="utf-8")
    _ok(_build(config, "edited", "1", cache, marker))
    assert _runs(marker) == ["b"]
    edited = _files(tmp_path / "edited")
    assert b"b says CHANGED" in edited["b/index.html"] and b"Edited prose" in edited["a/index.html"]


@_retry_if_inputs_change
def test_modes_refresh_ci_and_damaged_entries(tmp_path):
    config = _site(tmp_path, {"index.md": "# Home\n\n[B](b.md)\n", "b.md": PAGE_B})
    cache, marker = tmp_path / "cache", tmp_path / "marker"
    _ok(_build(config, "s", "1", cache, marker))
    entry = cache / "b.md.json"
    first = entry.read_bytes()
    assert _runs(marker) == ["b"]

    _ok(_build(config, "s", None, cache, marker, ci=True))  # CI set, variable unset: no cache
    assert _runs(marker) == ["b"]
    _ok(_build(config, "s", "0", cache, marker))
    assert _runs(marker) == ["b"] and entry.read_bytes() == first  # off: neither read nor written

    _ok(_build(config, "s", "refresh", cache, marker))
    assert _runs(marker) == ["b"] and entry.exists()

    entry.write_text("{not json", encoding="utf-8")  # a damaged entry is a miss, then rewritten
    _ok(_build(config, "s", "1", cache, marker))
    assert _runs(marker) == ["b"] and entry.read_bytes().startswith(b"{")

    bad = _build(config, "s", "sometimes", cache, marker)
    assert bad.returncode != 0 and "LLMNOTES_EXEC_CACHE='sometimes' is not a cache mode" in bad.stderr


def test_a_failing_page_is_never_cached(tmp_path):
    failing = PAGE_B.replace('print("b says MESSAGE")', 'raise ValueError("boom")')
    config = _site(tmp_path, {"index.md": "# Home\n\n[B](b.md)\n", "b.md": failing})
    cache, marker = tmp_path / "cache", tmp_path / "marker"
    for _ in range(2):  # the second, "warm" build must execute and fail exactly like the first
        proc = _build(config, "s", "1", cache, marker)
        assert proc.returncode != 0 and "boom" in proc.stderr
        assert _runs(marker) == ["b"]
    assert not (cache / "b.md.json").exists()


@pytest.mark.parametrize("value, ci, mode", [
    (None, None, "on"), (None, "true", "off"), (None, "false", "on"), ("0", None, "off"),
    ("off", "true", "off"), ("1", "true", "on"), ("refresh", None, "refresh"), ("", None, "on"),
])
def test_cache_mode(value, ci, mode):
    environ = {k: v for k, v in ((exec_cache.MODE_ENV, value), ("CI", ci)) if v is not None}
    assert exec_cache.cache_mode(environ) == mode


def test_exec_fences_are_the_key_and_prose_is_not():
    fences = exec_cache.exec_fences(PAGE_A)
    assert len(fences) == 4 and all("exec=" in f.splitlines()[0] for f in fences)
    assert fences[1].startswith("    ```") and fences[1].rstrip().endswith("```")  # under a tab
    example = "````markdown\n```{.python exec=\"on\"}\nprint(1)\n```\n````\n"  # shown, not run
    assert exec_cache.exec_fences(example + "```python\nprint(2)\n```\n") == []
    key = exec_cache.page_key(fences, "env")
    assert exec_cache.page_key(exec_cache.exec_fences(PAGE_A.replace("Prose", "Text")), "env") == key
    assert exec_cache.page_key(exec_cache.exec_fences(PAGE_A.replace("x * 2", "x * 3")), "env") != key
    assert exec_cache.page_key(fences, "other env") != key


def test_fingerprint_follows_package_source_and_assets(tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "mod.py").write_text("A = 1\n", encoding="utf-8")
    (tmp_path / "assets" / "data.txt").write_text("x", encoding="utf-8")
    before = exec_cache.environment_fingerprint(tmp_path)
    (tmp_path / "__pycache__").mkdir()
    (tmp_path / "__pycache__" / "mod.cpython.pyc").write_bytes(b"\0")
    assert exec_cache.environment_fingerprint(tmp_path) == before  # bytecode is not source
    (tmp_path / "assets" / "data.txt").write_text("y", encoding="utf-8")
    changed = exec_cache.environment_fingerprint(tmp_path)
    assert changed != before
    results = tmp_path / "RESULTS.md"
    results.write_text("| a |\n", encoding="utf-8")
    with_results = exec_cache.environment_fingerprint(tmp_path, results)
    results.write_text("| b |\n", encoding="utf-8")  # a re-measured number a page quotes
    assert exec_cache.environment_fingerprint(tmp_path, results) not in (changed, with_results)


def test_fingerprint_follows_the_run_records_pages_read(tmp_path, monkeypatch):
    """Pages read benchmarks/results/*.json and finetune_runs/*.json through llmnotes.recorded:
    a re-run record must invalidate the cache like a re-measured RESULTS.md."""
    package, bench = tmp_path / "pkg", tmp_path / "benchmarks"
    (bench / "results").mkdir(parents=True)
    package.mkdir()
    record = bench / "results" / "distill.json"
    record.write_text('{"ppl": 1.5}', encoding="utf-8")
    monkeypatch.setattr(exec_cache, "BENCHMARKS", bench)
    before = exec_cache.environment_fingerprint(package, bench / "RESULTS.md")
    record.write_text('{"ppl": 1.4}', encoding="utf-8")
    assert exec_cache.environment_fingerprint(package, bench / "RESULTS.md") != before


_WORKER = """
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
import site_tools
config, cache, log = Path({config!r}), Path({cache!r}), Path({log!r})
def build(site):
    with open(log, "a", encoding="utf-8") as f:
        f.write("build\\n")
    site_tools._build_into(site, config)
print(site_tools.shared_build("k" * 64, cache, build))
"""


def test_concurrent_workers_share_one_site_build(tmp_path):
    config = _site(tmp_path, {"index.md": "# Home\n"})
    cache, log = tmp_path / "sites", tmp_path / "builds.log"
    code = _WORKER.format(tests=str(ROOT / "tests"), config=str(config), cache=str(cache), log=str(log))
    env = dict(os.environ, PYTEST_XDIST_TESTRUNUID="run-1")
    workers = [subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [w.communicate(timeout=600) for w in workers]
    assert all(w.returncode == 0 for w in workers), [o[1][-2000:] for o in outs]
    assert log.read_text(encoding="utf-8").split() == ["build"]  # one build for three workers
    sites = {o[0].strip() for o in outs}
    assert sites == {str(cache / ("k" * 64))} and (cache / ("k" * 64) / "index.html").is_file()
    assert not [p for p in cache.iterdir() if ".building-" in p.name]  # built aside, renamed in


def test_figures_render_to_the_same_bytes_every_time(monkeypatch):
    # A fresh build must be reproducible for "cached == fresh" to mean anything: matplotlib's
    # SVG otherwise embeds the date and random clip-path ids.
    import matplotlib.pyplot as plt

    from llmnotes import plotting

    monkeypatch.setenv("LLMNOTES_DOCS_BUILD", "1")

    def draw() -> str:
        fig, ax = plt.subplots(figsize=(2, 1))
        ax.bar([0, 1], [1, 2])
        return plotting.svg(fig)

    first = draw()
    assert "clip-path" in first and "<dc:date>" not in first
    assert draw() == first
