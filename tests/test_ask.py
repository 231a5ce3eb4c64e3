"""`llmnotes ask`: an extractive answer offline, a generated one from any OpenAI-compatible server."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).parent))  # pytest-markdown-docs imports test files without it
from serve_fixtures import nano_model, tokenizer  # noqa: E402

from llmnotes.rag.chunking import Chunk  # noqa: E402
from llmnotes.cli import main  # noqa: E402
from llmnotes.rag.extractive import extract_answer, sentences  # noqa: E402
from llmnotes.rag import load_site_chunks  # noqa: E402

QUESTION = "What does the KV cache store?"


def _chunk(text: str, path: str = "a.md") -> Chunk:
    return Chunk(text=text, path=path, anchor="x", title="T", heading="H")


def test_sentences_drop_code_math_and_link_targets():
    md = ("BM25 ranks documents by term weight. See [the page](bm25.md) for why it saturates.\n\n"
          "$$s = \\sum_i w_i$$\n\nscores = bm25.scores(query)\nprint(scores)\n\n| a | b |\n|---|---|\n"
          "The idf term rewards rare words strongly.")
    assert sentences(md) == ["BM25 ranks documents by term weight.", "See the page for why it saturates.",
                             "The idf term rewards rare words strongly."]


def test_extract_answer_quotes_sentences_of_its_sources():
    chunks = [_chunk("Cats sleep most of the day in the sun. Dogs like long walks in the park."),
              _chunk("The key value cache stores the keys and values of past tokens. It grows with every step.")]
    quotes = extract_answer("what does the key value cache store", chunks, n=2)  # BM25 scoring
    assert quotes[0].source == 2 and quotes[0].text.startswith("The key value cache stores")
    assert len(quotes) == 2
    for q in quotes:
        assert q.text in chunks[q.source - 1].text

    def embed(texts):  # a fake embedder: the question points at the "Dogs" sentence
        v = np.array([[1.0, 0.0] if ("walks" in t or t.startswith("what")) else [0.0, 1.0] for t in texts])
        return v / np.linalg.norm(v, axis=1, keepdims=True)
    assert extract_answer("what", chunks, n=1, embed=embed)[0].text.startswith("Dogs like")
    with pytest.raises(ValueError, match="n must be a positive int"):
        extract_answer("q", chunks, n=0)
    with pytest.raises(ValueError, match="question must be a non-empty string"):
        extract_answer("  ", chunks)


def test_ask_offline_answers_by_quoting_the_cited_pages(capsys):
    assert main(["ask", QUESTION, "--retriever", "bm25"]) == 0
    out = capsys.readouterr().out
    answer, _, sources = out.partition("Sources:\n")
    assert answer.startswith("Answer, quoted from the sources")
    quotes = re.findall(r"\u201c(.+?)\u201d \[(\d+)\]", answer)
    assert len(quotes) == 3
    urls = re.findall(r"^\[\d+\] (\S+)", sources, re.M)
    by_url: dict[str, str] = {}  # a long section is several chunks under one url
    for c in load_site_chunks():
        by_url[c.url] = by_url.get(c.url, "") + " " + " ".join(sentences(c.text))
    for text, n in quotes:  # every quoted sentence is on the page it cites: nothing invented
        assert text in by_url[urls[int(n) - 1]]
    assert any("kv-cache" in u for u in urls)


@pytest.fixture()
def server():
    from llmnotes.serve import BackgroundServer, create_app

    with BackgroundServer(create_app(nano_model(block_size=4096), tokenizer(), model_name="nano")) as srv:
        yield srv


def test_ask_with_a_server_generates_the_answer(server, capsys):
    args = ["ask", QUESTION, "--retriever", "bm25", "--base-url", server.url, "--model", "nano",
            "--max-prompt-tokens", "600", "--max-new-tokens", "8", "--k", "2"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"Answer from nano at {server.url}:\n")
    assert "Sources:\n[1] " in out and "quoted from the sources" not in out


def test_ask_reads_the_openai_environment(server, capsys, monkeypatch):
    monkeypatch.setenv("OPENAI_BASE_URL", server.url + "/v1")
    monkeypatch.setenv("OPENAI_MODEL", "nano")
    assert main(["ask", QUESTION, "--retriever", "bm25", "--max-prompt-tokens", "600",
                 "--max-new-tokens", "4", "--k", "2"]) == 0
    assert capsys.readouterr().out.startswith(f"Answer from nano at {server.url}/v1:\n")
