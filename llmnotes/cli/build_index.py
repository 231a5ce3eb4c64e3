"""``llmnotes build-index DOCS_DIR [OUT]``: chunk the site's pages into the snapshot ``ask`` ships.

``python -m llmnotes.rag build-index DOCS_DIR [OUT]`` runs this same command.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from llmnotes.rag import (SITE_DOCS, SITE_EMBEDDINGS, SNAPSHOT_OPTIONS, EmbeddingCache, build_docs_snapshot,
                          default_embedder, load_chunks)


def add_build_index_arguments(b: argparse.ArgumentParser) -> None:
    """Arguments of ``llmnotes build-index``."""
    b.add_argument("docs_dir", help="the site's docs folder (docs)")
    b.add_argument("out", nargs="?", default=str(SITE_DOCS),
                   help=f"the snapshot to write (default: the package's {SITE_DOCS.name})")
    b.add_argument("--embed", action="store_true",
                   help=f"also write the chunks' and eval questions' MiniLM vectors to "
                        f"{SITE_EMBEDDINGS.name} (beside OUT)")


def run_build_index(args: argparse.Namespace) -> int:
    n = build_docs_snapshot(args.docs_dir, args.out, **SNAPSHOT_OPTIONS)
    print(f"wrote {n} chunks to {args.out}")
    if args.embed:
        from llmnotes.rag.metrics import load_eval_set

        texts = [c.search_text for c in load_chunks(args.out)]
        texts += [q.question for q in load_eval_set()]
        embedder = default_embedder()
        cache = EmbeddingCache(embedder.name, seeds=[SITE_EMBEDDINGS])
        cache.embed(texts, embedder)
        out = Path(args.out).with_name(SITE_EMBEDDINGS.name)
        cache.save(out, list(dict.fromkeys(cache.key(t) for t in texts)), dtype=np.float16)
        print(f"wrote {len(texts)} vectors to {out}")
    return 0


