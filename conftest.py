"""Pytest set-up shared by the package tests and the docs' code blocks.

pytest-markdown-docs runs every ```python fence in docs/. Its default parser skips fences
indented under MkDocs admonitions (`!!! note`, `??? tip`) and content tabs (`=== "Tab"`);
rewriting tab markers as admonitions and enabling the admonition plugin makes it see them.
"""

import os
import re

import pytest

# Nothing may reach a model hub from a test or a page.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("MPLBACKEND", "Agg")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # pytest runs one worker per core (-n auto): one thread each avoids oversubscribing the CPU.
    os.environ.setdefault("OMP_NUM_THREADS", "1")

_TAB_OR_DETAILS = re.compile(r"^(\s*)(===\+?|\?\?\?\+?) ", re.M)


def _mkdocs_markdown_it():
    from markdown_it import MarkdownIt
    from mdit_py_plugins.admon import admon_plugin

    class MkDocsMarkdown(MarkdownIt):
        def parse(self, src, env=None):
            return super().parse(_TAB_OR_DETAILS.sub(r"\1!!! ", src), env)

    return MkDocsMarkdown("commonmark").use(admon_plugin)


@pytest.hookimpl
def pytest_markdown_docs_markdown_it():
    return _mkdocs_markdown_it()
