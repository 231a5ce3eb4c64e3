"""``llmnotes ask``: answer a question from the site's pages, with the sources it used."""

from __future__ import annotations

import argparse
import os

from llmnotes.rag import (ask, build_retriever, default_embedder, embeddings_available, extract_answer,
                          format_quotes, generate_endpoint, load_site_chunks, shipped_tokenizer, token_counter)


def add_ask_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("question", help="what to ask the site")
    p.add_argument("--k", type=int, default=5, help="chunks to retrieve (default 5)")
    p.add_argument("--retriever", default="auto",
                   choices=["auto", "bm25", "dense", "hybrid", "hybrid+rerank"],
                   help="auto (default): hybrid+rerank if the embedding packages are "
                        "installed, else bm25")
    p.add_argument("--base-url", "--endpoint", dest="base_url", default=None,
                   help="an OpenAI-compatible API root (llmnotes serve, llama.cpp's server, vLLM, "
                        "Ollama), e.g. http://127.0.0.1:8000/v1: generate the answer there. "
                        "Default: $OPENAI_BASE_URL if set, else answer offline by quoting the sources")
    p.add_argument("--model", default=None,
                   help="model name sent to --base-url (default: $OPENAI_MODEL, else llmnotes-tiny)")
    p.add_argument("--api-key", default=None, help="bearer token for --base-url (default: $OPENAI_API_KEY)")
    p.add_argument("--sentences", type=int, default=3, help="sentences an offline answer quotes (default 3)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="answer length with --base-url")
    p.add_argument("--max-prompt-tokens", type=int, default=4096,
                   help="prompt budget with --base-url, counted with the package's tokenizer "
                        "(default 4096: about 2000 tokens of a large model's vocabulary)")
    p.add_argument("--docs", default=None, help="index this docs folder instead of the "
                                                "snapshot shipped in the package")
    p.add_argument("--no-generate", action="store_true", help="only retrieve and show sources")


def remote_settings(args: argparse.Namespace) -> tuple[str | None, str, str | None]:
    """``(base_url, model, api_key)`` from the flags, else the ``openai`` client's variables."""
    base_url = args.base_url or os.environ.get("OPENAI_BASE_URL") or None
    model = args.model or os.environ.get("OPENAI_MODEL") or "llmnotes-tiny"
    return base_url, model, args.api_key or os.environ.get("OPENAI_API_KEY") or None


def run_ask(args: argparse.Namespace) -> int:
    for flag in ("k", "sentences", "max_new_tokens", "max_prompt_tokens"):
        if getattr(args, flag) <= 0:
            raise ValueError(f"--{flag.replace('_', '-')} must be a positive int, got {getattr(args, flag)}")
    if not args.question.strip():
        raise ValueError("the question is empty: llmnotes ask \"what is BM25?\"")
    chunks = load_site_chunks(args.docs)
    retriever = build_retriever(chunks, args.retriever)
    base_url, model, api_key = remote_settings(args)
    gen = None
    if base_url and not args.no_generate:
        gen = lambda p: generate_endpoint(p, base_url, model, api_key, args.max_new_tokens)  # noqa: E731
    result = ask(args.question, retriever, chunks, k=args.k, max_prompt_tokens=args.max_prompt_tokens,
                 count_tokens=token_counter(shipped_tokenizer()), generate_fn=gen)
    if result.text is not None:
        print(f"Answer from {model} at {base_url}:\n{result.text}\n")
    elif not args.no_generate:
        quotes = extract_answer(args.question, result.prompt.sources, n=args.sentences,
                                embed=default_embedder() if embeddings_available() else None)
        print("Answer, quoted from the sources (offline; pass --base-url to have a model write one):")
        print((format_quotes(quotes) or "(the retrieved sections hold no prose sentence)") + "\n")
    print("Sources:")
    for i, chunk in enumerate(result.prompt.sources, start=1):
        print(f"[{i}] {chunk.url}  ({chunk.label})")
    shown = len(result.prompt.sources)
    for h in result.hits[shown:]:
        print(f"    also retrieved, not in the prompt: {chunks[h.index].url}")
    return 0
