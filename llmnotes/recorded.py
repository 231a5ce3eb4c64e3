"""Recorded benchmark results, read the way the site's pages quote them.

The benchmarks in ``benchmarks/`` write their results into ``benchmarks/RESULTS.md`` (one
``## Title`` section per benchmark, with Markdown tables). Pages that quote a measured number
read it from there at build time instead of typing it, so the prose cannot drift from the
recorded run. This works in a checkout of the repository (the file is not part of the
installed package); :func:`results_path` says where it looks.

Example::

    >>> rows = table("Math chapter", 1)               # doctest: +SKIP
    >>> number(rows[0]["vs torch"])                   # "268x" -> 268.0  # doctest: +SKIP
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

RESULTS_ENV = "LLMNOTES_RESULTS"  # another RESULTS.md to read (e.g. from a different machine)

_NUMBER = re.compile(r"[-+]?(?:\d[\d,]*\.?\d*|\.\d+)(?:[eE][-+]?\d+)?")


def results_path() -> Path:
    """``$LLMNOTES_RESULTS`` if set, else ``benchmarks/RESULTS.md`` of the checkout."""
    given = os.environ.get(RESULTS_ENV)
    path = Path(given) if given else Path(__file__).resolve().parents[1] / "benchmarks" / "RESULTS.md"
    if not path.is_file():
        raise FileNotFoundError(f"no recorded results at {path}: run from a checkout of the "
                                f"repository or set {RESULTS_ENV} to a RESULTS.md")
    return path


def finetune_run(name: str) -> dict:
    """A recorded ``llmnotes finetune`` run: ``benchmarks/finetune_runs/<name>.json`` beside the
    results file (its command, steps, seconds, and the held-out scores before and after).

    Raises:
        FileNotFoundError: no such run is recorded; the message lists the recorded ones.
    """
    return _recorded_json("finetune_runs", name, "finetune run")


def result(name: str) -> dict:
    """A benchmark's recorded JSON: ``benchmarks/results/<name>.json`` beside the results file
    (written by the benchmark's ``--write``; it carries its command and date).

    Raises:
        FileNotFoundError: no such result is recorded; the message lists the recorded ones.
    """
    return _recorded_json("results", name, "result")


def _recorded_json(subfolder: str, name: str, what: str) -> dict:
    """``<subfolder>/<name>.json`` beside the results file, or an error listing the recorded ones."""
    folder = results_path().parent / subfolder
    path = folder / f"{name}.json"
    if not path.is_file():
        known = sorted(p.stem for p in folder.glob("*.json")) if folder.is_dir() else []
        raise FileNotFoundError(f"no recorded {what} {name!r} in {folder}; recorded: {known}")
    return json.loads(path.read_text(encoding="utf-8"))


def section(title: str, text: str | None = None) -> str:
    """The text of the first ``##``/``###`` section whose heading starts with ``title``
    (case-sensitive), up to the next heading of the same or a higher level.

    Raises:
        KeyError: no heading starts with ``title``.
    """
    if text is None:
        text = results_path().read_text(encoding="utf-8")
    lines = text.splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"^(#{2,6}) (.*)$", line)
        if m and m.group(2).startswith(title):
            level = len(m.group(1))
            body = []
            for nxt in lines[i + 1:]:
                h = re.match(r"^(#{1,6}) ", nxt)
                if h and len(h.group(1)) <= level:
                    break
                body.append(nxt)
            return "\n".join(body)
    raise KeyError(f"no section starting with {title!r} in the recorded results")


def tables(title: str, text: str | None = None) -> list[list[dict[str, str]]]:
    """Every Markdown table in section ``title``, each as a list of rows keyed by column header."""
    out: list[list[dict[str, str]]] = []
    block: list[list[str]] = []
    for line in section(title, text).splitlines() + [""]:
        if line.lstrip().startswith("|"):
            block.append([c.strip() for c in line.strip().strip("|").split("|")])
            continue
        if len(block) >= 2:
            header, rows = block[0], block[2:]  # block[1] is the |---| separator
            out.append([dict(zip(header, row)) for row in rows])
        block = []
    return out


def table(title: str, index: int = 0, text: str | None = None) -> list[dict[str, str]]:
    """The ``index``-th table of section ``title`` (see :func:`tables`)."""
    found = tables(title, text)
    if not -len(found) <= index < len(found):
        raise IndexError(f"section {title!r} has {len(found)} table(s), asked for index {index}")
    return found[index]


def row(rows: list[dict[str, str]], column: str, value: str) -> dict[str, str]:
    """The first row whose ``column`` equals ``value`` (after stripping backticks)."""
    for r in rows:
        if r.get(column, "").strip("`") == value:
            return r
    raise KeyError(f"no row with {column} = {value!r}")


def number(cell: str) -> float:
    """The first number in a table cell: ``"1,084x"`` -> 1084.0, ``"2.70e-03"`` -> 0.0027,
    ``"95.3%"`` -> 95.3 (the percent sign is dropped, not applied).

    >>> number("1,084x"), number("2.70e-03"), number("95.3%"), number("**1.89x**")
    (1084.0, 0.0027, 95.3, 1.89)
    """
    m = _NUMBER.search(cell)
    if not m:
        raise ValueError(f"no number in cell {cell!r}")
    return float(m.group(0).replace(",", ""))


def command(title: str, text: str | None = None) -> str:
    """The command line recorded in section ``title`` (the first ``Command: `...` `` or the first
    indented code line)."""
    body = section(title, text)
    m = re.search(r"Command: `([^`]+)`", body) or re.search(r"^    (\S.*)$", body, re.M)
    if not m:
        raise KeyError(f"no command recorded in section {title!r}")
    return m.group(1).strip()


def machine(title: str, text: str | None = None) -> str:
    """The machine a section was measured on, from its ``CPU: ...`` line (model and flags,
    e.g. ``"AMD EPYC (avx512_bf16 yes, amx no, avx512_vnni yes), no GPU"``)."""
    m = re.search(r"CPU: ([^;\n]+)", section(title, text))
    if not m:
        raise KeyError(f"no 'CPU: ...' line recorded in section {title!r}")
    return m.group(1).strip()
