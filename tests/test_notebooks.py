"""The Notebooks section: notebooks are committed without outputs, listed in the nav, and the
built site shows them executed (mkdocs-jupyter runs every cell at build, allow_errors: false)."""

from __future__ import annotations

import sys
from pathlib import Path

import nbformat
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports tests without it
from site_tools import DOCS, ROOT, built_site  # noqa: E402

NOTEBOOKS = sorted((DOCS / "notebooks").glob("*.ipynb"))
# One line each notebook prints only if it ran to its end.
LAST_OUTPUT = {"text-to-served-model": "server reply:", "rag-over-this-site": "recall@5"}


def test_there_are_notebooks_and_each_is_checked():
    assert {p.stem for p in NOTEBOOKS} == set(LAST_OUTPUT)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_without_outputs_and_listed_in_the_nav(path):
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code), \
        f"{path.name} holds outputs: clear them (jupyter nbconvert --clear-output --inplace)"
    assert f"notebooks/{path.name}" in (ROOT / "mkdocs.yml").read_text(encoding="utf-8")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_built_notebook_page_shows_its_outputs(path):
    html = (built_site() / "notebooks" / path.stem / "index.html").read_text(encoding="utf-8")
    assert LAST_OUTPUT[path.stem] in html
    assert "Traceback" not in html
    assert f"{path.name}" in html  # the download button links the source notebook
